//! Configuration: plain data, validated once when the layer is built.

use bulwark_core::config;
use std::time::Duration;

pub use bulwark_core::ConfigError;

/// The most attempts a request may get, the first included: gRPC's hedging design (A6) caps
/// `maxAttempts` at 5 too, and the attempts in flight are kept inline in the response future.
pub const MAX_ATTEMPTS: u32 = 5;

/// The settings of a hedging layer.
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | `max_attempts` | 2 (the first included: one hedge) | one hedge takes most of the tail off; more mostly add load |
/// | `delay` | none | a fixed wait before a hedge; with `percentile` set, the wait until the window holds `min_samples` answers |
/// | `percentile` | 0.95 | hedge a request that has taken longer than 95% of answers: about 5% of requests get a hedge |
/// | `min_samples` | 100 | no percentile from a handful of answers |
/// | `window` | 10 s | how far back latencies and the hedge budget count |
/// | `max_extra_load` | 0.1 | hedges are at most 10% of requests (Finagle's `maxExtraLoad`), so a slow backend never gets its load doubled |
/// | `min_hedges_per_sec` | 1 | a caller with little traffic can still hedge now and then |
/// | `max_pushback` | 30 s | the longest server pushback honoured; a longer one stops the hedges |
/// | `inherit_deadline` | true | no hedge is sent once the deadline its server received ([`bulwark_core::deadline::current`], set at the server's edge by `bulwark_retry::InboundDeadlineLayer`) has passed: its caller has given up by then |
///
/// ```
/// use bulwark_hedge::HedgeConfig;
/// let config = HedgeConfig::default();
/// assert_eq!(config.max_attempts, 2);
/// assert_eq!(config.percentile, Some(0.95));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct HedgeConfig {
    /// The name reported in events, logs and metric labels.
    pub name: String,
    /// Attempts per request, the first included (1 turns hedging off; at most
    /// [`MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// A fixed wait before each hedge, from the previous attempt's send. With `percentile`
    /// set, the wait used until the window holds `min_samples` answers (none: no hedge until
    /// then).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub delay: Option<Duration>,
    /// Hedge after this percentile (in `(0, 1]`: 0.95 is p95) of the latencies of the answers
    /// the layer saw in the window.
    pub percentile: Option<f64>,
    /// Answers the window must hold before the percentile is used.
    pub min_samples: u32,
    /// How far back latencies and the hedge budget count (10 ms to a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// Hedges allowed per request in the window, in `[0, 1]` (Finagle's `maxExtraLoad`).
    pub max_extra_load: f64,
    /// Hedges allowed per second whatever the traffic.
    pub min_hedges_per_sec: u32,
    /// The longest server pushback (`Retry-After`, `grpc-retry-pushback-ms`) honoured before
    /// the next hedge; a longer one stops the hedges.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_pushback: Duration,
    /// Whether the deadline in scope ([`bulwark_core::deadline::current`]) stops the hedges:
    /// a hedge not due before it is not sent (reported as refused for `deadline`), and a
    /// request with no attempt out answers with its last answer at that deadline rather
    /// than wait for a hedge.
    pub inherit_deadline: bool,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            name: String::from("hedge"),
            max_attempts: 2,
            delay: None,
            percentile: Some(0.95),
            min_samples: 100,
            window: Duration::from_secs(10),
            max_extra_load: 0.1,
            min_hedges_per_sec: 1,
            max_pushback: Duration::from_secs(30),
            inherit_deadline: true,
        }
    }
}

impl HedgeConfig {
    /// Checks every setting; the first one out of range is returned as a typed error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(ConfigError::MaxAttempts {
                value: self.max_attempts,
                max: MAX_ATTEMPTS,
            });
        }
        if let Some(delay) = self.delay {
            config::positive_within_a_day("delay", delay)?;
        }
        match self.percentile {
            Some(p) => config::share("percentile", p)?,
            None if self.delay.is_none() => {
                return Err(ConfigError::Invalid {
                    setting: "delay",
                    reason: "is needed when `percentile` is not set: one says when to hedge",
                })
            }
            None => {}
        }
        config::nonzero("min_samples", u64::from(self.min_samples))?;
        config::positive_within_a_day("window", self.window)?;
        if self.window < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                setting: "window",
                reason: "must be at least 10ms",
            });
        }
        config::fraction("max_extra_load", self.max_extra_load)?;
        config::positive_within_a_day("max_pushback", self.max_pushback)?;
        Ok(())
    }
}
