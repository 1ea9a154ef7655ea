//! Serving HTTP with the limits a public server needs: at most `max_connections` open
//! connections (more wait in the kernel's backlog, holding no file descriptor of ours), a
//! deadline for each request's headers (slow clients cannot hold connections by trickling
//! them, and an idle keep-alive connection is closed when it passes), and an idle timeout on
//! everything else (a peer that stops reading or writing mid-request or on an upgraded socket).
//! On shutdown the listener closes, each connection finishes its request in flight, and
//! serving ends when the last one has closed.
//!
//! Without TLS every connection is HTTP/1.1. With TLS the handshake falls under the header
//! deadline, and ALPN picks HTTP/2 or HTTP/1.1; the same cap, deadlines and drain apply to
//! both (see `in_flight` for HTTP/2's header deadline).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::middleware::AddExtension;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tower::util::MapRequest;
use tower::{Service as _, ServiceExt as _};

use super::tls;
use in_flight::InFlight;

mod in_flight;

/// The largest request head hyper buffers. Heads are judged against Keel's own (smaller)
/// limits by `middleware::request_limits`, which answers in problem+json; only a head past
/// this gets hyper's bare `431` (or `414` for a URI over 64 KiB) and a closed connection.
const MAX_HEAD_BYTES: usize = 128 * 1024;
/// Headers hyper parses (Keel refuses more than `middleware::MAX_HEADERS` itself).
const MAX_HEADERS_PARSED: usize = 256;
/// File descriptors kept for everything but client connections (database, files, peers).
const RESERVED_FDS: u64 = 512;

/// The connection cap when none is configured and the open-file limit allows more.
const DEFAULT_MAX_CONNECTIONS: u64 = 20_000;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// `None`: as many as the open-file limit holds, at most `DEFAULT_MAX_CONNECTIONS`.
    pub max_connections: Option<usize>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Serves `router` on `listener`, over TLS when `tls` is set, until `shutdown` resolves, then
/// drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let max = connection_cap(limits.max_connections).min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let protocols = Arc::new(Protocols::new(limits.header_timeout));
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = make_service.call(peer).await.unwrap_or_else(|never| match never {});
        let service: AppService = service.map_request(to_axum_request);
        let io = Watched::new(stream, Open::new(permit, &open), limits.header_timeout, limits.idle_timeout);
        match &acceptor {
            None => tokio::spawn(protocols.clone().serve_http1(io, service, peer, stopped(stop_rx.clone()))),
            Some(acceptor) => tokio::spawn(protocols.clone().serve_tls(acceptor.clone(), io, service, peer, stop_rx.clone())),
        };
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every socket holds a permit until it closes (an upgraded one too): when all are back,
    // the last connection has closed.
    let _ = permits.acquire_many(max as u32).await;
}

/// The application as one connection's service: the router with the peer's address.
type AppService = MapRequest<AddExtension<Router, ConnectInfo<SocketAddr>>, fn(hyper::Request<Incoming>) -> axum::extract::Request>;

fn to_axum_request(req: hyper::Request<Incoming>) -> axum::extract::Request {
    req.map(Body::new)
}

/// Resolves when the server starts draining.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// How connections speak HTTP, with the same limits whichever version they use.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_timeout: Duration,
}

impl Protocols {
    fn new(header_timeout: Duration) -> Self {
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_HEAD_BYTES).max_headers(MAX_HEADERS_PARSED);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        // As on HTTP/1.1, heads up to this size reach Keel's own limits, which answer in problem+json.
        http2.timer(TokioTimer::new()).max_header_list_size(MAX_HEAD_BYTES as u32);
        Self { http1, http2, header_timeout }
    }

    /// HTTP/1.1 (with upgrades: WebSocket) on `io`, until it closes or, once `until` resolves,
    /// has finished its request in flight.
    async fn serve_http1<I>(self: Arc<Self>, io: I, service: AppService, peer: SocketAddr, until: impl Future<Output = ()>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self.http1.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)).with_upgrades();
        drive(conn, |conn| conn.graceful_shutdown(), until, peer).await;
    }

    /// The TLS handshake, bounded by the header deadline as a request's head is (a slow
    /// handshake cannot hold a connection), then HTTP/2 or HTTP/1.1 as ALPN chose.
    async fn serve_tls(
        self: Arc<Self>,
        acceptor: TlsAcceptor,
        io: Watched<TcpStream>,
        service: AppService,
        peer: SocketAddr,
        stop: watch::Receiver<bool>,
    ) {
        let stream = tokio::select! {
            handshake = tokio::time::timeout(self.header_timeout, acceptor.accept(io)) => match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    crate::telemetry::record_http_timed_out("headers");
                    return;
                }
            },
            // Still shaking hands when draining starts: no request is in flight, so just close.
            () = stopped(stop.clone()) => return,
        };
        if stream.get_ref().1.alpn_protocol() != Some(tls::H2) {
            return self.serve_http1(stream, service, peer, stopped(stop)).await;
        }
        let in_flight = InFlight::new();
        let counting = in_flight.clone();
        let service = service.map_future(move |response| {
            let request = counting.start();
            async move { response.await.map(|response| request.until_sent(response)) }
        });
        let conn = self.http2.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let until = async {
            tokio::select! {
                () = stopped(stop) => {}
                () = in_flight.quiet_for(self.header_timeout) => crate::telemetry::record_http_timed_out("headers"),
            }
        };
        drive(conn, |conn| conn.graceful_shutdown(), until, peer).await;
    }
}

