//! Configuration: plain data, validated when the failover set is built.

use std::fmt;
use std::time::Duration;

/// Where a request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Mode {
    /// From the target that last answered: once the primary has failed
    /// over, traffic stays on the backup until the backup fails.
    #[default]
    Sticky,
    /// From the first target that is ready: traffic returns to the primary as soon as it is
    /// ready again.
    Priority,
}

/// The settings of a failover set.
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | `mode` | sticky | stay on what works |
/// | `attempt_timeout` | 30 s | a stalled target must not hold the request forever |
/// | `interval` | 0 | the next target is another server: no reason to wait |
/// | `wait_for_ready` | 1 s | when no target is ready, a brief wait rides out a probe or a reconnect |
///
/// ```
/// use bulwark_failover::FailoverConfig;
/// let config = FailoverConfig::default();
/// assert_eq!(config.attempt_timeout, Some(std::time::Duration::from_secs(30)));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct FailoverConfig {
    /// The name reported in events, logs and metric labels.
    pub name: String,
    /// Names of the targets, in order, for errors, events and metric labels (default: their
    /// indexes). If given, there must be one per target.
    pub target_names: Vec<String>,
    /// Sticky or priority.
    pub mode: Mode,
    /// Time for each attempt; `None` for no limit.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub attempt_timeout: Option<Duration>,
    /// Wait between a failed attempt and the next target.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub interval: Duration,
    /// How long a request waits for any target to become ready before failing.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub wait_for_ready: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            name: String::from("failover"),
            target_names: Vec::new(),
            mode: Mode::Sticky,
            attempt_timeout: Some(Duration::from_secs(30)),
            interval: Duration::ZERO,
            wait_for_ready: Duration::from_secs(1),
        }
    }
}

/// A setting that is out of range. The message names the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The target list is empty.
    NoTargets,
    /// `attempt_timeout` is zero.
    ZeroTimeout,
    /// `target_names` does not have one name per target.
    TargetNames {
        /// Names given.
        names: usize,
        /// Targets given.
        targets: usize,
    },
    /// A duration is beyond a day (a sign of a unit mistake).
    TooLong {
        /// The setting.
        setting: &'static str,
    },
}

impl ConfigError {
    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::NoTargets => "targets",
            ConfigError::ZeroTimeout => "attempt_timeout",
            ConfigError::TargetNames { .. } => "target_names",
            ConfigError::TooLong { setting } => setting,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoTargets => f.write_str("failover `targets` must not be empty"),
            ConfigError::ZeroTimeout => f.write_str(
                "failover `attempt_timeout` must be greater than zero (leave it unset for no limit)",
            ),
            ConfigError::TargetNames { names, targets } => write!(
                f,
                "failover `target_names` has {names} names for {targets} targets"
            ),
            ConfigError::TooLong { setting } => {
                write!(f, "failover `{setting}` is longer than a day")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl FailoverConfig {
    /// Checks the settings that do not depend on the targets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.attempt_timeout {
            Some(t) if t.is_zero() => return Err(ConfigError::ZeroTimeout),
            Some(t) if t > DAY => {
                return Err(ConfigError::TooLong {
                    setting: "attempt_timeout",
                })
            }
            _ => {}
        }
        if self.interval > DAY {
            return Err(ConfigError::TooLong {
                setting: "interval",
            });
        }
        if self.wait_for_ready > DAY {
            return Err(ConfigError::TooLong {
                setting: "wait_for_ready",
            });
        }
        Ok(())
    }

    /// Checks the settings against the number of targets.
    pub fn validate_for(&self, targets: usize) -> Result<(), ConfigError> {
        self.validate()?;
        if targets == 0 {
            return Err(ConfigError::NoTargets);
        }
        if !self.target_names.is_empty() && self.target_names.len() != targets {
            return Err(ConfigError::TargetNames {
                names: self.target_names.len(),
                targets,
            });
        }
        Ok(())
    }
}
