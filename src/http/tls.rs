//! TLS settings for the server: the certificate chain and private key are read from PEM files
//! once, at start-up (a bad file stops it), for rustls on aws-lc-rs, with ALPN offering HTTP/2
//! then HTTP/1.1. WebSocket needs HTTP/1.1: Keel does not offer WebSocket over HTTP/2
//! (RFC 8441), so clients open their WebSocket on a connection negotiated as `http/1.1`.

use std::path::Path;
use std::sync::Arc;

use secrecy::zeroize::Zeroizing;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject as _};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio_rustls::rustls::{self, InconsistentKeys, ServerConfig};

/// The ALPN name of HTTP/2.
pub const H2: &[u8] = b"h2";
const HTTP_1_1: &[u8] = b"http/1.1";

/// Which file is wrong, and why. Messages never quote the key file's contents.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsFilesError {
    Cert(String),
    Key(String),
    /// Each file is fine alone, but the key is not the certificate's.
    Mismatch,
}

/// The server's TLS settings from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsFilesError> {
    let chain = read_chain(cert).map_err(TlsFilesError::Cert)?;
    let key = read_key(key).map_err(TlsFilesError::Key)?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let signer = provider.key_provider.load_private_key(key).map_err(|e| TlsFilesError::Key(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive cannot be compared: as rustls does, accept it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err(TlsFilesError::Mismatch),
        Err(e) => return Err(TlsFilesError::Cert(format!("unusable certificate: {e}"))),
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![H2.to_vec(), HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no CERTIFICATE block", path.display()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    // The parser's own messages may quote a line of the file: say what is wrong without them.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{} holds no PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1)", path.display()),
        _ => format!("{} is not a valid PEM file", path.display()),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Writes a fresh self-signed certificate for `localhost` and its key as PEM files in a new
    /// directory under the system's temporary one; returns the two paths.
    pub(crate) fn self_signed_files() -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("keel-tls-unit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn alpn_offers_http2_then_http_1_1() {
        let (cert, key) = self_signed_files();
        let config = server_config(&cert, &key).unwrap();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let _ = std::fs::remove_dir_all(cert.parent().unwrap());
    }

    #[test]
    fn each_file_is_checked_for_what_it_must_hold() {
        let (cert, key) = self_signed_files();
        let (other_cert, other_key) = self_signed_files();
        assert!(matches!(server_config(&key, &key), Err(TlsFilesError::Cert(why)) if why.contains("no CERTIFICATE")));
        assert!(matches!(server_config(&cert, &cert), Err(TlsFilesError::Key(why)) if why.contains("no PRIVATE KEY")));
        assert_eq!(server_config(&cert, &other_key).err(), Some(TlsFilesError::Mismatch));
        assert!(server_config(&other_cert, &other_key).is_ok());
        for dir in [&cert, &other_cert] {
            let _ = std::fs::remove_dir_all(dir.parent().unwrap());
        }
    }
}
