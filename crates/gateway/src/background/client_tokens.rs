//! Client tokens as this server knows them. A token is found in the store by its keyed hash at
//! its first use here and then remembered until it expires (what decides anything about it
//! later is its counts, kept in the store and checked on every request, and its key, in the key
//! table); a token minted here is remembered at once. What the store does not have is
//! remembered as unknown for a while. Store lookups of tokens not remembered are capped at
//! [`LOOKUPS_PER_SECOND`] (a token bucket): a flood of forged tokens with valid checksums costs
//! the store a bounded trickle of indexed reads, and a token that could not be looked up gets
//! a retryable 503, not a 401, as keys new to the server do (see `key_lookup`).

use crate::lookup_cap::{LookupCap, Unknown};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_core::{KeyHash, UnixTime};
use tollgate_store::{FoundClientToken, Store};

/// Most store lookups a second of tokens this server does not know yet.
pub const LOOKUPS_PER_SECOND: u32 = 500;
/// Longest wait for the store.
const LOOKUP_WAIT: Duration = Duration::from_secs(2);
/// Most tokens remembered; past that, expired ones go, then all.
const MAX_REMEMBERED: usize = 100_000;

/// What looking a token up found.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Arc<FoundClientToken>),
    /// No such token.
    Unknown,
    /// It could not be looked up now (over the cap, or the store failing).
    Unchecked,
}

#[derive(Debug)]
pub struct ClientTokens {
    inner: Mutex<Inner>,
    /// Store lookups made (for tests and operators).
    lookups: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Inner {
    known: HashMap<KeyHash, Arc<FoundClientToken>>,
    unknown: Unknown,
    cap: LookupCap,
}

impl Default for ClientTokens {
    fn default() -> ClientTokens {
        ClientTokens {
            inner: Mutex::new(Inner {
                known: HashMap::new(),
                unknown: Unknown::default(),
                cap: LookupCap::new(LOOKUPS_PER_SECOND),
            }),
            lookups: Default::default(),
        }
    }
}

impl ClientTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token with this hash, remembered or looked up.
    pub async fn find(&self, store: &Store, hash: KeyHash, now: UnixTime) -> Lookup {
        {
            let mut inner = self.lock();
            if let Some(found) = inner.known.get(&hash) {
                return Lookup::Found(found.clone());
            }
            let at = Instant::now();
            if inner.unknown.holds(&hash, at) {
                return Lookup::Unknown;
            }
            if !inner.cap.take(at) {
                return Lookup::Unchecked;
            }
        }
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match tokio::time::timeout(LOOKUP_WAIT, store.client_token(&hash)).await {
            Ok(Ok(Some(found))) => {
                let found = Arc::new(found);
                self.remember(found.clone(), now);
                Lookup::Found(found)
            }
            Ok(Ok(None)) => {
                self.lock().unknown.remember(hash, Instant::now());
                Lookup::Unknown
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "a client token could not be looked up");
                Lookup::Unchecked
            }
            Err(_) => Lookup::Unchecked,
        }
    }

    /// Remembers a token (found, or minted here) until it expires.
    pub fn remember(&self, found: Arc<FoundClientToken>, now: UnixTime) {
        let mut inner = self.lock();
        if inner.known.len() >= MAX_REMEMBERED {
            inner
                .known
                .retain(|_, token| token.token.grant.expires_at > now);
            if inner.known.len() >= MAX_REMEMBERED {
                inner.known.clear();
            }
        }
        inner.unknown.forget(&found.token.token_hash);
        inner.known.insert(found.token.token_hash, found);
    }

    /// How many store lookups were made.
    pub fn lookups_made(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_capped_per_second_and_the_allowance_refills() {
        let tokens = ClientTokens::default();
        let mut inner = tokens.lock();
        let start = Instant::now();
        let taken = (0..LOOKUPS_PER_SECOND * 2)
            .filter(|_| inner.cap.take(start))
            .count();
        assert_eq!(taken, LOOKUPS_PER_SECOND as usize);
        assert!(!inner.cap.take(start + Duration::from_micros(100)));
        assert!(
            inner.cap.take(start + Duration::from_millis(10)),
            "5 more after 10 ms"
        );
    }
}
