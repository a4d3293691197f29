//! Configuration: plain data, validated when the balancer is built.

use std::fmt;
use std::time::Duration;

/// How the balancer picks an endpoint among those that can take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Strategy {
    /// In turn (nginx's default, the Python load-balancer seed's choice). Even, predictable,
    /// blind to load.
    RoundRobin,
    /// Two endpoints drawn at random; the one with fewer requests in flight wins. Cheap and
    /// good when requests cost about the same.
    P2cPending,
    /// Two endpoints drawn at random; the one with the lower peak-EWMA latency times (requests
    /// in flight + 1) wins (Finagle's and linkerd's default). Moves traffic away from a slow
    /// endpoint within a few requests.
    #[default]
    P2cPeakEwma,
    /// The first endpoint in order that can take the request (the software-aware
    /// load-balancing seed's client): a primary with ordered backups.
    FirstAvailable,
}

/// Passive outlier ejection: endpoints that keep failing are taken out for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Ejection {
    /// Eject after this many failures in a row (0 turns ejection off).
    pub consecutive_failures: u32,
    /// The first ejection lasts this long; the n-th lasts n times as long.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub base: Duration,
    /// The longest an ejection lasts.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max: Duration,
    /// At most this share of the endpoints may be ejected at once (one always may be).
    pub max_ejected: f64,
    /// Also eject when this share of an endpoint's requests over the window failed (`None`,
    /// the default, for consecutive failures only).
    pub failure_rate: Option<FailureRate>,
}

/// Ejection on the share of failed requests over a window (Envoy's success-rate outlier
/// detection, per endpoint).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct FailureRate {
    /// Eject when failures / requests over the window reaches this share (in `(0, 1]`).
    pub rate: f64,
    /// Only once the window holds this many requests.
    pub min_requests: u32,
    /// How far back requests count (kept in ten slots).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
}

impl Default for Ejection {
    /// Envoy's outlier-detection defaults: 5 consecutive failures, 30 s times the number of
    /// ejections, capped at 300 s, at most half the endpoints out at once.
    fn default() -> Self {
        Ejection {
            consecutive_failures: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_ejected: 0.5,
            failure_rate: None,
        }
    }
}

/// The settings of a balancer.
///
/// ```
/// use bulwark_balance::{BalanceConfig, Strategy};
/// let c = BalanceConfig::default();
/// assert_eq!(c.strategy, Strategy::P2cPeakEwma);
/// c.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BalanceConfig {
    /// The name reported in events, logs and errors.
    pub name: String,
    /// Names of the endpoints, in order (default: their indexes); one per endpoint if given.
    pub endpoint_names: Vec<String>,
    /// How an endpoint is picked.
    pub strategy: Strategy,
    /// Passive outlier ejection.
    pub ejection: Ejection,
    /// How long a request waits for an endpoint that can take it before failing.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub wait_for_ready: Duration,
    /// How fast the peak-EWMA latency forgets: the time constant of its decay.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub ewma_decay: Duration,
    /// The latency assumed for an endpoint that has not answered yet.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub default_rtt: Duration,
    /// Active health checks (used when the balancer is built with probes).
    pub health: crate::HealthCheck,
    /// Panic mode: when fewer than this share of the endpoints are healthy and not ejected,
    /// balance over all of them (ready ones) rather than pile everything on the few left.
    /// `None` (the default) turns it off.
    pub panic_threshold: Option<f64>,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            name: String::from("balance"),
            endpoint_names: Vec::new(),
            strategy: Strategy::default(),
            ejection: Ejection::default(),
            wait_for_ready: Duration::from_secs(1),
            ewma_decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
            health: crate::HealthCheck::default(),
            panic_threshold: None,
        }
    }
}

/// A setting that is out of range. The message names the setting.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    Zero {
        /// The setting.
        setting: &'static str,
    },
    /// `ejection.max` is below `ejection.base`.
    EjectionMaxBelowBase,
    /// `ejection.max_ejected` is outside `[0, 1]`.
    MaxEjected(f64),
    /// `endpoint_names` does not have one name per endpoint.
    EndpointNames {
        /// Names given.
        names: usize,
        /// Endpoints given.
        endpoints: usize,
    },
    /// A duration is beyond a day (a sign of a unit mistake).
    TooLong {
        /// The setting.
        setting: &'static str,
    },
    /// `health.jitter` is outside `[0, 1]`.
    Jitter(f64),
    /// A share (`ejection.failure_rate.rate`, `panic_threshold`) is outside its range.
    Share {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: f64,
    },
    /// The probes do not number one per endpoint.
    Probes {
        /// Probes given.
        probes: usize,
        /// Endpoints given.
        endpoints: usize,
    },
    /// Health checks run on a background task, so the balancer must be built inside a tokio
    /// runtime.
    NoRuntime,
}

