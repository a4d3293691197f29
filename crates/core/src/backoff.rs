//! Backoff: how long to wait before a retry.
//!
//! Retrying at once hammers a backend that is already struggling, and retrying on a fixed
//! schedule makes every client that failed together retry together, in waves. An exponential
//! backoff waits longer after each failure, up to a cap; jitter spreads the waits of many
//! clients so their retries stop arriving in lockstep.
//!
//! [`ExponentialBackoff`] computes the un-jittered wait for retry number `n` (1 = the first
//! retry) as
//!
//! ```text
//! d = min(base * factor^(n - 1), max)
//! ```
//!
//! and then applies one [`Jitter`]:
//!
//! | jitter | wait | pick it |
//! | --- | --- | --- |
//! | [`Full`](Jitter::Full) | uniform in `[0, d]` | the usual choice: it breaks up synchronized retries best for the least total wait (this is the default) |
//! | [`Equal`](Jitter::Equal) | `d/2` + uniform in `[0, d/2]` | when a retry must never come (almost) immediately, at the cost of less spreading |
//! | [`Decorrelated`](Jitter::Decorrelated) | `min(max, uniform in [base, 3 * previous])` | AWS's "decorrelated jitter": each wait grows from the previous one rather than from the retry number, which spreads many clients further apart |
//! | [`Additive`](Jitter::Additive) | `d` + uniform in `[0, extra]` | Google-style truncated exponential backoff ([`ExponentialBackoff::google_style`]): a small random offset on top of the full wait |
//! | [`None`](Jitter::None) | exactly `d` | tests and single clients; many clients with no jitter retry in waves |
//!
//! The arithmetic never panics and never overflows: every retry number from 0 (treated like 1)
//! to `u32::MAX` and every factor up to `f64::MAX` gives a wait no larger than
//! [`ExponentialBackoff::ceiling`]. Randomness comes from an injectable [`RandomSource`], so a
//! test seeds it with [`SplitMix64`](crate::SplitMix64).
//!
//! ```
//! use std::time::Duration;
//! use bulwark_core::{Backoff, ExponentialBackoff, Jitter, SplitMix64};
//!
//! let random = SplitMix64::new(42);
//!
//! // Without jitter the waits double from `base` and stop at `max`.
//! let plain = ExponentialBackoff::new(
//!     Duration::from_millis(100),
//!     2.0,
//!     Duration::from_secs(1),
//!     Jitter::None,
//! )?;
//! let waits: Vec<Duration> = (1..=6)
//!     .map(|retry| plain.delay(retry, Duration::ZERO, &random))
//!     .collect();
//! assert_eq!(waits, [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis));
//!
//! // Google-style: min(2^n s + r, 64 s + r), r uniform in [0, 100 ms].
//! let google = ExponentialBackoff::google_style();
//! let mut previous = Duration::ZERO;
//! for retry in 1..=10 {
//!     let wait = google.delay(retry, previous, &random);
//!     assert!(wait <= google.ceiling());
//!     previous = wait;
//! }
//! let first = google.delay(1, Duration::ZERO, &random);
//! assert!(first >= Duration::from_secs(1) && first <= Duration::from_millis(1100));
//! # Ok::<(), bulwark_core::BackoffError>(())
//! ```
//!
//! With the `serde` feature, an [`ExponentialBackoff`] deserializes from a table whose keys are
//! all optional (missing keys take the [defaults](ExponentialBackoff::default)):
//!
//! ```toml
//! base = "1s"
//! factor = 2.0
//! max = "64s"
//! jitter = { additive = "100ms" }   # or "none", "full", "equal", "decorrelated"
//! ```

use crate::clock::nanos;
use crate::random::RandomSource;
use std::fmt;
use std::time::Duration;

/// The longest duration any backoff setting may have: 100 years (of 365 days). Far beyond any
/// sane wait, and small enough that a wait plus its jitter, in nanoseconds, always fits a `u64`.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// How long to wait before a retry.
pub trait Backoff: Send + Sync {
    /// The wait before retry number `retry` (1 = the first retry, after the first attempt failed).
    /// `previous` is the wait this backoff returned for the previous retry (`Duration::ZERO` before the first).
    fn delay(&self, retry: u32, previous: Duration, random: &dyn RandomSource) -> Duration;
}

