//! The HTTP/1.1 client for providers reached over plain HTTP (a model server beside Tollgate:
//! vLLM, Ollama, llama.cpp, a sidecar): hyper's `client::conn::http1`, each connection driven by
//! a task on the serving thread that opened it, with a pool per serving thread. Providers over
//! HTTPS use reqwest.
//!
//! **Why hyper, and not the hand-written client this module held before.** That client (~1,000
//! lines: head parser, chunked decoder, body reader) was justified by a +30-40% A/B against
//! reqwest on the old work-stealing runtime, where every request hopped threads twice. On the
//! per-core serving threads, `bench/proxy-cpu.sh` (2026-12-01, 2 cores, wrk at 32 connections,
//! 4 alternating rounds of 8 s, nginx-split upstream) measured hyper's client here at 95% of the
//! hand-written one's throughput (31.4k vs 32.6k req/s; 33.6 vs 32.0 µs of CPU per request,
//! nginx's proxy 17.6 µs): within the 10% that keeps a hand-written parser of hostile input
//! from paying for itself. Its tests stay, as regression tests of this client.
//!
//! - **Pool**: each serving thread keeps its own idle connections (a connection is registered
//!   with the runtime of the thread that opened it) in a deque only that thread touches: O(1)
//!   checkout, newest first, and return; the expired ones, oldest, go from the front; at most
//!   [`MAX_IDLE_PER_THREAD`] per thread and provider.
//! - **Reuse**: a connection goes back the moment its response body has ended, as its framing
//!   says (`is_end_stream`); hyper takes it back only if nothing but the next response can
//!   follow, and a connection it found broken, or the provider closed, is never handed out
//!   (`ready()` fails, or is not ready within 250 ms). A connection whose request body was
//!   streamed (an upload the provider may answer before it ends) is not pooled.
//! - **Never twice**: a request that could not be written into a reused connection (the
//!   provider closed it just then) is sent again on a fresh one; once written, never again,
//!   since the provider may have acted on it (and billed it).
//! - **Bounds**: connecting within the connect timeout; the response head within the read
//!   timeout; each piece of the body within the read timeout; heads of at most [`MAX_HEAD`]
//!   bytes and [`MAX_HEADERS`] headers; an unasked `101 Switching Protocols` is refused.

use axum::body::HttpBody;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

use crate::worker;

/// Largest response head accepted (hyper's read buffer).
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a response head.
const MAX_HEADERS: usize = 128;
/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(60);
/// Longest a pooled connection may take to be ready for the next request.
const READY_WITHIN: Duration = Duration::from_millis(250);
/// Most idle connections kept per provider on each serving thread.
const MAX_IDLE_PER_THREAD: usize = 256;

/// A request body.
pub enum RequestBody {
    Empty,
    /// A body the client holds whole (replayable).
    Full(Bytes),
    /// A body streamed from the caller, with its length when known (else sent chunked).
    Stream {
        length: Option<u64>,
        stream: BoxStream<'static, io::Result<Bytes>>,
    },
}

/// A response whose body is read as it is polled.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BoxStream<'static, io::Result<Bytes>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error("{0}")]
    Connect(io::Error),
    #[error("no answer in time")]
    Timeout,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the provider's response is not valid HTTP/1.1: {0}")]
    Malformed(String),
}

type Sender = SendRequest<axum::body::Body>;

/// A kept-alive connection and when it went idle.
struct Idle {
    sender: Sender,
    since: Instant,
}

/// One serving thread's idle connections to one provider, oldest first. Only that thread
/// locks it (the lock is never contended; it makes the client `Sync`).
#[derive(Default)]
struct ThreadPool {
    idle: Mutex<VecDeque<Idle>>,
}

impl ThreadPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        match self.idle.lock() {
            Ok(idle) => idle,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// One provider's address and its idle connections.
pub struct Http1Client {
    /// `host:port` as written in the URL, for `Host` and for connecting.
    authority: String,
    /// The base URL's path (`/v1`), without a trailing slash.
    base_path: String,
    /// Slot 0 for threads that are not serving threads (tests, background tasks), then one per
    /// serving thread.
    pools: Box<[ThreadPool]>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl std::fmt::Debug for Http1Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Client")
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .finish()
    }
}

