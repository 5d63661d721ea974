//! Whether a client connection has shown a valid key yet. Connections that have not (a client
//! that only connects, sends heads slowly, or fails authentication) are counted, and the accept
//! loop serves at most `max_unauthenticated` of them at once: whatever they do, they cannot take
//! more than that share of the connection slots from clients with keys. A request that fails
//! authentication on such a connection closes it. A leaf of `serve`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A connection's standing, shared by its requests (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct Trust(Arc<Standing>);

#[derive(Debug)]
struct Standing {
    authenticated: AtomicBool,
    /// Connections of the server not authenticated yet.
    unauthenticated: Arc<AtomicUsize>,
}

impl Trust {
    /// A new connection, counted among the unauthenticated ones.
    pub(crate) fn new(unauthenticated: Arc<AtomicUsize>) -> Trust {
        unauthenticated.fetch_add(1, Ordering::Relaxed);
        Trust(Arc::new(Standing {
            authenticated: AtomicBool::new(false),
            unauthenticated,
        }))
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
