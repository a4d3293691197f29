//! Sliding windows of call outcomes, updated without locks.
//!
//! Both windows keep their totals in one `AtomicU64` holding several counters, so a reader
//! always sees the calls, failures and slow calls of one consistent moment, and an update is a
//! single `fetch_add` of a packed delta. Because the packed delta is added with wrapping
//! arithmetic, the word is always the exact sum of every delta ever added, whatever the order
//! the threads added them in: no update is lost, even when one thread's subtraction lands
//! before another's matching addition (the decode below reads such a transient negative
//! correctly).

use crate::sync::{AtomicU64, AtomicU8, Ordering};
use bulwark_core::rolling::SlotSnapshots;

/// Outcome codes stored in a count-window slot.
const OCCUPIED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// Width of one packed field in the count window's totals (three fields in 63 bits).
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// The largest count window: each packed field must hold ±window without overflow.
pub(crate) const MAX_COUNT_WINDOW: u32 = 1_000_000;

/// Totals of a window at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Stats {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Stats {
    pub(crate) fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }

    pub(crate) fn slow_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.slow as f64 / self.calls as f64
        }
    }
}

/// One recorded outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

impl Sample {
    fn code(self) -> u8 {
        OCCUPIED | if self.failed { FAILED } else { 0 } | if self.slow { SLOW } else { 0 }
    }
}

#[inline]
fn sign_extend(field: u64) -> i64 {
    let shift = 64 - FIELD_BITS;
    ((field << shift) as i64) >> shift
}

/// The packed contribution of one slot code: calls | failures << 21 | slow << 42.
fn encode(code: u8) -> u64 {
    if code & OCCUPIED == 0 {
        return 0;
    }
    1 | u64::from(code & FAILED != 0) << FIELD_BITS
        | u64::from(code & SLOW != 0) << (2 * FIELD_BITS)
}

/// Decodes three signed 21-bit fields; negatives (only ever transient) read as zero.
#[inline]
fn decode(word: u64) -> Stats {
    let calls = sign_extend(word & FIELD_MASK);
    let rest = (word as i64).wrapping_sub(calls) >> FIELD_BITS;
    let failures = sign_extend(rest as u64 & FIELD_MASK);
    let slow = rest.wrapping_sub(failures) >> FIELD_BITS;
    Stats {
        calls: calls.max(0) as u64,
        failures: failures.max(0) as u64,
        slow: slow.max(0) as u64,
    }
}

/// The last `size` calls, as a ring of one-byte slots.
///
/// Recording takes a position with `fetch_add`, swaps the outcome into its slot (getting the
/// outcome it evicts, so each outcome enters and leaves exactly once) and adds the packed
/// difference to the totals.
///
/// The success path skips all of that when it can: when the window is full and holds no
/// failure and no slow call, a plain success would evict a plain success, which changes
/// nothing. So a healthy breaker's closed path only reads shared memory, and threads sharing
/// one breaker do not fight over a cache line. The skipped success is ordered before any
/// failure recorded concurrently, which is a valid order for concurrent calls.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    totals: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            totals: AtomicU64::new(0),
        }
    }

    #[inline]
    fn size(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Whether the window is full and holds neither a failure nor a slow call, so a plain
    /// success would change nothing.
    #[inline]
    pub(crate) fn is_full_and_clean(&self) -> bool {
        // Full and clean is `size` calls, no failure, no slow call: exactly the packed word
        // `size` (the calls field is the low one).
        self.totals.load(Ordering::Acquire) == self.size()
    }

    /// Records a sample; returns the totals just after it.
    pub(crate) fn record(&self, sample: Sample) -> Stats {
        let pos = self.next.fetch_add(1, Ordering::Relaxed) % self.size();
        let code = sample.code();
        let old = self.slots[pos as usize].swap(code, Ordering::AcqRel);
        let delta = encode(code).wrapping_sub(encode(old));
        let before = self.totals.fetch_add(delta, Ordering::AcqRel);
        decode(before.wrapping_add(delta))
    }

    /// The totals recounted from the slots (for the loom model: must equal `stats` whenever
    /// no recording is in progress).
    #[cfg(test)]
    pub(crate) fn recount(&self) -> Stats {
        let mut s = Stats::default();
        for slot in self.slots.iter() {
            let code = slot.load(Ordering::Acquire);
            if code & OCCUPIED != 0 {
                s.calls += 1;
                s.failures += u64::from(code & FAILED != 0);
                s.slow += u64::from(code & SLOW != 0);
            }
        }
        s
    }

    pub(crate) fn stats(&self) -> Stats {
        decode(self.totals.load(Ordering::Acquire))
    }

    pub(crate) fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        self.next.store(0, Ordering::Relaxed);
        self.totals.store(0, Ordering::Release);
    }
}

/// The calls of the last `buckets` time buckets (the current, partial one included).
///
/// Outcomes are added to monotonic cumulative counters (calls and failures packed in one word,
/// slow calls in another); a [`SlotSnapshots`] ring keeps them as they were at the first call
/// of each bucket, so the window's totals are the counters now minus the snapshot of the
/// oldest bucket still inside the window. Subtraction is wrapping, so the counters may wrap
/// freely as long as one window holds fewer than 2^32 calls.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    cumulative: AtomicU64,
    cumulative_slow: AtomicU64,
    snapshots: SlotSnapshots<2>,
}

