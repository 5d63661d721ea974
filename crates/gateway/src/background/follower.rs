//! Follows the store's change log: key and project changes go to the key table, and a change to
//! limits or budgets reloads them. The follower reads the log on a timer, and at once when a
//! request presents a key the store has but the table does not yet (see `key_lookup`); one
//! catch-up runs at a time, so changes are always applied in the log's order.

use crate::admission::Limits;
use crate::background::key_table::KeyTable;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use tollgate_core::OrgId;
use tollgate_store::Store;

#[derive(Debug)]
pub struct Follower {
    keys: Arc<KeyTable>,
    limits: Arc<Limits>,
    org: OrgId,
    store: Store,
    /// Held for a whole catch-up; holds whether a reload of the limits failed and is owed.
    reload_pending: Mutex<bool>,
}

impl Follower {
    pub fn new(keys: Arc<KeyTable>, limits: Arc<Limits>, org: OrgId, store: Store) -> Follower {
        Follower {
            keys,
            limits,
            org,
            store,
            reload_pending: Mutex::new(false),
        }
    }

    pub fn keys(&self) -> &KeyTable {
        &self.keys
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies every change the log holds now; false when the store could not be read (the
    /// rest is applied on a later call).
    pub async fn catch_up(&self) -> bool {
        let mut reload_pending = self.reload_pending.lock().await;
        // Limits first: a reload that failed is retried before any later change is applied.
        loop {
            if *reload_pending {
                match self.limits.reload(&self.store, &self.org).await {
                    Ok(()) => {
                        *reload_pending = false;
                        tracing::info!("rate limits and budgets reloaded");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "could not reload rate limits and budgets; will retry");
                        return false;
                    }
                }
            }
            match self.keys.catch_up(&self.store).await {
                Ok(caught) => {
                    if caught.changes > 0 {
                        tracing::debug!(changes = caught.changes, "applied changes");
                    }
                    if !caught.limits_changed {
                        return true;
                    }
                    *reload_pending = true;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not read the change log; will retry");
                    return false;
                }
            }
        }
    }

    /// Reads the change log every `interval` until `stop` says so.
    pub async fn run(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        // The first tick one interval from now: tokio's first tick is immediate, and a pass
        // right after start (which just did this work) would land at a time nobody chose.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            self.catch_up().await;
        }
    }
}
