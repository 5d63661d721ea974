//! Usage retention: usage events older than `usage_retention_days` are deleted, oldest first,
//! in batches of [`BATCH`] (each its own short transaction, so requests' usage writes never wait
//! long behind it), once at start and then every [`EVERY`]. The daily roll-up keeps their sums:
//! budgets and the usage report by day go on seeing them. Replicas may prune at once; they take
//! turns on the write lock and the second finds nothing left.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tollgate_core::{Clock, UnixTime};
use tollgate_store::Store;

/// Events deleted per transaction.
pub const BATCH: i64 = 5_000;

/// How often old events are looked for.
pub const EVERY: Duration = Duration::from_secs(3_600);

/// Deletes the events older than `keep` (as `clock` tells the time), until none is left or
/// `stop` turns true (between batches: a first pass over years of events does not hold a
/// shutdown); how many.
pub async fn prune(
    store: &Store,
    clock: &dyn Clock,
    keep: Duration,
    stop: &watch::Receiver<bool>,
) -> u64 {
    let cut = UnixTime(clock.now().seconds() - keep.as_secs() as i64);
    let mut deleted = 0;
    loop {
        match store.prune_usage(cut, BATCH).await {
            Ok(n) => {
                deleted += n;
                if n < BATCH as u64 || *stop.borrow() {
                    break;
                }
                // Let the writers that queued behind this batch go first.
                tokio::task::yield_now().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not delete usage events past their retention; will try again");
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::info!(
            deleted,
            days = keep.as_secs() / 86_400,
            "deleted usage events past their retention"
        );
    }
    deleted
}

/// Prunes now and every [`EVERY`] until `stop`.
pub async fn run(
    store: Store,
    clock: Arc<dyn Clock>,
    keep: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = ticker.tick() => {}
        }
        prune(&store, clock.as_ref(), keep, &stop).await;
    }
}
