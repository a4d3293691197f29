//! Configuration: plain data, validated once when the layer is built.

use crate::window::MAX_COUNT_WINDOW;
use bulwark_core::config;
use std::time::Duration;

/// The largest number of half-open probes (the probe counters are 16 bits wide).
pub const MAX_HALF_OPEN_PROBES: u32 = u16::MAX as u32;
/// The largest number of buckets in a time window.
pub const MAX_BUCKETS: u32 = 10_000;

/// The settings of a circuit breaker, with the defaults below. Build one with
/// [`CircuitBreakerLayer::builder`](crate::CircuitBreakerLayer::builder), or deserialize it
/// (feature `serde`) and pass it to [`Builder::from_config`](crate::Builder::from_config).
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | `failure_rate` | 0.5 | half the calls failing is a backend in trouble, not noise |
/// | `window` | count, 100 calls | enough calls for a stable rate, few enough to react within seconds at modest traffic |
/// | `min_calls` | 20 | no verdict from a handful of calls: 1 failure in 2 calls is not 50% of anything |
/// | `consecutive_failures` | off | the rate decides; turn on to trip faster on a hard outage at low traffic |
/// | `slow_calls` | off | latency is a timeout's business unless you ask for it |
/// | `open` | fixed 30 s | long enough for a restart or failover to finish, short enough to notice recovery |
/// | `half_open_probes` | 1 | one call is enough to learn whether the backend is back, and risks the least |
/// | `max_wait_in_half_open` | none | a probe ends when its call ends; bound it with a timeout layer |
/// | `mode` | fail fast | a caller waiting on a response wants an error now, with the time to retry |
///
/// ```
/// use bulwark_circuit_breaker::{CircuitBreakerConfig, Window};
///
/// let config = CircuitBreakerConfig::default();
/// assert_eq!(config.failure_rate, 0.5);
/// assert_eq!(config.window, Window::Count { size: 100 });
/// assert_eq!(config.min_calls, 20);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// The name reported in events, logs and metric labels.
    pub name: String,
    /// Trip when failures / calls in the window reaches this share (in `(0, 1]`).
    pub failure_rate: f64,
    /// The sliding window the rates are computed over.
    pub window: Window,
    /// The window must hold at least this many calls before a rate can trip the breaker.
    pub min_calls: u32,
    /// Also trip after this many failures in a row, whatever the window says.
    pub consecutive_failures: Option<u32>,
    /// Also trip on the share of slow calls.
    pub slow_calls: Option<SlowCalls>,
    /// How long the breaker stays open before admitting a probe.
    pub open: OpenPeriod,
    /// How many probe calls the half-open state admits; all must succeed to close.
    pub half_open_probes: u32,
    /// Re-open if the probes have not decided within this time.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait_in_half_open: Option<Duration>,
    /// What `poll_ready` and `call` do while the breaker refuses calls.
    pub mode: Mode,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            name: String::from("circuit-breaker"),
            failure_rate: 0.5,
            window: Window::Count { size: 100 },
            min_calls: 20,
            consecutive_failures: None,
            slow_calls: None,
            open: OpenPeriod::Fixed(Duration::from_secs(30)),
            half_open_probes: 1,
            max_wait_in_half_open: None,
            mode: Mode::FailFast,
        }
    }
}

/// The sliding window of outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)
)]
pub enum Window {
    /// The last `size` calls: each new outcome pushes the oldest out.
    Count {
        /// Number of calls (1..=1,000,000).
        size: u32,
    },
    /// The calls of the last `length`, in `buckets` buckets of `length / buckets` each; a
    /// bucket leaves the window whole when it gets old.
    Time {
        /// How far back the window reaches.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        length: Duration,
        /// How many buckets it is kept in (1..=10,000).
        buckets: u32,
    },
}

