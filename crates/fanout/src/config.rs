//! Configuration: plain data, validated when the fan-out is built.

use bulwark_core::config;
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
    /// Whether the deadline its server received ([`bulwark_core::deadline::current`], set at
    /// the server's edge by `bulwark_retry::InboundDeadlineLayer`) cuts `deadline` short
    /// (default true): the targets still running then time out, as at the fan-out's own
    /// deadline, since the caller has given up. Stragglers let finish after the answer are not
    /// cut by it.
    pub inherit_deadline: bool,
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
            inherit_deadline: true,
        }
    }
}

pub use bulwark_core::ConfigError;

impl FanOutConfig {
    /// Checks the settings that do not depend on the number of targets: a quorum of at least
    /// one (and no larger than `target_names`, if given), deadlines above zero and at most a
    /// day.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Policy::Quorum(k) = self.policy {
            let names = self.target_names.len();
            if k == 0 || (names > 0 && k > names) {
                return Err(ConfigError::Quorum {
                    quorum: k,
                    targets: names,
                });
            }
        }
        self.validate_deadlines()
    }

    fn validate_deadlines(&self) -> Result<(), ConfigError> {
        let finish = match self.stragglers {
            Stragglers::Finish(d) => Some(d),
            Stragglers::Cancel => None,
        };
        for (setting, d) in [
            ("branch_deadline", self.branch_deadline),
            ("deadline", self.deadline),
            ("stragglers", finish),
        ] {
            if let Some(d) = d {
                config::positive_within_a_day(setting, d)?;
            }
        }
        Ok(())
    }

    /// Checks the settings against the number of targets.
    pub fn validate_for(&self, targets: usize) -> Result<(), ConfigError> {
        config::some_targets(targets)?;
        if let Policy::Quorum(k) = self.policy {
            if k == 0 || k > targets {
                return Err(ConfigError::Quorum { quorum: k, targets });
            }
        }
        self.validate_deadlines()?;
        // Checked last: a `Layer` over a list falls back to indexes for names that do not fit.
        config::one_name_per_target("target_names", &self.target_names, targets)
    }
}