impl ConfigError {
    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::Zero { setting } | ConfigError::TooLong { setting } => setting,
            ConfigError::EjectionMaxBelowBase => "ejection.max",
            ConfigError::MaxEjected(_) => "ejection.max_ejected",
            ConfigError::EndpointNames { .. } => "endpoint_names",
            ConfigError::Jitter(_) => "health.jitter",
            ConfigError::Share { setting, .. } => setting,
            ConfigError::Probes { .. } => "probes",
            ConfigError::NoRuntime => "health",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { setting } => {
                write!(f, "balance `{setting}` must be greater than zero")
            }
            ConfigError::EjectionMaxBelowBase => {
                f.write_str("balance `ejection.max` must not be below `ejection.base`")
            }
            ConfigError::MaxEjected(v) => {
                write!(
                    f,
                    "balance `ejection.max_ejected` must be in [0, 1], got {v}"
                )
            }
            ConfigError::EndpointNames { names, endpoints } => write!(
                f,
                "balance `endpoint_names` has {names} names for {endpoints} endpoints"
            ),
            ConfigError::TooLong { setting } => {
                write!(f, "balance `{setting}` is longer than a day")
            }
            ConfigError::Jitter(v) => {
                write!(f, "balance `health.jitter` must be in [0, 1], got {v}")
            }
            ConfigError::Share { setting, value } => {
                write!(f, "balance `{setting}` must be in (0, 1], got {value}")
            }
            ConfigError::Probes { probes, endpoints } => {
                write!(
                    f,
                    "balance has {probes} health probes for {endpoints} endpoints"
                )
            }
            ConfigError::NoRuntime => f.write_str(
                "balance health checks need a tokio runtime: build the balancer inside one",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl BalanceConfig {
    /// Checks the settings that do not depend on the endpoints.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.ejection;
        if e.consecutive_failures > 0 {
            if e.base.is_zero() {
                return Err(ConfigError::Zero {
                    setting: "ejection.base",
                });
            }
            if e.max < e.base {
                return Err(ConfigError::EjectionMaxBelowBase);
            }
            if e.max > DAY {
                return Err(ConfigError::TooLong {
                    setting: "ejection.max",
                });
            }
        }
        self.health.validate()?;
        if let Some(fr) = &e.failure_rate {
            if !(fr.rate > 0.0 && fr.rate <= 1.0) {
                return Err(ConfigError::Share {
                    setting: "ejection.failure_rate.rate",
                    value: fr.rate,
                });
            }
            if fr.min_requests == 0 {
                return Err(ConfigError::Zero {
                    setting: "ejection.failure_rate.min_requests",
                });
            }
            if fr.window < Duration::from_millis(10) {
                return Err(ConfigError::Zero {
                    setting: "ejection.failure_rate.window",
                });
            }
        }
        if let Some(p) = self.panic_threshold {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ConfigError::Share {
                    setting: "panic_threshold",
                    value: p,
                });
            }
        }
        if !(0.0..=1.0).contains(&e.max_ejected) {
            return Err(ConfigError::MaxEjected(e.max_ejected));
        }
        for (setting, d) in [
            ("wait_for_ready", self.wait_for_ready),
            ("ewma_decay", self.ewma_decay),
            ("default_rtt", self.default_rtt),
        ] {
            if d > DAY {
                return Err(ConfigError::TooLong { setting });
            }
        }
        for (setting, d) in [
            ("ewma_decay", self.ewma_decay),
            ("default_rtt", self.default_rtt),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero { setting });
            }
        }
        Ok(())
    }

    /// Checks the settings against the number of endpoints.
    pub fn validate_for(&self, endpoints: usize) -> Result<(), ConfigError> {
        self.validate()?;
        if !self.endpoint_names.is_empty() && self.endpoint_names.len() != endpoints {
            return Err(ConfigError::EndpointNames {
                names: self.endpoint_names.len(),
                endpoints,
            });
        }
        Ok(())
    }
}
