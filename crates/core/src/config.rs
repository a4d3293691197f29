//! Configuration errors: one vocabulary for every layer's settings.
//!
//! Every layer validates its settings when it is built and refuses a value out of range with a
//! [`ConfigError`] naming the setting (dotted for a nested one: `window.size`, `backoff.max`,
//! `ejection.failure_rate.rate`) and, where there is one, the value. The checks the layers
//! share are the functions of this module, so a zero duration or a share above 1 reads the
//! same whichever layer refused it.
//!
//! ```
//! use bulwark_core::config::{self, ConfigError};
//! use std::time::Duration;
//!
//! let err = config::share("failure_rate", 1.5).unwrap_err();
//! assert_eq!(err.setting(), "failure_rate");
//! assert_eq!(err.to_string(), "`failure_rate` must be in (0, 1], got 1.5");
//!
//! let err = config::positive_duration("deadline", Duration::ZERO).unwrap_err();
//! assert_eq!(err, ConfigError::Zero { setting: "deadline" });
//! config::at_most_a_day("deadline", Duration::from_secs(30))?;
//! # Ok::<(), ConfigError>(())
//! ```

use crate::backoff::BackoffError;
use crate::budget::BudgetError;
use std::fmt;
use std::time::Duration;

/// The longest duration a layer accepts for a timeout, a deadline, an interval or a period:
/// a longer one is almost surely a mistake in units, and one near `Duration::MAX` would
/// overflow the clock.
pub const A_DAY: Duration = Duration::from_secs(24 * 3600);

