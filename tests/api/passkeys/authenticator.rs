//! A software passkey: what a browser and a platform authenticator do together, in WebAuthn
//! Level 3 JSON. A resident P-256 credential with user verification that sends its user handle
//! (webauthn-authenticator-rs's `SoftPasskey` keeps no user handle, needs `allowCredentials`
//! and cannot be cloned, so these tests carry their own). Cloning it copies its signature
//! counter, as a cloned authenticator would.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// User present, user verified.
const UP_UV: u8 = 0x05;
/// … with attested credential data.
const UP_UV_AT: u8 = 0x45;

#[derive(Clone)]
pub struct SoftPasskey {
    pkcs8: Vec<u8>,
    pub credential_id: Vec<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
    counter: u32,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} in {value}"))
}

impl SoftPasskey {
    /// Makes a credential for `options` (`PublicKeyCredentialCreationOptions`) as `origin`
    /// does; returns it and the credential to send back.
    pub fn register(options: &Value, origin: &str) -> (SoftPasskey, Value) {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new()).unwrap().as_ref().to_vec();
        let passkey = SoftPasskey {
            pkcs8,
            credential_id: aws_lc_rs::rand::generate::<[u8; 16]>(&SystemRandom::new()).unwrap().expose().to_vec(),
            rp_id: text(options, "/rp/id").to_owned(),
            user_handle: URL_SAFE_NO_PAD.decode(text(options, "/user/id")).unwrap(),
            counter: 0,
        };
        let credential = passkey.attestation(text(options, "/challenge"), origin);
        (passkey, credential)
    }

    /// The registration answer for another challenge (a second registration of this key).
    pub fn attestation(&self, challenge: &str, origin: &str) -> Value {
        let point = self.key().public_key().as_ref().to_vec();
        let (x, y) = (&point[1..33], &point[33..65]);
        // COSE_Key {kty: EC2, alg: ES256, crv: P-256, x, y}
        let cose = [map(5), uint(1), uint(2), uint(3), nint(7), nint(1), uint(1), nint(2), bytes(x), nint(3), bytes(y)].concat();
        let id_len = u16::try_from(self.credential_id.len()).unwrap().to_be_bytes();
        let auth_data =
            [self.rp_hash(), vec![UP_UV_AT], 0u32.to_be_bytes().to_vec(), vec![0; 16], id_len.to_vec(), self.credential_id.clone(), cose]
                .concat();
        let attestation =
            [map(3), string("fmt"), string("none"), string("attStmt"), map(0), string("authData"), bytes(&auth_data)].concat();
        let client_data = client_data("webauthn.create", challenge, origin);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": { "attestationObject": b64(&attestation), "clientDataJSON": b64(&client_data), "transports": ["internal"] },
            "clientExtensionResults": {},
        })
    }

    /// Signs in answer to `options` (`PublicKeyCredentialRequestOptions`) as `origin` does.
    pub fn assertion(&mut self, options: &Value, origin: &str) -> Value {
        assert_eq!(text(options, "/rpId"), self.rp_id, "the options name this passkey's relying party");
        assert_eq!(text(options, "/userVerification"), "required");
        self.counter += 1;
        let auth_data = [self.rp_hash(), vec![UP_UV], self.counter.to_be_bytes().to_vec()].concat();
        let client_data = client_data("webauthn.get", text(options, "/challenge"), origin);
        let signed = [auth_data.clone(), digest(&SHA256, &client_data).as_ref().to_vec()].concat();
        let signature = self.key().sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.as_ref()),
                "userHandle": b64(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
    }

    fn key(&self) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8).unwrap()
    }

    fn rp_hash(&self) -> Vec<u8> {
        digest(&SHA256, self.rp_id.as_bytes()).as_ref().to_vec()
    }
}

fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false })).unwrap()
}

// The few CBOR items an attestation needs (RFC 8949: a major type and a length or value).
fn head(major: u8, n: u64) -> Vec<u8> {
    let major = major << 5;
    match n {
        0..24 => vec![major | n as u8],
        24..256 => vec![major | 24, n as u8],
        256..65536 => [vec![major | 25], (n as u16).to_be_bytes().to_vec()].concat(),
        _ => [vec![major | 26], (n as u32).to_be_bytes().to_vec()].concat(),
    }
}

fn uint(n: u64) -> Vec<u8> {
    head(0, n)
}

/// The negative integer `-n`.
fn nint(n: u64) -> Vec<u8> {
    head(1, n - 1)
}

fn bytes(b: &[u8]) -> Vec<u8> {
    [head(2, b.len() as u64), b.to_vec()].concat()
}

fn string(s: &str) -> Vec<u8> {
    [head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}

fn map(pairs: u64) -> Vec<u8> {
    head(5, pairs)
}
