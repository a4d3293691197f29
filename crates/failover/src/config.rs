//! Configuration: plain data, validated when the failover set is built.

use bulwark_core::config;
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
/// | `deadline` | none | the whole request, every target it tries included; each attempt's time is cut to what is left |
/// | `inherit_deadline` | true | the deadline its server received ([`bulwark_core::deadline::current`], set at the server's edge by `bulwark_retry::InboundDeadlineLayer`) ends the request too: its caller has given up by then |
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
    /// Time for the whole request, every target it tries included; `None` for no limit.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub deadline: Option<Duration>,
    /// Also end the request by the deadline in scope where the set is called
    /// ([`bulwark_core::deadline::current`]), whichever comes first with `deadline`.
    pub inherit_deadline: bool,
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
            deadline: None,
            inherit_deadline: true,
        }
    }
}

pub use bulwark_core::ConfigError;

impl FailoverConfig {
    /// Checks the settings that do not depend on the targets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(d) = self.deadline {
            config::positive_within_a_day("deadline", d)?;
        }
        if let Some(t) = self.attempt_timeout {
            config::positive_within_a_day("attempt_timeout", t)?;
        }
        config::at_most_a_day("interval", self.interval)?;
        config::at_most_a_day("wait_for_ready", self.wait_for_ready)
    }

    /// Checks the settings against the number of targets.
    pub fn validate_for(&self, targets: usize) -> Result<(), ConfigError> {
        self.validate()?;
        config::some_targets(targets)?;
        config::one_name_per_target("target_names", &self.target_names, targets)
    }
}
