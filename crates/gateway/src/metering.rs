//! The metering pipeline: usage events go through a bounded channel to one writer that stores
//! them in batches (one transaction each), off the request path. A full channel makes requests
//! wait (back-pressure); nothing is dropped, and the writer drains everything before shutdown.

use std::time::Duration;
use tokio::sync::mpsc;
use tollgate_store::{Store, UsageEvent};

/// Where finished requests report their usage.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageEvent>,
}

impl UsageSink {
    /// Queues an event, waiting while the queue is full.
    pub async fn record(&self, event: UsageEvent) {
        if let Err(err) = self.tx.send(event).await {
            // Only possible once the writer is gone, i.e. after shutdown finished.
            tracing::error!(request_id = %err.0.request_id, "usage event arrived after the metering writer stopped");
        }
    }

    /// Queues an event from a place that cannot wait (a dropped stream): immediately when there
    /// is room, else from a task that waits for room.
    pub fn record_detached(&self, event: UsageEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let sink = self.clone();
                tokio::spawn(async move { sink.record(event).await });
            }
            Err(mpsc::error::TrySendError::Closed(event)) => {
                tracing::error!(request_id = %event.request_id, "usage event arrived after the metering writer stopped");
            }
        }
    }
}

/// Starts the writer; it ends when every [`UsageSink`] is dropped and all events are stored.
/// After the first event of a batch it waits up to `linger` for more (or until `batch` are
/// in), so a busy gateway writes few, large transactions.
pub fn start(
    store: Store,
    capacity: usize,
    batch: usize,
    linger: Duration,
) -> (UsageSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let writer = tokio::spawn(write_batches(store, rx, batch.max(1), linger));
    (UsageSink { tx }, writer)
}

async fn write_batches(
    store: Store,
    mut rx: mpsc::Receiver<UsageEvent>,
    max: usize,
    linger: Duration,
) {
    let mut batch = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            let room = max - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut delay = Duration::from_millis(100);
        while let Err(err) = store.record_usage(&batch).await {
            tracing::warn!(error = %err, events = batch.len(), "could not store usage events; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::debug!(events = batch.len(), "stored usage events");
        batch.clear();
    }
}
