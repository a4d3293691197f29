//! The atomics of the lock-free parts of this crate (the sliding-window snapshots and the
//! retry budget): std's, or loom's under `--cfg bulwark_loom` so the model checker can explore
//! every interleaving. Normal builds use std's types directly (no wrapper, no cost).

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
