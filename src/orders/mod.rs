//! Orders: the state machine (`model`), their storage (`repo`), checkout and the order use
//! cases (`service`), card payments and their later settlement (`card`), the receipt mail
//! (`receipt`), the audit entries of refunds and captures (`audit`), and the routes.

pub mod audit;
pub mod card;
pub mod model;
pub mod receipt;
pub mod repo;
pub mod routes;
pub mod service;

pub use service::Orders;