/// How an [`ExponentialBackoff`] randomizes its waits, where `d = min(base * factor^(retry-1), max)`.
///
/// See the [module documentation](self) for when to pick which. With the `serde` feature a
/// jitter deserializes from `"none"`, `"full"`, `"equal"`, `"decorrelated"` or
/// `{ additive = "100ms" }`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// `d/2` plus uniform in `[0, d/2]`.
    Equal,
    /// `min(max, uniform in [base, 3 * previous])`, with `previous = base` before the first
    /// retry (AWS's "decorrelated jitter"). It grows from the previous wait and ignores `d`
    /// (and so `factor`). A `previous` below `base / 3` draws from `[base, base]`.
    Decorrelated,
    /// `d` plus uniform in `[0, extra]`: `min(d + r, max + r)`, since `d <= max`
    /// already. `r` is drawn at nanosecond resolution. `extra` may not exceed `max`.
    Additive(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
}

/// Exponential backoff with a cap and a [`Jitter`]: the wait before retry `n` is
/// `min(base * factor^(n-1), max)`, jittered.
///
/// Build one with [`new`](Self::new) (validated), [`google_style`](Self::google_style) or
/// [`default`](Self::default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    base: Duration,
    factor: f64,
    max: Duration,
    jitter: Jitter,
}

impl ExponentialBackoff {
    /// No wait at all: every resend goes out at once (to another endpoint, when a balancer or
    /// failover below avoids the ones tried). For resends bounded by something other than
    /// time, such as one try per replica.
    ///
    /// ```
    /// use bulwark_core::backoff::{Backoff, ExponentialBackoff};
    /// use bulwark_core::SplitMix64;
    /// use std::time::Duration;
    /// let none = ExponentialBackoff::none();
    /// assert_eq!(none.delay(3, Duration::ZERO, &SplitMix64::new(1)), Duration::ZERO);
    /// assert!(none.is_none());
    /// ```
    pub const fn none() -> Self {
        ExponentialBackoff {
            base: Duration::ZERO,
            factor: 1.0,
            max: Duration::ZERO,
            jitter: Jitter::None,
        }
    }

    /// Checks the settings as [`ExponentialBackoff::new`] does ([`ExponentialBackoff::none`]
    /// passes): for a backoff deserialized or copied from elsewhere.
    ///
    /// # Errors
    ///
    /// The [`BackoffError`] `new` would return.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if *self == Self::none() {
            return Ok(());
        }
        Self::new(self.base, self.factor, self.max, self.jitter).map(|_| ())
    }

    /// Whether this backoff never waits ([`ExponentialBackoff::none`]).
    pub fn is_none(&self) -> bool {
        self.max.is_zero() && !matches!(self.jitter, Jitter::Additive(d) if !d.is_zero())
    }

    /// A backoff waiting `base` before the first retry, `factor` times longer before each next
    /// one, never longer than `max` (plus an [`Additive`](Jitter::Additive) jitter).
    ///
    /// # Errors
    ///
    /// A [`BackoffError`] naming the first setting out of range: `base` zero or above 100 years;
    /// `factor` not finite or below 1; `max` below `base` or above 100 years; an additive
    /// `jitter` above `max`.
    pub fn new(
        base: Duration,
        factor: f64,
        max: Duration,
        jitter: Jitter,
    ) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        check_not_too_long("base", base)?;
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(BackoffError::InvalidFactor { factor });
        }
        check_not_too_long("max", max)?;
        if max < base {
            return Err(BackoffError::MaxBelowBase { max, base });
        }
        if let Jitter::Additive(extra) = jitter {
            if extra > max {
                return Err(BackoffError::JitterAboveMax { extra, max });
            }
        }
        Ok(ExponentialBackoff {
            base,
            factor,
            max,
            jitter,
        })
    }

    /// Google-style truncated exponential backoff: base 1 s, factor 2, max 64 s,
    /// `Additive(100 ms)` jitter.
    ///
    /// That is `min(2^n s + r, 64 s + r)` with `n = 0` for the first retry and `r` a fresh
    /// random wait in `[0, 100 ms]` each retry: slow to start, for a backend that needs
    /// seconds rather than milliseconds to recover.
    pub fn google_style() -> Self {
        ExponentialBackoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(64),
            jitter: Jitter::Additive(Duration::from_millis(100)),
        }
    }

    /// The wait before the first retry (before jitter).
    pub fn base(&self) -> Duration {
        self.base
    }

    /// How many times longer each wait is than the one before (before the cap and jitter).
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The cap on the un-jittered wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// How the waits are randomized.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The largest wait this backoff can return: max + the additive jitter (or max).
    pub fn ceiling(&self) -> Duration {
        match self.jitter {
            Jitter::Additive(extra) => self.max.saturating_add(extra),
            _ => self.max,
        }
    }

    /// `d = min(base * factor^(retry-1), max)` in nanoseconds. Computed in `f64`: the product
    /// is at least `base` (the factor is at least 1) and at worst `+inf`, never NaN, and the
    /// float-to-int cast saturates, so no retry number and no factor can overflow or panic.
    fn capped_nanos(&self, retry: u32) -> u64 {
        let max = nanos(self.max);
        let exponent = f64::from(retry.saturating_sub(1));
        let grown = nanos(self.base) as f64 * self.factor.powf(exponent);
        round_to_nanos(grown).min(max)
    }
}

