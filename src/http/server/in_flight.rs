//! Requests in flight on one HTTP/2 connection. hyper has no header deadline for HTTP/2, so the
//! server closes a connection on which no request has been open for that long: as an idle
//! keep-alive connection is closed on HTTP/1.1, and a peer trickling the frames of a request's
//! headers gets no longer than an HTTP/1.1 client trickling them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tokio::sync::watch;

/// The count of one connection's requests in flight; clones share it.
#[derive(Clone)]
pub(super) struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    pub(super) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }

    /// Counts a request from now until its `Ongoing` is dropped.
    pub(super) fn start(&self) -> Ongoing {
        self.0.send_modify(|n| *n += 1);
        Ongoing(self.0.clone())
    }

    /// Resolves once no request has been in flight for `limit` on end.
    pub(super) async fn quiet_for(&self, limit: Duration) {
        let mut count = self.0.subscribe();
        loop {
            // The sender lives in `self`: waiting can only end with the count at zero.
            let _ = count.wait_for(|n| *n == 0).await;
            if tokio::time::timeout(limit, count.changed()).await.is_err() {
                return;
            }
        }
    }
}

/// One request in flight; dropping it ends the count.
pub(super) struct Ongoing(Arc<watch::Sender<usize>>);

impl Ongoing {
    /// Keeps the request counted until its response body is done or dropped.
    pub(super) fn until_sent(self, response: Response) -> Response {
        response.map(|body| Body::new(Counted { body, _ongoing: self }))
    }
}

impl Drop for Ongoing {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// A response body that keeps its request counted while it is being sent.
struct Counted {
    body: Body,
    _ongoing: Ongoing,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_quiet_after_the_limit() {
        let started = Instant::now();
        InFlight::new().quiet_for(3 * SECOND).await;
        assert_eq!(started.elapsed(), 3 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_counts_from_its_start_and_the_quiet_time_from_the_end_of_its_body() {
        let in_flight = InFlight::new();
        let request = in_flight.start();
        let started = Instant::now();
        let serve = async {
            // The handler runs past the limit, then its body streams for a while.
            tokio::time::sleep(5 * SECOND).await;
            let response = request.until_sent(Response::new(Body::from("streaming")));
            tokio::time::sleep(10 * SECOND).await;
            drop(response);
        };
        tokio::join!(serve, in_flight.quiet_for(3 * SECOND));
        assert_eq!(started.elapsed(), 18 * SECOND);
    }
}
