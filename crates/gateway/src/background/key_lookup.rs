//! Keys that are new to this server. The key table learns of a new key from the change log
//! within its poll interval; a user who creates a key and uses it at once must not wait for
//! that. A checksum-valid key that misses the table is looked up in the store by its id, once:
//!
//! - single-flight: requests presenting the same unknown key at once share one lookup;
//! - a negative cache: a key the store does not have is not looked up again for a while;
//! - a global rate cap: at most `per_second` lookups a second (a token bucket with as many
//!   tokens), so a flood of forged keys with valid checksums costs the store a bounded trickle
//!   of indexed reads, and every other request is answered from memory as before.
//!
//! A key that could not be checked (over the cap, or the store failing) is not called unknown:
//! the request gets a retryable 503, which the OpenAI SDKs retry on their own, so a key created
//! during a flood or a database hiccup works once the change log brings it (within a poll
//! interval), while a definite "no such key" stays a 401.
//!
//! A key the store has is not put in the table by the lookup: the follower catches up with the
//! change log at once, so the key arrives in order, after the limits and budgets it was created
//! with (a key is never usable without them), and a revocation that follows it is applied as
//! always. The table keeps one writer, the follower.

use crate::background::follower::Follower;
use crate::background::key_table::LiveKey;
use crate::lookup_cap::{LookupCap, Unknown};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tollgate_core::{KeyHash, SecretKey};

/// Longest wait for the database when looking up a key new to this server.
const LOOKUP_WAIT: Duration = Duration::from_secs(2);

/// Shortest time between two warnings about refused lookups.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What one store lookup found.
#[derive(Debug, Clone)]
enum Found {
    /// In the store; the table's entry once the change log is applied (`None` only if the key
    /// was removed meanwhile).
    Key(Option<Arc<LiveKey>>),
    /// The store had no such key: remembered as unknown.
    Missing,
    /// The store could not be asked: not remembered, the next request asks again.
    Failed,
}

type Lookup = Arc<OnceCell<Found>>;

/// A lookup under way and the requests waiting for it.
#[derive(Debug)]
struct InFlight {
    lookup: Lookup,
    waiters: usize,
}

/// The lookups of keys the table does not hold.
#[derive(Debug)]
pub struct KeyLookups {
    follower: Arc<Follower>,
    state: Mutex<State>,
    /// Store lookups made (for tests and diagnostics).
    made: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// The cap on lookups a second.
    cap: LookupCap,
    in_flight: HashMap<KeyHash, InFlight>,
    unknown: Unknown,
    /// Lookups refused over the rate since the last warning, and when that was.
    refused: u64,
    warned: Option<Instant>,
}

/// A request's share in a lookup. The last waiter out, or the first once the lookup has an
/// answer, removes it from the map, whether it ends or is dropped with a client that left.
struct Share<'a> {
    lookups: &'a KeyLookups,
    hash: KeyHash,
    lookup: Lookup,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut state = self.lookups.lock();
        let Some(entry) = state
            .in_flight
            .get_mut(&self.hash)
            .filter(|e| Arc::ptr_eq(&e.lookup, &self.lookup))
        else {
            return;
        };
        entry.waiters = entry.waiters.saturating_sub(1);
        let finished = self.lookup.get().cloned();
        if finished.is_some() || entry.waiters == 0 {
            state.in_flight.remove(&self.hash);
            if matches!(finished, Some(Found::Missing)) {
                state.unknown.remember(self.hash, Instant::now());
            }
        }
    }
}

/// A key that could not be checked: over the lookup rate, or the store failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unchecked;

impl KeyLookups {
    /// Allows `per_second` store lookups a second (0: never look up; new keys then wait for
    /// the change log).
    /// The follower that applies the store's changes to this server.
    pub fn follower(&self) -> &Arc<Follower> {
        &self.follower
    }

    pub fn new(follower: Arc<Follower>, per_second: u32) -> KeyLookups {
        KeyLookups {
            follower,
            state: Mutex::new(State::new(per_second)),
            made: AtomicU64::new(0),
        }
    }

    /// How many times the store has been asked.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The key with `hash` (the keyed hash of `secret`) when the store has it (the table holds
    /// it afterwards), `None` when it does not, `Unchecked` when it could not be asked.
    pub async fn find(
        &self,
        hash: KeyHash,
        secret: &SecretKey,
    ) -> Result<Option<Arc<LiveKey>>, Unchecked> {
        let share = {
            let mut state = self.lock();
            let now = Instant::now();
            if state.unknown.holds(&hash, now) {
                return Ok(None);
            }
            let joined = state.in_flight.get_mut(&hash).map(|entry| {
                entry.waiters += 1;
                entry.lookup.clone()
            });
            let lookup = match joined {
                Some(lookup) => lookup,
                None if state.cap.take(now) => {
                    let lookup = Lookup::default();
                    state.in_flight.insert(
                        hash,
                        InFlight {
                            lookup: lookup.clone(),
                            waiters: 1,
                        },
                    );
                    lookup
                }
                None => {
                    state.note_refusal(now, self.made());
                    return Err(Unchecked);
                }
            };
            Share {
                lookups: self,
                hash,
                lookup,
            }
        };
        let found = share
            .lookup
            .get_or_init(|| async {
                self.made.fetch_add(1, Ordering::Relaxed);
                // A database that does not answer (PostgreSQL away) fails the lookup after
                // LOOKUP_WAIT with a retryable 503, rather than holding the request.
                let looked_up =
                    tokio::time::timeout(LOOKUP_WAIT, self.follower.store().auth_key(&secret.id()))
                        .await;
                match looked_up {
                    // The id is derived from the key; the hash proves it is this key.
                    Ok(Ok(Some(key))) if key.key.hash == hash => {
                        if self.follower.catch_up().await {
                            Found::Key(self.follower.keys().get(&hash))
                        } else {
                            Found::Failed
                        }
                    }
                    Ok(Ok(_)) => Found::Missing,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "could not look up a key new to this server");
                        Found::Failed
                    }
                    Err(_) => {
                        tracing::warn!(wait = ?LOOKUP_WAIT, "could not look up a key new to this server: the database did not answer");
                        Found::Failed
                    }
                }
            })
            .await
            .clone();
        drop(share);
        match found {
            Found::Key(key) => Ok(key),
            Found::Missing => Ok(None),
            Found::Failed => Err(Unchecked),
        }
    }
}

impl State {
    fn new(per_second: u32) -> State {
        State {
            cap: LookupCap::new(per_second),
            in_flight: HashMap::new(),
            unknown: Unknown::default(),
            refused: 0,
            warned: None,
        }
    }

    /// Counts a lookup refused over the rate; warns at most every [`WARN_EVERY`]: many
    /// checksum-valid keys nobody has are a flood of forged keys (or a misconfigured client).
    fn note_refusal(&mut self, now: Instant, made: u64) {
        self.refused += 1;
        if self
            .warned
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            refused = self.refused,
            lookups_made = made,
            "keys unknown to this server arrive faster than the lookup rate (key_lookups_per_second); the excess was not looked up in the store. A flood of forged keys?"
        );
        self.refused = 0;
        self.warned = Some(now);
    }
}