/// The defaults: base 100 ms, factor 2.0, max 64 s,
/// [`Jitter::Full`].
///
/// * 100 ms: a backend that dropped one request is usually back well within a user's patience,
///   so the first retry should come quickly.
/// * Factor 2: doubling reaches the cap in a handful of retries while still giving a
///   struggling backend room quickly.
/// * 64 s: waiting longer than a minute between tries is rarely useful to
///   anyone waiting on the answer.
/// * Full jitter: of the jitters, it breaks up retries that were synchronized by a common
///   failure best, for the least total wait.
impl Default for ExponentialBackoff {
    fn default() -> Self {
        ExponentialBackoff {
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(64),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff for ExponentialBackoff {
    /// The wait before retry `retry` (0 is treated like 1), never above
    /// [`ceiling`](ExponentialBackoff::ceiling). A random source returning values outside
    /// `[0, 1)` (or NaN) is clamped, never trusted.
    fn delay(&self, retry: u32, previous: Duration, random: &dyn RandomSource) -> Duration {
        let nanos = match self.jitter {
            Jitter::None => self.capped_nanos(retry),
            Jitter::Full => scale(self.capped_nanos(retry), random.next_f64()),
            Jitter::Equal => {
                let d = self.capped_nanos(retry);
                let half = d / 2;
                half + scale(d - half, random.next_f64())
            }
            Jitter::Decorrelated => {
                let base = nanos(self.base);
                let previous = if previous.is_zero() {
                    base
                } else {
                    nanos(previous)
                };
                let upper = previous.saturating_mul(3).max(base);
                (base + scale(upper - base, random.next_f64())).min(nanos(self.max))
            }
            Jitter::Additive(extra) => self
                .capped_nanos(retry)
                .saturating_add(scale(nanos(extra), random.next_f64())),
        };
        Duration::from_nanos(nanos)
    }
}

/// A factor spreading a period by up to `fraction` of it either way, uniformly:
/// `1 + fraction * (2r - 1)` for `r` uniform in `[0, 1)`, never below zero.
///
/// Unlike a retry's [`Jitter`], which only shortens or lengthens a wait from its exponential
/// value, this spreads a period around its value: a breaker's open period, a health check's
/// interval. Many instances started together then drift apart instead of acting in step.
///
/// ```
/// use bulwark_core::backoff::spread_factor;
/// use bulwark_core::SplitMix64;
/// use std::time::Duration;
///
/// let random = SplitMix64::new(7);
/// // Every 10 s, give or take 20%.
/// let f = spread_factor(0.2, &random);
/// assert!((0.8..1.2).contains(&f));
/// let interval = Duration::from_secs(10).mul_f64(f);
/// assert!(interval >= Duration::from_secs(8) && interval < Duration::from_secs(12));
/// assert_eq!(spread_factor(0.0, &random), 1.0);
/// ```
#[inline]
pub fn spread_factor(fraction: f64, random: &dyn RandomSource) -> f64 {
    (1.0 + fraction * (2.0 * random.next_f64() - 1.0)).max(0.0)
}

/// Rounds a non-negative float of nanoseconds to an integer; `as` saturates (`+inf` becomes
/// `u64::MAX`, negatives and NaN become 0), so this cannot panic.
fn round_to_nanos(x: f64) -> u64 {
    x.round() as u64
}

/// `r * span`, rounded and kept within `[0, span]` whatever `r` is.
fn scale(span: u64, r: f64) -> u64 {
    round_to_nanos(span as f64 * r).min(span)
}

fn check_not_too_long(setting: &'static str, value: Duration) -> Result<(), BackoffError> {
    if value > MAX_DURATION {
        Err(BackoffError::TooLong { setting, value })
    } else {
        Ok(())
    }
}

/// A backoff setting out of range, found when the backoff is built.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BackoffError {
    /// `base` is zero: every wait would be zero, which is no backoff at all.
    ZeroBase,
    /// `factor` is below 1 (waits would shrink) or not a finite number.
    InvalidFactor {
        /// The factor given.
        factor: f64,
    },
    /// `max` is below `base`, so the cap would undercut the first wait.
    MaxBelowBase {
        /// The cap given.
        max: Duration,
        /// The base given.
        base: Duration,
    },
    /// A duration (`base` or `max`) is longer than 100 years.
    TooLong {
        /// The setting: `"base"` or `"max"`.
        setting: &'static str,
        /// The duration given.
        value: Duration,
    },
    /// An [`Additive`](Jitter::Additive) jitter is larger than `max`: the random part would
    /// outweigh the backoff itself, most likely a unit mistake.
    JitterAboveMax {
        /// The additive jitter given.
        extra: Duration,
        /// The cap given.
        max: Duration,
    },
}

impl BackoffError {
    /// The name of the setting at fault, as in the serde form: `"base"`, `"factor"`, `"max"` or
    /// `"jitter"`.
    pub fn setting(&self) -> &'static str {
        match self {
            BackoffError::ZeroBase => "base",
            BackoffError::InvalidFactor { .. } => "factor",
            BackoffError::MaxBelowBase { .. } => "max",
            BackoffError::TooLong { setting, .. } => setting,
            BackoffError::JitterAboveMax { .. } => "jitter",
        }
    }
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackoffError::ZeroBase => f.write_str("backoff `base` must be greater than zero"),
            BackoffError::InvalidFactor { factor } => write!(
                f,
                "backoff `factor` ({factor}) must be a finite number of at least 1"
            ),
            BackoffError::MaxBelowBase { max, base } => {
                write!(f, "backoff `max` ({max:?}) is below `base` ({base:?})")
            }
            BackoffError::TooLong { setting, value } => write!(
                f,
                "backoff `{setting}` ({value:?}) is longer than the limit of 100 years \
                 ({MAX_DURATION:?})"
            ),
            BackoffError::JitterAboveMax { extra, max } => write!(
                f,
                "backoff `jitter` (additive {extra:?}) is above `max` ({max:?})"
            ),
        }
    }
}

