//! A small HTTP/1.1 client for providers reached over plain HTTP (a model server beside
//! Tollgate: vLLM, Ollama, llama.cpp, a sidecar), driven entirely inside the task of the request
//! it serves.
//!
//! Why not reqwest here: hyper's client runs every connection in a task of its own, so each
//! proxied request hops from the request's task to the connection's and back, twice, and under
//! load those wake-ups were a third of the gateway's CPU. This client writes the request and
//! reads the response on the request's own task, with a pool of idle keep-alive connections.
//! Providers over HTTPS keep using reqwest.
//!
//! The pool is per serving thread: each thread keeps its own idle connections (a connection
//! is registered with the runtime of the thread that opened it), in a deque only that thread
//! touches, so checkout and return are O(1) (newest first; the expired ones, oldest, go from
//! the front) and never contend. At most [`MAX_IDLE_PER_THREAD`] are kept per thread and
//! provider. A connection goes back only when its response was read to the exact end its
//! framing gives, with nothing past it buffered, and the provider did not ask to close it.
//! (Before: one deque behind a global mutex, scanned for the thread's connections: O(n) under
//! a lock every request took twice.)
//!
//! It speaks the HTTP/1.1 a proxy needs: keep-alive, `content-length` and chunked bodies both
//! ways, bodies until close, and 1xx interim responses. An idle connection is checked before
//! reuse (one non-blocking read: a closed one is dropped), and a request that could not be
//! written into a reused connection is sent again on a fresh one; a request once written is
//! never sent twice, since the provider may have acted on it.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::worker;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a response head.
const MAX_HEADERS: usize = 128;
/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(60);
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

/// A kept-alive connection and when it went idle.
#[derive(Debug)]
struct Idle {
    conn: TcpStream,
    since: Instant,
}

/// One serving thread's idle connections to one provider, oldest first. Only that thread
/// locks it (the lock is never contended; it makes the client `Sync`).
#[derive(Debug, Default)]
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
#[derive(Debug)]
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

    fn checkout(&self) -> Option<TcpStream> {
        let mut idle = self.pool()?.lock();
        while let Some(Idle { conn, since }) = idle.pop_back() {
            if since.elapsed() >= IDLE_FOR {
                // The newest has expired: so have all older ones.
                idle.clear();
                return None;
            }
            // A connection the provider has closed (or that holds stray bytes) is readable;
            // a live idle one is not. Checked before use, so a request is never written into
            // a connection already known to be gone.
            let mut probe = [0u8; 1];
            match conn.try_read(&mut probe) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Some(conn),
                _ => continue,
            }
        }
        None
    }

    fn checkin(&self, conn: TcpStream) {
        let Some(pool) = self.pool() else {
            return;
        };
        let mut idle = pool.lock();
        if idle.len() >= MAX_IDLE_PER_THREAD {
            // The oldest goes: it is the likeliest to have been closed by the provider.
            idle.pop_front();
        }
        idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Idle connections kept, on every thread.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.pools.iter().map(|p| p.lock().len()).sum()
    }

    async fn connect(&self) -> Result<TcpStream, Http1Error> {
        let conn = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| {
                Http1Error::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(Http1Error::Connect)?;
        conn.set_nodelay(true).map_err(Http1Error::Connect)?;
        Ok(conn)
    }

    /// Sends a request and reads the response head; the body is read as it is polled. The
    /// connection returns to the pool when the body has been read to its end.
    pub async fn send(
        self: &Arc<Self>,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: RequestBody,
    ) -> Result<Response, Http1Error> {
        let head = self.head(method, path_and_query, headers, &body);
        let mut body = body;
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            // What to send again if the write fails: only a body held whole can be.
            let again = match &body {
                RequestBody::Full(bytes) => Some(RequestBody::Full(bytes.clone())),
                RequestBody::Empty => Some(RequestBody::Empty),
                RequestBody::Stream { .. } => None,
            };
            let current = body;
            // One deadline for sending the request and reading the response head.
            let deadline = tokio::time::Instant::now() + self.read_timeout;
            let outcome = tokio::time::timeout_at(deadline, async {
                if let Err(err) = write_request(&mut conn, &head, current).await {
                    return Err((err, false));
                }
                self.read_head(&mut conn, method)
                    .await
                    .map_err(|err| (err, true))
            })
            .await
            .unwrap_or(Err((Http1Error::Timeout, true)));
            match (outcome, again) {
                (Ok((status, response_headers, buffer, framing, keep_alive)), _) => {
                    let body = body_stream(
                        self.clone(),
                        conn,
                        buffer,
                        framing,
                        keep_alive,
                        self.read_timeout,
                    );
                    return Ok(Response {
                        status,
                        headers: response_headers,
                        body,
                    });
                }
                // The request could not be written into a reused connection (the provider
                // closed it just now): once more on a fresh one. Once written, a request is
                // never sent again: the provider may have acted on it (and billed it).
                (Err((Http1Error::Io(err), false)), Some(again)) if reused && is_stale(&err) => {
                    body = again;
                    continue;
                }
                (Err((err, _)), _) => return Err(err),
            }
        }
    }

    fn head(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &RequestBody,
    ) -> Vec<u8> {
        let rest = super::under_base_url(path_and_query);
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(self.base_path.as_bytes());
        if !rest.starts_with('/') {
            head.push(b'/');
        }
        head.extend_from_slice(rest.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(self.authority.as_bytes());
        head.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            if matches!(
                name.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        match body {
            RequestBody::Empty => {
                if !matches!(
                    *method,
                    Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
                ) {
                    head.extend_from_slice(b"content-length: 0\r\n");
                }
            }
            RequestBody::Full(bytes) => {
                head.extend_from_slice(format!("content-length: {}\r\n", bytes.len()).as_bytes())
            }
            RequestBody::Stream {
                length: Some(length),
                ..
            } => head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes()),
            RequestBody::Stream { length: None, .. } => {
                head.extend_from_slice(b"transfer-encoding: chunked\r\n")
            }
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    /// Reads until a complete final (non-1xx) response head; returns it with the bytes read
    /// past it. The caller bounds the wait.
    async fn read_head(
        &self,
        conn: &mut TcpStream,
        method: &Method,
    ) -> Result<(StatusCode, HeaderMap, BytesMut, Framing, bool), Http1Error> {
        let mut buffer = BytesMut::with_capacity(16 * 1024);
        loop {
            if let Some(parsed) = parse_head(&mut buffer, method)? {
                return Ok(parsed);
            }
            if buffer.len() > MAX_HEAD {
                return Err(Http1Error::Malformed("response head too large".into()));
            }
            let read = conn.read_buf(&mut buffer).await?;
            if read == 0 {
                return Err(Http1Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the provider closed the connection before answering",
                )));
            }
        }
    }
}

