//! Follows the store's change log: key and project changes go to the key table, and a change to
//! limits or budgets reloads them.

use crate::admission::Limits;
use crate::background::key_table::KeyTable;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tollgate_core::OrgId;
use tollgate_store::Store;

/// Reads the change log every `interval` until `stop` says so.
pub async fn follow(
    keys: Arc<KeyTable>,
    limits: Arc<Limits>,
    org: OrgId,
    store: Store,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A reload that failed is tried again on the next tick.
    let mut reload_pending = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        // Limits first: a reload that failed is retried before any later change is applied.
        loop {
            if reload_pending {
                match limits.reload(&store, &org).await {
                    Ok(()) => {
                        reload_pending = false;
                        tracing::info!("rate limits and budgets reloaded");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "could not reload rate limits and budgets; will retry");
                        break;
                    }
                }
            }
            match keys.catch_up(&store).await {
                Ok(caught) => {
                    if caught.changes > 0 {
                        tracing::debug!(changes = caught.changes, "applied changes");
                    }
                    if !caught.limits_changed {
                        break;
                    }
                    reload_pending = true;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not read the change log; will retry");
                    break;
                }
            }
        }
    }
}
