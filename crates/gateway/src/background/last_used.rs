use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tollgate_core::{KeyId, UnixTime};
use tollgate_store::Store;

/// Last-used times gathered in memory and written in batches, never once per request.
#[derive(Debug, Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<KeyId, UnixTime>>,
}

impl LastUsed {
    pub fn record(&self, id: &KeyId, at: UnixTime) {
        let mut pending = match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match pending.get_mut(id) {
            Some(previous) if *previous >= at => {}
            Some(previous) => *previous = at,
            None => {
                pending.insert(id.clone(), at);
            }
        }
    }

    fn take(&self) -> Vec<(KeyId, UnixTime)> {
        let mut pending = match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        pending.drain().collect()
    }

    /// Writes what has gathered; on failure puts it back for the next try.
    pub async fn flush(&self, store: &Store) {
        let batch = self.take();
        if batch.is_empty() {
            return;
        }
        if let Err(err) = store.touch_keys(&batch).await {
            tracing::warn!(error = %err, keys = batch.len(), "could not write last-used times; will retry");
            for (id, at) in batch {
                self.record(&id, at);
            }
        }
    }

    /// Flushes every `interval` until `stop`, then once more.
    pub async fn run(
        self: std::sync::Arc<Self>,
        store: Store,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        // The first tick one interval from now: tokio's first tick is immediate, and a pass
        // right after start (which just did this work) would land at a time nobody chose.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.flush(&store).await,
                _ = stop.changed() => break,
            }
        }
        self.flush(&store).await;
    }
}