/// Whether an error means the connection was already closed when it was reused.
fn is_stale(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

async fn write_request(
    conn: &mut TcpStream,
    head: &[u8],
    body: RequestBody,
) -> Result<(), Http1Error> {
    match body {
        RequestBody::Empty => conn.write_all(head).await?,
        // Head and body in one vectored write: one system call, no copy.
        RequestBody::Full(bytes) => write_both(conn, head, &bytes).await?,
        RequestBody::Stream { length, mut stream } => {
            conn.write_all(head).await?;
            let mut sent: u64 = 0;
            while let Some(piece) = stream.next().await {
                let piece = piece?;
                if piece.is_empty() {
                    continue;
                }
                sent += piece.len() as u64;
                if length.is_some() {
                    conn.write_all(&piece).await?;
                } else {
                    conn.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await?;
                    conn.write_all(&piece).await?;
                    conn.write_all(b"\r\n").await?;
                }
            }
            match length {
                None => conn.write_all(b"0\r\n\r\n").await?,
                Some(expected) if expected != sent => {
                    return Err(Http1Error::Io(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("the request body was {sent} bytes, not the {expected} its content-length said"),
                    )))
                }
                Some(_) => {}
            }
        }
    }
    conn.flush().await?;
    Ok(())
}

/// Writes `first` then `second` with as few (vectored) writes as the socket allows.
async fn write_both(conn: &mut TcpStream, first: &[u8], second: &[u8]) -> io::Result<()> {
    let mut written = 0;
    let total = first.len() + second.len();
    while written < total {
        let slices = if written < first.len() {
            [
                std::io::IoSlice::new(&first[written..]),
                std::io::IoSlice::new(second),
            ]
        } else {
            [
                std::io::IoSlice::new(&second[written - first.len()..]),
                std::io::IoSlice::new(&[]),
            ]
        };
        let n = conn.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    Ok(())
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Parses a response head from the front of `buffer` (skipping 1xx interim responses), or
/// `None` when more bytes are needed.
#[allow(clippy::type_complexity)]
fn parse_head(
    buffer: &mut BytesMut,
    method: &Method,
) -> Result<Option<(StatusCode, HeaderMap, BytesMut, Framing, bool)>, Http1Error> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let length = match response.parse(buffer) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(err) => return Err(Http1Error::Malformed(err.to_string())),
        };
        // Header values become slices of the head's bytes: no copy, no allocation each.
        let head = Bytes::copy_from_slice(&buffer[..length]);
        let base = buffer.as_ptr() as usize;
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code)
            .map_err(|_| Http1Error::Malformed(format!("status {code}")))?;
        if code == 101 {
            return Err(Http1Error::Malformed(
                "101 Switching Protocols to a request that asked for no upgrade".into(),
            ));
        }
        if status.is_informational() {
            buffer.advance(length);
            continue;
        }
        let mut headers = HeaderMap::with_capacity(response.headers.len());
        let mut content_length = None;
        let mut chunked = false;
        let mut close = response.version == Some(0);
        for header in response.headers.iter() {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| Http1Error::Malformed(format!("header name {:?}", header.name)))?;
            let start = header.value.as_ptr() as usize - base;
            let value =
                HeaderValue::from_maybe_shared(head.slice(start..start + header.value.len()))
                    .map_err(|_| Http1Error::Malformed(format!("value of {name}")))?;
            match name.as_str() {
                "content-length" => {
                    let parsed = decimal(value.as_bytes().trim_ascii())
                        .ok_or_else(|| Http1Error::Malformed("content-length".into()))?;
                    if content_length.is_some_and(|c| c != parsed) {
                        return Err(Http1Error::Malformed(
                            "two different content-lengths".into(),
                        ));
                    }
                    content_length = Some(parsed);
                }
                "transfer-encoding" => {
                    chunked = value
                        .to_str()
                        .ok()
                        .and_then(|v| v.rsplit(',').next())
                        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
                }
                "connection" => {
                    let v = value.to_str().unwrap_or("").to_ascii_lowercase();
                    if v.contains("close") {
                        close = true;
                    } else if v.contains("keep-alive") && response.version == Some(0) {
                        close = false;
                    }
                }
                _ => {}
            }
            headers.append(name, value);
        }
        let framing = if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked
        } else if let Some(length) = content_length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
        buffer.advance(length);
        let rest = buffer.split();
        return Ok(Some((
            status,
            headers,
            rest,
            framing,
            !close && framing != Framing::UntilClose,
        )));
    }
}

