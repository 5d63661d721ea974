//! A cap on store lookups a second: a token bucket holding one second's worth, refilled
//! continuously; and [`Unknown`], what the store said it does not have, believed for a while.
//! Keys and client tokens new to a server are looked up under one of each (see
//! `background::key_lookup`, `background::client_tokens`). A leaf: it imports nothing from the
//! gateway.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use tollgate_core::KeyHash;

#[derive(Debug)]
pub struct LookupCap {
    per_second: u32,
    /// Lookups left, refilled at `per_second` up to `per_second`.
    allowance: f64,
    refilled: Instant,
}

impl LookupCap {
    /// A full bucket of `per_second` (0: never look anything up).
    pub fn new(per_second: u32) -> LookupCap {
        LookupCap {
            per_second,
            allowance: f64::from(per_second),
            refilled: Instant::now(),
        }
    }

    /// Whether a lookup may be made at `now` (and if so, it is counted).
    pub fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(self.per_second);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.allowance = (self.allowance + elapsed * rate).min(rate);
        self.refilled = now;
        if self.allowance >= 1.0 {
            self.allowance -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Hashes the store had nothing for, each believed unknown for [`Unknown::FOR`]; at most
/// [`Unknown::MAX`] (past that, the stale ones go, then all: at a capped lookup rate it never
/// gets near).
#[derive(Debug, Default)]
pub struct Unknown {
    since: HashMap<KeyHash, Instant>,
}

impl Unknown {
    /// How long the store's "no such thing" is believed.
    pub const FOR: Duration = Duration::from_secs(10);
    /// Most hashes remembered.
    pub const MAX: usize = 100_000;

    /// Whether `hash` is known to be unknown at `now` (a stale entry is forgotten).
    pub fn holds(&mut self, hash: &KeyHash, now: Instant) -> bool {
        match self.since.get(hash) {
            Some(since) if now.duration_since(*since) < Self::FOR => true,
            Some(_) => {
                self.since.remove(hash);
                false
            }
            None => false,
        }
    }

    /// Remembers that the store has nothing for `hash`.
    pub fn remember(&mut self, hash: KeyHash, now: Instant) {
        if self.since.len() >= Self::MAX {
            self.since
                .retain(|_, since| now.duration_since(*since) < Self::FOR);
            if self.since.len() >= Self::MAX {
                self.since.clear();
            }
        }
        self.since.insert(hash, now);
    }

    /// Forgets `hash` (it exists after all).
    pub fn forget(&mut self, hash: &KeyHash) {
        self.since.remove(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_its_rate_and_refills_continuously() {
        let mut cap = LookupCap::new(10);
        let start = Instant::now();
        let taken = (0..100).filter(|_| cap.take(start)).count();
        assert_eq!(taken, 10, "a full bucket holds one second's worth");
        assert!(!cap.take(start + Duration::from_millis(50)));
        assert!(cap.take(start + Duration::from_millis(150)));
        let later = start + Duration::from_secs(60);
        let taken = (0..100).filter(|_| cap.take(later)).count();
        assert_eq!(taken, 10, "an idle bucket never holds more than its rate");
        assert!(!LookupCap::new(0).take(later), "0 looks nothing up");
    }

    #[test]
    fn the_negative_cache_stays_bounded() {
        let mut unknown = Unknown::default();
        let now = Instant::now();
        for n in 0..(Unknown::MAX as u64 + 10) {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            unknown.remember(KeyHash(bytes), now);
        }
        assert!(unknown.since.len() <= Unknown::MAX);
    }

    #[test]
    fn an_unknown_hash_is_believed_for_a_while_then_forgotten() {
        let mut unknown = Unknown::default();
        let now = Instant::now();
        let hash = KeyHash([1; 32]);
        assert!(!unknown.holds(&hash, now));
        unknown.remember(hash, now);
        assert!(unknown.holds(&hash, now + Duration::from_secs(9)));
        assert!(!unknown.holds(&hash, now + Unknown::FOR));
        assert!(!unknown.holds(&hash, now), "a stale entry is forgotten");
        unknown.remember(hash, now);
        unknown.forget(&hash);
        assert!(!unknown.holds(&hash, now));
    }
}