/// How long the breaker stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        untagged,
        deny_unknown_fields,
        expecting = "a duration (\"30s\") or a table of `initial`, `multiplier`, `max` and `jitter`"
    )
)]
pub enum OpenPeriod {
    /// Always the same time (`open = "30s"`).
    Fixed(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
    /// Longer on each trip that follows a failed probe, reset when the breaker closes:
    /// trip `n` opens for `min(initial * multiplier^(n-1), max)`, then moved by up to
    /// `jitter` (a share of it) either way, and never above `max`.
    Exponential {
        /// The first open period.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        initial: Duration,
        /// Growth per consecutive trip (>= 1).
        multiplier: f64,
        /// The cap.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        max: Duration,
        /// Random spread, a share in `[0, 1]` (0 for none).
        #[cfg_attr(feature = "serde", serde(default))]
        jitter: f64,
    },
}

/// The slow-call rule.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct SlowCalls {
    /// A call that takes longer than this is slow (whatever its outcome).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub threshold: Duration,
    /// Trip when slow calls / calls in the window reaches this share (in `(0, 1]`).
    pub rate: f64,
}

/// What the breaker does while it refuses calls: in fail-fast mode `call` fails at once with
/// [`Open`](crate::Open), which carries how long until the next probe; in readiness mode
/// `poll_ready` stays `Pending` and wakes the task itself when the open period ends (or a probe
/// slot frees up), with no request needed to wake it.
pub use bulwark_core::Mode;

pub use bulwark_core::ConfigError;

/// Durations are kept as nanoseconds on the breaker's clock; cap them far beyond any sane
/// setting (about 292 years would overflow u64).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration above zero and not beyond [`MAX_DURATION`].
fn check_duration(setting: &'static str, d: Duration) -> Result<(), ConfigError> {
    config::positive_duration(setting, d)?;
    config::at_most(setting, d.as_secs(), MAX_DURATION.as_secs())
}

impl CircuitBreakerConfig {
    /// Checks every setting; the first one out of range is returned as a typed error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::share("failure_rate", self.failure_rate)?;
        match self.window {
            Window::Count { size } => {
                config::nonzero("window.size", size.into())?;
                config::at_most("window.size", size.into(), MAX_COUNT_WINDOW.into())?;
                if self.min_calls > size {
                    return Err(ConfigError::MinCallsExceedWindow {
                        min_calls: self.min_calls,
                        window: size,
                    });
                }
            }
            Window::Time { length, buckets } => {
                check_duration("window.length", length)?;
                config::nonzero("window.buckets", buckets.into())?;
                config::at_most("window.buckets", buckets.into(), MAX_BUCKETS.into())?;
                if length.as_nanos() < u128::from(buckets) * 1_000_000 {
                    return Err(ConfigError::Invalid {
                        setting: "window.buckets",
                        reason: "must leave each bucket at least 1 ms (length / buckets)",
                    });
                }
            }
        }
        config::nonzero("min_calls", self.min_calls.into())?;
        if let Some(failures) = self.consecutive_failures {
            config::nonzero("consecutive_failures", failures.into())?;
        }
        if let Some(slow) = &self.slow_calls {
            check_duration("slow_calls.threshold", slow.threshold)?;
            config::share("slow_calls.rate", slow.rate)?;
        }
        match self.open {
            OpenPeriod::Fixed(d) => check_duration("open", d)?,
            OpenPeriod::Exponential {
                initial,
                multiplier,
                max,
                jitter,
            } => {
                config::positive_duration("open.initial", initial)?;
                config::at_most("open.max", max.as_secs(), MAX_DURATION.as_secs())?;
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return Err(ConfigError::Invalid {
                        setting: "open.multiplier",
                        reason: "must be a finite number of at least 1",
                    });
                }
                if max < initial {
                    return Err(ConfigError::Invalid {
                        setting: "open.max",
                        reason: "must not be below `open.initial`",
                    });
                }
                config::fraction("open.jitter", jitter)?;
            }
        }
        config::nonzero("half_open_probes", self.half_open_probes.into())?;
        config::at_most(
            "half_open_probes",
            self.half_open_probes.into(),
            MAX_HALF_OPEN_PROBES.into(),
        )?;
        if let Some(wait) = self.max_wait_in_half_open {
            check_duration("max_wait_in_half_open", wait)?;
        }
        Ok(())
    }
}
