//! Console sign-in: the session token a browser holds, and the throttle that slows password
//! guessing per account and per address.
//!
//! The throttle lets a few failures pass freely, then makes each further attempt wait, the wait
//! doubling with every failure (capped), and forgets an account or address after a quiet
//! hour. It is a plain value: the caller keeps it behind a lock and bounds its size.

use crate::secret::{KeyHash, KeyHasher};
use crate::UnixTime;
use std::collections::HashMap;
use std::fmt;

/// What a session token starts with.
pub const SESSION_PREFIX: &str = "tgs_";

/// How long a session lasts from sign-in (a week, as GitHub's "remember me" does not exceed).
pub const SESSION_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// The secret a signed-in browser holds in its cookie; the store keeps only its keyed hash.
/// Prints as `tgs_*****`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn generate() -> SessionToken {
        SessionToken(format!("{SESSION_PREFIX}{}", crate::ids::random_base62(43)))
    }

    /// A token as a cookie presents it; `None` if it cannot be one.
    pub fn parse(text: &str) -> Option<SessionToken> {
        let rest = text.strip_prefix(SESSION_PREFIX)?;
        (rest.len() == 43 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| SessionToken(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The keyed hash the store finds the session by.
    pub fn hash(&self, hasher: &KeyHasher) -> KeyHash {
        hasher.hash_labelled(b"session token v1", self.0.as_bytes())
    }

    /// The anti-forgery token of this session's forms: derived from the session (so it needs
    /// no storage and dies with it), useless without the server secret.
    pub fn csrf(&self, hasher: &KeyHasher) -> String {
        hasher
            .hash_labelled(b"csrf token v1", self.0.as_bytes())
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SESSION_PREFIX}*****")
    }
}

/// How many failures one account may have from one address before that pair must wait.
pub const FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS: u32 = 5;
/// How many failures one account may have from everywhere before addresses it was never
/// signed in from must wait (the owner's own addresses are not locked out by others' guesses).
pub const FREE_FAILURES_PER_ACCOUNT: u32 = 50;
/// How many failures one address (an IPv6 /64 counts as one) may have, across accounts.
pub const FREE_FAILURES_PER_ADDRESS: u32 = 20;
/// The first wait once the free failures are spent, in seconds; each failure doubles it.
pub const FIRST_WAIT_SECS: i64 = 30;
/// The longest wait.
pub const MAX_WAIT_SECS: i64 = 15 * 60;
/// Failures older than this are forgotten.
pub const QUIET_RESET_SECS: i64 = 3600;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: UnixTime,
}

/// Failed sign-ins per key (an account's e-mail, or an address), bounded to `capacity` keys.
#[derive(Debug)]
pub struct Throttle {
    free: u32,
    failures: HashMap<String, Failures>,
    capacity: usize,
}

