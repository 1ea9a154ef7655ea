//! Orders: the state machine (`model`), their storage (`repo`), checkout and the order use
//! cases (`service`), and the routes.

pub mod model;
pub mod repo;
pub mod routes;
pub mod service;

pub use service::Orders;
