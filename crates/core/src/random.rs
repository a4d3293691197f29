//! Randomness that tests can seed.
//!
//! Jitter (of a breaker's open period, of a retry's backoff) needs random numbers, and a test
//! needs them to be the same on every run. Layers take an `Arc<dyn RandomSource>`; the default
//! is a [`SplitMix64`] seeded from the process's hasher keys, and a test passes
//! `SplitMix64::new(42)`.
//!
//! [`SplitMix64`] is a counter-based generator: one atomic add per number, so one source can be
//! shared by every clone of a layer on every thread without a lock. It is not cryptographic.
//!
//! ```
//! use bulwark_core::{RandomSource, SplitMix64};
//!
//! let a = SplitMix64::new(7);
//! let b = SplitMix64::new(7);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let x = a.next_f64();
//! assert!((0.0..1.0).contains(&x));
//! ```

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A thread-safe source of uniformly distributed random numbers.
pub trait RandomSource: Send + Sync + 'static {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;

    /// A number uniformly distributed in `[0, 1)`.
    fn next_f64(&self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: a small, fast, seedable generator whose state is one atomic counter.
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    /// A generator that yields the same sequence for the same seed.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded differently in every process (from the standard library's random
    /// hasher keys).
    pub fn from_entropy() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6275_6c77_6172_6b21);
        Self::new(h.finish())
    }
}

impl Default for SplitMix64 {
    fn default() -> Self {
        Self::from_entropy()
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat_and_differ_by_seed() {
        let a: Vec<u64> = {
            let r = SplitMix64::new(1);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let r = SplitMix64::new(1);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c = SplitMix64::new(2).next_u64();
        assert_eq!(a, b);
        assert_ne!(a[0], c);
    }

    #[test]
    fn floats_are_roughly_uniform() {
        let r = SplitMix64::new(99);
        let n = 100_000;
        let mut buckets = [0u32; 10];
        for _ in 0..n {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            buckets[(x * 10.0) as usize] += 1;
        }
        // Each decile should hold 10% +- 1% of 100k draws (about 10 standard deviations).
        for b in buckets {
            assert!((9_000..=11_000).contains(&b), "{buckets:?}");
        }
    }
}
