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
        unit(self.next_u64())
    }
}

/// `[0, 1)` from 64 random bits: the top 53 fill an f64 mantissa exactly.
#[inline]
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// SplitMix64's output function: a bijection that scrambles a counter into random bits.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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

    /// The next 64 random bits through `&mut`: the same sequence as
    /// [`next_u64`](RandomSource::next_u64), with no atomic operation, for a generator one
    /// owner holds (a service's own, on its hot path).
    #[inline]
    pub fn next_u64_mut(&mut self) -> u64 {
        let state = self.state.get_mut();
        *state = state.wrapping_add(GOLDEN_GAMMA);
        mix(*state)
    }

    /// A number uniformly distributed in `[0, 1)`, through `&mut` (see
    /// [`next_u64_mut`](Self::next_u64_mut)).
    #[inline]
    pub fn next_f64_mut(&mut self) -> f64 {
        unit(self.next_u64_mut())
    }

    /// A generator for stream `k` split off this one (one for each clone of a service, say):
    /// the same `self` and `k` give the same stream, other `k`s other streams. This one does
    /// not advance.
    ///
    /// ```
    /// use bulwark_core::{RandomSource, SplitMix64};
    ///
    /// let parent = SplitMix64::new(7);
    /// let (mut a, mut b) = (parent.split(1), parent.split(2));
    /// assert_eq!(a.next_u64_mut(), parent.split(1).next_u64());
    /// assert_ne!(a.next_u64_mut(), b.next_u64_mut());
    /// ```
    pub fn split(&self, k: u64) -> SplitMix64 {
        let state = self.state.load(Ordering::Relaxed);
        SplitMix64::new(mix(
            state ^ mix(k.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA))
        ))
    }
}

impl Default for SplitMix64 {
    fn default() -> Self {
        Self::from_entropy()
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&self) -> u64 {
        mix(self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA))
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
    fn the_owned_path_draws_the_shared_sequence() {
        let shared = SplitMix64::new(5);
        let mut owned = SplitMix64::new(5);
        for _ in 0..8 {
            assert_eq!(shared.next_u64(), owned.next_u64_mut());
        }
        assert_eq!(shared.next_f64(), owned.next_f64_mut());
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