/// A `Content-Length`: decimal digits only (no sign, no spaces inside), at most `u64`.
fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A chunk size: hex digits only (no sign, no `0x`), at most `u64`.
fn hexadecimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

/// Where a chunked body's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

struct BodyReader {
    client: Arc<Http1Client>,
    conn: Option<TcpStream>,
    buffer: BytesMut,
    framing: Framing,
    chunk: Chunk,
    keep_alive: bool,
    read_timeout: Duration,
}

impl BodyReader {
    /// Reads more bytes; `false` at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        if self.buffer.capacity() - self.buffer.len() < 4096 {
            self.buffer.reserve(16 * 1024);
        }
        let read = tokio::time::timeout(self.read_timeout, conn.read_buf(&mut self.buffer))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "the provider stopped sending")
            })??;
        Ok(read > 0)
    }

    /// Reads more of the body: the connection ending here cuts the body short.
    async fn fill_or_eof(&mut self) -> io::Result<()> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(Self::eof())
        }
    }

    fn eof() -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the provider closed the connection before the body ended",
        )
    }

    /// The body is complete: the connection goes back to the pool if it can be reused.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && self.buffer.is_empty() {
                self.client.checkin(conn);
            }
        }
    }

    /// The next piece of the body, `None` at its end.
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        match self.framing {
            Framing::Length(remaining) => {
                if remaining == 0 {
                    self.finish();
                    return None;
                }
                if self.buffer.is_empty() {
                    if let Err(err) = self.fill_or_eof().await {
                        return Some(Err(err));
                    }
                }
                let take = (self.buffer.len() as u64).min(remaining) as usize;
                self.framing = Framing::Length(remaining - take as u64);
                let piece = self.buffer.split_to(take).freeze();
                if remaining == take as u64 {
                    self.finish();
                }
                Some(Ok(piece))
            }
            Framing::UntilClose => {
                if self.buffer.is_empty() {
                    match self.fill().await {
                        Ok(true) => {}
                        Ok(false) => {
                            self.conn = None;
                            return None;
                        }
                        Err(err) => return Some(Err(err)),
                    }
                }
                Some(Ok(self.buffer.split().freeze()))
            }
            Framing::Chunked => self.next_chunk().await,
        }
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            match self.chunk {
                Chunk::Size | Chunk::Trailers => {
                    let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") else {
                        if self.buffer.len() > 8 * 1024 {
                            return Some(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "chunk size line too long",
                            )));
                        }
                        if let Err(err) = self.fill_or_eof().await {
                            return Some(Err(err));
                        }
                        continue;
                    };
                    let line = self.buffer.split_to(end + 2);
                    if self.chunk == Chunk::Trailers {
                        if end == 0 {
                            self.framing = Framing::Length(0);
                            self.finish();
                            return None;
                        }
                        continue;
                    }
                    let size_field = line[..end].split(|b| *b == b';').next().unwrap_or(&[]);
                    let Some(size) = hexadecimal(size_field.trim_ascii()) else {
                        return Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "bad chunk size {:?}",
                                String::from_utf8_lossy(&size_field[..size_field.len().min(32)])
                            ),
                        )));
                    };
                    self.chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(remaining) => {
                    if self.buffer.is_empty() {
                        if let Err(err) = self.fill_or_eof().await {
                            return Some(Err(err));
                        }
                    }
                    let take = (self.buffer.len() as u64).min(remaining) as usize;
                    let piece = self.buffer.split_to(take).freeze();
                    let left = remaining - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    return Some(Ok(piece));
                }
                Chunk::DataEnd => {
                    if self.buffer.len() < 2 {
                        if let Err(err) = self.fill_or_eof().await {
                            return Some(Err(err));
                        }
                        continue;
                    }
                    if &self.buffer[..2] != b"\r\n" {
                        return Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "chunk not followed by CRLF",
                        )));
                    }
                    self.buffer.advance(2);
                    self.chunk = Chunk::Size;
                }
            }
        }
    }
}

