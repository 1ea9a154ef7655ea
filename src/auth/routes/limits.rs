//! The rate-limit budgets the account routes spend, and the keys they spend them under.

use crate::auth::model::Email;
use crate::http::error::ApiResult;
use crate::http::extract::ClientIp;
use crate::http::rate_limit::{RateLimitHeaders, enforce};
use crate::security::rate_limit::{Limiter, Policy};
use crate::security::sha256_hex;

/// An account's key: a hash of its normalised email (parsed, or as stored), so a key is small
/// whatever a client sent and the limiter's memory holds no addresses.
fn account_key(email: &str) -> String {
    sha256_hex(email.as_bytes())
}

/// Every attempt from one client address, spent before anything in the body is looked at.
pub(super) async fn limit_ip(limiter: &dyn Limiter, ip: ClientIp) -> ApiResult<RateLimitHeaders> {
    enforce(limiter, &[(Policy::AuthIp, ip.0.to_string().as_str())]).await
}

/// Attempts against one account, from anywhere.
pub(super) async fn limit_account(limiter: &dyn Limiter, email: &Email) -> ApiResult<RateLimitHeaders> {
    enforce(limiter, &[(Policy::AuthAccount, account_key(email.as_str()).as_str())]).await
}

/// Mail a client asks Keel to send to an account (`email` parsed, or as stored): per client
/// address and per account, so nobody can fill an inbox.
pub(super) async fn limit_mail(limiter: &dyn Limiter, ip: ClientIp, email: &str) -> ApiResult<RateLimitHeaders> {
    enforce(limiter, &[(Policy::MailIp, ip.0.to_string().as_str()), (Policy::MailAccount, account_key(email).as_str())]).await
}
