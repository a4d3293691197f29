//! Reading the endpoints' state, and marking their health.

use crate::config::{BalanceConfig, ConfigError};
use crate::core::{Core, EndpointState};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(crate) trait Endpoints: Send + Sync + 'static {
    fn core_snapshot(&self) -> Vec<EndpointSnapshot>;
    /// Marks the `endpoint`-th member (in the order they joined).
    fn mark(&self, endpoint: usize, healthy: bool) -> bool;
    fn name(&self) -> &str;
    /// The member with this id, if it still is one.
    fn state_of(&self, id: usize) -> Option<Arc<EndpointState>>;
    /// Marks a member healthy or not.
    fn set_health(&self, state: &EndpointState, healthy: bool);
    fn config(&self) -> BalanceConfig;
    fn reconfigure(&self, config: BalanceConfig) -> Result<(), ConfigError>;
}

impl<C: Send + Sync + 'static> Endpoints for Core<C> {
    fn core_snapshot(&self) -> Vec<EndpointSnapshot> {
        let now = self.now();
        self.sweep(now);
        self.members()
            .iter()
            .map(|e| EndpointSnapshot {
                name: e.name.clone(),
                healthy: e.reads_healthy(),
                ejected_for: e
                    .ejected_until()
                    .map(|u| Duration::from_nanos(u.saturating_sub(now))),
                in_flight: e.in_flight.load(Ordering::Relaxed),
                successes: e.successes.load(Ordering::Relaxed),
                failures: e.failures.load(Ordering::Relaxed),
                latency: Duration::from_nanos(self.rtt(e, now) as u64),
                load: self.load(e, now),
            })
            .collect()
    }

    fn mark(&self, endpoint: usize, healthy: bool) -> bool {
        match self.members().get(endpoint) {
            Some(e) => {
                self.set_healthy(e, healthy);
                true
            }
            None => false,
        }
    }

    fn state_of(&self, id: usize) -> Option<Arc<EndpointState>> {
        self.member_with_id(id)
    }

    fn set_health(&self, state: &EndpointState, healthy: bool) {
        self.set_healthy(state, healthy)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> BalanceConfig {
        Core::config(self)
    }

    fn reconfigure(&self, config: BalanceConfig) -> Result<(), ConfigError> {
        Core::reconfigure(self, config)
    }
}

/// One endpoint, as the balancer sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointSnapshot {
    /// Its name.
    pub name: String,
    /// Whether its health check (or an operator) says it is healthy, and, for an endpoint
    /// that is a health gate (`bulwark_health`), whether its gate did when last asked for
    /// readiness.
    pub healthy: bool,
    /// How much longer it is ejected, if it is.
    pub ejected_for: Option<Duration>,
    /// Requests sent to it that have not ended.
    pub in_flight: u32,
    /// Calls that succeeded, since the balancer was built.
    pub successes: u64,
    /// Calls that failed, since the balancer was built.
    pub failures: u64,
    /// Its peak-EWMA latency now.
    pub latency: Duration,
    /// The load the strategy compares (lower is picked): requests in flight + 1, times the
    /// peak-EWMA latency in nanoseconds for that strategy.
    pub load: f64,
}

/// A cloneable handle to a balancer: its endpoints' state and health, and its settings, which
/// can change while it runs.
///
/// Get one from [`Balance::handle`](crate::Balance::handle), or from the layer:
/// [`BalanceLayer::handles`](crate::BalanceLayer::handles) lists the balancers alive that it
/// built.
///
/// ```
/// use bulwark_balance::BalanceLayer;
/// use tower::service_fn;
///
/// let echo = service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) });
/// let balance = BalanceLayer::builder()
///     .endpoint_names(["store-1", "store-2"])
///     .build()
///     .unwrap()
///     .build(vec![echo, echo])
///     .unwrap();
/// let handle = balance.handle();
/// handle.set_healthy(1, false); // what a health check does
/// let endpoints = handle.endpoints();
/// assert_eq!(endpoints[1].name, "store-2");
/// assert!(endpoints[0].healthy && !endpoints[1].healthy);
/// ```
#[derive(Clone)]
pub struct Handle {
    core: Arc<dyn Endpoints>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("balancer", &self.core.name())
            .finish()
    }
}

