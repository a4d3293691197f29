//! The breaker service.

use crate::config::Mode;
use crate::error::Open;
use crate::future::{Permit, ResponseFuture};
use crate::handle::Handle;
use crate::state::{Admission, Core, Rejection, WaitSlot};
use bulwark_core::clock::Clock;
use bulwark_core::hint::{self, Hint};
use bulwark_core::local::LocalRef;
use bulwark_core::slot::LazyBox;
use bulwark_core::telemetry::Seen;
use bulwark_core::timer::ServiceTimer;
use bulwark_core::{BoxError, CircuitState, Classify, Misuse};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// The start of a call whose duration nobody needs (no slow-call threshold, no recorder).
pub(crate) const NOT_TIMED: u64 = u64::MAX;

/// The `breaker{breaker, state}` span of a call admitted as a probe or not, if a subscriber
/// wants it.
#[cold]
#[inline(never)]
fn breaker_span(core: &crate::state::Core, probe: bool) -> Option<tracing::Span> {
    let state = if probe {
        CircuitState::HalfOpen
    } else {
        core.current()
    };
    let span = tracing::debug_span!("breaker", breaker = %core.name(), state = state.as_str());
    (!span.is_disabled()).then_some(span)
}

/// What every clone of one breaker shares.
pub(crate) struct Shared<C> {
    pub(crate) core: Core,
    pub(crate) classifier: C,
    pub(crate) mode: Mode,
    clock: Clock,
}

impl<C> Shared<C> {
    pub(crate) fn new(core: Core, classifier: C, mode: Mode) -> Self {
        Shared {
            core,
            classifier,
            mode,
            clock: Clock::new(),
        }
    }

    /// Nanoseconds on tokio's clock since the breaker was built.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
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
    /// This clone's reference to the breaker, which its futures count on.
    local: LocalRef<Shared<C>>,
    /// What `poll_ready` reserved for the next `call`.
    ticket: Ticket,
    /// Why the breaker refused, when `ticket` is `Refused`.
    rejection: Option<Rejection>,
    sleep: ServiceTimer,
    /// Where this clone's task waits in readiness mode (made the first time it is refused).
    wait: Option<Arc<WaitSlot>>,
    /// Whether this clone's current readiness wait was counted as turned away (once per wait,
    /// however often it is polled).
    turned_away: bool,
}

/// What `poll_ready` reserved for the next `call`: small, so the hot path moves 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    None,
    Admitted { gen: u32, probe: bool },
    Refused,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C>>) -> Self {
        CircuitBreaker {
            inner,
            local: LocalRef::new(shared),
            ticket: Ticket::None,
            rejection: None,
            sleep: ServiceTimer::new(),
            wait: None,
            turned_away: false,
        }
    }

    #[inline]
    fn shared(&self) -> &Shared<C> {
        self.local.get()
    }

    /// A handle to this breaker (shared by every clone).
    pub fn handle(&self) -> Handle
    where
        C: Send + Sync + 'static,
    {
        Handle::new(self.local.shared().clone())
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
        CircuitBreaker {
            inner: self.inner.clone(),
            local: self.local.clone(),
            ticket: Ticket::None,
            rejection: None,
            sleep: ServiceTimer::new(),
            wait: None,
            turned_away: false,
        }
    }
}

