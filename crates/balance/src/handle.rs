//! Reading the endpoints' state, and marking their health.

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

/// A cloneable handle to a balancer's endpoints.
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
}
