//! The breaker service.

use crate::config::Mode;
use crate::error::Open;
use crate::future::{Permit, ResponseFuture};
use crate::handle::Handle;
use crate::state::{Admission, Core};
use bulwark_core::{BoxError, Classify};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// What every clone of one breaker shares.
pub(crate) struct Shared<C> {
    pub(crate) core: Core,
    pub(crate) classifier: C,
    pub(crate) mode: Mode,
    base: Instant,
}

impl<C> Shared<C> {
    pub(crate) fn new(core: Core, classifier: C, mode: Mode) -> Self {
        Shared {
            core,
            classifier,
            mode,
            base: Instant::now(),
        }
    }

    /// Nanoseconds on tokio's clock since the breaker was built.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant_at(&self, at: u64) -> Instant {
        self.base + Duration::from_nanos(at)
    }
}

/// A service guarded by a circuit breaker. Built by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer); see the crate docs.
///
/// Clones share one breaker. `poll_ready` asks the breaker for permission before it asks the
/// inner service; a permission reserved by `poll_ready` (a half-open probe slot) is returned
/// if the service is dropped, or the response future is dropped, before the call ends.
pub struct CircuitBreaker<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
    admission: Option<Admission>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C>>) -> Self {
        CircuitBreaker {
            inner,
            shared,
            admission: None,
            sleep: None,
        }
    }

    /// A handle to this breaker (shared by every clone).
    pub fn handle(&self) -> Handle
    where
        C: Send + Sync + 'static,
    {
        Handle::new(self.shared.clone())
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

impl<S: Clone, C> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        CircuitBreaker::from_shared(self.inner.clone(), self.shared.clone())
    }
}

impl<S, C> Drop for CircuitBreaker<S, C> {
    fn drop(&mut self) {
        if let Some(Admission::Admitted { gen, probe: true }) = self.admission {
            self.shared.core.release_probe(gen);
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("core", &self.shared.core)
            .field("mode", &self.shared.mode)
            .finish()
    }
}

/// `call` was used without a `poll_ready` that returned `Ready(Ok)` first: a bug in the
/// caller, reported as an error rather than a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReady;

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit breaker called before poll_ready returned Ready")
    }
}

impl std::error::Error for NotReady {}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !matches!(self.admission, Some(Admission::Admitted { .. })) {
            let shared = &*self.shared;
            let mut registered = false;
            let mut timer_fired = 0;
            loop {
                let admission = shared.core.acquire(|| shared.now());
                let rejection = match admission {
                    Admission::Admitted { .. } => {
                        self.admission = Some(admission);
                        break;
                    }
                    Admission::Rejected(r) => r,
                };
                if shared.mode == Mode::FailFast {
                    // Ready at once; `call` answers with the rejection.
                    self.admission = Some(admission);
                    return Poll::Ready(Ok(()));
                }
                self.admission = None;
                if !registered {
                    // Register before asking again, so a state change in between wakes us.
                    shared.core.register(cx.waker());
                    registered = true;
                    continue;
                }
                if let Some(at) = rejection.wake_at {
                    let deadline = shared.instant_at(at);
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        timer_fired += 1;
                        if timer_fired < 3 {
                            continue;
                        }
                        cx.waker().wake_by_ref();
                    }
                }
                return Poll::Pending;
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.admission.take() {
            Some(Admission::Admitted { gen, probe }) => {
                let shared = &self.shared;
                let start = shared.core.slow_threshold().map(|_| shared.now());
                let permit = Permit::new(shared.clone(), gen, probe);
                ResponseFuture::called(self.inner.call(req), permit, start)
            }
            Some(Admission::Rejected(mut rejection)) => {
                let core = &self.shared.core;
                if let Some(at) = rejection.wake_at {
                    rejection.retry_after = Some(at.saturating_sub(self.shared.now()));
                }
                core.reject(&rejection);
                let retry_after = rejection.retry_after.map(Duration::from_nanos);
                ResponseFuture::failed(Box::new(Open::new(rejection.state, retry_after)))
            }
            None => ResponseFuture::failed(Box::new(NotReady)),
        }
    }
}
