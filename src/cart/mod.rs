//! The shopping cart: one per user, stored, priced live through the rules engine.

pub mod repo;
pub mod routes;
pub mod service;

pub use repo::CartRepo;
pub use service::Carts;
