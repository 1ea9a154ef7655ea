//! Catalog and stock: products, full-text search, stock movements and reservations.

pub mod model;
pub mod repo;
pub mod routes;
pub mod service;

pub use repo::CatalogRepo;
pub use service::Catalog;
