//! The double-entry ledger: accounts, postings and the transactions money moves in (`model`),
//! their storage (`repo`), posting and verifying (`service`), and the wallet on top (`wallet`,
//! `routes`).

pub mod model;
pub mod repo;
pub mod routes;
pub mod service;
pub mod wallet;

pub use service::Ledger;
pub use wallet::Wallet;
