//! The metering pipeline: usage events are appended to the spool (see `spool`: a killed
//! process keeps them) and go through a bounded channel to one writer that stores them in
//! batches (one transaction each), off the request path, then tells the spool. A full channel
//! makes requests wait (back-pressure); nothing is dropped, and the writer drains everything
//! before shutdown.
//!
//! The writer is woken once per batch, not once per event: after the first event of a batch
//! it sleeps for the linger time and then takes what has arrived, unless the queue fills to
//! the batch size first, in which case a sender wakes it early. (Waking it for every event
//! cost a thread switch per request.)

use crate::background::spool::{Leftover, Spool};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify};
use tollgate_store::{Store, UsageEvent};

/// An event on its way to the database, with the spool segment that holds it.
#[derive(Debug)]
struct Spooled {
    event: UsageEvent,
    segment: Option<u64>,
}

/// Where finished requests report their usage.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<Spooled>,
    spool: Option<Arc<Spool>>,
    /// Wakes the writer before its linger time is up: a batch is ready.
    full: Arc<Notify>,
    /// Queued events that make a batch.
    batch: usize,
    /// The runtime the writer runs on: an event that has to wait for room waits there, not on
    /// a serving thread that may be stopping.
    background: Handle,
    metrics: Arc<Metrics>,
}

impl UsageSink {
    /// Queues an event, waiting while the queue is full (back-pressure on the request). The
    /// wait runs in a task of its own, so a request dropped while it waits (its client gone)
    /// still has its event queued.
    pub async fn record(&self, event: UsageEvent) {
        if let Some(waiting) = self.queue(event) {
            let _ = waiting.await;
        }
    }

    /// Queues an event from a place that cannot wait (a dropped request): immediately when
    /// there is room, else from a task that waits for room.
    pub fn record_detached(&self, event: UsageEvent) {
        let _ = self.queue(event);
    }

    /// Whether the spool has grown past its bound (the database is not keeping up).
    pub fn backlogged(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| s.full())
    }

    /// Bytes in the spool.
    pub fn spooled_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.bytes())
    }

    /// Events queued for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Spools the event, then queues it now, or hands it to a task that waits for room
    /// (returned).
    fn queue(&self, event: UsageEvent) -> Option<tokio::task::JoinHandle<()>> {
        self.metrics.usage(&event);
        let segment = self.spool.as_ref().and_then(|s| s.append(&event));
        match self.tx.try_send(Spooled { event, segment }) {
            Ok(()) => {
                self.wake_if_batch_ready();
                None
            }
            Err(mpsc::error::TrySendError::Full(event)) => {
                self.full.notify_one();
                let tx = self.tx.clone();
                Some(self.background.spawn(async move {
                    if let Err(err) = tx.send(event).await {
                        Self::lost(&err.0);
                    }
                }))
            }
            Err(mpsc::error::TrySendError::Closed(event)) => {
                Self::lost(&event);
                None
            }
        }
    }

    fn wake_if_batch_ready(&self) {
        if self.tx.max_capacity() - self.tx.capacity() >= self.batch {
            self.full.notify_one();
        }
    }

    fn lost(spooled: &Spooled) {
        // Only possible once the writer is gone, i.e. after shutdown finished; a spooled
        // event is stored at the next start.
        tracing::error!(request_id = %spooled.event.request_id, spooled = spooled.segment.is_some(), "usage event arrived after the metering writer stopped");
    }
}

/// Waits for the writer to store every event and stop. With a spool (`grace` set), a store
/// that cannot take them within `grace` (it is down) does not hold the process: the writer is
/// stopped and the events stay spooled for the next start; returns false then.
pub async fn drain(mut writer: tokio::task::JoinHandle<()>, grace: Option<Duration>) -> bool {
    let Some(grace) = grace else {
        let _ = writer.await;
        return true;
    };
    if tokio::time::timeout(grace, &mut writer).await.is_ok() {
        return true;
    }
    writer.abort();
    let _ = writer.await;
    tracing::warn!("the store did not take the last usage events within the shutdown grace period; they stay in the spool and the next start stores them");
    false
}

