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

/// Every attempt from one client address (login, register, reset, verification), spent before
/// anything in the body is looked at.
pub(in crate::auth) async fn limit_ip(limiter: &dyn Limiter, ip: ClientIp) -> ApiResult<RateLimitHeaders> {
    enforce(limiter, &[(Policy::AuthIp, ip.0.to_string().as_str())]).await
}

/// The budgets of failed logins: per (account, client address), tight, then per account from
/// anywhere, loose. A refusal of the first leaves the second untouched, so one address
/// hammering an account spends little of what its owner signs in with from elsewhere.
pub(super) async fn limit_login(limiter: &dyn Limiter, ip: ClientIp, email: &Email) -> ApiResult<RateLimitHeaders> {
    let account = account_key(email.as_str());
    let pair = format!("{account}/{}", ip.0);
    enforce(limiter, &[(Policy::AuthAccountIp, pair.as_str()), (Policy::AuthAccount, account.as_str())]).await
}

/// A login that succeeded was no failed attempt: its account budgets get it back.
pub(super) async fn forgive_login(limiter: &dyn Limiter, ip: ClientIp, email: &Email) {
    let account = account_key(email.as_str());
    limiter.refund(Policy::AuthAccountIp, &format!("{account}/{}", ip.0)).await;
    limiter.refund(Policy::AuthAccount, &account).await;
}

/// Mail a client asks Keel to send to an account (`email` parsed, or as stored): per client
/// address and per account, so nobody can fill an inbox.
pub(super) async fn limit_mail(limiter: &dyn Limiter, ip: ClientIp, email: &str) -> ApiResult<RateLimitHeaders> {
    enforce(limiter, &[(Policy::MailIp, ip.0.to_string().as_str()), (Policy::MailAccount, account_key(email).as_str())]).await
}
