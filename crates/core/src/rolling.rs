//! Windows that slide by time slot over monotonic counters, without locks.
//!
//! Internal plumbing of the tower-bulwark layer crates, hidden from the documentation: not part
//! of the public API, and free to change in any release.
//!
//! A layer that needs "how many X in the last N seconds" (a circuit breaker's time window, the
//! retry budget) keeps monotonic cumulative counters, which any thread can bump with one
//! atomic add, plus a [`SlotSnapshots`]: a ring with one snapshot of the counters per time
//! slot. The first event of each slot stores the counters as they are; the window's count is
//! the counters now minus the snapshot of the oldest slot still inside the window. Counters
//! may wrap: subtract with `wrapping_sub`.
//!
//! A snapshot is taken by whichever thread first sees a new slot; events racing with it may
//! land on either side of the slot boundary, never lost and never counted twice. While it is
//! being written, [`SlotSnapshots::window_start`] says so ([`Start::Pending`]) for a caller
//! that needs an exact bound.
//!
//! ```
//! use bulwark_core::rolling::SlotSnapshots;
//!
//! let ring: SlotSnapshots<1> = SlotSnapshots::new(10);
//! let mut events = 0u64;
//! for slot in 0..15u64 {
//!     ring.take(slot, || [events]);
//!     events += 3; // three events in every slot
//! }
//! // At slot 14 the window holds slots 5..=14: 10 slots of 3 events.
//! let [start] = ring.oldest(14).unwrap();
//! assert_eq!(events.wrapping_sub(start), 30);
//! ```

use crate::sync::{AtomicU64, Ordering};

const NO_EPOCH: u64 = u64::MAX;

/// Where a window starts (see [`SlotSnapshots::window_start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<const K: usize> {
    /// The snapshot of the oldest slot inside the window.
    Snapshot([u64; K]),
    /// No slot inside the window has a snapshot, and none is being taken.
    Empty,
    /// A snapshot that may belong to the window is being taken by another thread.
    Pending,
}

/// One snapshot of `K` counters per time slot, for the last `slots` slots.
#[derive(Debug)]
pub struct SlotSnapshots<const K: usize> {
    /// The newest slot that has a snapshot.
    last: AtomicU64,
    ring: Box<[Snapshot<K>]>,
}

#[derive(Debug)]
struct Snapshot<const K: usize> {
    /// The slot this snapshot belongs to; `NO_EPOCH` while empty or being written.
    epoch: AtomicU64,
    values: [AtomicU64; K],
}

impl<const K: usize> SlotSnapshots<K> {
    /// A ring for a window of `slots` slots (at least one).
    pub fn new(slots: usize) -> Self {
        SlotSnapshots {
            last: AtomicU64::new(NO_EPOCH),
            ring: (0..slots.max(1))
                .map(|_| Snapshot {
                    epoch: AtomicU64::new(NO_EPOCH),
                    values: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
        }
    }

    /// How many slots the window spans.
    pub fn slots(&self) -> usize {
        self.ring.len()
    }

    /// Stores `read()` as the snapshot of slot `epoch`, unless that slot (or a newer one)
    /// already has one. Cheap when it has: one load.
    #[inline]
    pub fn take(&self, epoch: u64, read: impl FnOnce() -> [u64; K]) {
        let last = self.last.load(Ordering::Acquire);
        if last != NO_EPOCH && last >= epoch {
            return;
        }
        self.take_slow(epoch, last, read);
    }

    #[cold]
    fn take_slow(&self, epoch: u64, mut last: u64, read: impl FnOnce() -> [u64; K]) {
        // The counters are read before the slot is claimed: an event of this slot comes
        // after its thread's `take`, which claimed the slot or saw it claimed, so it is never
        // inside the snapshot (read after the claim, an event counted meanwhile by a thread
        // that saw the claim would be in it, and so in no window at all).
        let values = read();
        loop {
            if last != NO_EPOCH && last >= epoch {
                return;
            }
            match self
                .last
                .compare_exchange_weak(last, epoch, Ordering::SeqCst, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(seen) => last = seen,
            }
        }
        // This thread won the slot: publish its snapshot (seqlock: mark, write, publish).
        let snap = &self.ring[(epoch % self.ring.len() as u64) as usize];
        snap.epoch.store(NO_EPOCH, Ordering::SeqCst);
        for (cell, value) in snap.values.iter().zip(values) {
            cell.store(value, Ordering::SeqCst);
        }
        snap.epoch.store(epoch, Ordering::SeqCst);
    }

    /// The snapshot of the oldest slot inside the window that ends with slot `epoch`, or
    /// `None` when no slot inside it has one.
    pub fn oldest(&self, epoch: u64) -> Option<[u64; K]> {
        let oldest_allowed = epoch.saturating_sub(self.ring.len() as u64 - 1);
        let mut best: Option<(u64, [u64; K])> = None;
        for snap in self.ring.iter() {
            let e = snap.epoch.load(Ordering::SeqCst);
            if e == NO_EPOCH || e < oldest_allowed || e > epoch {
                continue;
            }
            let values = std::array::from_fn(|i| snap.values[i].load(Ordering::SeqCst));
            if snap.epoch.load(Ordering::SeqCst) != e {
                continue; // rewritten while read: it now belongs to a newer slot
            }
            if best.is_none_or(|(b, _)| e < b) {
                best = Some((e, values));
            }
        }
        best.map(|(_, values)| values)
    }

    /// Where the window that ends with slot `epoch` starts: like [`SlotSnapshots::oldest`],
    /// but telling a window with no snapshot apart from one whose snapshot is being taken
    /// right now by another thread (its values not yet known). A caller that needs a bound,
    /// as the retry budget does, must not count from the counters as they are now in the
    /// second case: the snapshot being taken may hold less than that, and the events between
    /// would be counted by no one.
    pub fn window_start(&self, epoch: u64) -> Start<K> {
        // `last` first: a snapshot claimed by then and published by the time of the scan
        // below is found by it.
        let last = self.last.load(Ordering::SeqCst);
        if let Some(values) = self.oldest(epoch) {
            return Start::Snapshot(values);
        }
        let oldest_allowed = epoch.saturating_sub(self.ring.len() as u64 - 1);
        if last == NO_EPOCH || last < oldest_allowed {
            Start::Empty
        } else {
            // Claimed inside the window but not published yet, or claimed for a slot after
            // `epoch` (this caller's clock is behind), when one inside may still be pending.
            Start::Pending
        }
    }

    /// Forgets every snapshot: the window starts again from the next [`SlotSnapshots::take`].
    pub fn clear(&self) {
        self.last.store(NO_EPOCH, Ordering::SeqCst);
        for snap in self.ring.iter() {
            snap.epoch.store(NO_EPOCH, Ordering::SeqCst);
        }
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn old_slots_leave_the_window_and_gaps_are_fine() {
        let ring: SlotSnapshots<2> = SlotSnapshots::new(4);
        ring.take(0, || [0, 0]);
        ring.take(0, || panic!("slot 0 already has its snapshot"));
        ring.take(2, || [10, 1]);
        assert_eq!(ring.oldest(3), Some([0, 0]));
        assert_eq!(
            ring.oldest(4),
            Some([10, 1]),
            "slot 0 left the 4-slot window"
        );
        assert_eq!(ring.oldest(6), None, "nothing inside slots 3..=6");
        ring.take(1, || panic!("an older slot never overwrites a newer one"));
        ring.clear();
        assert_eq!(ring.oldest(2), None);
        ring.take(2, || [5, 5]);
        assert_eq!(ring.oldest(2), Some([5, 5]));
    }
}
