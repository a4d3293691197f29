//! Reading and steering a breaker from outside the request path.

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

/// A cloneable handle to one breaker: read its state and metrics, or steer it by hand.
///
/// Get one from [`CircuitBreaker::handle`](crate::CircuitBreaker::handle). Every clone of the
/// service and of the handle sees the same breaker.
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

    fn force(&self, to: CircuitState) {
        self.breaker.core().force(to, self.breaker.now())
    }
}
