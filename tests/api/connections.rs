//! What slow, greedy or oversized clients get: header and idle deadlines, the connection cap,
//! and problem+json answers for bodies, URIs and headers over the limits.

use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Reply, TestApp, spawn_app_with};
use crate::support::eventually;

/// A safety net for reads that must end: far longer than any deadline the tests configure.
const SAFETY: Duration = Duration::from_secs(60);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://")).await.expect("connecting")
}

/// Reads until the peer closes the connection; returns what it sent.
async fn read_to_close(socket: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(SAFETY, socket.read_to_end(&mut seen)).await.expect("the server closes the connection");
    // A reset is a close too.
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Reads one response (head and `Content-Length` body) from a kept-alive connection.
async fn read_response(socket: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().expect("a length"));
            if seen.len() >= end + 4 + length {
                return String::from_utf8_lossy(&seen).into_owned();
            }
        }
        let n = tokio::time::timeout(SAFETY, socket.read(&mut byte)).await.expect("a response").expect("reading");
        assert_eq!(n, 1, "the connection closed mid-response: {:?}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected_while_healthz_answers() {
    let app = spawn_app_with(&[("http_header_timeout_secs", "1")]).await;
    let mut trickling = connect(&app).await;
    trickling.write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\nX-Slow: ").await.unwrap();
    let mut silent = connect(&app).await;
    healthz_on_a_new_connection(&app).await;
    assert_eq!(read_to_close(&mut trickling).await, "", "closed without an answer");
    assert_eq!(read_to_close(&mut silent).await, "", "a connection that never sends a byte is closed too");
    healthz_on_a_new_connection(&app).await;
}

/// `/healthz` on a connection of its own (a pooled one may be closing: the header deadline
/// closes kept-alive connections too, and this test sets it to a second).
async fn healthz_on_a_new_connection(app: &TestApp) {
    let mut socket = connect(app).await;
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n").await.unwrap();
    let response = read_response(&mut socket).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_with_413_without_waiting_for_it() {
    // Were the server to wait for the body, the request timeout (an hour) would pass the safety net.
    let app = spawn_app_with(&[("request_timeout_secs", "3600")]).await;
    let mut socket = connect(&app).await;
    socket
        .write_all(b"POST /v1/auth/login HTTP/1.1\r\nHost: keel\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut socket).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json") && response.contains("\"code\":\"payload_too_large\""), "{response}");
}

#[tokio::test]
async fn an_over_long_uri_is_a_414_problem() {
    let app = spawn_app_with(&[]).await;
    let reply = app.get(&format!("/v1/products?q={}", "a".repeat(9 * 1024))).await;
    let problem = reply.problem(414, "uri_too_long");
    assert!(problem["detail"].as_str().unwrap().contains("8192"), "{problem}");
    // Just under the limit the route answers.
    app.get(&format!("/v1/products?q={}", "a".repeat(7 * 1024))).await.expect(200);
}

#[tokio::test]
async fn too_large_or_too_many_headers_are_a_431_problem() {
    let app = spawn_app_with(&[]).await;
    let big = app.send(app.request(Method::GET, "/healthz").header("x-filler", "a".repeat(40 * 1024))).await;
    big.problem(431, "headers_too_large");
    let many = (0..120).fold(app.request(Method::GET, "/healthz"), |r, i| r.header(format!("x-filler-{i}"), "a"));
    app.send(many).await.problem(431, "headers_too_large");
    let fine: Reply = app.send(app.request(Method::GET, "/healthz").header("x-filler", "a".repeat(8 * 1024))).await;
    fine.expect(200);
}

#[tokio::test]
async fn a_connection_with_nothing_moving_is_closed_after_the_idle_timeout() {
    // The header deadline is far off: only the idle timeout can close the connection in time.
    let app = spawn_app_with(&[("http_header_timeout_secs", "300"), ("request_timeout_secs", "1"), ("http_idle_timeout_secs", "2")]).await;
    let mut socket = connect(&app).await;
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n").await.unwrap();
    assert!(read_response(&mut socket).await.starts_with("HTTP/1.1 200"));
    assert_eq!(read_to_close(&mut socket).await, "", "closed once nothing moved for the idle timeout");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_one_to_close() {
    let app = spawn_app_with(&[("http_max_connections", "2"), ("http_header_timeout_secs", "300")]).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n";
    // Two kept-alive connections, each answered once: both are being served.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = connect(&app).await;
        socket.write_all(request).await.unwrap();
        assert!(read_response(&mut socket).await.starts_with("HTTP/1.1 200"));
        held.push(socket);
    }
    let mut third = connect(&app).await;
    third.write_all(request).await.unwrap();
    // Not a timing claim: a slow machine could only make this pass, never fail it wrongly.
    let mut byte = [0u8; 1];
    assert!(tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await.is_err(), "the third waits while two are open");
    drop(held.pop());
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"), "served once a connection closed");
}

#[cfg(unix)]
#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    let app = crate::helpers::spawn_app_process_after("ulimit -Sn 256").await;
    let expected = hard.unwrap_or(1 << 20);
    eventually(10, "process_max_fds in the metrics", || async {
        let text = app.get("/metrics").await.expect(200).text;
        let max: f64 = text.lines().find_map(|l| l.strip_prefix("process_max_fds "))?.trim().parse().ok()?;
        assert_eq!(max as u64, expected, "the soft limit (256 when started) is the hard limit now");
        Some(())
    })
    .await;
}
