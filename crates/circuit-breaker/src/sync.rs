//! The synchronisation primitives of the breaker core: std's, or loom's under
//! `--cfg bulwark_loom` so the model checker can explore every interleaving.

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
#[cfg(bulwark_loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
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

/// One turn of a short spin-wait (the model checker needs to be told to switch threads).
pub(crate) fn spin() {
    #[cfg(bulwark_loom)]
    loom::thread::yield_now();
    #[cfg(not(bulwark_loom))]
    std::thread::yield_now();
}
