//! The serving threads, built like nginx's worker processes: one thread per core, each with a
//! single-threaded runtime of its own, and every accepted connection served on one of them
//! from its first byte to its last. The connection's socket, the provider connections it
//! borrows (the HTTP/1.1 client keeps a pool per thread) and its timers are all driven by the
//! thread that serves it, so a request never has to wake another thread.
//!
//! Connections are bounded: at most `max_connections` are served at once, and at most
//! `max_unauthenticated` of them before they show a valid key (one more is told `503` and
//! closed at once, so the server never runs out of descriptors and clients with keys keep
//! working), a request head must arrive within `head_timeout` (which also closes a
//! keep-alive connection left idle that long), a write to a client that stops reading fails
//! after `write_timeout` (see `stall`), and an HTTP/2 connection carries at most
//! `http2_max_streams` streams with heads of at most `max_head_bytes`.
//!
//! Why not one work-stealing runtime: when a gateway shares its cores with other processes (a
//! load generator, a model server, the database) its idle workers park, and are woken again
//! for nearly every request; measured under `bench/run.sh`, that was a quarter of the CPU a
//! request cost. The price of this model is nginx's: a connection stays on its thread, so a
//! very uneven mix of connections can load one thread more than another.

use crate::serve::connection;
use crate::serve::dispatch::Dispatch;
use crate::serve::stall::StallGuard;
use crate::serve::trust::{Keyless, Trust};
use crate::settings::ConnectionSettings;
use crate::state::Counted;
use crate::worker;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;

/// The serving threads, running until stopped.
#[derive(Debug)]
pub(crate) struct Workers {
    handles: Vec<Handle>,
    exit: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` serving threads (at least one).
    pub(crate) fn start(count: usize) -> io::Result<Workers> {
        let (exit, exit_rx) = watch::channel(false);
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for index in 1..=count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut exit_rx = exit_rx.clone();
            // If a later thread cannot start, `exit` is dropped on the way out and the ones
            // already running end.
            let thread = std::thread::Builder::new()
                .name(format!("tollgate-worker-{index}"))
                .spawn(move || {
                    worker::set(index);
                    runtime.block_on(async move {
                        let _ = exit_rx.wait_for(|exit| *exit).await;
                    });
                    // Dropping the runtime drops whatever it still runs.
                })?;
            threads.push(thread);
        }
        Ok(Workers {
            handles,
            exit,
            threads,
        })
    }

    /// The serving threads' runtimes, first thread first.
    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Ends the threads, dropping any connection still open, and waits until they are gone
    /// (with them, everything their requests held, such as usage sinks).
    async fn stop(self) {
        let _ = self.exit.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Accepts connections and hands them to the serving threads in turn, until `stop` turns
/// true; then stops accepting, lets the open connections finish their requests (up to
/// `grace`), and stops the threads.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Dispatch,
    workers: Workers,
    limits: ConnectionSettings,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let open = app.state().connections_open.clone();
    let unauthenticated = Arc::new(AtomicUsize::new(0));
    let mut keyless = Keyless::default();
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                // Out of file descriptors, most likely: wait for some to be closed.
                tracing::error!(error = %err, "could not accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            turn_away(stream, peer);
            continue;
        }
        // Keyless connections over their share: the oldest makes room (it goes at its next
        // poll), so a new client, who may well have a key, is served.
        if unauthenticated.load(Ordering::Relaxed) >= limits.max_unauthenticated
            && keyless.evict_oldest()
        {
            tracing::info!(%peer, "closing the oldest connection without a key: max_unauthenticated reached");
        }
        let counted = Counted::new(open.clone());
        let trust = Trust::new(unauthenticated.clone());
        keyless.push(&trust);
        keyless.prune(limits.max_unauthenticated.saturating_mul(2));
        // Moved to the serving thread without its registration here: the thread registers
        // it with its own runtime.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "could not hand a connection to a serving thread");
                continue;
            }
        };
        let worker = &workers.handles()[next % workers.handles().len()];
        next = next.wrapping_add(1);
        worker.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            limits,
            graceful.watcher(),
            counted,
            trust,
        ));
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace period were cut off");
    }
    // Realtime sessions end themselves once told the server is stopping (their last responses
    // cancelled and metered); their connections are hyper's no longer.
    let sessions = app.state().sessions.clone();
    if tokio::time::timeout_at(deadline, sessions.all_ended())
        .await
        .is_err()
    {
        tracing::warn!("Realtime sessions still open after the shutdown grace period were cut off");
    }
    workers.stop().await;
}

/// The answer to a connection over the limit, written without waiting (a fresh socket's send
/// buffer takes it whole) before the connection is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 181\r\n\r\n{\"error\":{\"message\":\"This Tollgate is serving as many connections as it may (max_connections). Retry in a moment.\",\"type\":\"server_error\",\"param\":null,\"code\":\"too_many_connections\"}}";

fn turn_away(stream: TcpStream, peer: SocketAddr) {
    tracing::warn!(%peer, "connection refused: max_connections reached");
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
}

async fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    app: Dispatch,
    limits: ConnectionSettings,
    watcher: Watcher,
    _counted: Counted,
    trust: Trust,
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!(error = %err, %peer, "could not serve a connection");
            return;
        }
    };
    // Streamed responses are many small writes: each goes out at once.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, %peer, "could not set TCP_NODELAY");
    }
    let for_requests = trust.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        connection::tag(app.clone(), peer, for_requests.clone(), request)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head_bytes.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .enable_connect_protocol();
    let io = TokioIo::new(StallGuard::new(stream, limits.write_timeout));
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::select! {
        served = watcher.watch(connection) => {
            if let Err(err) = served {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        }
        // Dropping the connection closes it.
        () = trust.expelled(limits.head_timeout) => {
            tracing::debug!(%peer, "closed a connection that showed no valid key in time");
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_turn_away_answer_is_well_framed_json_in_openai_s_envelope() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        assert_eq!(length, body.len());
        let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(value["error"]["code"], "too_many_connections");
        assert_eq!(value["error"]["type"], "server_error");
    }
}
