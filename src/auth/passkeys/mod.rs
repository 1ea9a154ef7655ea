//! Passkeys (WebAuthn with webauthn-rs): registered while signed in, listed and removed by their
//! owner, and a way to log in on their own (a passkey verifies its user, so it satisfies MFA).
//! Ceremony state lives in the database between start and finish: single use, 5 minutes.

pub mod model;
pub mod repo;
pub mod routes;
pub mod service;

pub use model::RelyingParty;
pub use service::Passkeys;
