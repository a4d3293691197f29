//! Configuration: plain data, validated when the fan-out is built.

use std::fmt;
use std::time::Duration;

/// When a fan-out has succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Policy {
    /// Every target must succeed (a write that must reach every replica).
    #[default]
    All,
    /// At least this many targets must succeed.
    Quorum(usize),
    /// The first success wins; the other targets are cancelled.
    First,
}

impl Policy {
    /// Successes needed out of `targets`.
    pub fn needed(self, targets: usize) -> usize {
        match self {
            Policy::All => targets,
            Policy::Quorum(k) => k,
            Policy::First => 1,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::All => f.write_str("all"),
            Policy::Quorum(k) => write!(f, "quorum of {k}"),
            Policy::First => f.write_str("first success"),
        }
    }
}

/// What happens to targets still running when the fan-out has its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Stragglers {
    /// They are cancelled (their futures dropped): the default.
    #[default]
    Cancel,
    /// They finish on a background task, for at most this long (a day at most; a write that
    /// should still reach every replica, say); then they are dropped.
    Finish(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
}

/// The settings of a fan-out.
///
/// ```
/// use bulwark_fanout::{FanOutConfig, Policy};
/// let c = FanOutConfig::default();
/// assert_eq!(c.policy, Policy::All);
/// c.validate_for(3).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct FanOutConfig {
    /// The name reported in events, logs, metric labels and errors.
    pub name: String,
    /// Names of the targets, in order (default: their indexes); one per target if given.
    pub target_names: Vec<String>,
    /// When the fan-out has succeeded.
    pub policy: Policy,
    /// Time each target has, counted from the call (at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub branch_deadline: Option<Duration>,
    /// Time the whole fan-out has, counted from the call (at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub deadline: Option<Duration>,
    /// What happens to targets still running when the answer is known.
    pub stragglers: Stragglers,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        FanOutConfig {
            name: String::from("fanout"),
            target_names: Vec::new(),
            policy: Policy::All,
            branch_deadline: None,
            deadline: None,
            stragglers: Stragglers::Cancel,
        }
    }
}

/// A setting that is out of range. The message names the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// There are no targets.
    NoTargets,
    /// A quorum of zero, or larger than the number of targets.
    Quorum {
        /// The quorum.
        quorum: usize,
        /// The targets.
        targets: usize,
    },
    /// A deadline is zero.
    ZeroDeadline {
        /// The setting.
        setting: &'static str,
    },
    /// A deadline (or the stragglers' time to finish) is longer than a day.
    TooLong {
        /// The setting.
        setting: &'static str,
    },
    /// `target_names` does not have one name per target.
    TargetNames {
        /// Names given.
        names: usize,
        /// Targets given.
        targets: usize,
    },
}

impl ConfigError {
    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::NoTargets => "targets",
            ConfigError::Quorum { .. } => "policy",
            ConfigError::ZeroDeadline { setting } | ConfigError::TooLong { setting } => setting,
            ConfigError::TargetNames { .. } => "target_names",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoTargets => f.write_str("fan-out `targets` must not be empty"),
            ConfigError::Quorum { quorum, targets } => write!(
                f,
                "fan-out `policy` quorum of {quorum} is impossible with {targets} targets"
            ),
            ConfigError::ZeroDeadline { setting } => {
                write!(f, "fan-out `{setting}` must be greater than zero")
            }
            ConfigError::TooLong { setting } => {
                write!(f, "fan-out `{setting}` is longer than a day")
            }
            ConfigError::TargetNames { names, targets } => write!(
                f,
                "fan-out `target_names` has {names} names for {targets} targets"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl FanOutConfig {
    /// Checks the settings against the number of targets.
    pub fn validate_for(&self, targets: usize) -> Result<(), ConfigError> {
        if targets == 0 {
            return Err(ConfigError::NoTargets);
        }
        if let Policy::Quorum(k) = self.policy {
            if k == 0 || k > targets {
                return Err(ConfigError::Quorum { quorum: k, targets });
            }
        }
        let finish = match self.stragglers {
            Stragglers::Finish(d) => Some(d),
            Stragglers::Cancel => None,
        };
        for (setting, d) in [
            ("branch_deadline", self.branch_deadline),
            ("deadline", self.deadline),
            ("stragglers", finish),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::ZeroDeadline { setting });
            }
            // A day at most: a duration near `Duration::MAX` would overflow the clock.
            if d.is_some_and(|d| d > Duration::from_secs(24 * 3600)) {
                return Err(ConfigError::TooLong { setting });
            }
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
