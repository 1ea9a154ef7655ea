//! Telling people things: mail (always sent by a job), and later in-app notifications
//! and outgoing webhooks.

pub mod delivery;
pub mod mail;
pub mod notifications;
pub mod routes;
pub mod templates;
pub mod webhooks;
