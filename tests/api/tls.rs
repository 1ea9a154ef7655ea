//! TLS: HTTPS with the configured certificate, HTTP/2 by ALPN (SSE too), WebSocket over HTTP/1.1, no
//! cleartext on the TLS port, the header deadline over the handshake and on idle HTTP/2
//! connections, and the start-up refusals of bad `tls_*` settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::helpers::{TestApp, run_keel, spawn_app_process_with, spawn_app_with};

/// A safety net for reads that must end: far longer than any deadline the tests configure.
const SAFETY: Duration = Duration::from_secs(60);

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files in a
/// directory of its own (removed on drop).
struct SelfSigned {
    dir: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl SelfSigned {
    fn new() -> SelfSigned {
        let dir = std::env::temp_dir().join(format!("keel-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
        std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &key_pem).unwrap();
        SelfSigned { dir, cert_pem, key_pem }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("temp dir is UTF-8").to_owned()
    }

    /// The settings that turn TLS on with this certificate.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![("tls_cert", self.path("cert.pem")), ("tls_key", self.path("key.pem"))]
    }

    /// An HTTPS client that trusts this certificate and nothing else.
    fn https_client(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap();
        reqwest::Client::builder().no_proxy().tls_certs_only([root]).build().unwrap()
    }

    /// A TLS connection to `app` offering `alpn`, trusting this certificate.
    async fn connect(&self, app: &TestApp, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(host_port(app)).await.unwrap();
        TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.expect("a TLS handshake")
    }
}

impl Drop for SelfSigned {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn host_port(app: &TestApp) -> &str {
    app.address.trim_start_matches("https://")
}

/// Spawns the app with TLS on (and `extra` settings), its client trusting the certificate.
async fn spawn_tls_app(cert: &SelfSigned, extra: &[(&str, &str)]) -> TestApp {
    let settings = cert.settings();
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).chain(extra.iter().copied()).collect();
    let mut app = spawn_app_with(&overrides).await;
    assert!(app.address.starts_with("https://"), "{}", app.address);
    app.client = cert.https_client();
    app
}

/// Reads until the peer closes the connection; returns what it sent.
async fn read_to_close(socket: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(SAFETY, socket.read_to_end(&mut seen)).await.expect("the server closes the connection");
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    seen
}

#[tokio::test]
async fn https_requests_are_served_with_the_configured_certificate_and_hsts() {
    let cert = SelfSigned::new();
    let app = spawn_tls_app(&cert, &[]).await;
    let health = app.get("/healthz").await.expect(200);
    assert_eq!(health.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains"));
    app.get("/v1/products").await.expect(200);
}

#[tokio::test]
async fn a_client_offering_h2_and_http_1_1_gets_http2() {
    let cert = SelfSigned::new();
    let app = spawn_tls_app(&cert, &[]).await;
    let stream = cert.connect(&app, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for path in ["/healthz", "/v1/products"] {
        let request = hyper::Request::get(format!("{}{path}", app.address)).body(Body::empty()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!((response.version(), response.status().as_u16()), (hyper::Version::HTTP_2, 200), "{path}");
    }
}

#[tokio::test]
async fn server_sent_events_stream_over_http2() {
    use hyper::body::Body as _;
    let cert = SelfSigned::new();
    let app = spawn_tls_app(&cert, &[("realtime_heartbeat_secs", "1")]).await;
    let customer = app.customer("ada@example.com").await;
    let stream = cert.connect(&app, &[b"h2"]).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(format!("{}/v1/events", app.address))
        .header("authorization", format!("Bearer {}", customer.access))
        .body(Body::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!((response.version(), response.status().as_u16()), (hyper::Version::HTTP_2, 200));
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let frame = tokio::time::timeout(SAFETY, std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)))
        .await
        .expect("the stream's first bytes in time");
    let data = frame.expect("the stream stays open").unwrap().into_data().unwrap();
    assert!(data.starts_with(b":"), "an SSE comment line first: {data:?}");
}

#[tokio::test]
async fn a_client_offering_only_http_1_1_gets_http_1_1_and_can_open_a_websocket() {
    use futures::StreamExt as _;
    let cert = SelfSigned::new();
    let app = spawn_tls_app(&cert, &[]).await;
    let customer = app.customer("ada@example.com").await;
    let ticket = app.post_json_authed("/v1/realtime/tickets", &customer.access, &serde_json::json!({})).await.expect(201).json();
    let stream = cert.connect(&app, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let url = format!("wss://{}/v1/ws?ticket={}", host_port(&app), ticket["ticket"].as_str().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("the WebSocket upgrade over TLS");
    let first = tokio::time::timeout(SAFETY, ws.next()).await.expect("a message").expect("open").expect("a frame");
    let first: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first["type"], "authenticated");
}

#[tokio::test]
async fn cleartext_http_on_the_tls_port_gets_no_http_answer() {
    let cert = SelfSigned::new();
    let app = spawn_tls_app(&cert, &[]).await;
    let mut socket = TcpStream::connect(host_port(&app)).await.unwrap();
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut socket).await;
    assert!(!answer.starts_with(b"HTTP/"), "cleartext must not be served: {:?}", String::from_utf8_lossy(&answer));
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(plain.get(format!("http://{}/healthz", host_port(&app))).send().await.is_err());
}

#[tokio::test]
async fn a_client_that_stalls_in_the_tls_handshake_is_disconnected_by_the_header_deadline() {
    let cert = SelfSigned::new();
    // The idle timeout is far past the safety net: only the header deadline can close the socket in time.
    let app = spawn_tls_app(&cert, &[("http_header_timeout_secs", "1"), ("http_idle_timeout_secs", "3600")]).await;
    let mut stalled = TcpStream::connect(host_port(&app)).await.unwrap();
    // The first bytes of a TLS record header (handshake, TLS 1.0 framing), then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert_eq!(read_to_close(&mut stalled).await, b"", "closed without an answer");
    app.get("/healthz").await.expect(200);
}

#[tokio::test]
async fn an_http2_connection_without_a_request_open_is_closed_by_the_header_deadline() {
    let cert = SelfSigned::new();
    let app = spawn_tls_app(&cert, &[("http_header_timeout_secs", "1"), ("http_idle_timeout_secs", "3600")]).await;
    let stream = cert.connect(&app, &[b"h2"]).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(format!("{}/healthz", app.address)).body(Body::empty()).unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    let closed = tokio::time::timeout(SAFETY, conn).await.expect("the server closes the idle connection").unwrap();
    assert!(closed.is_ok(), "closed cleanly (GOAWAY): {closed:?}");
}

#[tokio::test]
async fn keel_serve_with_tls_logs_that_it_listens_with_tls_and_answers_over_https() {
    let cert = SelfSigned::new();
    let settings = cert.settings();
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut app = spawn_app_process_with(&overrides).await;
    assert!(app.address.starts_with("https://"), "{}", app.address);
    app.client = cert.https_client();
    app.get("/healthz").await.expect(200);
}

#[tokio::test]
async fn bad_tls_settings_stop_start_up_with_exit_code_2_naming_the_key() {
    let cert = SelfSigned::new();
    let other = SelfSigned::new();
    let missing = cert.path("missing.pem");
    for (settings, named) in [
        (vec![("KEEL_TLS_CERT", cert.path("cert.pem"))], "KEEL_TLS_KEY"),
        (vec![("KEEL_TLS_KEY", cert.path("key.pem"))], "KEEL_TLS_CERT"),
        (vec![("KEEL_TLS_CERT", missing.clone()), ("KEEL_TLS_KEY", cert.path("key.pem"))], "KEEL_TLS_CERT"),
        (vec![("KEEL_TLS_CERT", cert.path("cert.pem")), ("KEEL_TLS_KEY", missing)], "KEEL_TLS_KEY"),
        // A certificate file given as the key: no private key in it.
        (vec![("KEEL_TLS_CERT", cert.path("cert.pem")), ("KEEL_TLS_KEY", cert.path("cert.pem"))], "KEEL_TLS_KEY"),
        // Another certificate's key.
        (vec![("KEEL_TLS_CERT", cert.path("cert.pem")), ("KEEL_TLS_KEY", other.path("key.pem"))], "KEEL_TLS_KEY"),
    ] {
        let env: Vec<(&str, String)> = settings.iter().cloned().chain([("KEEL_DATA_DIR", cert.path("data"))]).collect();
        let out = run_keel(&["migrate"], &env, "").await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{settings:?}: {stderr}");
        assert!(stderr.contains(named), "{settings:?}: the message names {named}: {stderr}");
        let key_material = [&cert, &other].map(|c| c.key_pem.lines().nth(1).unwrap().to_owned());
        assert!(key_material.iter().all(|line| !stderr.contains(line.as_str())), "no key material: {stderr}");
    }
}
