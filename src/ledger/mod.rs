//! The double-entry ledger: accounts, postings and the transactions money moves in (`model`).
//! Storage, balances and `ledger verify` join it when the unit of work lands.

pub mod model;
