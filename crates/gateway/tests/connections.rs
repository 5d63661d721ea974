//! Clients that misbehave at the connection level: heads that never finish, more connections
//! than the server may hold. Each case is bounded in count and time, on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};
use support::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes); returns what it sent.
async fn read_until_closed(conn: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(within, conn.read_to_end(&mut all)).await;
    read.ok().map(|_| all)
}

#[tokio::test]
async fn half_open_connections_are_closed_by_the_head_timeout_and_block_nobody() {
    let app = TestApp::spawn_with(|s| {
        s.connections.head_timeout = Duration::from_secs(1);
        s.connections.max_connections = 1_000;
    })
    .await;
    let addr = app.gateway.as_ref().unwrap().addr();
    let mut half_open = Vec::new();
    for _ in 0..500 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /v1/mod").await.unwrap();
        half_open.push(conn);
    }
    let key = app.project_key().await;
    let started = Instant::now();
    let reply = app.models(key.secret.expose()).await;
    assert_eq!(
        reply.status, 200,
        "a new client is served beside 500 half-open connections"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    let deadline = Duration::from_secs(5);
    for conn in &mut half_open {
        assert!(
            read_until_closed(conn, deadline).await.is_some(),
            "a half-open connection outlived the head timeout"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connections_past_the_limit_get_a_503_and_the_others_keep_working() {
    let app = TestApp::spawn_with(|s| s.connections.max_connections = 20).await;
    let addr = app.gateway.as_ref().unwrap().addr();
    let key = app.project_key().await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The accept loop counts a connection as it hands it to a serving thread: the 21st is
    // turned away once the first twenty are counted.
    let mut turned_away = None;
    for _ in 0..50 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let answer = read_until_closed(&mut extra, Duration::from_secs(2)).await;
        match answer {
            Some(bytes) if !bytes.is_empty() => {
                turned_away = Some(String::from_utf8_lossy(&bytes).into_owned());
                break;
            }
            // Accepted (its head timeout would close it); try again.
            _ => held.push(extra),
        }
    }
    let answer = turned_away.expect("no connection was turned away");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        answer.contains("\"code\":\"too_many_connections\""),
        "{answer}"
    );
    assert!(answer.contains("retry-after: 1"));
    // A connection that was let in is served.
    let conn = &mut held[0];
    let request = format!(
        "GET /v1/models HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        key.secret.expose()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let served = read_until_closed(conn, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&served).starts_with("HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&served)
    );
    // Once connections close, new ones are served again.
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = app.http.get(format!("{}/healthz", app.base)).send().await;
        if matches!(&reply, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never took new connections again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let app = TestApp::spawn_with(|s| s.connections.max_head_bytes = 16 * 1024).await;
    let addr = app.gateway.as_ref().unwrap().addr();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let big = "x".repeat(32 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\nx-big: {big}\r\n\r\n");
    let _ = conn.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut conn, Duration::from_secs(5))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 431 ") || text.is_empty(),
        "{text}"
    );
}

/// Sends `GET /v1/models` with `key` on `conn` and reads one answer; returns it.
async fn models_on(conn: &mut TcpStream, key: &str) -> String {
    conn.write_all(
        format!("GET /v1/models HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .to_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn keyless_connections_take_at_most_their_share_and_a_failed_key_closes_its_connection() {
    let app = TestApp::spawn_with(|s| {
        s.connections.max_connections = 100;
        s.connections.max_unauthenticated = 5;
    })
    .await;
    let addr = app.gateway.as_ref().unwrap().addr();
    let key = app.project_key().await;
    let secret = key.secret.expose();
    // A client with a key, on a keep-alive connection.
    let mut keyed = TcpStream::connect(addr).await.unwrap();
    assert!(models_on(&mut keyed, secret)
        .await
        .starts_with("HTTP/1.1 200 "));
    // Five connections that show no key fill the share.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // A sixth is served, with its key; the oldest keyless one was closed to make room.
    let mut sixth = TcpStream::connect(addr).await.unwrap();
    assert!(models_on(&mut sixth, secret)
        .await
        .starts_with("HTTP/1.1 200 "));
    assert_eq!(
        read_until_closed(&mut idle[0], Duration::from_secs(2)).await,
        Some(Vec::new()),
        "the oldest keyless connection was closed"
    );
    // The client with a key is not affected.
    assert!(models_on(&mut keyed, secret)
        .await
        .starts_with("HTTP/1.1 200 "));
    // A keyless connection that fails authentication is answered 401 and closed.
    let mut wrong = TcpStream::connect(addr).await.unwrap();
    let answer = models_on(&mut wrong, "sk-proj-wrong").await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(
        read_until_closed(&mut wrong, Duration::from_secs(2)).await,
        Some(Vec::new()),
        "the server closed it"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_never_shows_a_key_is_closed() {
    let app = TestApp::spawn_with(|s| s.connections.head_timeout = Duration::from_secs(1)).await;
    let addr = app.gateway.as_ref().unwrap().addr();
    let started = Instant::now();
    // Not a byte: hyper cannot even tell HTTP/1 from HTTP/2 yet.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Half an HTTP/2 preface.
    let mut preface = TcpStream::connect(addr).await.unwrap();
    preface.write_all(b"PRI * HT").await.unwrap();
    // Keep-alive requests that never show a key.
    let mut health = TcpStream::connect(addr).await.unwrap();
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    for conn in [&mut silent, &mut preface, &mut health] {
        assert!(
            read_until_closed(conn, Duration::from_secs(5))
                .await
                .is_some(),
            "a keyless connection outlived the head timeout"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(started.elapsed() < Duration::from_secs(5));
    // One that showed a key stays.
    let key = app.project_key().await;
    let mut keyed = TcpStream::connect(addr).await.unwrap();
    assert!(models_on(&mut keyed, key.secret.expose())
        .await
        .starts_with("HTTP/1.1 200 "));
    // Used past the time limit (each request well within the idle timeout): still open.
    let until = Instant::now() + Duration::from_millis(1_800);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            models_on(&mut keyed, key.secret.expose())
                .await
                .starts_with("HTTP/1.1 200 "),
            "a connection with a key was closed by the keyless limit"
        );
    }
}
