//! The balancer service.

use crate::config::Strategy;
use crate::core::{Core, EndpointState};
use crate::error::{Misuse, NoEndpointReady, Unavailable};
use crate::future::{InFlight, ResponseFuture};
use crate::handle::Handle;
use bulwark_core::attempts::{Attempts, NoAttempts, RequestAttempts};
use bulwark_core::local::LocalRef;
use bulwark_core::{BoxError, Classify};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// A load balancer over a list of endpoints. Built by [`BalanceLayer`](crate::BalanceLayer);
/// see the crate docs.
///
/// `poll_ready` picks an endpoint by the strategy among those that may take a request
/// (healthy, not ejected), and asks only that one (or, if it is not ready, the next
/// candidate) whether it is ready: the endpoint it reserves is the one `call` uses, and no
/// other holds a reservation. An endpoint that is not ready is skipped, never dropped.
pub struct Balance<S, C, A = NoAttempts> {
    endpoints: Vec<S>,
    /// The endpoints' shared state, in the same order; shared by the clones (a clone per
    /// request under a retry costs no copy of it), rebuilt when membership changes.
    states: Arc<[Arc<EndpointState>]>,
    core: LocalRef<Core<C>>,
    chosen: Option<usize>,
    /// The clock reading of the `poll_ready` that chose (for peak EWMA: the call's start).
    chosen_at: u64,
    refused: Option<NoEndpointReady>,
    next: usize,
    rng: u64,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    attempts: A,
}

impl<S, C, A> Balance<S, C, A> {
    pub(crate) fn new(
        endpoints: Vec<S>,
        names: &[String],
        core: Arc<Core<C>>,
        seed: u64,
        attempts: A,
    ) -> Self {
        let states = (0..endpoints.len())
            .map(|i| core.add(names.get(i).cloned().unwrap_or_else(|| i.to_string())))
            .collect();
        Balance {
            endpoints,
            states,
            core: LocalRef::new(core),
            chosen: None,
            chosen_at: 0,
            refused: None,
            next: 0,
            rng: seed | 1,
            waiting_since: None,
            timer: None,
            attempts,
        }
    }

    /// The endpoints, in order.
    pub fn endpoints(&self) -> &[S] {
        &self.endpoints
    }

    /// The balancer's name.
    pub(crate) fn name(&self) -> &str {
        &self.core.get().name
    }

    pub(crate) fn core_arc(&self) -> Arc<Core<C>> {
        self.core.shared().clone()
    }

    /// Adds an endpoint at the end; returns its stable id.
    pub(crate) fn insert(&mut self, name: String, endpoint: S) -> usize {
        let state = self.core.get().add(name);
        let id = state.id;
        self.endpoints.push(endpoint);
        let mut states = self.states.to_vec();
        states.push(state);
        self.states = states.into();
        id
    }

    /// Removes endpoint `i`; requests in flight on it finish as usual.
    pub(crate) fn remove(&mut self, i: usize) {
        if i >= self.endpoints.len() {
            return;
        }
        self.core.get().remove(&self.states[i]);
        self.endpoints.remove(i);
        let mut states = self.states.to_vec();
        states.remove(i);
        self.states = states.into();
        self.chosen = match self.chosen {
            Some(c) if c == i => None, // its reservation goes with it
            Some(c) if c > i => Some(c - 1),
            other => other,
        };
    }

    /// A handle to read the endpoints' state and mark their health.
    pub fn handle(&self) -> Handle
    where
        C: Send + Sync + 'static,
    {
        Handle::new(self.core.shared().clone())
    }

    /// A random index in `0..n` (xorshift; the balancer is `&mut`, so no atomics).
    #[inline]
    fn random(&mut self, n: usize) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        ((u128::from(x) * n as u128) >> 64) as usize
    }
}

