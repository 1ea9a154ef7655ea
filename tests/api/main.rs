//! Black-box tests of the HTTP API: each test spawns the real server on port 0 with a fresh
//! database (SQLite, or PostgreSQL when `KEEL_TEST_DATABASE_URL` is set) and talks HTTP to it.

// Shared with the payments tests; each binary uses a part of it.
#[path = "../common/fake_oidc.rs"]
mod fake_oidc;
#[allow(dead_code)]
#[path = "../common/fake_provider.rs"]
mod fake_provider;
mod helpers;
#[path = "../common/poll.rs"]
mod poll;
#[path = "../common/smtp.rs"]
mod smtp;
mod support;

mod admin_users;
mod api_keys;
mod audit;
mod backup;
mod cart;
mod catalog;
mod checkout;
mod cli;
mod concurrency;
mod connections;
mod console;
mod conventions;
mod dashboard;
mod demo;
mod idempotency;
mod integer_inputs;
mod jobs;
mod keys;
mod login;
mod logs;
mod mail_flows;
mod mail_links;
mod me;
mod mfa;
mod notifications;
mod openapi_document;
mod ops;
mod orders;
mod outbox;
mod passkeys;
mod password;
mod payments_faults;
mod pricing;
mod rate_limit;
mod rate_limit_classes;
mod realtime;
mod redis;
mod refresh;
mod register;
mod route_guards;
mod secrets_in_logs;
mod sessions;
mod settlement;
mod social;
mod stock;
mod tls;
mod tokens;
mod tracing;
mod wallet;
mod webhooks;
