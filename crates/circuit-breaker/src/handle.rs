//! Reading and steering a breaker from outside the request path.

use crate::config::{CircuitBreakerConfig, ConfigError};
use crate::service::Shared;
use crate::window::Stats;
use bulwark_core::CircuitState;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a handle needs of a breaker, whatever its classifier type.
pub(crate) trait Breaker: Send + Sync + 'static {
    fn core(&self) -> &crate::state::Core;
    fn now(&self) -> u64;
}

impl<C: Send + Sync + 'static> Breaker for Shared<C> {
    fn core(&self) -> &crate::state::Core {
        &self.core
    }
    fn now(&self) -> u64 {
        Shared::now(self)
    }
}

/// A cloneable handle to one breaker: read its state and metrics, steer it by hand, or change
/// its settings while it runs.
///
/// Get one from [`CircuitBreaker::handle`](crate::CircuitBreaker::handle), or from the layer:
/// [`CircuitBreakerLayer::handle`](crate::CircuitBreakerLayer::handle) for a layer built
/// [`shared`](crate::Builder::shared), [`CircuitBreakerLayer::handles`](crate::CircuitBreakerLayer::handles)
/// for the breakers a layer built. Every clone of the service and of the handle sees the same
/// breaker.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bulwark_circuit_breaker::CircuitBreakerLayer;
/// use bulwark_core::CircuitState;
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let layer = CircuitBreakerLayer::builder().name("payments").build().unwrap();
/// let mut svc = layer.layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// let handle = svc.handle();
///
/// handle.force_open(); // maintenance: refuse everything
/// let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
/// assert!(err.is::<bulwark_circuit_breaker::Open>());
/// assert_eq!(handle.metrics().not_permitted, 1);
///
/// handle.reset(); // back to closed, window cleared
/// assert_eq!(handle.state(), CircuitState::Closed);
/// assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    breaker: Arc<dyn Breaker>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

/// A breaker's metrics at one moment. Counts of calls, failures and slow calls are over the
/// current sliding window (they start again from zero when the breaker closes); `not_permitted`
/// counts every refusal since the breaker was built.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The state.
    pub state: CircuitState,
    /// Calls in the window (ignored outcomes are not counted).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (0 unless slow calls are tracked).
    pub slow_calls: u64,
    /// `failures / calls`, 0 when the window is empty.
    pub failure_rate: f64,
    /// `slow_calls / calls`, 0 when the window is empty.
    pub slow_call_rate: f64,
    /// Whether the window holds `min_calls` calls, so the rates can trip the breaker.
    pub min_calls_reached: bool,
    /// Calls refused without reaching the inner service, since the breaker was built. In
    /// readiness mode, each readiness wait that the open circuit turns away counts once,
    /// however often the waiting clone is polled (a balancer asks again at each wake-up of the
    /// same request); a wait ends when the clone is admitted.
    pub not_permitted: u64,
    /// Failures in a row since the last success.
    pub consecutive_failures: u32,
    /// How long until the breaker admits a probe: zero while it admits calls, the rest of the
    /// open period while open, `None` while forced open.
    pub retry_after: Option<Duration>,
}

impl Handle {
    pub(crate) fn new(breaker: Arc<dyn Breaker>) -> Self {
        Handle { breaker }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        self.breaker.core().name()
    }

    /// The current state. An open breaker whose open period has ended reads (and becomes)
    /// half-open, so the state is right even before the next call arrives.
    pub fn state(&self) -> CircuitState {
        self.breaker.core().state(self.breaker.now())
    }

