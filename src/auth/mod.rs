//! Accounts and sessions: users, passwords, tokens, roles.

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
pub mod tokens;

pub use repo::AccountRepo;
pub use service::Accounts;