/// Stores the events a previous process left in the spool, before the gateway serves anyone:
/// once it listens, its usage reports are whole. What cannot be stored now (the store is
/// failing) is returned, for the writer to keep trying.
pub async fn replay(
    store: &Store,
    spool: &Spool,
    mut leftover: Leftover,
    batch: usize,
) -> Leftover {
    if leftover.events.is_empty() {
        return leftover;
    }
    let total = leftover.events.len();
    let mut done = 0;
    for chunk in leftover.events.chunks(batch.max(1)) {
        let events: Vec<UsageEvent> = chunk.iter().map(|(e, _)| e.clone()).collect();
        if let Err(err) = store.record_usage(&events).await {
            tracing::warn!(error = %err, "could not store the spooled usage events yet; the writer keeps trying");
            break;
        }
        spool.stored(chunk.iter().map(|(_, s)| *s));
        done += chunk.len();
    }
    tracing::info!(
        events = done,
        of = total,
        "stored the usage events a previous process left in the spool"
    );
    leftover.events.drain(..done);
    leftover
}

/// Starts the writer on the current runtime; it ends when every [`UsageSink`] is dropped and
/// all events are stored. After the first event of a batch it waits up to `linger` for more
/// (or until `batch` are queued), so a busy gateway writes few, large transactions. With a
/// spool, the events a previous process left in it are stored first.
pub fn start(
    store: Store,
    capacity: usize,
    batch: usize,
    linger: Duration,
    spool: Option<(Arc<Spool>, Leftover)>,
    ledger: Option<Arc<crate::ledger::Ledger>>,
    metrics: Arc<Metrics>,
) -> (UsageSink, tokio::task::JoinHandle<()>) {
    let batch = batch.clamp(1, capacity.max(1));
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let full = Arc::new(Notify::new());
    let (spool, leftover) = match spool {
        Some((spool, leftover)) => (Some(spool), leftover),
        None => (None, Leftover::default()),
    };
    if leftover.unreadable > 0 {
        tracing::warn!(
            lines = leftover.unreadable,
            "unreadable lines in the usage spool (a write cut short by a crash) were skipped"
        );
    }
    if !leftover.events.is_empty() {
        tracing::info!(
            events = leftover.events.len(),
            "storing usage events a previous process left in the spool"
        );
        let tx = tx.clone();
        tokio::spawn(async move {
            for (event, segment) in leftover.events {
                let spooled = Spooled {
                    event,
                    segment: Some(segment),
                };
                if tx.send(spooled).await.is_err() {
                    break;
                }
            }
        });
    }
    let writer = tokio::spawn(write_batches(
        store,
        rx,
        full.clone(),
        (batch, linger),
        Told {
            spool: spool.clone(),
            ledger,
            metrics: metrics.clone(),
        },
    ));
    let sink = UsageSink {
        tx,
        spool,
        full,
        batch,
        background: Handle::current(),
        metrics,
    };
    (sink, writer)
}

/// Who hears that a batch was stored.
struct Told {
    spool: Option<Arc<Spool>>,
    ledger: Option<Arc<crate::ledger::Ledger>>,
    metrics: Arc<Metrics>,
}

/// Stores batches of at most `max` events, waiting up to `linger` for a batch to fill.
async fn write_batches(
    store: Store,
    mut rx: mpsc::Receiver<Spooled>,
    full: Arc<Notify>,
    (max, linger): (usize, Duration),
    told: Told,
) {
    let Told {
        spool,
        ledger,
        metrics,
    } = told;
    let mut batch = Vec::with_capacity(max);
    let mut events = Vec::with_capacity(max);
    let mut segments = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        if batch.len() < max && rx.len() < max - batch.len() {
            // A wake-up left over from an earlier batch would end this wait at once: only a
            // queue that still holds a batch's worth cuts it short.
            let wait = tokio::time::sleep(linger);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = full.notified() => {
                        if batch.len() + rx.len() >= max {
                            break;
                        }
                    }
                }
            }
        }
        // Whatever has arrived, without waiting (the channel is closed or not).
        while batch.len() < max {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        for spooled in batch.drain(..) {
            events.push(spooled.event);
            segments.extend(spooled.segment);
        }
        let mut delay = Duration::from_millis(100);
        while let Err(err) = store.record_usage(&events).await {
            metrics.usage_write_failed(oldest_age(&events));
            tracing::warn!(error = %err, events = events.len(), "could not store usage events; retrying (they are safe in the spool)");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::debug!(events = events.len(), "stored usage events");
        metrics.usage_stored(events.len());
        metrics.usage_writer_lag(Duration::ZERO);
        if let Some(ledger) = &ledger {
            ledger.stored(&events);
        }
        if let Some(spool) = &spool {
            spool.stored(segments.drain(..));
        }
        events.clear();
        segments.clear();
    }
    if let Some(spool) = &spool {
        spool.retire();
    }
}

