//! Configuration: plain data, validated when the balancer is built.

use bulwark_core::config;
use std::time::Duration;

/// How the balancer picks an endpoint among those that can take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Strategy {
    /// In turn (nginx's default). Even, predictable,
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
    /// The first endpoint in order that can take the request: a primary with ordered
    /// backups. The order is the list's as given; a discovered set's members may move when
    /// one leaves, so order backups there by priority ([`EndpointKey::priority`]). Weights
    /// do not apply.
    ///
    /// [`EndpointKey::priority`]: crate::EndpointKey::priority
    FirstAvailable,
}

/// Passive outlier ejection: endpoints that keep failing are taken out for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Ejection {
    /// Eject after this many failures in a row (0: not on a run of failures; with no
    /// `failure_rate` either, ejection is off).
    pub consecutive_failures: u32,
    /// The first ejection lasts this long; the n-th lasts n times as long.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub base: Duration,
    /// Ejections are forgotten as an endpoint stays in: each span of this length it spends
    /// back in without being ejected takes one off its count, so an endpoint ejected often
    /// long ago is not ejected for the longest time on its next failure.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub forget_after: Duration,
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
    /// Envoy's outlier-detection defaults for the timings: 5 consecutive failures, 30 s times
    /// the number of ejections, capped at 300 s. At most half the endpoints out at once
    /// (Envoy's `max_ejection_percent` is 10%, which over a handful of endpoints lets only
    /// one out); one ejection forgotten per 30 s spent back in.
    fn default() -> Self {
        Ejection {
            consecutive_failures: 5,
            base: Duration::from_secs(30),
            forget_after: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_ejected: 0.5,
            failure_rate: None,
        }
    }
}

/// Slow start: an endpoint that joins (or comes back from failing its health checks) gets a
/// share of requests that grows over `window` instead of its full share at once, so a cold
/// backend (empty caches, a JIT not warmed up, a connection pool being filled) is not
/// flooded. Its weight is multiplied by `max(min_weight, (t / window) ^ (1 / aggression))`
/// at time `t` after it joined, as Envoy's slow start does; this applies with every strategy.
/// The endpoints a balancer starts with do not ramp up (they are all equally new).
///
/// ```
/// use bulwark_balance::SlowStart;
/// use std::time::Duration;
/// let s = SlowStart { window: Duration::from_secs(30), ..SlowStart::default() };
/// assert_eq!((s.aggression, s.min_weight), (1.0, 0.1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SlowStart {
    /// How long the ramp lasts (at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// The ramp's shape: 1.0 is linear; above 1 the weight rises faster at first.
    pub aggression: f64,
    /// The least share of its weight an endpoint gets while it ramps up, in `(0, 1]`.
    pub min_weight: f64,
}

impl Default for SlowStart {
    /// A linear 30 s ramp from a tenth of the weight (Envoy's aggression and minimum weight
    /// defaults; Envoy has no default window).
    fn default() -> Self {
        SlowStart {
            window: Duration::from_secs(30),
            aggression: 1.0,
            min_weight: 0.1,
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
    /// The latency assumed for an endpoint that has not answered yet, when it joins; it
    /// decays from then with `ewma_decay`, as a measure would, so a new endpoint is tried
    /// after a while even if the others stay faster.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub default_rtt: Duration,
    /// Active health checks (used when the balancer is built with probes).
    pub health: crate::HealthCheck,
    /// Panic mode: when fewer than this share of the endpoints are healthy and not ejected,
    /// balance over all of them (ready ones) rather than pile everything on the few left.
    /// `None` (the default) turns it off.
    pub panic_threshold: Option<f64>,
    /// Slow start for endpoints that join after the balancer is built (`None`, the default:
    /// a new endpoint gets its full share at once, counted at `default_rtt` until it answers).
    pub slow_start: Option<SlowStart>,
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
            slow_start: None,
        }
    }
}

pub use bulwark_core::ConfigError;

impl BalanceConfig {
    /// Checks the settings that do not depend on the endpoints.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.ejection;
        // The timings apply to whichever trigger ejects: a run of failures or a failure share.
        if e.consecutive_failures > 0 || e.failure_rate.is_some() {
            config::positive_duration("ejection.base", e.base)?;
            if e.max < e.base {
                return Err(ConfigError::Invalid {
                    setting: "ejection.max",
                    reason: "must not be below `ejection.base`",
                });
            }
            config::at_most_a_day("ejection.max", e.max)?;
        }
        config::positive_within_a_day("ejection.forget_after", e.forget_after)?;
        if let Some(s) = &self.slow_start {
            config::positive_within_a_day("slow_start.window", s.window)?;
            config::positive("slow_start.aggression", s.aggression)?;
            config::share("slow_start.min_weight", s.min_weight)?;
        }
        self.health.validate()?;
        if let Some(fr) = &e.failure_rate {
            config::share("ejection.failure_rate.rate", fr.rate)?;
            config::nonzero("ejection.failure_rate.min_requests", fr.min_requests.into())?;
            if fr.window < Duration::from_millis(10) {
                return Err(ConfigError::Zero {
                    setting: "ejection.failure_rate.window",
                });
            }
        }
        if let Some(p) = self.panic_threshold {
            config::share("panic_threshold", p)?;
        }
        config::fraction("ejection.max_ejected", e.max_ejected)?;
        for (setting, d) in [
            ("wait_for_ready", self.wait_for_ready),
            ("ewma_decay", self.ewma_decay),
            ("default_rtt", self.default_rtt),
        ] {
            config::at_most_a_day(setting, d)?;
        }
        config::positive_duration("ewma_decay", self.ewma_decay)?;
        config::positive_duration("default_rtt", self.default_rtt)
    }

    /// Checks the settings against the number of endpoints.
    pub fn validate_for(&self, endpoints: usize) -> Result<(), ConfigError> {
        self.validate()?;
        config::some_targets(endpoints)?;
        config::one_name_per_target("endpoint_names", &self.endpoint_names, endpoints)
    }
}
