//! When and how a service is probed.

use bulwark_core::config::{self, ConfigError};
use std::time::Duration;

/// When and how a service is probed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct HealthCheck {
    /// The wait from the end of one probe (its answer, or its `timeout`) to the start of the
    /// next, as Envoy's `interval` (at most a day): a slow probe delays the next.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub interval: Duration,
    /// A probe that takes longer fails (at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Duration,
    /// A healthy service is marked unhealthy after this many failed probes in a row.
    pub unhealthy_after: u32,
    /// An unhealthy service is marked healthy after this many good probes in a row.
    pub healthy_after: u32,
    /// Each interval is moved by up to this share either way, so many clients do not probe
    /// in step.
    pub jitter: f64,
}

impl Default for HealthCheck {
    /// Every 2 s, 2 s timeout, unhealthy after 2 failures, healthy after 1 success; 10%
    /// jitter.
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            unhealthy_after: 2,
            healthy_after: 1,
            jitter: 0.1,
        }
    }
}

impl HealthCheck {
    /// Checks every setting is in range (settings named `health.*`, as in a balancer's or a
    /// stack's configuration).
    ///
    /// ```
    /// use bulwark_health::{ConfigError, HealthCheck};
    /// use std::time::Duration;
    ///
    /// let zero = HealthCheck { interval: Duration::ZERO, ..HealthCheck::default() };
    /// assert_eq!(zero.validate(), Err(ConfigError::Zero { setting: "health.interval" }));
    /// assert!(HealthCheck::default().validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        // A day at most: the jittered interval of a duration near `Duration::MAX` would
        // overflow.
        config::positive_within_a_day("health.interval", self.interval)?;
        config::positive_within_a_day("health.timeout", self.timeout)?;
        config::nonzero("health.unhealthy_after", self.unhealthy_after.into())?;
        config::nonzero("health.healthy_after", self.healthy_after.into())?;
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::Jitter(self.jitter));
        }
        Ok(())
    }
}