impl std::error::Error for BackoffError {}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
mod serde_impl {
    use super::{ExponentialBackoff, Jitter};
    use std::time::Duration;

    /// The serde form before validation: every key optional, unknown keys rejected.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct RawBackoff {
        #[serde(with = "humantime_serde")]
        base: Duration,
        factor: f64,
        #[serde(with = "humantime_serde")]
        max: Duration,
        jitter: Jitter,
    }

    impl Default for RawBackoff {
        fn default() -> Self {
            ExponentialBackoff::default().into()
        }
    }

    impl From<ExponentialBackoff> for RawBackoff {
        fn from(b: ExponentialBackoff) -> Self {
            RawBackoff {
                base: b.base,
                factor: b.factor,
                max: b.max,
                jitter: b.jitter,
            }
        }
    }

    /// Deserializes from a table (`base`, `factor`, `max`, `jitter`, all optional, durations in
    /// human form like `"100ms"`); the values are validated by [`ExponentialBackoff::new`], so
    /// an invalid combination is a deserialization error naming the setting.
    impl<'de> serde::Deserialize<'de> for ExponentialBackoff {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw = RawBackoff::deserialize(d)?;
            ExponentialBackoff::new(raw.base, raw.factor, raw.max, raw.jitter)
                .map_err(serde::de::Error::custom)
        }
    }

    /// Serializes to the same table form it deserializes from.
    impl serde::Serialize for ExponentialBackoff {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            RawBackoff::from(*self).serialize(s)
        }
    }
}