fn body_stream(
    client: Arc<Http1Client>,
    conn: TcpStream,
    buffer: BytesMut,
    framing: Framing,
    keep_alive: bool,
    read_timeout: Duration,
) -> BoxStream<'static, io::Result<Bytes>> {
    let reader = BodyReader {
        client,
        conn: Some(conn),
        buffer,
        framing,
        chunk: Chunk::Size,
        keep_alive,
        read_timeout,
    };
    futures_util::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        match reader.next().await {
            Some(Ok(piece)) => Some((Ok(piece), Some(reader))),
            // After an error the connection is dropped and the stream ends.
            Some(Err(err)) => Some((Err(err), None)),
            None => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], method: &Method) -> (StatusCode, HeaderMap, Bytes, Framing, bool) {
        let mut buffer = BytesMut::from(raw);
        match parse_head(&mut buffer, method) {
            Ok(Some((s, h, rest, f, k))) => (s, h, rest.freeze(), f, k),
            other => panic!("{:?}", other.map(|o| o.is_some())),
        }
    }

    #[test]
    fn heads_are_framed_as_http_1_1_says() {
        let (status, headers, rest, framing, keep) = parse(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            &Method::POST,
        );
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(
            (rest.as_ref(), framing, keep),
            (&b"{}"[..], Framing::Length(2), true)
        );
        let chunked = parse(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            &Method::POST,
        );
        assert_eq!(chunked.3, Framing::Chunked);
        let closing = parse(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            &Method::GET,
        );
        assert!(!closing.4, "connection: close is not reused");
        let until_close = parse(b"HTTP/1.0 200 OK\r\n\r\nabc", &Method::GET);
        assert_eq!((until_close.3, until_close.4), (Framing::UntilClose, false));
        let head = parse(
            b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(head.3, Framing::Length(0));
        let interim = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
            &Method::POST,
        );
        assert_eq!(interim.0, 201, "1xx responses are skipped");
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-len"[..]);
        assert!(matches!(parse_head(&mut partial, &Method::GET), Ok(None)));
        let mut conflicting = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"[..],
        );
        assert!(parse_head(&mut conflicting, &Method::GET).is_err());
    }

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

    #[test]
    fn signed_or_spaced_lengths_and_an_unasked_upgrade_are_refused() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        ] {
            let mut buffer = BytesMut::from(head);
            assert!(
                matches!(parse_head(&mut buffer, &Method::POST), Err(Http1Error::Malformed(_))),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(decimal(b"42"), Some(42));
        assert_eq!(hexadecimal(b"1aF"), Some(0x1af));
        for bad in [&b"+5"[..], b"-5", b"", b" 5", b"0x5", b"5g"] {
            assert_eq!(hexadecimal(bad), None, "{}", String::from_utf8_lossy(bad));
        }
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
        assert_eq!(client.idle_count(), 0, "bytes past the body: not reused");
        assert_eq!(get("/close").await, b"ok");
        assert_eq!(client.idle_count(), 0, "connection: close is honoured");
        assert_eq!(get("/chunked").await, b"ok");
        assert_eq!(opened(), 3);
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