/// How long ago the oldest of `events` happened.
fn oldest_age(events: &[UsageEvent]) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let oldest = events.iter().map(|e| e.created_at.0).min().unwrap_or(now);
    Duration::from_secs(now.saturating_sub(oldest).max(0) as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tollgate_core::{KeyId, MicroUsd, OrgId, ProjectId, UnixTime};
    use tollgate_store::DatabaseLocation;

    /// A usage event for tests (the spool's too).
    pub(crate) fn event(n: usize) -> UsageEvent {
        UsageEvent {
            request_id: format!("req_{n:032}"),
            org_id: OrgId::from_trusted("org-test".into()),
            project_id: ProjectId::from_trusted("proj_test".into()),
            key_id: KeyId::from_trusted("key_test".into()),
            model_requested: "gpt-4o-mini".into(),
            model_served: "gpt-4o-mini".into(),
            endpoint: "/v1/chat/completions".into(),
            input_tokens: 1,
            cached_input_tokens: 0,
            output_tokens: 1,
            reasoning_tokens: 0,
            cost: MicroUsd(1),
            status: 200,
            latency_ms: 1,
            client_ip: Some("127.0.0.1".into()),
            created_at: UnixTime(1_795_400_000),
            objects: Vec::new(),
        }
    }

    async fn stored(store: &Store) -> usize {
        store
            .recent_usage(&OrgId::from_trusted("org-test".into()), 100)
            .await
            .map(|events| events.len())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_full_batch_is_written_at_once_and_the_rest_after_the_linger_time() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let location = DatabaseLocation::Sqlite(dir.path().join("tollgate.db"));
        let store = Store::open(&location)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Only a full batch can end the linger time early.
        let linger = Duration::from_secs(3);
        let (sink, writer) = start(
            store.clone(),
            16,
            3,
            linger,
            None,
            None,
            Arc::new(Metrics::new()),
        );
        let started = tokio::time::Instant::now();
        // The writer takes the first event and starts lingering; three more queue up.
        sink.record(event(0)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        for n in 1..4 {
            sink.record(event(n)).await;
        }
        while stored(&store).await < 3 && started.elapsed() < linger * 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            started.elapsed() < linger,
            "the full batch was written after {:?}, not before the linger time",
            started.elapsed()
        );
        assert_eq!(stored(&store).await, 3, "the first three, and only those");
        // Shutdown: the last sink goes, and the writer stores what is left before it ends.
        drop(sink);
        tokio::time::timeout(linger * 3, writer)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored(&store).await, 4);
    }

    #[tokio::test]
    async fn a_store_that_is_down_at_shutdown_leaves_the_events_spooled_for_the_next_start() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tollgate.db");
        let store = Store::open(&DatabaseLocation::Sqlite(path.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("spool");
        let (spool, leftover) = Spool::open(&root, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
        let (sink, writer) = start(
            store.clone(),
            16,
            4,
            Duration::from_millis(10),
            Some((Arc::new(spool), leftover)),
            None,
            Arc::new(Metrics::new()),
        );
        // The store is down: another connection holds it locked.
        let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut blocker)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sink.record(event(1)).await;
        drop(sink);
        let started = tokio::time::Instant::now();
        assert!(
            !drain(writer, Some(Duration::from_millis(300))).await,
            "the writer could not have stored the event"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "shutdown waited {:?}",
            started.elapsed()
        );
        // Back up: the next start finds the event in the spool and stores it.
        sqlx::query("ROLLBACK")
            .execute(&mut blocker)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(blocker);
        let (spool, leftover) = Spool::open(&root, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(leftover.events.len(), 1);
        let rest = replay(&store, &spool, leftover, 16).await;
        assert!(rest.events.is_empty());
        assert_eq!(stored(&store).await, 1);
    }
}
