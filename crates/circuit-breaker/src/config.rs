//! Configuration: plain data, validated once when the layer is built.

use crate::window::MAX_COUNT_WINDOW;
use std::fmt;
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

/// What the breaker does while it refuses calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Mode {
    /// `poll_ready` is ready at once and `call` fails at once with [`Open`](crate::Open),
    /// which carries how long until the next probe. For a caller that waits on the answer.
    #[default]
    FailFast,
    /// `poll_ready` stays `Pending` while the breaker refuses calls and wakes the task itself
    /// when the open period ends (or a probe slot frees up), with no request needed to wake
    /// it. For balancers and failover sets, which skip a target that is not ready.
    Readiness,
}

/// A setting that is out of range. The message names the setting.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A share that must lie in `(0, 1]` (or `[0, 1]` for jitter) does not.
    RateOutOfRange {
        /// The setting, e.g. `failure_rate`.
        setting: &'static str,
        /// The value given.
        value: f64,
    },
    /// A count or duration that must be positive is zero.
    Zero {
        /// The setting.
        setting: &'static str,
    },
    /// A count is above its maximum.
    TooLarge {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// `min_calls` is larger than the count window, so the breaker could never trip on a rate.
    MinCallsExceedWindow {
        /// `min_calls`.
        min_calls: u32,
        /// The count window's size.
        window: u32,
    },
    /// Some other rule between settings is broken; the message says which.
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ConfigError {
    /// The name of the setting at fault (as in the serde form, dotted for nested settings).
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::RateOutOfRange { setting, .. }
            | ConfigError::Zero { setting }
            | ConfigError::TooLarge { setting, .. }
            | ConfigError::Invalid { setting, .. } => setting,
            ConfigError::MinCallsExceedWindow { .. } => "min_calls",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::RateOutOfRange { setting, value } => {
                let range = if *setting == "open.jitter" {
                    "[0, 1]"
                } else {
                    "(0, 1]"
                };
                write!(
                    f,
                    "circuit breaker `{setting}` must be in {range}, got {value}"
                )
            }
            ConfigError::Zero { setting } => {
                write!(f, "circuit breaker `{setting}` must be greater than zero")
            }
            ConfigError::TooLarge {
                setting,
                value,
                max,
            } => write!(
                f,
                "circuit breaker `{setting}` is {value}, at most {max} is allowed"
            ),
            ConfigError::MinCallsExceedWindow { min_calls, window } => write!(
                f,
                "circuit breaker `min_calls` ({min_calls}) is larger than the count window \
                 ({window}), so the failure rate could never trip it"
            ),
            ConfigError::Invalid { setting, reason } => {
                write!(f, "circuit breaker `{setting}`: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn check_rate(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::RateOutOfRange { setting, value })
    }
}

fn check_nonzero(setting: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::Zero { setting })
    } else {
        Ok(())
    }
}

/// Durations are kept as nanoseconds on the breaker's clock; cap them far beyond any sane
/// setting (about 292 years would overflow u64).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn check_not_huge(setting: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d > MAX_DURATION {
        Err(ConfigError::TooLarge {
            setting,
            value: d.as_secs(),
            max: MAX_DURATION.as_secs(),
        })
    } else {
        Ok(())
    }
}

impl CircuitBreakerConfig {
    /// Checks every setting; the first one out of range is returned as a typed error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_rate("failure_rate", self.failure_rate)?;
        match self.window {
            Window::Count { size } => {
                if size == 0 {
                    return Err(ConfigError::Zero {
                        setting: "window.size",
                    });
                }
                if size > MAX_COUNT_WINDOW {
                    return Err(ConfigError::TooLarge {
                        setting: "window.size",
                        value: size.into(),
                        max: MAX_COUNT_WINDOW.into(),
                    });
                }
                if self.min_calls > size {
                    return Err(ConfigError::MinCallsExceedWindow {
                        min_calls: self.min_calls,
                        window: size,
                    });
                }
            }
            Window::Time { length, buckets } => {
                check_nonzero("window.length", length)?;
                check_not_huge("window.length", length)?;
                if buckets == 0 {
                    return Err(ConfigError::Zero {
                        setting: "window.buckets",
                    });
                }
                if buckets > MAX_BUCKETS {
                    return Err(ConfigError::TooLarge {
                        setting: "window.buckets",
                        value: buckets.into(),
                        max: MAX_BUCKETS.into(),
                    });
                }
                if length.as_nanos() < u128::from(buckets) * 1_000_000 {
                    return Err(ConfigError::Invalid {
                        setting: "window.buckets",
                        reason: "each bucket must span at least 1 ms (length / buckets)",
                    });
                }
            }
        }
        if self.min_calls == 0 {
            return Err(ConfigError::Zero {
                setting: "min_calls",
            });
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::Zero {
                setting: "consecutive_failures",
            });
        }
        if let Some(slow) = &self.slow_calls {
            check_nonzero("slow_calls.threshold", slow.threshold)?;
            check_not_huge("slow_calls.threshold", slow.threshold)?;
            check_rate("slow_calls.rate", slow.rate)?;
        }
        match self.open {
            OpenPeriod::Fixed(d) => {
                check_nonzero("open", d)?;
                check_not_huge("open", d)?;
            }
            OpenPeriod::Exponential {
                initial,
                multiplier,
                max,
                jitter,
            } => {
                check_nonzero("open.initial", initial)?;
                check_not_huge("open.max", max)?;
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return Err(ConfigError::Invalid {
                        setting: "open.multiplier",
                        reason: "must be a finite number of at least 1",
                    });
                }
                if max < initial {
                    return Err(ConfigError::Invalid {
                        setting: "open.max",
                        reason: "must not be below open.initial",
                    });
                }
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(ConfigError::RateOutOfRange {
                        setting: "open.jitter",
                        value: jitter,
                    });
                }
            }
        }
        if self.half_open_probes == 0 {
            return Err(ConfigError::Zero {
                setting: "half_open_probes",
            });
        }
        if self.half_open_probes > MAX_HALF_OPEN_PROBES {
            return Err(ConfigError::TooLarge {
                setting: "half_open_probes",
                value: self.half_open_probes.into(),
                max: MAX_HALF_OPEN_PROBES.into(),
            });
        }
        if let Some(wait) = self.max_wait_in_half_open {
            check_nonzero("max_wait_in_half_open", wait)?;
            check_not_huge("max_wait_in_half_open", wait)?;
        }
        Ok(())
    }
}