impl TimeWindow {
    pub(crate) fn new(bucket_nanos: u64, buckets: u32) -> Self {
        TimeWindow {
            bucket_nanos: bucket_nanos.max(1),
            cumulative: AtomicU64::new(0),
            cumulative_slow: AtomicU64::new(0),
            snapshots: SlotSnapshots::new(buckets as usize),
        }
    }

    fn epoch(&self, now: u64) -> u64 {
        now / self.bucket_nanos
    }

    pub(crate) fn record(&self, sample: Sample, now: u64) -> Stats {
        self.snapshots.take(self.epoch(now), || {
            [
                self.cumulative.load(Ordering::SeqCst),
                self.cumulative_slow.load(Ordering::SeqCst),
            ]
        });
        self.cumulative
            .fetch_add(1 | u64::from(sample.failed) << 32, Ordering::SeqCst);
        if sample.slow {
            self.cumulative_slow.fetch_add(1, Ordering::SeqCst);
        }
        self.stats(now)
    }

    pub(crate) fn stats(&self, now: u64) -> Stats {
        let Some([snap, snap_slow]) = self.snapshots.oldest(self.epoch(now)) else {
            return Stats::default();
        };
        let diff = self.cumulative.load(Ordering::SeqCst).wrapping_sub(snap);
        Stats {
            calls: diff & 0xFFFF_FFFF,
            failures: diff >> 32,
            slow: self
                .cumulative_slow
                .load(Ordering::SeqCst)
                .wrapping_sub(snap_slow),
        }
    }

    pub(crate) fn reset(&self) {
        self.snapshots.clear();
    }
}

/// Either window.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records a sample at `now` (nanoseconds on the breaker's clock; unused by count windows).
    pub(crate) fn record(&self, sample: Sample, now: u64) -> Stats {
        match self {
            Window::Count(w) => w.record(sample),
            Window::Time(w) => w.record(sample, now),
        }
    }

    /// Whether a plain success can be skipped (see [`CountWindow`]); never for time windows,
    /// where every call counts towards the rate's denominator.
    #[inline]
    pub(crate) fn success_is_noop(&self) -> bool {
        match self {
            Window::Count(w) => w.is_full_and_clean(),
            Window::Time(_) => false,
        }
    }

    pub(crate) fn stats(&self, now: u64) -> Stats {
        match self {
            Window::Count(w) => w.stats(),
            Window::Time(w) => w.stats(now),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }

    #[inline]
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    const F: Sample = Sample {
        failed: true,
        slow: false,
    };
    const S: Sample = Sample {
        failed: false,
        slow: false,
    };

    #[test]
    fn packed_totals_survive_transient_negatives() {
        // A subtraction that lands before its addition must not corrupt the other fields.
        let w = AtomicU64::new(0);
        w.fetch_add(
            0u64.wrapping_sub(encode(OCCUPIED | FAILED)),
            Ordering::Relaxed,
        );
        let s = decode(w.load(Ordering::Relaxed));
        assert_eq!(s, Stats::default()); // negatives read as zero
        w.fetch_add(encode(OCCUPIED | FAILED | SLOW), Ordering::Relaxed);
        w.fetch_add(encode(OCCUPIED | FAILED), Ordering::Relaxed);
        let s = decode(w.load(Ordering::Relaxed));
        assert_eq!((s.calls, s.failures, s.slow), (1, 1, 1));
    }

    #[test]
    fn count_window_slides() {
        let w = CountWindow::new(4);
        for _ in 0..4 {
            w.record(F);
        }
        assert_eq!(w.stats().failures, 4);
        // Four successes push every failure out.
        for i in 1..=4 {
            assert!(!w.is_full_and_clean());
            let s = w.record(S);
            assert_eq!((s.calls, s.failures), (4, 4 - i));
        }
        // Now the window is full and clean: a plain success may be skipped.
        assert!(w.is_full_and_clean());
        assert_eq!(
            w.stats(),
            Stats {
                calls: 4,
                failures: 0,
                slow: 0
            }
        );
        // A failure replaces one success; it leaves again after four more calls.
        assert_eq!(w.record(F).failures, 1);
        for _ in 0..3 {
            assert_eq!(w.record(S).failures, 1);
        }
        assert_eq!(w.record(S).failures, 0);
        assert_eq!(w.recount(), w.stats());
    }

    #[test]
    fn time_window_ages_out_buckets() {
        let second = 1_000_000_000;
        let w = TimeWindow::new(second, 10); // 10 s in 1 s buckets
        for t in 0..5 {
            w.record(F, t * second);
        }
        assert_eq!(w.stats(4 * second).failures, 5);
        // At t = 10 s the bucket of t = 0 has left the window.
        let s = w.record(S, 10 * second);
        assert_eq!((s.calls, s.failures), (5, 4));
        // Long after, nothing is left.
        assert_eq!(w.stats(100 * second), Stats::default());
        let s = w.record(S, 100 * second);
        assert_eq!((s.calls, s.failures), (1, 0));
        w.reset();
        assert_eq!(w.stats(100 * second), Stats::default());
    }
}