impl Http1Client {
    /// A client for an `http://` base URL, for `threads` serving threads; `None` for any other
    /// scheme.
    pub fn for_base_url(
        base_url: &str,
        threads: usize,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Option<Http1Client> {
        let rest = base_url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Some(Http1Client {
            authority,
            base_path: path.trim_end_matches('/').to_owned(),
            pools: (0..=threads).map(|_| ThreadPool::default()).collect(),
            connect_timeout,
            read_timeout,
        })
    }

    /// This thread's pool; `None` on a thread the client was not made for.
    fn pool(&self) -> Option<&ThreadPool> {
        self.pools.get(worker::current())
    }

    /// An idle connection of this thread's that hyper has taken back and still holds open.
    async fn checkout(&self) -> Option<Sender> {
        loop {
            let Idle { mut sender, since } = self.pool()?.lock().pop_back()?;
            if since.elapsed() >= IDLE_FOR {
                // The newest has expired: so have all older ones.
                if let Some(pool) = self.pool() {
                    pool.lock().clear();
                }
                return None;
            }
            // Normally ready at once; one that is not soon (its request body still going out)
            // is dropped rather than waited on.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WITHIN, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    fn checkin(&self, sender: Sender) {
        let Some(pool) = self.pool() else {
            return;
        };
        let mut idle = pool.lock();
        if idle.len() >= MAX_IDLE_PER_THREAD {
            // The oldest goes: it is the likeliest to have been closed by the provider.
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Idle connections kept, on every thread.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.pools.iter().map(|p| p.lock().len()).sum()
    }

    async fn connect(&self) -> Result<Sender, Http1Error> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| {
                Http1Error::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(Http1Error::Connect)?;
        tcp.set_nodelay(true).map_err(Http1Error::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| Http1Error::Connect(io::Error::other(e)))?;
        // On this (current-thread) runtime: the connection never leaves the thread.
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "provider connection ended");
            }
        });
        Ok(sender)
    }

    fn request(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: axum::body::Body,
        length: Option<u64>,
    ) -> Result<Request<axum::body::Body>, Http1Error> {
        let rest = super::under_base_url(path_and_query);
        let slash = if rest.starts_with('/') { "" } else { "/" };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{slash}{rest}", self.base_path))
            .body(body)
            .map_err(|e| Http1Error::Malformed(e.to_string()))?;
        let target = request.headers_mut();
        for (name, value) in headers {
            if !matches!(
                name.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                target.append(name.clone(), value.clone());
            }
        }
        if let Ok(host) = HeaderValue::from_str(&self.authority) {
            target.insert(axum::http::header::HOST, host);
        }
        if let Some(length) = length {
            target.insert(
                axum::http::header::CONTENT_LENGTH,
                HeaderValue::from(length),
            );
        }
        Ok(request)
    }

    /// Sends a request and reads the response head; the body is read as it is polled. The
    /// connection returns to the pool when the body has ended.
    pub async fn send(
        self: &Arc<Self>,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: RequestBody,
    ) -> Result<Response, Http1Error> {
        // A connection whose request body was streamed may still be sending it when the
        // provider's answer has ended (an early 4xx): it is not pooled.
        let reusable = !matches!(body, RequestBody::Stream { .. });
        let (body, length) = match body {
            RequestBody::Empty => {
                let length = (!matches!(
                    *method,
                    Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
                ))
                .then_some(0);
                (axum::body::Body::empty(), length)
            }
            RequestBody::Full(bytes) => {
                let length = bytes.len() as u64;
                (axum::body::Body::from(bytes), Some(length))
            }
            RequestBody::Stream { length, stream } => {
                (axum::body::Body::from_stream(stream), length)
            }
        };
        let mut request = self.request(method, path_and_query, headers, body, length)?;
        // One deadline for sending the request and reading the response head.
        let deadline = tokio::time::Instant::now() + self.read_timeout;
        let mut retried = false;
        let response = loop {
            // A retry goes on a fresh connection, not on another pooled one.
            let pooled = if retried { None } else { self.checkout().await };
            let (mut sender, reused) = match pooled {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            let sent = tokio::time::timeout_at(deadline, sender.try_send_request(request)).await;
            match sent {
                Err(_) => return Err(Http1Error::Timeout),
                Ok(Ok(response)) => break (response, sender),
                Ok(Err(mut err)) => match err.take_message() {
                    // Not written (the reused connection was closed just then): once more,
                    // on a fresh connection.
                    Some(unsent) if reused && !retried => {
                        retried = true;
                        request = unsent;
                    }
                    _ => return Err(classify(err.into_error())),
                },
            }
        };
        let (response, sender) = response;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Http1Error::Malformed(
                "it switched protocols although no upgrade was asked for".into(),
            ));
        }
        let (parts, incoming) = response.into_parts();
        let body = body_stream(
            incoming,
            reusable.then_some(sender),
            self.clone(),
            self.read_timeout,
        );
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// What a hyper error means here.
fn classify(err: hyper::Error) -> Http1Error {
    if err.is_parse() || err.is_parse_status() {
        Http1Error::Malformed(err.to_string())
    } else {
        Http1Error::Io(io::Error::other(err))
    }
}

