//! One budget for the request-body bytes every request in flight holds in memory. Metered
//! endpoints read their bodies whole (to route by model and count tokens); without a budget,
//! many clients sending large bodies slowly could make the gateway hold any amount. A body
//! takes its declared length up front (or its pieces as they arrive when it declares none) and
//! gives it back when its request ends; a body that does not fit is refused at once with a
//! retryable 503, and memory stays under the budget whatever clients send.
//!
//! A leaf: shared state that imports nothing from the layers that use it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The gateway's request-body budget.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    limit: usize,
    held: AtomicUsize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limit,
            held: AtomicUsize::new(0),
        })
    }

    /// Bytes held now, by every request.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// An empty hold on this budget, to grow as a body arrives.
    pub(crate) fn hold(self: &Arc<Self>) -> BodyBytes {
        BodyBytes {
            budget: Some(self.clone()),
            bytes: 0,
        }
    }

    fn take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes one request holds of the budget; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct BodyBytes {
    budget: Option<Arc<BodyBudget>>,
    bytes: usize,
}

/// The budget has no room for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverBudget;

impl BodyBytes {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `more` bytes besides those held, or none of them when they do not fit.
    pub(crate) fn grow(&mut self, more: usize) -> Result<(), OverBudget> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if more == 0 {
            return Ok(());
        }
        if budget.take(more) {
            self.bytes += more;
            Ok(())
        } else {
            Err(OverBudget)
        }
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_fit_until_the_budget_is_spent_and_give_it_back_when_dropped() {
        let budget = BodyBudget::new(100);
        let mut a = budget.hold();
        assert_eq!(a.grow(60), Ok(()));
        let mut b = budget.hold();
        assert_eq!(b.grow(50), Err(OverBudget), "60 + 50 is over 100");
        assert_eq!(b.bytes(), 0, "a refused growth holds nothing");
        assert_eq!(b.grow(40), Ok(()));
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        assert_eq!(b.grow(60), Ok(()));
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn racing_threads_never_hold_more_than_the_budget() {
        let budget = BodyBudget::new(1_000);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let budget = budget.clone();
                let peak = peak.clone();
                scope.spawn(move || {
                    for _ in 0..10_000 {
                        let mut hold = budget.hold();
                        if hold.grow(300).is_ok() {
                            peak.fetch_max(budget.held(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 1_000);
        assert_eq!(budget.held(), 0);
    }
}