/// Runs a connection to its end. Once `until` resolves, `drain` asks it to finish the requests
/// in flight and close.
async fn drive<C>(conn: C, drain: impl FnOnce(Pin<&mut C>), until: impl Future<Output = ()>, peer: SocketAddr)
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = until => {
            drain(conn.as_mut());
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            crate::telemetry::record_http_timed_out("headers");
        }
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// What a failed `accept` means: a peer that gave up is nothing; anything else (out of file
/// descriptors, above all) is logged, and accepting pauses so the loop does not spin.
async fn accept_failed(e: io::Error) {
    if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The connection cap: the configured one, lowered (with a warning) to what the open-file
/// limit holds once raised.
fn connection_cap(configured: Option<usize>) -> usize {
    match (configured, raise_fd_limit()) {
        (Some(n), Some(fit)) if n as u64 > fit => {
            tracing::warn!(configured = n, fit, "http_max_connections is more than the open-file limit holds; using {fit}");
            fit.max(1) as usize
        }
        (Some(n), _) => n,
        (None, fit) => fit.unwrap_or(DEFAULT_MAX_CONNECTIONS).clamp(1, DEFAULT_MAX_CONNECTIONS) as usize,
    }
}

/// Raises the soft limit on open files to the hard limit where the system allows, and returns
/// how many connections fit in it with `RESERVED_FDS` to spare (`None`: no limit known).
fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let mut soft = limit.current?;
        if limit.maximum.is_none_or(|hard| hard > soft) {
            // An unlimited hard limit is not a value setrlimit takes for files; aim high but finite.
            let target = limit.maximum.unwrap_or(1 << 20);
            match setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(target), maximum: limit.maximum }) {
                Ok(()) => {
                    tracing::info!(from = soft, to = target, "raised the open-file limit");
                    soft = target;
                }
                Err(e) => tracing::warn!(limit = soft, error = %e, "could not raise the open-file limit"),
            }
        }
        Some(soft.saturating_sub(RESERVED_FDS))
    }
    #[cfg(not(unix))]
    None
}

/// One open connection: its permit, and its place in the `keel_http_connections` count.
struct Open {
    _permit: OwnedSemaphorePermit,
    count: Arc<AtomicUsize>,
}

impl Open {
    fn new(permit: OwnedSemaphorePermit, count: &Arc<AtomicUsize>) -> Self {
        crate::telemetry::record_http_connections(count.fetch_add(1, Ordering::Relaxed) + 1);
        Self { _permit: permit, count: count.clone() }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        crate::telemetry::record_http_connections(self.count.fetch_sub(1, Ordering::Relaxed) - 1);
    }
}

/// A connection's socket with an inactivity deadline: `first` until the first byte arrives,
/// then `idle` after the last byte moved either way. A read or write waiting past it fails
/// with `TimedOut`, which ends the connection. It holds its connection permit until it closes,
/// whether hyper or an upgraded protocol (WebSocket) has it last.
struct Watched<S> {
    inner: S,
    _open: Open,
    limit: Duration,
    idle: Duration,
    last: Instant,
    deadline: Pin<Box<Sleep>>,
    /// Whether a byte has arrived yet (until then the header deadline applies).
    heard: bool,
    expired: bool,
}

impl<S> Watched<S> {
    fn new(inner: S, open: Open, first: Duration, idle: Duration) -> Self {
        let now = Instant::now();
        let deadline = Box::pin(tokio::time::sleep_until(now + first));
        Self { inner, _open: open, limit: first, idle, last: now, deadline, heard: false, expired: false }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
        if !self.heard {
            // The deadline only moves later lazily; the switch to `idle` may bring it closer.
            self.heard = true;
            self.limit = self.idle;
            self.deadline.as_mut().reset(self.last + self.idle);
        }
    }

    /// Pending until the deadline passes with nothing moved; the deadline is pushed back
    /// lazily, so activity costs a clock read rather than a timer update.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long");
        if self.expired {
            return Poll::Ready(timed_out());
        }
        loop {
            ready!(self.deadline.as_mut().poll(cx));
            let due = self.last + self.limit;
            if Instant::now() >= due {
                self.expired = true;
                crate::telemetry::record_http_timed_out(if self.heard { "idle" } else { "headers" });
                return Poll::Ready(timed_out());
            }
            self.deadline.as_mut().reset(due);
        }
    }

    fn on_pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        self.poll_expired(cx).map(Err)
    }

    fn written(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.touch();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => self.on_pending(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.on_pending(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.written(cx, poll)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.on_pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.on_pending(cx),
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn open() -> Open {
        Open::new(Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(), &Arc::new(AtomicUsize::new(0)))
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_sends_nothing_meets_the_first_deadline() {
        let (_peer, ours) = tokio::io::duplex(64);
        let mut watched = Watched::new(ours, open(), 2 * SECOND, 60 * SECOND);
        let started = Instant::now();
        let err = watched.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), 2 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_deadline_back_and_a_stalled_write_meets_it() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut watched = Watched::new(ours, open(), 2 * SECOND, 5 * SECOND);
        let started = Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(4 * SECOND).await;
            peer.write_all(b"x").await.unwrap();
            assert_eq!(watched.read(&mut [0u8; 1]).await.unwrap(), 1);
        }
        // The peer stops reading: 64 bytes fit in the pipe, then the write waits until the deadline.
        let err = watched.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), 12 * SECOND + 5 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_shorter_than_the_first_deadline_applies_from_the_first_byte() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut watched = Watched::new(ours, open(), 300 * SECOND, 2 * SECOND);
        peer.write_all(b"x").await.unwrap();
        assert_eq!(watched.read(&mut [0u8; 1]).await.unwrap(), 1);
        let started = Instant::now();
        let err = watched.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!((err.kind(), started.elapsed()), (io::ErrorKind::TimedOut, 2 * SECOND));
    }
}
