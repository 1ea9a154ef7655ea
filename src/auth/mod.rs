//! Accounts and sessions: users, passwords, tokens, roles, and sign-in through providers.

pub mod api_keys;
pub mod error;
pub mod extract;
pub mod mfa;
pub mod model;
pub mod passkeys;
pub mod password;
pub mod recovery;
pub mod repo;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod social;
pub mod tokens;

pub use api_keys::ApiKeys;
pub use repo::AccountRepo;
pub use service::Accounts;