impl<S: Clone, C, A: Clone> Clone for Balance<S, C, A> {
    /// Clones every endpoint (one `Vec` allocation); the clones share the endpoints' state
    /// (loads, ejections, health) and its list. Each clone draws its own random sequence and round-robin
    /// starting point from a counter the clones share, so clones used for one request each
    /// (a retry above, `oneshot`, axum) spread their picks as one balancer would.
    fn clone(&self) -> Self {
        let k = self.core.get().next_clone();
        // SplitMix64's finalizer over the clone's number and the parent's state.
        let mut z = (self.rng ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(k);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Balance {
            endpoints: self.endpoints.clone(),
            states: self.states.clone(),
            core: self.core.clone(),
            chosen: None,
            chosen_at: 0,
            refused: None,
            next: self.next.wrapping_add(k as usize) % self.endpoints.len().max(1),
            rng: z | 1,
            waiting_since: None,
            timer: None,
            attempts: self.attempts.clone(),
        }
    }
}

impl<S: fmt::Debug, C, A> fmt::Debug for Balance<S, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("endpoints", &self.endpoints)
            .field("core", self.core.get())
            .finish()
    }
}

impl<S, C, A> Balance<S, C, A> {
    /// For a resend: an eligible endpoint the request has not been to, ready right now
    /// (asked with a no-op waker: `call` cannot wait), if there is one.
    #[cold]
    fn untried<Req>(&mut self, attempts: &Attempts, now: u64) -> Option<usize>
    where
        S: Service<Req>,
    {
        let n = self.endpoints.len();
        let scope = self.core.get().scope;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let start = self.random(n.max(1));
        let mut i = start;
        for _ in 0..n {
            if !attempts.tried(scope, self.states[i].id)
                && self.core.get().eligible(&self.states[i], now)
                && self.ready::<Req>(i, &mut cx)
            {
                return Some(i);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        None
    }

    /// Finds an endpoint that may be picked and is ready; reserves it.
    fn pick<Req>(&mut self, cx: &mut Context<'_>, now: u64) -> Option<usize>
    where
        S: Service<Req>,
    {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let strategy = self.core.get().strategy;
        match strategy {
            Strategy::RoundRobin => {
                let start = if self.next < n { self.next } else { 0 };
                let i = self.scan::<Req>(cx, now, start, usize::MAX, usize::MAX)?;
                self.next = i + 1;
                Some(i)
            }
            Strategy::FirstAvailable => self.scan::<Req>(cx, now, 0, usize::MAX, usize::MAX),
            _ => {
                let a = self.random(n);
                let b = if n > 1 {
                    let b = self.random(n - 1);
                    if b >= a {
                        b + 1
                    } else {
                        b
                    }
                } else {
                    a
                };
                let core = self.core.get();
                let (sa, sb) = (&self.states[a], &self.states[b]);
                let all = core.panicking();
                let (ea, eb) = (all || core.eligible(sa, now), all || core.eligible(sb, now));
                let (first, second) = match (ea, eb) {
                    (true, true) if core.load(sb, now) < core.load(sa, now) => (Some(b), Some(a)),
                    (true, true) => (Some(a), Some(b)),
                    (true, false) => (Some(a), None),
                    (false, true) => (Some(b), None),
                    (false, false) => (None, None),
                };
                for i in [first, second].into_iter().flatten() {
                    if self.ready::<Req>(i, cx) {
                        return Some(i);
                    }
                }
                // Neither could take it: any other eligible, ready endpoint will do.
                let start = self.random(n);
                self.scan::<Req>(cx, now, start, a, b)
            }
        }
    }

    /// The first eligible, ready endpoint from `start` in order (wrapping), skipping two.
    fn scan<Req>(
        &mut self,
        cx: &mut Context<'_>,
        now: u64,
        start: usize,
        skip_a: usize,
        skip_b: usize,
    ) -> Option<usize>
    where
        S: Service<Req>,
    {
        let n = self.endpoints.len();
        let all = self.core.get().panicking();
        let mut i = start;
        for _ in 0..n {
            if i != skip_a
                && i != skip_b
                && (all || self.core.get().eligible(&self.states[i], now))
                && self.ready::<Req>(i, cx)
            {
                return Some(i);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        None
    }

    #[inline]
    fn ready<Req>(&mut self, i: usize, cx: &mut Context<'_>) -> bool
    where
        S: Service<Req>,
    {
        // An error from poll_ready means the endpoint failed for good: it is skipped (and
        // never dropped: membership is the caller's to change).
        matches!(self.endpoints[i].poll_ready(cx), Poll::Ready(Ok(())))
    }

    /// Why nothing could be picked.
    fn why(&self, now: u64) -> Unavailable {
        if self.states.is_empty() {
            return Unavailable::NoEndpoints;
        }
        let healthy: Vec<&Arc<EndpointState>> =
            self.states.iter().filter(|e| e.is_healthy()).collect();
        if healthy.is_empty() {
            Unavailable::NoneHealthy
        } else if healthy
            .iter()
            .all(|e| e.ejected_until().is_some_and(|u| u > now))
        {
            Unavailable::AllEjected
        } else {
            Unavailable::NoneReady
        }
    }

    /// Nothing can be picked now: wait (woken by an endpoint, a health change or the end of
    /// an ejection) up to `wait_for_ready`, then let `call` fail.
    #[cold]
    fn wait<Req>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>
    where
        S: Service<Req>,
    {
        let shared = self.core.shared().clone();
        let core = &*shared;
        core.register(cx.waker());
        loop {
            let since = *self.waiting_since.get_or_insert_with(Instant::now);
            let deadline = since + core.wait_for_ready;
            let now = core.now();
            if Instant::now() >= deadline {
                let retry_after = core
                    .next_return()
                    .map(|r| Duration::from_nanos(r.saturating_sub(now)));
                self.refused = Some(NoEndpointReady {
                    reason: self.why(now),
                    retry_after,
                    waited: core.wait_for_ready,
                });
                self.waiting_since = None;
                return Poll::Ready(Ok(()));
            }
            let wake = match core.next_return() {
                Some(r) => deadline.min(core.instant_at(r)),
                None => deadline,
            };
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake)));
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: an ejection may be over.
            let now = core.now();
            core.sweep(now);
            if let Some(i) = self.pick::<Req>(cx, now) {
                self.chosen = Some(i);
                self.waiting_since = None;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S, C, A, Req> Service<Req> for Balance<S, C, A>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
    A: RequestAttempts<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.chosen.is_some() || self.refused.is_some() {
            return Poll::Ready(Ok(()));
        }
        let now = self.core.get().now_if_needed();
        self.core.get().sweep(now);
        if let Some(i) = self.pick::<Req>(cx, now) {
            self.chosen = Some(i);
            self.chosen_at = now;
            self.waiting_since = None;
            return Poll::Ready(Ok(()));
        }
        self.wait::<Req>(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(refused) = self.refused.take() {
            return ResponseFuture::failed(Box::new(refused));
        }
        let Some(mut i) = self.chosen.take() else {
            return ResponseFuture::failed(Box::new(Misuse));
        };
        if let Some(attempts) = self.attempts.attempts(&request) {
            let attempts = attempts.clone();
            let scope = self.core.get().scope;
            // A resend: not to the endpoint that already had it, while another can take it.
            if attempts.tried(scope, self.states[i].id) {
                let now = self.core.get().now();
                if let Some(j) = self.untried::<Req>(&attempts, now) {
                    i = j;
                }
            }
            attempts.record(scope, self.states[i].id);
        }
        let core = self.core.get();
        // Peak EWMA times the call from the clock reading that chose the endpoint (taken
        // just before; one clock read fewer per call), or reads it now after a wait.
        let started = (core.strategy == Strategy::P2cPeakEwma).then(|| {
            if self.chosen_at != 0 {
                self.chosen_at
            } else {
                core.now()
            }
        });
        self.chosen_at = 0;
        let in_flight = InFlight::new(self.core.for_call(), self.states[i].clone(), started);
        ResponseFuture::called(self.endpoints[i].call(request), in_flight)
    }
}