    /// How long until a probe is admitted (see [`MetricsSnapshot::retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        self.metrics().retry_after
    }

    /// The state and metrics at one moment.
    pub fn metrics(&self) -> MetricsSnapshot {
        let s = self.breaker.core().snapshot(self.breaker.now());
        let Stats {
            calls,
            failures,
            slow,
        } = s.stats;
        MetricsSnapshot {
            state: s.state,
            calls,
            failures,
            slow_calls: slow,
            failure_rate: s.stats.failure_rate(),
            slow_call_rate: s.stats.slow_rate(),
            min_calls_reached: calls >= self.breaker.core().min_calls(),
            not_permitted: s.not_permitted,
            consecutive_failures: s.consecutive_failures,
            retry_after: s.retry_after.map(Duration::from_nanos),
        }
    }

    /// Holds the breaker open: every call is refused until [`Handle::reset`].
    pub fn force_open(&self) {
        self.force(CircuitState::ForcedOpen)
    }

    /// Switches the breaker off: every call passes and nothing is recorded, until
    /// [`Handle::reset`].
    pub fn disable(&self) {
        self.force(CircuitState::Disabled)
    }

    /// Records outcomes (readable through [`Handle::metrics`]) but never trips, until
    /// [`Handle::reset`]. Useful to watch a new threshold before enforcing it.
    pub fn metrics_only(&self) {
        self.force(CircuitState::MetricsOnly)
    }

    /// Closes the breaker with an empty window, from any state.
    pub fn reset(&self) {
        self.force(CircuitState::Closed)
    }

    /// The settings in force: those it was built with, as changed since through
    /// [`Handle::update`] or [`Handle::set_config`].
    pub fn config(&self) -> CircuitBreakerConfig {
        self.breaker.core().config()
    }

    /// Changes settings while the breaker runs: `change` edits a copy of the settings in force,
    /// which is then validated by the same [`CircuitBreakerConfig::validate`] as the builder's
    /// and put in force; returns the settings now in force. On an error (naming the setting),
    /// nothing changes. See [`Handle::set_config`] for what can change and when it takes
    /// effect.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use bulwark_circuit_breaker::{CircuitBreakerLayer, OpenPeriod};
    /// use std::time::Duration;
    ///
    /// let layer = CircuitBreakerLayer::builder().name("search").shared().build().unwrap();
    /// let handle = layer.handle().unwrap(); // before any service is built
    ///
    /// let now = handle
    ///     .update(|c| {
    ///         c.failure_rate = 0.25;
    ///         c.open = OpenPeriod::Fixed(Duration::from_secs(5));
    ///     })
    ///     .unwrap();
    /// assert_eq!(now.failure_rate, 0.25);
    ///
    /// // Refused as the builder refuses it, naming the setting; nothing changed.
    /// let err = handle.update(|c| c.failure_rate = 1.5).unwrap_err();
    /// assert_eq!(err.setting(), "failure_rate");
    /// let err = handle.update(|c| c.min_calls = 0).unwrap_err();
    /// assert_eq!(err.to_string(), "`min_calls` must be greater than zero");
    /// assert_eq!(handle.config().failure_rate, 0.25);
    /// # }
    /// ```
    pub fn update(
        &self,
        change: impl FnOnce(&mut CircuitBreakerConfig),
    ) -> Result<CircuitBreakerConfig, ConfigError> {
        let mut config = self.config();
        change(&mut config);
        self.set_config(config.clone())?;
        Ok(config)
    }

    /// Puts `config` in force, validated by [`CircuitBreakerConfig::validate`] as the builder
    /// validates it; on an error (naming the setting), nothing changes. No call in flight is
    /// dropped or re-judged, and the window keeps its outcomes.
    ///
    /// * At once, at the next outcome recorded: `failure_rate`, `min_calls`,
    ///   `consecutive_failures`, `slow_calls` (a call is timed from its start if slow calls were
    ///   tracked then), and `half_open_probes` (more probes are admitted at once in the
    ///   half-open state; fewer: no new one until the probes out are below it, and once as
    ///   many have succeeded as are now needed, the next call closes the breaker).
    /// * From the next transition: `open` (the next trip opens for the new period; an open
    ///   period under way keeps its end) and `max_wait_in_half_open` (from the next half-open).
    /// * Refused (the setting named): `name`, `window` and `mode`, which are fixed when the
    ///   breaker is built (the window's ring is sized then; build a new layer to change them).
    ///
    /// A change emits [`Event::SettingsChanged`](bulwark_core::Event::SettingsChanged) and logs
    /// `circuit breaker settings changed` (INFO); setting the same settings again does neither.
    pub fn set_config(&self, config: CircuitBreakerConfig) -> Result<(), ConfigError> {
        self.breaker.core().reconfigure(config)
    }

    fn force(&self, to: CircuitState) {
        self.breaker.core().force(to, self.breaker.now())
    }
}