/// The response body, piece by piece, each within `read_timeout`. The connection goes back to
/// the pool the moment the body has ended (`is_end_stream`), not when someone polls past the
/// last piece: a relay that knows the length never does.
fn body_stream(
    incoming: hyper::body::Incoming,
    sender: Option<Sender>,
    client: Arc<Http1Client>,
    read_timeout: Duration,
) -> BoxStream<'static, io::Result<Bytes>> {
    let state = (incoming, sender, client);
    futures_util::stream::unfold(Some(state), move |state| async move {
        let (mut incoming, mut sender, client) = state?;
        loop {
            if incoming.is_end_stream() {
                if let Some(sender) = sender.take() {
                    client.checkin(sender);
                }
                return None;
            }
            let frame = tokio::time::timeout(
                read_timeout,
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut incoming).poll_frame(cx)),
            )
            .await;
            let frame = match frame {
                Err(_) => {
                    let err =
                        io::Error::new(io::ErrorKind::TimedOut, "the provider stopped sending");
                    return Some((Err(err), None));
                }
                Ok(frame) => frame,
            };
            if incoming.is_end_stream() {
                if let Some(sender) = sender.take() {
                    client.checkin(sender);
                }
            }
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(bytes) = frame.into_data() {
                        return Some((Ok(bytes), Some((incoming, sender, client))));
                    }
                }
                Some(Err(err)) => {
                    let kind = if err.is_incomplete_message() {
                        io::ErrorKind::UnexpectedEof
                    } else {
                        io::ErrorKind::InvalidData
                    };
                    return Some((Err(io::Error::new(kind, err)), None));
                }
                // The end as the framing gives it (a cut-short body is an error above).
                None => {
                    if let Some(sender) = sender.take() {
                        client.checkin(sender);
                    }
                    return None;
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn base_urls_give_the_authority_and_path() {
        let client = Http1Client::for_base_url(
            "http://127.0.0.1:8000/v1/",
            2,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .map(|c| (c.authority, c.base_path));
        assert_eq!(client, Some(("127.0.0.1:8000".into(), "/v1".into())));
        let default_port = Http1Client::for_base_url(
            "http://models.internal/openai/v1",
            2,
            Duration::ZERO,
            Duration::ZERO,
        )
        .map(|c| (c.authority, c.base_path));
        assert_eq!(
            default_port,
            Some(("models.internal:80".into(), "/openai/v1".into()))
        );
        assert!(Http1Client::for_base_url(
            "https://api.openai.com/v1",
            2,
            Duration::ZERO,
            Duration::ZERO
        )
        .is_none());
        assert!(Http1Client::for_base_url(
            "http://user:pw@host/v1",
            2,
            Duration::ZERO,
            Duration::ZERO
        )
        .is_none());
    }

    /// A one-connection server that answers with `raw` bytes, in the pieces given.
    async fn serve_once(pieces: Vec<&'static [u8]>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            if let Ok((mut conn, _)) = listener.accept().await {
                let mut request = vec![0u8; 4096];
                let _ = conn.read(&mut request).await;
                for piece in pieces {
                    let _ = conn.write_all(piece).await;
                    let _ = conn.flush().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        format!("http://{addr}/v1")
    }

    fn client_for(url: &str) -> Arc<Http1Client> {
        Arc::new(
            Http1Client::for_base_url(url, 2, Duration::from_secs(2), Duration::from_secs(2))
                .unwrap_or_else(|| panic!("{url} is an http URL")),
        )
    }

    /// POSTs `{}` and reads the whole answer.
    async fn post_empty_object(client: &Arc<Http1Client>, path: &str) -> io::Result<Vec<u8>> {
        let response = client
            .send(
                &Method::POST,
                path,
                &HeaderMap::new(),
                RequestBody::Full(Bytes::from_static(b"{}")),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        body_of(response).await
    }

    async fn body_of(response: Response) -> io::Result<Vec<u8>> {
        let mut body = response.body;
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece?);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_across_reads() {
        let url = serve_once(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        ])
        .await;
        let client = client_for(&url);
        let body = post_empty_object(&client, "/v1/chat/completions").await;
        assert_eq!(body.unwrap_or_default(), b"hello world");
        assert_eq!(
            client.idle_count(),
            1,
            "the connection went back to the pool"
        );
    }

    /// Sends `method` to a one-connection server answering `pieces`; the status, headers and
    /// whole body, or the error.
    async fn exchange(
        method: Method,
        pieces: Vec<&'static [u8]>,
    ) -> (
        Arc<Http1Client>,
        Result<(StatusCode, HeaderMap, Vec<u8>), String>,
    ) {
        let url = serve_once(pieces).await;
        let client = client_for(&url);
        let result = match client
            .send(
                &method,
                "/v1/chat/completions",
                &HeaderMap::new(),
                RequestBody::Empty,
            )
            .await
        {
            Ok(response) => {
                let (status, headers) = (response.status, response.headers.clone());
                body_of(response)
                    .await
                    .map(|body| (status, headers, body))
                    .map_err(|e| e.to_string())
            }
            Err(err) => Err(err.to_string()),
        };
        (client, result)
    }

    #[tokio::test]
    async fn heads_are_framed_as_http_1_1_says() {
        let (client, plain) = exchange(
            Method::POST,
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            ],
        )
        .await;
        let (status, headers, body) = plain.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"{}"[..]));
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(client.idle_count(), 1, "kept alive");
        let (_, chunked) = exchange(
            Method::POST,
            vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ],
        )
        .await;
        assert_eq!(chunked.map(|r| r.2).ok(), Some(b"abc".to_vec()));
        let (client, closing) = exchange(
            Method::GET,
            vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"],
        )
        .await;
        assert!(closing.is_ok());
        let reused = client.checkout().await;
        assert!(reused.is_none(), "connection: close is not reused");
        let (client, until_close) =
            exchange(Method::GET, vec![b"HTTP/1.0 200 OK\r\n\r\nabc"]).await;
        assert_eq!(until_close.map(|r| r.2).ok(), Some(b"abc".to_vec()));
        assert!(client.checkout().await.is_none(), "a body until close");
        let (_, head) = exchange(
            Method::HEAD,
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n"],
        )
        .await;
        assert_eq!(head.map(|r| r.2).ok(), Some(Vec::new()), "HEAD has no body");
        let (_, interim) = exchange(
            Method::POST,
            vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"],
        )
        .await;
        assert_eq!(
            interim.map(|r| r.0).ok(),
            Some(StatusCode::CREATED),
            "1xx responses are skipped"
        );
        let (_, conflicting) = exchange(
            Method::GET,
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"],
        )
        .await;
        assert!(conflicting.is_err(), "two lengths: {conflicting:?}");
    }

    #[tokio::test]
    async fn signed_or_spaced_lengths_and_an_unasked_upgrade_are_refused() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        ] {
            let (_, result) = exchange(Method::POST, vec![head]).await;
            assert!(result.is_err(), "{} gave {result:?}", String::from_utf8_lossy(head));
        }
    }

    #[tokio::test]
    async fn a_head_past_the_limit_is_refused() {
        let big: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
                "a".repeat(2 * MAX_HEAD)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        let (_, result) = exchange(Method::GET, vec![big]).await;
        assert!(result.is_err(), "a head over {MAX_HEAD} bytes was accepted");
        let many: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
                (0..MAX_HEADERS + 1)
                    .map(|i| format!("x-{i}: 1\r\n"))
                    .collect::<String>()
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        let (_, result) = exchange(Method::GET, vec![many]).await;
        assert!(
            result.is_err(),
            "more than {MAX_HEADERS} headers were accepted"
        );
    }

    #[tokio::test]
    async fn a_signed_chunk_size_is_an_error() {
        for size in ["+5", "-5", "0x5"] {
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            let rest: &'static [u8] = Box::leak(
                format!("{size}\r\nhello\r\n0\r\n\r\n")
                    .into_bytes()
                    .into_boxed_slice(),
            );
            let url = serve_once(vec![head, rest]).await;
            let client = client_for(&url);
            let body = post_empty_object(&client, "/v1/chat/completions").await;
            assert!(body.is_err(), "chunk size {size} was accepted");
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_not_a_short_success() {
        let url = serve_once(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"]).await;
        let client = client_for(&url);
        let response = client
            .send(
                &Method::GET,
                "/v1/models",
                &HeaderMap::new(),
                RequestBody::Empty,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(body_of(response).await.is_err());
        assert_eq!(client.idle_count(), 0);
    }

    /// A provider on a local port that counts the connections it accepts and serves each with
    /// `serve` in a task of its own. Returns its base URL and the count.
    async fn counting_provider<F, Fut>(serve: F) -> (String, Arc<std::sync::atomic::AtomicUsize>)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(serve(conn));
            }
        });
        (format!("http://{addr}/v1"), accepted)
    }

    #[tokio::test]
    async fn only_a_response_read_to_its_exact_end_gives_its_connection_back() {
        // Keep-alive answers; the one to `/extra` sends bytes past its declared length, the one
        // to `/close` asks to close.
        let (url, accepted) = counting_provider(|mut conn| async move {
            let mut request = vec![0u8; 4096];
            while let Ok(n) = conn.read(&mut request).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&request[..n]).into_owned();
                let reply: &[u8] = if text.contains("/extra") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
                } else if text.contains("/close") {
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                } else {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                };
                if conn.write_all(reply).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let client = client_for(&url);
        let get = |path: &'static str| {
            let client = client.clone();
            async move {
                let response = client
                    .send(&Method::GET, path, &HeaderMap::new(), RequestBody::Empty)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                body_of(response).await.unwrap_or_else(|e| panic!("{e}"))
            }
        };
        let opened = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(get("/chunked").await, b"ok");
        assert_eq!(
            client.idle_count(),
            1,
            "a chunked body read to its last chunk"
        );
        assert_eq!(get("/chunked").await, b"ok");
        assert_eq!(opened(), 1, "and reused");
        // The provider wrote the head of an answer nobody asked for after the body: whatever it
        // is, the connection is not trusted again.
        assert_eq!(get("/extra").await, b"ok");
        // Bytes past the body: the connection is not used again (a new one serves /close),
        // and connection: close is honoured (a third serves the last request).
        assert_eq!(get("/close").await, b"ok");
        assert_eq!(opened(), 2, "bytes past the body: not reused");
        assert_eq!(get("/chunked").await, b"ok");
        assert_eq!(opened(), 3, "connection: close is honoured");
    }

    #[tokio::test]
    async fn a_pooled_connection_the_provider_closed_is_not_used_again() {
        // Each connection answers one request, says keep-alive, then closes anyway.
        let (url, accepted) = counting_provider(|mut conn| async move {
            let mut request = vec![0u8; 4096];
            let _ = conn.read(&mut request).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        })
        .await;
        let client = client_for(&url);
        for _ in 0..2 {
            let body = post_empty_object(&client, "/v1/embeddings").await;
            assert_eq!(body.unwrap_or_default(), b"ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_written_to_the_provider_is_never_sent_twice() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = seen.clone();
        tokio::spawn(async move {
            // One connection: answers the first request, then takes the second and hangs up.
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buffer = vec![0u8; 4096];
                let _ = conn.read(&mut buffer).await;
                requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = conn.read(&mut buffer).await;
                requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let client = client_for(&format!("http://{addr}/v1"));
        let first = post_empty_object(&client, "/v1/chat/completions").await;
        assert_eq!(first.unwrap_or_default(), b"ok");
        let second = client
            .send(
                &Method::POST,
                "/v1/chat/completions",
                &HeaderMap::new(),
                RequestBody::Full(Bytes::from_static(b"{}")),
            )
            .await;
        assert!(second.is_err(), "the provider hung up without answering");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the second request was not replayed on a new connection"
        );
    }

    #[tokio::test]
    async fn each_serving_thread_reuses_only_the_connections_it_opened() {
        // Keep-alive connections answering any number of requests.
        let (url, accepted) = counting_provider(|mut conn| async move {
            let mut request = vec![0u8; 4096];
            while matches!(conn.read(&mut request).await, Ok(n) if n > 0) {
                let reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if conn.write_all(reply).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let client = client_for(&url);
        let workers = crate::serve::workers::Workers::start(2).unwrap_or_else(|e| panic!("{e}"));
        let on = |worker: usize| {
            let client = client.clone();
            workers.handles()[worker].spawn(async move {
                let body = post_empty_object(&client, "/v1/embeddings").await;
                (crate::worker::current(), body.unwrap_or_default())
            })
        };
        let opened = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        let first = on(0).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, (1, b"ok".to_vec()), "ran on serving thread 1");
        assert_eq!(opened(), 1);
        let second = on(1).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second, (2, b"ok".to_vec()), "ran on serving thread 2");
        assert_eq!(
            opened(),
            2,
            "thread 2 does not borrow thread 1's connection"
        );
        for worker in [0, 1, 0, 1] {
            on(worker).await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(opened(), 2, "each thread reuses its own connection");
        assert_eq!(client.idle_count(), 2);
    }
}
