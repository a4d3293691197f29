//! Configuration: plain data, validated once when the layer is built.

use bulwark_core::backoff::ExponentialBackoff;
use bulwark_core::config;
use std::time::Duration;

/// The most attempts a layer may make for one request.
pub const MAX_ATTEMPTS: u32 = 10_000;

/// The settings of a retry layer.
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | `max_attempts` | 3 (the first included) | two retries ride out a blip; more mostly add load |
/// | `backoff` | 100 ms, x2, full jitter, capped at 64 s | spreads retries of many callers apart |
/// | `budget` | 20% of requests + 10/s over 10 s | no retry storm on a backend that is failing for everyone |
/// | `deadline` | none | bound the whole request with it when the caller has one |
/// | `attempt_timeout` | none | a stalled attempt is then retried instead of waited on |
/// | `inherit_deadline` | true | a request already given up on upstream is not worth finishing: the deadline the request carries (`grpc-timeout`, a deadline header) or the server received ([`bulwark_core::deadline::scope`]) ends the attempts too |
/// | `max_concurrent_retries` | none | at most this many retries in flight at once (Envoy's `max_retries`): a burst of failures cannot double the load at once |
///
/// ```
/// use bulwark_retry::RetryConfig;
/// let config = RetryConfig::default();
/// assert_eq!(config.max_attempts, 3);
/// assert!(config.budget.is_some());
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RetryConfig {
    /// The name reported in events, logs and metric labels.
    pub name: String,
    /// Attempts per request, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The wait before each retry.
    pub backoff: ExponentialBackoff,
    /// The retry budget, or `None` for no budget (not recommended).
    pub budget: Option<BudgetConfig>,
    /// Time for all attempts together, counted from the call (at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub deadline: Option<Duration>,
    /// Time for each attempt (at most a day); a timed-out attempt counts as a retryable
    /// failure.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub attempt_timeout: Option<Duration>,
    /// At most this many retries in flight at once, over every clone of the layer (a
    /// [`ResendCap`](bulwark_core::budget::ResendCap) of its own; give the layer one shared
    /// with other layers with `Builder::concurrency_cap`). `None`: no cap.
    pub max_concurrent_retries: Option<usize>,
    /// Also end the attempts by the deadline the request carries (its policy's
    /// [`time_limit`](crate::RetryPolicy::time_limit): `grpc-timeout`, say) or the one in scope
    /// where the layer is called ([`bulwark_core::deadline::current`], set by
    /// [`InboundDeadlineLayer`](crate::InboundDeadlineLayer) at a server's edge), whichever
    /// comes first with the layer's own.
    pub inherit_deadline: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            name: String::from("retry"),
            max_attempts: 3,
            backoff: ExponentialBackoff::default(),
            budget: Some(BudgetConfig::default()),
            deadline: None,
            attempt_timeout: None,
            max_concurrent_retries: None,
            inherit_deadline: true,
        }
    }
}

/// The settings of a retry budget (see [`RetryBudget`](bulwark_core::budget::RetryBudget)).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BudgetConfig {
    /// Retries allowed per request in the window.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic.
    pub floor_per_sec: u32,
    /// How far back requests and retries count.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ratio: 0.2,
            floor_per_sec: 10,
            window: Duration::from_secs(10),
        }
    }
}

pub use bulwark_core::ConfigError;

impl RetryConfig {
    /// Checks every setting; the first one out of range is returned as a typed error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(ConfigError::MaxAttempts {
                value: self.max_attempts,
                max: MAX_ATTEMPTS,
            });
        }
        // The backoff validates itself when built; re-check in case it was deserialized or
        // copied from elsewhere.
        self.backoff.validate().map_err(ConfigError::Backoff)?;
        if let Some(b) = &self.budget {
            bulwark_core::budget::RetryBudget::new(b.ratio, b.floor_per_sec, b.window)
                .map_err(ConfigError::Budget)?;
        }
        if let Some(max) = self.max_concurrent_retries {
            config::nonzero("max_concurrent_retries", max as u64)?;
        }
        for (setting, d) in [
            ("deadline", self.deadline),
            ("attempt_timeout", self.attempt_timeout),
        ] {
            if let Some(d) = d {
                config::positive_within_a_day(setting, d)?;
            }
        }
        Ok(())
    }
}