impl<S, C> Drop for CircuitBreaker<S, C> {
    fn drop(&mut self) {
        if let Ticket::Admitted { gen, probe: true } = self.ticket {
            self.shared().core.release_probe(gen);
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("core", &self.shared().core)
            .field("mode", &self.shared().mode)
            .finish()
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// The breaker refused a call in `poll_ready`. Fail-fast: ready at once, `call` answers
    /// with the refusal. Readiness: pending, with a wake-up arranged for the next state change
    /// or the end of the open period, and the refusal counted (`not_permitted`, the
    /// `CallRejected` event) once per readiness wait of this clone. Returns `None` if a second look
    /// admitted the call.
    #[cold]
    fn refused<E>(
        &mut self,
        cx: &mut Context<'_>,
        mut rejection: Rejection,
    ) -> Option<Poll<Result<(), E>>> {
        let shared = self.local.shared().clone();
        if shared.mode == Mode::FailFast {
            self.ticket = Ticket::Refused;
            self.rejection = Some(rejection);
            return Some(Poll::Ready(Ok(())));
        }
        self.ticket = Ticket::None;
        // Register before looking again, so a state change in between wakes this task.
        let slot = self.wait.get_or_insert_with(Arc::default);
        shared.core.register(slot, cx.waker());
        let mut timer_fired = 0;
        loop {
            match shared.core.acquire(|| shared.now()) {
                Admission::Admitted { gen, probe } => {
                    self.ticket = Ticket::Admitted { gen, probe };
                    self.turned_away = false;
                    return None;
                }
                Admission::Rejected(r) => rejection = r,
            }
            if let Some(at) = rejection.wake_at {
                let deadline = shared.clock.instant_at(at);
                if self.sleep.poll_until(deadline, cx).is_ready() {
                    timer_fired += 1;
                    if timer_fired < 3 {
                        continue;
                    }
                    cx.waker().wake_by_ref();
                }
            }
            // Turned away: counted once per readiness wait of this clone, however often it
            // is polled (a balancer above asks again at every wake-up of the same request).
            if !self.turned_away {
                self.turned_away = true;
                shared.core.reject(&rejection);
            }
            // An open circuit tells the layer asking (a balancer, a failover set) why, and
            // when it probes, at every poll; a half-open one with its probes taken says
            // nothing (an answer is on its way).
            if matches!(
                rejection.state,
                CircuitState::Open | CircuitState::ForcedOpen
            ) {
                hint::report(Hint::CircuitOpen {
                    probe_in: rejection.retry_after.map(Duration::from_nanos),
                });
            }
            return Some(Poll::Pending);
        }
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !matches!(self.ticket, Ticket::Admitted { .. }) {
            let shared = self.shared();
            match shared.core.acquire(|| shared.now()) {
                Admission::Admitted { gen, probe } => {
                    self.ticket = Ticket::Admitted { gen, probe };
                    self.turned_away = false;
                }
                Admission::Rejected(rejection) => {
                    if let Some(answer) = self.refused(cx, rejection) {
                        return answer;
                    }
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.ticket, Ticket::None) {
            Ticket::Admitted { gen, probe } => {
                let shared = self.shared();
                // The recorder, looked up once: it says whether to time the call and takes
                // the call's metrics when it ends.
                let seen = Seen::now();
                // Not timed (no threshold, no recorder): a threshold set while the call is out
                // does not find it slow.
                let start = if shared.core.slow_threshold().is_some() || seen.recording() {
                    shared.now()
                } else {
                    NOT_TIMED
                };
                // The `breaker{breaker, state}` span around the inner call, made only when a
                // subscriber wants it (one level check on the hot path otherwise), boxed out
                // of line so the call moves a pointer, not a span.
                let span = if tracing::level_enabled!(tracing::Level::DEBUG) {
                    LazyBox::made_by(|| breaker_span(&shared.core, probe))
                } else {
                    LazyBox::new()
                };
                let future = {
                    let _entered = span.as_deref().map(tracing::Span::enter);
                    self.inner.call(req)
                };
                let permit = Permit::new(self.local.for_call(), gen, probe, seen);
                ResponseFuture::called(future, permit, start, span)
            }
            Ticket::Refused => self.refuse(),
            Ticket::None => called_before_ready(),
        }
    }
}

/// Answers a call made without a ready `poll_ready`. Out of line, with the refusal below, so
/// `call` stays small enough to inline on the admitted path.
#[cold]
#[inline(never)]
fn called_before_ready<F, C>() -> ResponseFuture<F, C> {
    ResponseFuture::failed(Box::new(Misuse::called_before_ready("circuit breaker")))
}

impl<S, C> CircuitBreaker<S, C> {
    /// Answers a call that `poll_ready` found refused.
    #[cold]
    #[inline(never)]
    fn refuse<F>(&mut self) -> ResponseFuture<F, C> {
        let Some(mut rejection) = self.rejection.take() else {
            return called_before_ready();
        };
        let shared = self.shared();
        // Open: the wait is what is left of the open period. Half-open, `wake_at` is when the
        // probes' time runs out (the breaker reopens then): a slot frees as soon as a probe
        // ends, so the wait stays zero.
        if let (Some(at), CircuitState::Open) = (rejection.wake_at, rejection.state) {
            rejection.retry_after = Some(at.saturating_sub(shared.now()));
        }
        shared.core.reject(&rejection);
        let retry_after = rejection.retry_after.map(Duration::from_nanos);
        ResponseFuture::failed(Box::new(Open::new(rejection.state, retry_after)))
    }
}