/// A setting that is out of range. [`setting`](Self::setting) names it; the message names it
/// and says what is wrong (with the value given, where there is one).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count or duration that must be positive is zero.
    Zero {
        /// The setting.
        setting: &'static str,
    },
    /// A duration is longer than [a day](A_DAY).
    TooLong {
        /// The setting.
        setting: &'static str,
    },
    /// A number is above its maximum.
    TooLarge {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A share lies outside `(0, 1]` (or `[0, 1]` where zero is allowed).
    Share {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: f64,
        /// Whether 0 is allowed (the range is then `[0, 1]`).
        zero_allowed: bool,
    },
    /// A number that must be positive and finite is not.
    NotPositive {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: f64,
    },
    /// The list of targets is empty.
    NoTargets,
    /// A list of names does not have one name per target.
    TargetNames {
        /// The setting (`target_names`, `endpoint_names`).
        setting: &'static str,
        /// Names given.
        names: usize,
        /// Targets given.
        targets: usize,
    },
    /// A rule between settings is broken; the reason says which.
    Invalid {
        /// The setting at fault.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A retry's `max_attempts` is zero or above its maximum.
    MaxAttempts {
        /// The value given.
        value: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A circuit breaker's `min_calls` is larger than its count window, so the failure rate
    /// could never trip it.
    MinCallsExceedWindow {
        /// `min_calls`.
        min_calls: u32,
        /// The count window's size.
        window: u32,
    },
    /// A fan-out's quorum is zero or larger than its number of targets.
    Quorum {
        /// The quorum.
        quorum: usize,
        /// The targets.
        targets: usize,
    },
    /// A balancer's health probes do not number one per endpoint.
    Probes {
        /// Probes given.
        probes: usize,
        /// Endpoints given.
        endpoints: usize,
    },
    /// A list of health probes was given for a discovered set of endpoints (a balancer's
    /// `Endpoints::discover_with_health` makes each endpoint's probe as it arrives).
    ProbesForDiscovered {
        /// Probes given.
        probes: usize,
    },
    /// Health checks run on a background task, so the layer must be built inside a tokio
    /// runtime.
    NoRuntime,
    /// The health checks' `jitter` share (`health.jitter`) is outside `[0, 1]`.
    Jitter(f64),
    /// The backoff (`backoff`) is invalid.
    Backoff(BackoffError),
    /// The retry budget (`budget`) is invalid.
    Budget(BudgetError),
}

impl ConfigError {
    /// The setting at fault, as in the serde form, dotted for nested settings (`window.size`,
    /// `backoff.max`, `budget.ratio`).
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::Zero { setting }
            | ConfigError::TooLong { setting }
            | ConfigError::TooLarge { setting, .. }
            | ConfigError::Share { setting, .. }
            | ConfigError::NotPositive { setting, .. }
            | ConfigError::TargetNames { setting, .. }
            | ConfigError::Invalid { setting, .. } => setting,
            ConfigError::NoTargets => "targets",
            ConfigError::MaxAttempts { .. } => "max_attempts",
            ConfigError::MinCallsExceedWindow { .. } => "min_calls",
            ConfigError::Quorum { .. } => "policy",
            ConfigError::Probes { .. } | ConfigError::ProbesForDiscovered { .. } => "probes",
            ConfigError::NoRuntime => "health",
            ConfigError::Jitter(_) => "health.jitter",
            ConfigError::Backoff(e) => match e.setting() {
                "base" => "backoff.base",
                "factor" => "backoff.factor",
                "max" => "backoff.max",
                "jitter" => "backoff.jitter",
                _ => "backoff",
            },
            ConfigError::Budget(e) => match e {
                BudgetError::Ratio(_) => "budget.ratio",
                BudgetError::Window(_) => "budget.window",
            },
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setting = self.setting();
        match self {
            ConfigError::Zero { .. } => write!(f, "`{setting}` must be greater than zero"),
            ConfigError::TooLong { .. } => write!(f, "`{setting}` is longer than a day"),
            ConfigError::TooLarge { value, max, .. } => {
                write!(f, "`{setting}` is {value}, at most {max} is allowed")
            }
            ConfigError::Share {
                value,
                zero_allowed,
                ..
            } => {
                let range = if *zero_allowed { "[0, 1]" } else { "(0, 1]" };
                write!(f, "`{setting}` must be in {range}, got {value}")
            }
            ConfigError::NotPositive { value, .. } => {
                write!(f, "`{setting}` must be positive and finite, got {value}")
            }
            ConfigError::NoTargets => write!(f, "`{setting}` must not be empty"),
            ConfigError::TargetNames { names, targets, .. } => {
                write!(f, "`{setting}` has {names} names for {targets} targets")
            }
            ConfigError::Invalid { reason, .. } => write!(f, "`{setting}` {reason}"),
            ConfigError::MaxAttempts { value, max } => {
                write!(f, "`{setting}` must be between 1 and {max}, got {value}")
            }
            ConfigError::MinCallsExceedWindow { min_calls, window } => write!(
                f,
                "`min_calls` ({min_calls}) is larger than the count window ({window}), so the \
                 failure rate could never trip it"
            ),
            ConfigError::Quorum { quorum: 0, .. } => {
                write!(f, "`{setting}` quorum must be at least 1")
            }
            ConfigError::Quorum { quorum, targets } => write!(
                f,
                "`{setting}` quorum of {quorum} is impossible with {targets} targets"
            ),
            ConfigError::Probes { probes, endpoints } => {
                write!(f, "{probes} health probes for {endpoints} endpoints")
            }
            ConfigError::ProbesForDiscovered { probes } => write!(
                f,
                "a list of {probes} health probes for discovered endpoints: use \
                 Endpoints::discover_with_health to make each endpoint's probe as it arrives"
            ),
            ConfigError::NoRuntime => {
                f.write_str("health checks need a tokio runtime: build the layer inside one")
            }
            ConfigError::Jitter(value) => {
                write!(f, "`{setting}` must be in [0, 1], got {value}")
            }
            ConfigError::Backoff(e) => write!(f, "`{setting}`: {e}"),
            ConfigError::Budget(e) => write!(f, "`{setting}`: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Backoff(e) => Some(e),
            ConfigError::Budget(e) => Some(e),
            _ => None,
        }
    }
}

impl From<BackoffError> for ConfigError {
    fn from(e: BackoffError) -> Self {
        ConfigError::Backoff(e)
    }
}

impl From<BudgetError> for ConfigError {
    fn from(e: BudgetError) -> Self {
        ConfigError::Budget(e)
    }
}

/// A duration that must not be zero: [`ConfigError::Zero`] if it is.
pub fn positive_duration(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::Zero { setting })
    } else {
        Ok(())
    }
}

/// A duration of at most [a day](A_DAY): [`ConfigError::TooLong`] if longer.
pub fn at_most_a_day(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > A_DAY {
        Err(ConfigError::TooLong { setting })
    } else {
        Ok(())
    }
}

