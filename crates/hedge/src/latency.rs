//! The latencies the layer saw, as a lock-free rolling histogram, and the percentile of them
//! it hedges at.
//!
//! Each answer's latency goes into one of [`BUCKETS`] log-linear buckets (four per power of
//! two of microseconds, so a bucket is at most a quarter of its value wide) with one relaxed
//! atomic add (an answer ready at its first poll reads no clock: it took no time). The window
//! slides as the retry budget's does (core's `rolling` snapshots of the
//! cumulative counts, one per tenth of the window): the counts in the window are the counts
//! now less the oldest snapshot inside it. The percentile is computed from them now and then
//! (every [`RECOMPUTE`] answers, and when a new tenth of the window starts), not per request:
//! a request reads one atomic.

use bulwark_core::clock::Clock;
use bulwark_core::rolling::SlotSnapshots;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets: values below 4 µs exactly, then 4 per power of two up to 2^36 µs (19 hours).
pub(crate) const BUCKETS: usize = 4 + 4 * 34;

/// The percentile is recomputed every this many answers (and when a new tenth of the window
/// starts).
pub(crate) const RECOMPUTE: u64 = 256;

/// Tenths of the window kept as snapshots.
const SLOTS: u64 = 10;

/// No percentile yet (fewer answers in the window than the minimum).
const NONE: u64 = u64::MAX;

/// The bucket of a latency of `micros` microseconds.
#[inline]
pub(crate) fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let e = 63 - u64::from(micros.leading_zeros()); // >= 2
    let index = 4 * (e - 1) + ((micros >> (e - 2)) & 3);
    (index as usize).min(BUCKETS - 1)
}

/// The middle of bucket `index`, in nanoseconds.
pub(crate) fn middle(index: usize) -> u64 {
    if index < 4 {
        return index as u64 * 1_000 + 500;
    }
    let e = (index / 4 + 1) as u64;
    let sub = (index % 4) as u64;
    let width = 1_000u64 << (e - 2);
    (4 + sub) * width + width / 2
}

/// A rolling histogram of latencies and its cached percentile.
pub(crate) struct Latencies {
    percentile: f64,
    min_samples: u64,
    slot_nanos: u64,
    clock: Clock,
    counts: [AtomicU64; BUCKETS],
    seen: AtomicU64,
    snapshots: SlotSnapshots<BUCKETS>,
    /// The latest tenth of the window a recording saw (for answers recorded without a clock
    /// read).
    epoch: AtomicU64,
    /// The percentile, in nanoseconds, as last computed (`NONE`: too few answers).
    cached: AtomicU64,
}

impl Latencies {
    pub(crate) fn new(percentile: f64, min_samples: u32, window: Duration) -> Self {
        Latencies {
            percentile,
            min_samples: u64::from(min_samples),
            slot_nanos: (bulwark_core::clock::nanos(window) / SLOTS).max(1),
            clock: Clock::new(),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            seen: AtomicU64::new(0),
            snapshots: SlotSnapshots::new(SLOTS as usize),
            epoch: AtomicU64::new(0),
            cached: AtomicU64::new(NONE),
        }
    }

    /// Now, on the histogram's clock (nanoseconds): what an attempt's start is kept as.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Records an answer to an attempt whose first poll was at `started` (from
    /// [`Latencies::now`]).
    #[inline]
    pub(crate) fn record(&self, started: u64) {
        let now = self.clock.now();
        let epoch = now / self.slot_nanos;
        let mut fresh = false;
        self.snapshots.take(epoch, || {
            fresh = true;
            std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
        });
        self.epoch.fetch_max(epoch, Ordering::Relaxed);
        self.count(bucket(now.saturating_sub(started) / 1_000), epoch, fresh);
    }

    /// Records an answer that was ready at its attempt's first poll: no time passed, and no
    /// clock is read (the window moves on with the answers that took time).
    #[inline]
    pub(crate) fn record_instant(&self) {
        self.count(0, self.epoch.load(Ordering::Relaxed), false);
    }

    #[inline]
    fn count(&self, bucket: usize, epoch: u64, fresh: bool) {
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if fresh || seen % RECOMPUTE == 0 || seen <= self.min_samples {
            self.recompute(epoch);
        }
    }

    /// The latency percentile to hedge at, once the window holds enough answers.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.cached.load(Ordering::Relaxed) {
            NONE => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    #[cold]
    fn recompute(&self, epoch: u64) {
        let start = self.snapshots.oldest(epoch).unwrap_or([0; BUCKETS]);
        let mut window = [0u64; BUCKETS];
        let mut total = 0u64;
        for (i, w) in window.iter_mut().enumerate() {
            *w = self.counts[i]
                .load(Ordering::Relaxed)
                .wrapping_sub(start[i]);
            total = total.wrapping_add(*w);
        }
        let value = if total < self.min_samples || total == 0 {
            NONE
        } else {
            let rank = ((self.percentile * total as f64).ceil() as u64).clamp(1, total);
            let mut below = 0u64;
            let mut at = BUCKETS - 1;
            for (i, w) in window.iter().enumerate() {
                below += w;
                if below >= rank {
                    at = i;
                    break;
                }
            }
            middle(at)
        };
        self.cached.store(value, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latencies")
            .field("percentile", &self.percentile)
            .field("min_samples", &self.min_samples)
            .field("delay", &self.delay())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_at_most_a_quarter_wide_and_their_middles_fall_inside() {
        for micros in [
            0u64,
            1,
            3,
            4,
            7,
            8,
            9,
            15,
            16,
            100,
            999,
            1_000,
            12_345,
            1 << 30,
        ] {
            let b = bucket(micros);
            let m = middle(b);
            let nanos = micros * 1_000;
            let err = m.abs_diff(nanos) as f64 / nanos.max(1) as f64;
            assert!(
                err <= 0.125 + 1e-9 || micros < 8,
                "{micros}: bucket {b}, middle {m}"
            );
            assert!(m >= nanos && m < nanos + 1_000 || micros >= 8);
        }
        assert!((1..BUCKETS).all(|i| middle(i) > middle(i - 1)));
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }
}
