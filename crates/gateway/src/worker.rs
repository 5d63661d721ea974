//! Which serving thread runs the current code (see `serve::workers`). A leaf, so that the
//! upstream client can keep idle connections per thread without knowing how threads are run.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// 1 to N on the serving threads, 0 on any other.
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Marks the current thread as serving thread `index` (from 1).
pub(crate) fn set(index: usize) {
    WORKER.with(|worker| worker.set(index));
}
