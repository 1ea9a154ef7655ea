//! The back channel to providers: reqwest with a timeout, no redirects followed (a provider's
//! endpoint that redirects is misconfigured, and following it could reach anywhere), bounded
//! answers; and `oauth2`'s `AsyncHttpClient` over it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

/// Largest answer read from a provider (discovery documents, keys, tokens, profiles are small).
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackChannelError {
    #[error("request to the provider failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the provider answered {0}")]
    Status(u16),
    #[error("the provider's answer is over {MAX_ANSWER} bytes")]
    TooLarge,
    #[error("the provider's answer is not the expected JSON: {0}")]
    Shape(#[from] serde_json::Error),
    #[error("the request cannot be built: {0}")]
    Build(#[from] oauth2::http::Error),
}

#[derive(Clone)]
pub struct BackChannel(reqwest::Client);

impl BackChannel {
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self(client))
    }

    /// GETs JSON (with a bearer token, for user info); any status but 200 is an error.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str, bearer: Option<&str>) -> Result<T, BackChannelError> {
        let mut request = self.0.get(url).header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(BackChannelError::Status(response.status().as_u16()));
        }
        Ok(serde_json::from_slice(&bounded_body(response).await?)?)
    }

    async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, BackChannelError> {
        let response = self.0.execute(reqwest::Request::try_from(request)?).await?;
        let mut answer = oauth2::http::Response::builder().status(response.status().as_u16());
        for (name, value) in response.headers() {
            answer = answer.header(name.as_str(), value.as_bytes());
        }
        Ok(answer.body(bounded_body(response).await?)?)
    }
}

async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, BackChannelError> {
    if response.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(BackChannelError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(BackChannelError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<'c> oauth2::AsyncHttpClient<'c> for BackChannel {
    type Error = BackChannelError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BackChannelError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}
