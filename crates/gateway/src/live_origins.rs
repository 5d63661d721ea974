//! Which browser origins live client tokens name, remembered for a moment: a CORS preflight
//! carries no token, so each would otherwise cost a store query, and anyone can send them. A
//! leaf: it imports nothing from the gateway.
//!
//! An origin some token names is remembered until the token's expiry as minted here, or for
//! [`REMEMBER_LIVE_SECONDS`] when the store said so; one no token names for
//! [`REMEMBER_DEAD_SECONDS`] only, so that a token minted on another replica is usable from
//! its page a second later at most (a token minted on this one, at once). At most
//! [`MAX_ORIGINS`] are kept; past that the memory starts over.

use std::collections::HashMap;
use std::sync::Mutex;
use tollgate_core::UnixTime;

pub const REMEMBER_LIVE_SECONDS: i64 = 30;
pub const REMEMBER_DEAD_SECONDS: i64 = 1;
pub const MAX_ORIGINS: usize = 10_000;

#[derive(Debug, Default)]
pub struct LiveOrigins {
    /// Origin → (whether a live token names it, until when that is believed).
    known: Mutex<HashMap<String, (bool, UnixTime)>>,
}

impl LiveOrigins {
    /// What is remembered of `origin` at `now`, if anything.
    pub fn get(&self, origin: &str, now: UnixTime) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(origin)
            .filter(|(_, until)| *until > now)
            .map(|(live, _)| *live)
    }

    /// Remembers the store's answer for `origin`.
    pub fn remember(&self, origin: &str, live: bool, now: UnixTime) {
        let for_seconds = if live {
            REMEMBER_LIVE_SECONDS
        } else {
            REMEMBER_DEAD_SECONDS
        };
        self.put(origin, live, now.plus_seconds(for_seconds));
    }

    /// A token naming `origin` was minted here, living until `expires_at`.
    pub fn minted(&self, origin: &str, expires_at: UnixTime) {
        let until = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            match known.get(origin) {
                Some((true, until)) if *until > expires_at => *until,
                _ => expires_at,
            }
        };
        self.put(origin, true, until);
    }

    fn put(&self, origin: &str, live: bool, until: UnixTime) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_ORIGINS && !known.contains_key(origin) {
            known.clear();
        }
        known.insert(origin.to_owned(), (live, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_remembered_for_their_time_and_a_mint_makes_an_origin_live_at_once() {
        let origins = LiveOrigins::default();
        let now = UnixTime(1_000);
        assert_eq!(origins.get("https://a.example", now), None);
        origins.remember("https://a.example", false, now);
        assert_eq!(origins.get("https://a.example", now), Some(false));
        assert_eq!(origins.get("https://a.example", now.plus_seconds(1)), None);
        origins.minted("https://a.example", now.plus_seconds(600));
        assert_eq!(origins.get("https://a.example", now), Some(true));
        assert_eq!(
            origins.get("https://a.example", now.plus_seconds(599)),
            Some(true)
        );
        assert_eq!(
            origins.get("https://a.example", now.plus_seconds(600)),
            None
        );
        origins.remember("https://b.example", true, now);
        assert_eq!(
            origins.get("https://b.example", now.plus_seconds(29)),
            Some(true)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let origins = LiveOrigins::default();
        for i in 0..=MAX_ORIGINS {
            origins.remember(&format!("https://{i}.example"), false, UnixTime(0));
        }
        let known = origins.known.lock().unwrap_or_else(|p| p.into_inner());
        assert!(known.len() <= MAX_ORIGINS);
    }
}