/// A duration above zero and at most [a day](A_DAY) (a timeout, a deadline, a period).
pub fn positive_within_a_day(setting: &'static str, value: Duration) -> Result<(), ConfigError> {
    positive_duration(setting, value)?;
    at_most_a_day(setting, value)
}

/// A count that must not be zero: [`ConfigError::Zero`] if it is.
pub fn nonzero(setting: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::Zero { setting })
    } else {
        Ok(())
    }
}

/// A count of at most `max`: [`ConfigError::TooLarge`] if above.
pub fn at_most(setting: &'static str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value > max {
        Err(ConfigError::TooLarge {
            setting,
            value,
            max,
        })
    } else {
        Ok(())
    }
}

/// A share in `(0, 1]` (a rate that trips, a threshold): [`ConfigError::Share`] if outside
/// (or not a number).
pub fn share(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::Share {
            setting,
            value,
            zero_allowed: false,
        })
    }
}

/// A share in `[0, 1]` (a jitter, where 0 turns it off): [`ConfigError::Share`] if outside
/// (or not a number).
pub fn fraction(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Share {
            setting,
            value,
            zero_allowed: true,
        })
    }
}

/// A number that must be positive and finite: [`ConfigError::NotPositive`] if not.
pub fn positive(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(ConfigError::NotPositive { setting, value })
    }
}

/// A list of names for `targets` targets: none (the targets are then named by their
/// indexes) or one per target, else [`ConfigError::TargetNames`].
pub fn one_name_per_target(
    setting: &'static str,
    names: &[String],
    targets: usize,
) -> Result<(), ConfigError> {
    if names.is_empty() || names.len() == targets {
        Ok(())
    } else {
        Err(ConfigError::TargetNames {
            setting,
            names: names.len(),
            targets,
        })
    }
}

/// A setting fixed when a layer's state is built, in a change made at run time through a
/// handle: [`ConfigError::Invalid`] naming it if `unchanged` is false.
///
/// ```
/// use bulwark_core::config::fixed;
/// assert!(fixed("window", true).is_ok());
/// let err = fixed("window", false).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "`window` is fixed when the layer is built: build a new layer to change it"
/// );
/// ```
pub fn fixed(setting: &'static str, unchanged: bool) -> Result<(), ConfigError> {
    if unchanged {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        setting,
        reason: "is fixed when the layer is built: build a new layer to change it",
    })
}

/// A list of targets that must not be empty: [`ConfigError::NoTargets`] if it is.
pub fn some_targets(targets: usize) -> Result<(), ConfigError> {
    if targets == 0 {
        Err(ConfigError::NoTargets)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_setting_and_the_value() {
        let e = share("slow_calls.rate", 0.0).unwrap_err();
        assert_eq!(e.to_string(), "`slow_calls.rate` must be in (0, 1], got 0");
        let e = fraction("open.jitter", 2.0).unwrap_err();
        assert_eq!(e.to_string(), "`open.jitter` must be in [0, 1], got 2");
        assert!(fraction("open.jitter", 0.0).is_ok());
        let e = at_most("window.size", 7, 5).unwrap_err();
        assert_eq!(e.to_string(), "`window.size` is 7, at most 5 is allowed");
        let e = one_name_per_target("target_names", &[String::from("a")], 2).unwrap_err();
        assert_eq!(e.setting(), "target_names");
        assert_eq!(e.to_string(), "`target_names` has 1 names for 2 targets");
        assert!(one_name_per_target("target_names", &[], 2).is_ok());
        assert_eq!(some_targets(0), Err(ConfigError::NoTargets));
        assert_eq!(ConfigError::NoTargets.setting(), "targets");
        assert!(positive("aggression", f64::NAN).is_err());
        assert!(positive_within_a_day("deadline", A_DAY + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn nested_settings_are_dotted() {
        let e = ConfigError::Budget(BudgetError::Ratio(-1.0));
        assert_eq!(e.setting(), "budget.ratio");
        assert!(e.to_string().contains("-1"));
        let e = ConfigError::Backoff(BackoffError::ZeroBase);
        assert_eq!(e.setting(), "backoff.base");
    }
}
