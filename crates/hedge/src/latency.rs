//! The latencies the layer saw, as a lock-free rolling histogram, and the percentile of them
//! it hedges at.
//!
//! Each answer's latency goes into one of [`BUCKETS`] log-linear buckets (eight per power of
//! two of microseconds, so a bucket is at most an eighth of its value wide) with one relaxed
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

/// Buckets: values below 8 µs exactly, then 8 per power of two up to 2^36 µs (19 hours).
pub(crate) const BUCKETS: usize = 8 + 8 * 33;

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
    if micros < 8 {
        return micros as usize;
    }
    let e = 63 - u64::from(micros.leading_zeros()); // >= 3
    let index = 8 * (e - 2) + ((micros >> (e - 3)) & 7);
    (index as usize).min(BUCKETS - 1)
}

/// The upper edge of bucket `index`, in nanoseconds.
pub(crate) fn upper(index: usize) -> u64 {
    if index < 8 {
        return (index as u64 + 1) * 1_000;
    }
    let e = (index / 8 + 2) as u64;
    let sub = (index % 8) as u64;
    let width = 1_000u64 << (e - 3);
    (8 + sub + 1) * width
}

/// The width of bucket `index`, in nanoseconds.
pub(crate) fn width(index: usize) -> u64 {
    if index < 8 {
        return 1_000;
    }
    1_000u64 << ((index / 8 + 2) as u64 - 3)
}

/// The latency a percentile falling in bucket `index` is taken as: the bucket's middle, at
/// most a sixteenth of the value off either way. (Its upper edge would hedge up to an eighth
/// late every time: on a timer counting whole milliseconds, a p95 of exactly 6 ms then waits
/// until 7 ms.)
pub(crate) fn estimate(index: usize) -> u64 {
    upper(index) - width(index) / 2
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

    /// Counts an attempt first polled at `started` and cancelled now (another answered first):
    /// it would have taken at least this long. When that is at least the delay hedged at, it
    /// is recorded as a latency: the attempts cut short are the slow ones, and leaving them
    /// out would drag the percentile down, and so send ever more hedges. A shorter one (a
    /// hedge that lost) says nothing and is not counted.
    #[cold]
    pub(crate) fn record_cancelled(&self, started: u64) {
        let took = self.clock.now().saturating_sub(started);
        if took >= self.cached.load(Ordering::Relaxed) {
            self.record(started);
        }
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
            estimate(at)
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
    fn a_value_is_below_its_buckets_upper_edge_by_at_most_an_eighth() {
        let values = [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            100,
            999,
            1_000,
            12_345,
            1 << 30,
        ];
        for micros in values {
            let b = bucket(micros);
            let top = upper(b);
            let nanos = micros * 1_000;
            assert!(top > nanos, "{micros}: bucket {b}, upper {top}");
            let over = (top - nanos) as f64 / nanos.max(1_000) as f64;
            assert!(
                over <= 0.125 + 1e-9 || micros < 8,
                "{micros}: bucket {b}, upper {top}"
            );
            if b > 0 {
                assert!(upper(b - 1) <= nanos, "{micros}: below bucket {b}");
            }
        }
        assert!((1..BUCKETS).all(|i| upper(i) > upper(i - 1)));
        assert!((1..BUCKETS).all(|i| upper(i - 1) + width(i) == upper(i)));
        assert_eq!(estimate(bucket(6_000)), 5_888_000);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_attempt_counts_only_when_it_ran_past_the_delay() {
        let l = Latencies::new(0.5, 2, Duration::from_secs(10));
        for _ in 0..4 {
            let started = l.now();
            tokio::time::advance(Duration::from_millis(10)).await;
            l.record(started);
        }
        let p50 = l.delay().unwrap();
        assert!(p50 > Duration::from_millis(9) && p50 < Duration::from_millis(11));
        // A hedge that lost after 2 ms says nothing.
        let started = l.now();
        tokio::time::advance(Duration::from_millis(2)).await;
        l.record_cancelled(started);
        assert_eq!(l.seen.load(Ordering::Relaxed), 4);
        // A slow attempt cut off after 100 ms took at least that: counted.
        let started = l.now();
        tokio::time::advance(Duration::from_millis(100)).await;
        for _ in 0..6 {
            l.record_cancelled(started);
        }
        assert_eq!(l.seen.load(Ordering::Relaxed), 10);
        // The percentile follows at the next tenth of the window: 5 answers of 10 ms, 6 of
        // at least 100 ms.
        tokio::time::advance(Duration::from_secs(1)).await;
        let started = l.now();
        tokio::time::advance(Duration::from_millis(10)).await;
        l.record(started);
        assert!(
            l.delay().unwrap() > Duration::from_millis(90),
            "{:?}",
            l.delay()
        );
    }
}
