//! The gate service, its shared status and the task that probes.

use crate::check::{probe_once, Tally};
use crate::HealthCheck;
use bulwark_core::hint::{self, Hint};
use bulwark_core::{BoxError, RandomSource};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use tower_service::Service;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Where one clone of the gate keeps its waker while it waits for health: its latest waker,
/// and whether the status's list holds it.
#[derive(Debug, Default)]
struct WaitSlot {
    waker: Mutex<Option<Waker>>,
    listed: AtomicBool,
}

/// What the gate's clones, its handles and its task share.
pub(crate) struct Status {
    name: Box<str>,
    healthy: AtomicBool,
    /// Clones waiting for health (each at most once), woken when it comes back.
    waiters: Mutex<Vec<Weak<WaitSlot>>>,
    #[cfg(feature = "metrics")]
    gauge: bulwark_core::telemetry::Handles<metrics::Gauge>,
}

impl Status {
    pub(crate) fn new(name: String) -> Self {
        let status = Status {
            name: name.into_boxed_str(),
            healthy: AtomicBool::new(true),
            waiters: Mutex::new(Vec::new()),
            #[cfg(feature = "metrics")]
            gauge: bulwark_core::telemetry::Handles::new(),
        };
        status.publish();
        status
    }

    /// Sets the health gauge, registered (with its help text) with the recorder current now:
    /// at build, at each change and after each check, so a recorder installed after the gate
    /// was built shows it from the next check on.
    fn publish(&self) {
        #[cfg(feature = "metrics")]
        {
            let healthy = if self.is_healthy() { 1.0 } else { 0.0 };
            self.gauge.with(
                || {
                    metrics::describe_gauge!(
                        "bulwark_health_healthy",
                        "1 while the health gate's checks say the service is healthy, else 0"
                    );
                    metrics::gauge!("bulwark_health_healthy", "name" => self.name.to_string())
                },
                |g| g.set(healthy),
            );
        }
    }

    #[inline]
    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Sets the health the checks found; coming back wakes every clone waiting for it.
    fn set(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::AcqRel) == healthy {
            return;
        }
        self.publish();
        tracing::info!(gate = %self.name, healthy, "endpoint health changed");
        if healthy {
            let waiting = std::mem::take(&mut *lock(&self.waiters));
            for slot in waiting.iter().filter_map(Weak::upgrade) {
                slot.listed.store(false, Ordering::Release);
                if let Some(waker) = lock(&slot.waker).take() {
                    waker.wake();
                }
            }
        }
    }

    /// Keeps `waker` to wake when health comes back.
    fn register(&self, slot: &Arc<WaitSlot>, waker: &Waker) {
        {
            let mut kept = lock(&slot.waker);
            if !kept.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *kept = Some(waker.clone());
            }
        }
        if !slot.listed.swap(true, Ordering::AcqRel) {
            let mut waiters = lock(&self.waiters);
            // Clones dropped while waiting leave nothing behind for long.
            waiters.retain(|w| w.strong_count() > 0);
            waiters.push(Arc::downgrade(slot));
        }
    }
}

/// Ends the checks when the last clone of the gate goes.
struct Checks(tokio::task::AbortHandle);

impl Drop for Checks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Probes until aborted: one probe now, then one per (jittered) interval.
pub(crate) async fn run<P>(
    status: Arc<Status>,
    mut probe: P,
    check: HealthCheck,
    random: Arc<dyn RandomSource>,
) where
    P: Service<()>,
    P::Error: Into<BoxError>,
{
    let mut tally = Tally::default();
    loop {
        let ok = probe_once(&mut probe, check.timeout).await;
        if let Some(healthy) = tally.observe(ok, status.is_healthy(), &check) {
            status.set(healthy);
        } else {
            status.publish();
        }
        tokio::time::sleep(check.next_interval(&*random)).await;
    }
}

/// A service behind a readiness gate: not ready while its health checks say it is unhealthy.
/// Built by [`HealthGateLayer::build`](crate::HealthGateLayer::build); see the crate docs.
///
/// `poll_ready` is `Pending` while unhealthy (telling a balancer or failover set above why,
/// with [`Hint::Unhealthy`]), and wakes the task when health comes back; while healthy it is
/// the inner service's own readiness. Requests, responses and errors are the inner
/// service's: the gate adds no error and no work per call.
///
/// Clones share the health and the checks; the checks stop when the last clone is dropped.
pub struct HealthGate<S> {
    inner: S,
    status: Arc<Status>,
    checks: Arc<Checks>,
    /// Where this clone waits while unhealthy (made the first time it waits).
    slot: Option<Arc<WaitSlot>>,
}

impl<S> HealthGate<S> {
    pub(crate) fn new(inner: S, status: Arc<Status>, task: tokio::task::AbortHandle) -> Self {
        HealthGate {
            inner,
            status,
            checks: Arc::new(Checks(task)),
            slot: None,
        }
    }

    /// A handle that says whether the service is healthy (it does not keep the checks
    /// running).
    pub fn handle(&self) -> Handle {
        Handle {
            status: self.status.clone(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Clone> Clone for HealthGate<S> {
    fn clone(&self) -> Self {
        HealthGate {
            inner: self.inner.clone(),
            status: self.status.clone(),
            checks: self.checks.clone(),
            slot: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for HealthGate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthGate")
            .field("inner", &self.inner)
            .field("name", &self.status.name)
            .field("healthy", &self.status.is_healthy())
            .finish()
    }
}

impl<S, Req> Service<Req> for HealthGate<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.status.is_healthy() && self.unhealthy(cx) {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

impl<S> HealthGate<S> {
    /// Waits for health: registers the waker, then looks again (so health coming back in
    /// between is not missed). Returns whether it is still unhealthy.
    #[cold]
    fn unhealthy(&mut self, cx: &mut Context<'_>) -> bool {
        let slot = self.slot.get_or_insert_with(Arc::default);
        self.status.register(slot, cx.waker());
        if self.status.is_healthy() {
            return false;
        }
        hint::report(Hint::Unhealthy);
        true
    }
}

/// A cloneable handle to a gate's health.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_health::HealthGateLayer;
/// use tower::service_fn;
///
/// let store = service_fn(|q: u32| async move { Ok::<_, std::io::Error>(q) });
/// let probe = service_fn(|()| async { Ok::<_, std::io::Error>(()) });
/// let gate = HealthGateLayer::builder().name("store-1").build().unwrap().build(store, probe).unwrap();
/// let handle = gate.handle();
/// assert!(handle.is_healthy());
/// assert_eq!(handle.name(), "store-1");
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    status: Arc<Status>,
}

impl Handle {
    /// Whether the health checks say the service is healthy (it is, until they say
    /// otherwise).
    pub fn is_healthy(&self) -> bool {
        self.status.is_healthy()
    }

    /// The gate's name.
    pub fn name(&self) -> &str {
        &self.status.name
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.status.name)
            .field("healthy", &self.status.is_healthy())
            .finish()
    }
}