impl Handle {
    pub(crate) fn new(core: Arc<dyn Endpoints>) -> Self {
        Handle { core }
    }

    /// Every endpoint's state, in order (the members now, for a balancer fed by `Discover`).
    pub fn endpoints(&self) -> Vec<EndpointSnapshot> {
        self.core.core_snapshot()
    }

    /// Marks an endpoint healthy or unhealthy (what an active health check does). An
    /// unhealthy endpoint is never picked, and is kept; marking it healthy again wakes
    /// requests waiting for an endpoint. Returns `false` for an index out of range.
    pub fn set_healthy(&self, endpoint: usize, healthy: bool) -> bool {
        self.core.mark(endpoint, healthy)
    }

    /// The balancer's name.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// The settings in force: those it was built with, as changed since through
    /// [`Handle::update`] or [`Handle::set_config`].
    pub fn config(&self) -> BalanceConfig {
        self.core.config()
    }

    /// Changes settings while the balancer runs: `change` edits a copy of the settings in
    /// force, which is then validated by the same [`BalanceConfig::validate`] as the builder's
    /// and put in force; returns the settings now in force. On an error (naming the setting),
    /// nothing changes. See [`Handle::set_config`] for what can change.
    ///
    /// ```
    /// use bulwark_balance::{BalanceLayer, Ejection};
    /// use std::time::Duration;
    /// use tower::service_fn;
    ///
    /// let echo = service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) });
    /// let balance = BalanceLayer::builder().name("stores").build().unwrap().build(vec![echo, echo]).unwrap();
    /// let handle = balance.handle();
    /// let now = handle
    ///     .update(|c| {
    ///         c.ejection.consecutive_failures = 2;
    ///         c.ejection.base = Duration::from_secs(5);
    ///         c.panic_threshold = Some(0.5);
    ///     })
    ///     .unwrap();
    /// assert_eq!(now.ejection.consecutive_failures, 2);
    ///
    /// let err = handle.update(|c| c.ejection.max = Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(err.to_string(), "`ejection.max` must not be below `ejection.base`");
    /// assert_eq!(handle.config(), now);
    /// ```
    pub fn update(
        &self,
        change: impl FnOnce(&mut BalanceConfig),
    ) -> Result<BalanceConfig, ConfigError> {
        let mut config = self.config();
        change(&mut config);
        self.set_config(config.clone())?;
        Ok(config)
    }

    /// Puts `config` in force, validated by [`BalanceConfig::validate`] as the builder
    /// validates it; on an error (naming the setting), nothing changes. No request in flight is
    /// dropped, and no endpoint's counts or ejection are reset.
    ///
    /// * At once: `ejection.consecutive_failures` (0 turns ejection on failures in a row off),
    ///   `ejection.failure_rate`'s `rate` and `min_requests` (at the next outcome),
    ///   `panic_threshold` (at the next pick) and `wait_for_ready` (a wait under way is
    ///   woken and measured against the new value from its start: a shorter one may end it).
    /// * From the next ejection: `ejection.base`, `ejection.max`, `ejection.forget_after` and
    ///   `ejection.max_ejected`; an ejection under way keeps its end.
    /// * Refused (the setting named), fixed when the balancer is built: `name`,
    ///   `endpoint_names`, `strategy` (a pick and the latency it records on the way back must
    ///   agree, for requests in flight too), whether `ejection.failure_rate` is on and its
    ///   `window` (each endpoint's window is sized then), `ewma_decay`, `default_rtt`,
    ///   `health` (its task runs with the settings it started with) and `slow_start`.
    ///
    /// A change emits [`Event::SettingsChanged`](bulwark_core::Event::SettingsChanged) and logs
    /// `balancer settings changed` (INFO); setting the same settings again does neither.
    pub fn set_config(&self, config: BalanceConfig) -> Result<(), ConfigError> {
        self.core.reconfigure(config)
    }
}
