//! The synchronisation primitives of the balancer's shared state: std's, or loom's under
//! `--cfg bulwark_loom` so the model checker can explore every interleaving. Normal builds use
//! std's types directly (no wrapper, no cost).

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(bulwark_loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::Mutex;

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data consistent
/// at each step, so a panic elsewhere cannot leave it half-written.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
