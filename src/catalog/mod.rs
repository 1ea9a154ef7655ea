//! Catalog and stock: products, full-text search, stock movements and reservations, and
//! the read cache.

pub mod cache;
pub mod model;
pub mod repo;
pub mod routes;
pub mod service;

pub use repo::{CatalogRepo, SqlCatalog};
pub use service::Catalog;
