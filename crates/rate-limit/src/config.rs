//! Configuration: plain data, validated once when the layer is built.

use bulwark_core::clock::nanos;
use bulwark_core::config;
use std::time::Duration;

pub use bulwark_core::ConfigError;

/// The most tokens a clone may lease at once.
pub const MAX_LEASE: u32 = 1_024;

/// How old a leased token's time slot may be when it is spent (see [`RateLimitConfig`]).
pub const LEASE_SLACK: Duration = Duration::from_millis(1);

/// The most time a full bucket may hold (burst x period / rate): the bucket's times are kept
/// as nanoseconds in a `u64`, so cap them far beyond any sane setting.
const MAX_TOLERANCE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The settings of a rate limiter, with the defaults below. Build one with
/// [`RateLimitLayer::builder`](crate::RateLimitLayer::builder), or deserialize it (feature
/// `serde`) and pass it to [`Builder::from_config`](crate::Builder::from_config).
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | `rate` | 100 | tokens added per `period`: a placeholder, set your own |
/// | `period` | 1 s | the unit a rate is usually said in |
/// | `burst` | `rate` | a full bucket holds one period's tokens, so a client idle for a while may send a period's worth at once |
/// | `max_wait` | none | fail at once: a caller that cannot send now wants to know when it can, not to queue behind the limiter |
/// | `mode` | fail fast | a caller waiting on a response wants an error now, with the time to retry |
/// | `lease` | 1 (off) | exact by default; raise it for a high rate shared by many threads (see below) |
///
/// Tokens are added one at a time, every `period / rate` (rounded up to a whole nanosecond,
/// so never faster than configured), not `rate` at once at each period's start.
///
/// **Leases.** Every admitted call moves the one shared atomic, so threads sharing a limiter
/// contend on it. With `lease` above 1, a clone of the service that has called before takes up
/// to `lease` tokens at once (never more than an eighth of those in the bucket, so a nearly
/// empty bucket is still shared one token at a time), and spends them without touching the
/// shared state. A leased token is spent only while its time slot is at most [`LEASE_SLACK`]
/// old, and the tokens a clone still holds go back to the bucket when it is dropped if no one
/// took a token since (otherwise they are lost: fewer calls admitted, never more). The price is
/// precision: over any stretch of time `t` the limiter then admits at most
/// `burst + 1 + rate x (t + LEASE_SLACK) / period` calls, rather than
/// `burst + rate x t / period`.
///
/// ```
/// use bulwark_rate_limit::{Mode, RateLimitConfig};
/// use std::time::Duration;
///
/// let config = RateLimitConfig::default();
/// assert_eq!((config.rate, config.period), (100, Duration::from_secs(1)));
/// assert_eq!(config.burst(), 100);
/// assert_eq!(config.mode, Mode::FailFast);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// The name reported in events, logs, metric labels and errors.
    pub name: String,
    /// Tokens added per `period` (at least 1, at most one per nanosecond of `period`).
    pub rate: u32,
    /// The period `rate` is counted over (above zero, at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub period: Duration,
    /// The most tokens the bucket holds, so the most calls admitted at once after a quiet
    /// spell (`None`: `rate`, one period's worth).
    pub burst: Option<u32>,
    /// In fail-fast mode, how long a caller may wait in `poll_ready` for a token before it is
    /// refused (`None`, or zero: refused at once). At most a day; not with readiness mode.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait: Option<Duration>,
    /// What `poll_ready` and `call` do when no token is left.
    pub mode: Mode,
    /// The most tokens a clone takes at once and spends on its own (1: none, each call takes
    /// its token from the shared bucket); at most [`MAX_LEASE`].
    pub lease: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            name: String::from("rate-limit"),
            rate: 100,
            period: Duration::from_secs(1),
            burst: None,
            max_wait: None,
            mode: Mode::FailFast,
            lease: 1,
        }
    }
}

/// What the limiter does when the bucket is empty: in fail-fast mode `poll_ready` waits for a
/// token if one comes within `max_wait` (reserving it, so later callers queue behind),
/// otherwise it is ready at once and `call` fails at once with
/// [`RateLimited`](crate::RateLimited), which says when a token will be there; in readiness
/// mode `poll_ready` stays `Pending` until a token is there, reserving nothing while it waits,
/// and wakes itself when the next one is due (the layer asking is told why:
/// [`Hint::RateLimited`](bulwark_core::hint::Hint::RateLimited)).
pub use bulwark_core::Mode;

impl RateLimitConfig {
    /// The bucket's size: `burst`, or `rate` when it is not set.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// Checks every setting; the first one out of range is returned as a typed error naming
    /// it.
    ///
    /// ```
    /// use bulwark_rate_limit::{ConfigError, RateLimitConfig};
    ///
    /// let mut config = RateLimitConfig::default();
    /// config.rate = 0;
    /// assert_eq!(config.validate(), Err(ConfigError::Zero { setting: "rate" }));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bucket().map(|_| ())
    }

    /// The validated bucket: nanoseconds per token and the tolerance (burst x interval).
    pub(crate) fn bucket(&self) -> Result<Bucket, ConfigError> {
        let bucket = Bucket::new(self.rate, self.period, self.burst())?;
        config::nonzero("lease", self.lease.into())?;
        config::at_most("lease", self.lease.into(), MAX_LEASE.into())?;
        if let Some(wait) = self.max_wait {
            config::at_most_a_day("max_wait", wait)?;
            if self.mode == Mode::Readiness && !wait.is_zero() {
                return Err(ConfigError::Invalid {
                    setting: "max_wait",
                    reason: "cannot be set in readiness mode, which waits for as long as it takes",
                });
            }
        }
        Ok(bucket)
    }
}

/// A bucket's shape in nanoseconds: one token every `interval`, at most `tolerance /
/// interval` (the burst) at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bucket {
    pub(crate) interval: u64,
    pub(crate) tolerance: u64,
}

impl Bucket {
    /// Validates `rate` per `period` and `burst`, naming the setting out of range.
    pub(crate) fn new(rate: u32, period: Duration, burst: u32) -> Result<Self, ConfigError> {
        config::nonzero("rate", rate.into())?;
        config::positive_within_a_day("period", period)?;
        config::nonzero("burst", burst.into())?;
        let period = nanos(period);
        if period < u64::from(rate) {
            return Err(ConfigError::Invalid {
                setting: "rate",
                reason: "must be at most one token per nanosecond of `period`",
            });
        }
        let interval = period.div_ceil(u64::from(rate));
        let tolerance = interval.saturating_mul(burst.into());
        if tolerance > nanos(MAX_TOLERANCE) {
            return Err(ConfigError::Invalid {
                setting: "burst",
                reason: "must not hold more than 100 years of tokens (burst x period / rate)",
            });
        }
        Ok(Bucket {
            interval,
            tolerance,
        })
    }
}
