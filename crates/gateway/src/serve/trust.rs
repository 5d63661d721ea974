//! Whether a client connection has shown a valid key yet. Connections that have not (a client
//! that only connects, sends nothing or heads slowly, speaks HTTP/2 without a key, or fails
//! authentication) are counted and bounded:
//!
//! - one that has shown no valid key `head_timeout` after it was accepted is closed, whatever
//!   its protocol or progress (hyper's head timeout starts only once HTTP/1 has been told apart
//!   from HTTP/2, so a socket that sends nothing would otherwise stay open for ever);
//! - past `max_unauthenticated` of them, the accept loop closes the oldest to make room, so
//!   keyless connections never take more than that share of the slots, and a new client (who
//!   may have a key) is still served;
//! - a request that fails authentication on one closes it (`connection: close`; over HTTP/2 the
//!   time limit does it).
//!
//! A leaf of `serve`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// A connection's standing, shared by its requests (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct Trust(Arc<Standing>);

#[derive(Debug)]
struct Standing {
    authenticated: AtomicBool,
    /// Told to close (to make room for a newer connection).
    evict: Notify,
    /// Connections of the server not authenticated yet.
    unauthenticated: Arc<AtomicUsize>,
}

impl Trust {
    /// A new connection, counted among the unauthenticated ones.
    pub(crate) fn new(unauthenticated: Arc<AtomicUsize>) -> Trust {
        unauthenticated.fetch_add(1, Ordering::Relaxed);
        Trust(Arc::new(Standing {
            authenticated: AtomicBool::new(false),
            evict: Notify::new(),
            unauthenticated,
        }))
    }

    /// Completes when the connection must close: it showed no valid key within `within`, or
    /// it was evicted first. Never completes for a connection that showed one in time.
    pub(crate) async fn expelled(&self, within: Duration) {
        let evicted = self.0.evict.notified();
        tokio::pin!(evicted);
        tokio::select! {
            _ = &mut evicted => return,
            _ = tokio::time::sleep(within) => {}
        }
        if !self.is_authenticated() {
            return;
        }
        std::future::pending::<()>().await
    }

    /// A request on the connection showed a valid key.
    pub(crate) fn authenticated(&self) {
        if !self.0.authenticated.swap(true, Ordering::Relaxed) {
            self.0.unauthenticated.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.0.authenticated.load(Ordering::Relaxed)
    }
}

/// The keyless connections the accept loop may evict, oldest first.
#[derive(Default)]
pub(crate) struct Keyless {
    queue: std::collections::VecDeque<Weak<Standing>>,
}

impl Keyless {
    pub(crate) fn push(&mut self, trust: &Trust) {
        self.queue.push_back(Arc::downgrade(&trust.0));
    }

    /// Tells the oldest connection still without a key to close; false if there is none.
    pub(crate) fn evict_oldest(&mut self) -> bool {
        while let Some(weak) = self.queue.pop_front() {
            if let Some(standing) = weak.upgrade() {
                if !standing.authenticated.load(Ordering::Relaxed) {
                    standing.evict.notify_one();
                    return true;
                }
            }
        }
        false
    }

    /// Forgets connections that closed or showed a key, once the queue holds more than
    /// `bound` (so it stays within a small multiple of the keyless limit).
    pub(crate) fn prune(&mut self, bound: usize) {
        if self.queue.len() > bound {
            self.queue.retain(|weak| {
                weak.upgrade()
                    .is_some_and(|s| !s.authenticated.load(Ordering::Relaxed))
            });
        }
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        if !*self.authenticated.get_mut() {
            self.unauthenticated.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_counts_as_unauthenticated_until_a_key_is_shown_or_it_closes() {
        let count = Arc::new(AtomicUsize::new(0));
        let first = Trust::new(count.clone());
        let second = Trust::new(count.clone());
        assert_eq!(count.load(Ordering::Relaxed), 2);
        let request_copy = first.clone();
        request_copy.authenticated();
        request_copy.authenticated();
        assert!(first.is_authenticated());
        assert_eq!(
            count.load(Ordering::Relaxed),
            1,
            "once, however many requests"
        );
        drop((first, request_copy));
        assert_eq!(count.load(Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }
}
