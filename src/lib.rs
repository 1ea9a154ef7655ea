//! Keel: a commerce backend in one binary.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cache;
pub mod cart;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod events;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod money;
pub mod notify;
pub mod orders;
pub mod payments;
pub mod pricing;
pub mod realtime;
pub mod redis;
pub mod security;
pub mod store;
pub mod telemetry;
pub mod validation;
