//! A client connection that stops reading: a write to it that makes no progress for the
//! configured time fails, which closes the connection, so a client that never reads its answer
//! (or an attacker holding streams open) cannot pin a connection, its buffers and the request
//! behind it forever. Reads are untouched: hyper's head timeout bounds idle and slow heads, and a
//! body is read at the pace the request's own timeouts allow.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `io` whose writes fail after `limit` without progress.
pub(crate) struct StallGuard<T> {
    io: T,
    limit: Duration,
    /// Set while a write makes no progress (boxed: only a stalled write pays for it).
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(io: T, limit: Duration) -> StallGuard<T> {
        StallGuard {
            io,
            limit,
            stalled: None,
        }
    }

    /// A write (or flush) that returned `result`: progress clears the clock; no progress starts
    /// it, and past the limit turns into an error.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_fails_the_write_after_the_limit() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(ours, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let chunk = [b'x'; 512];
        let mut written = 0usize;
        let error = loop {
            match guarded.write_all(&chunk).await {
                Ok(()) => written += chunk.len(),
                Err(err) => break err,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(written, 1024, "what fits in the pipe was written");
        assert!(started.elapsed() >= Duration::from_millis(200));
        // A reader that keeps reading is never cut, however long the exchange takes.
        let (ours, mut theirs_reading) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(ours, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = [0u8; 16];
            while let Ok(n) = theirs_reading.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            all.len()
        });
        for _ in 0..30 {
            guarded
                .write_all(&[b'y'; 16])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        drop(guarded);
        assert_eq!(reader.await.unwrap_or(0), 480);
        drop(theirs);
    }
}