impl Throttle {
    /// A throttle that lets `free` failures pass before making a key wait.
    pub fn new(free: u32, capacity: usize) -> Throttle {
        Throttle {
            free,
            failures: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// `Err(seconds)` if `key` must still wait that long before trying again.
    pub fn check(&self, key: &str, now: UnixTime) -> Result<(), i64> {
        let Some(f) = self.failures.get(key) else {
            return Ok(());
        };
        let since = now.seconds() - f.last.seconds();
        if f.count < self.free || since >= QUIET_RESET_SECS {
            return Ok(());
        }
        let doublings = (f.count - self.free).min(20);
        let wait = FIRST_WAIT_SECS
            .saturating_mul(1_i64 << doublings)
            .min(MAX_WAIT_SECS);
        if since < wait {
            Err(wait - since)
        } else {
            Ok(())
        }
    }

    /// Checks `key` and, if it may try, counts the attempt as a failure at once (a success
    /// clears it with [`Throttle::succeeded`]): attempts racing each other are all counted
    /// before any is checked, so parallel guesses do not slip past the count.
    pub fn attempt(&mut self, key: &str, now: UnixTime) -> Result<(), i64> {
        self.check(key, now)?;
        self.failed(key, now);
        Ok(())
    }

    /// Records a failure of `key` at `now`.
    pub fn failed(&mut self, key: &str, now: UnixTime) {
        if !self.failures.contains_key(key) && self.failures.len() >= self.capacity {
            self.forget_oldest(now);
            if self.failures.len() >= self.capacity {
                // Every remembered key is being held: none is dropped to make room.
                return;
            }
        }
        let entry = self.failures.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.seconds() - entry.last.seconds() >= QUIET_RESET_SECS {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// A success clears `key`'s failures.
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// Makes room: drops what is quiet, else the least recently failed key that is not being
    /// held (a full table never frees a throttled key).
    fn forget_oldest(&mut self, now: UnixTime) {
        self.failures
            .retain(|_, f| now.seconds() - f.last.seconds() < QUIET_RESET_SECS);
        if self.failures.len() >= self.capacity {
            let free = self.free;
            if let Some(oldest) = self
                .failures
                .iter()
                .filter(|(_, f)| f.count < free)
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            {
                self.failures.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.failures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The throttle's name for a client address: an IPv4 address, or an IPv6 address's /64 (one
/// subscriber's whole allocation).
pub fn address_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ServerSecret;

    #[test]
    fn the_sixth_failure_in_a_row_waits_and_waits_double_up_to_a_cap() {
        let mut t = Throttle::new(FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS, 100);
        let at = |s| UnixTime(1_000 + s);
        for n in 0..5 {
            assert_eq!(t.check("ada", at(n)), Ok(()), "failure {n} is free");
            t.failed("ada", at(n));
        }
        assert_eq!(t.check("ada", at(4)), Err(30));
        assert_eq!(t.check("ada", at(33)), Err(1));
        assert_eq!(t.check("ada", at(34)), Ok(()));
        assert_eq!(t.check("bob", at(5)), Ok(()), "another account is not held");
        t.failed("ada", at(34));
        assert_eq!(t.check("ada", at(34)), Err(60));
        for n in 0..20 {
            t.failed("ada", at(100 + n));
        }
        assert_eq!(t.check("ada", at(119)), Err(MAX_WAIT_SECS));
        // A quiet hour forgets; a success clears at once.
        assert_eq!(t.check("ada", at(119 + QUIET_RESET_SECS)), Ok(()));
        t.succeeded("ada");
        assert_eq!(t.check("ada", at(120)), Ok(()));
    }

    #[test]
    fn the_throttle_holds_at_most_its_capacity_and_never_frees_a_held_key() {
        let mut t = Throttle::new(2, 3);
        t.failed("held", UnixTime(0));
        t.failed("held", UnixTime(0));
        for n in 0..10 {
            t.failed(&format!("k{n}"), UnixTime(n));
        }
        assert_eq!(t.len(), 3);
        assert!(
            t.check("held", UnixTime(10)).is_err(),
            "the throttled key stays"
        );
        assert_eq!(t.check("k9", UnixTime(10)), Ok(()));
    }

    #[test]
    fn attempts_are_counted_before_they_are_checked() {
        let mut t = Throttle::new(FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS, 10);
        let now = UnixTime(1_000);
        // Six attempts at once (none finished): the sixth is held.
        let results: Vec<_> = (0..6).map(|_| t.attempt("ada", now)).collect();
        assert_eq!(results[..5], [Ok(()); 5]);
        assert_eq!(results[5], Err(FIRST_WAIT_SECS));
        t.succeeded("ada");
        assert_eq!(t.attempt("ada", now), Ok(()));
    }

    #[test]
    fn an_ipv6_address_counts_by_its_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let c: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: std::net::IpAddr = "192.0.2.7".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(address_key(v4), "192.0.2.7");
    }

    #[test]
    fn session_tokens_parse_hash_and_derive_a_csrf_token() {
        let hasher =
            |b| KeyHasher::new(ServerSecret::new(vec![b; 32]).unwrap_or_else(|_| unreachable!()));
        let token = SessionToken::generate();
        assert_eq!(SessionToken::parse(token.expose()), Some(token.clone()));
        assert_eq!(SessionToken::parse("tgs_x"), None);
        assert_eq!(SessionToken::parse(&token.expose()[1..]), None);
        assert!(!format!("{token:?}").contains(&token.expose()[5..]));
        assert_ne!(token.hash(&hasher(1)), token.hash(&hasher(2)));
        let csrf = token.csrf(&hasher(1));
        assert_eq!(csrf.len(), 64);
        assert_eq!(csrf, token.csrf(&hasher(1)));
        assert_ne!(csrf, SessionToken::generate().csrf(&hasher(1)));
        assert_ne!(csrf, token.csrf(&hasher(2)));
    }
}
