//! API keys for servers: scoped, shown once, stored as keyed hashes, rotated with a grace period.

pub mod access;
pub mod guard;
pub mod model;
pub mod repo;
pub mod routes;
pub mod service;

pub use service::ApiKeys;
