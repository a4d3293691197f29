//! The balancer service.

use crate::config::Strategy;
use crate::core::{Core, EndpointState};
use crate::error::{NoEndpointReady, Unavailable};
use crate::future::{InFlight, ResponseFuture};
use crate::handle::Handle;
use crate::membership::{materialize, Member, Membership, Slot};
use crate::roster::Roster;
use bulwark_core::attempts::{Attempts, NoAttempts, RequestAttempts};
use bulwark_core::hint::{self, Hint, Refusals};
use bulwark_core::local::LocalRef;
use bulwark_core::timer::ServiceTimer;
use bulwark_core::{BoxError, Classify, Misuse, SplitMix64};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// How many endpoints a balancer (each clone) keeps a ready-to-use clone of. A balancer over
/// a few endpoints keeps one of each and clones none per call; over many, it clones the one
/// it picks (a reference count for the clients users balance: a tonic `Channel`, a hyper
/// `Client`, our layers over them).
const CACHE: usize = 4;

/// A load balancer. Built by [`BalanceLayer::build`](crate::BalanceLayer::build) from a
/// static list, a `tower::discover` stream or a DNS name (see the crate docs).
///
/// `poll_ready` picks an endpoint by the strategy among those that can take a request
/// (healthy, not ejected, of the preferred priority, ready), reserves it, and `call` sends
/// the request to that endpoint: no other endpoint holds a reservation. For a resend, a retry
/// layer above says which request it readies for (see
/// [`Attempts::scope`](bulwark_core::attempts::Attempts::scope)), and the pick avoids the
/// endpoints that request has been to while another can take it. An endpoint that is not
/// ready is skipped, never dropped.
///
/// Clones share the members and what is known of them; a clone costs a few reference
/// counts, whatever the number of endpoints.
pub struct Balance<S, C, A = NoAttempts> {
    core: LocalRef<Core<C>>,
    members: Arc<Membership<S>>,
    roster: Roster<Arc<Member<S>>>,
    version: u64,
    /// Clones of endpoints this balancer sent to lately (none is reserved).
    cache: [Option<Slot<S>>; CACHE],
    evict: usize,
    /// The endpoint reserved by `poll_ready`, for `call`.
    chosen: Option<Slot<S>>,
    /// The clock reading of the `poll_ready` that chose (for peak EWMA: the call's start).
    chosen_at: u64,
    refused: Option<NoEndpointReady>,
    /// Why the endpoints the latest pick asked were not ready, as they said.
    refusals: Refusals,
    rng: SplitMix64,
    waiting_since: Option<Instant>,
    /// When the wait under way was last polled: one not polled for twice `wait_for_ready`
    /// (its own timer wakes it once one has passed) was given up by its caller.
    waiting_polled: Option<Instant>,
    timer: ServiceTimer,
    attempts: A,
}

impl<S, C, A> Balance<S, C, A> {
    pub(crate) fn new(
        core: Arc<Core<C>>,
        members: Arc<Membership<S>>,
        seed: u64,
        attempts: A,
    ) -> Self
    where
        S: Clone + Send + 'static,
    {
        let (roster, version) = members.current();
        Self::fresh(
            LocalRef::new(core),
            members,
            (roster, version),
            SplitMix64::new(seed),
            attempts,
        )
    }

    /// A balancer with nothing reserved, cached or waited for.
    fn fresh(
        core: LocalRef<Core<C>>,
        members: Arc<Membership<S>>,
        (roster, version): (Roster<Arc<Member<S>>>, u64),
        rng: SplitMix64,
        attempts: A,
    ) -> Self {
        Balance {
            core,
            members,
            roster,
            version,
            cache: Default::default(),
            evict: 0,
            chosen: None,
            chosen_at: 0,
            refused: None,
            refusals: Refusals::new(),
            rng,
            waiting_since: None,
            waiting_polled: None,
            timer: ServiceTimer::new(),
            attempts,
        }
    }

    /// How many endpoints the balancer has now.
    pub fn len(&self) -> usize {
        self.roster.len()
    }

    /// Whether the balancer has no endpoint now.
    pub fn is_empty(&self) -> bool {
        self.roster.is_empty()
    }

    /// A handle to read the endpoints' state and mark their health.
    pub fn handle(&self) -> Handle
    where
        C: Send + Sync + 'static,
    {
        Handle::new(self.core.shared().clone())
    }

    /// A random index in `0..n` (the balancer is `&mut`, so no atomics).
    #[inline]
    fn random(&mut self, n: usize) -> usize {
        ((u128::from(self.rng.next_u64_mut()) * n as u128) >> 64) as usize
    }

    /// A random number in `[0, 1)`.
    #[inline]
    fn unit(&mut self) -> f64 {
        self.rng.next_f64_mut()
    }
}

impl<S: Clone, C, A: Clone> Clone for Balance<S, C, A> {
    /// Shares the members and what is known of them (a few reference counts, whatever the
    /// number of endpoints). Each clone draws its own random sequence from a counter the
    /// clones share, and round robin turns a cursor they share, so clones used for one
    /// request each (a retry above, `oneshot`, axum) spread their picks as one balancer
    /// would.
    fn clone(&self) -> Self {
        let k = self.core.get().next_clone();
        Self::fresh(
            self.core.clone(),
            self.members.clone(),
            (self.roster.clone(), self.version),
            self.rng.split(k),
            self.attempts.clone(),
        )
    }
}

impl<S, C, A> fmt::Debug for Balance<S, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("endpoints", &self.roster.len())
            .field("core", self.core.get())
            .finish()
    }
}

/// What a pick may not choose: endpoints found not ready during this pick (a few, inline),
/// and those the request has been to (while another can take it).
struct Avoid<'a> {
    not_ready: [usize; 4],
    n: usize,
    tried: Option<(&'a Attempts, usize)>,
}

impl Avoid<'_> {
    #[inline]
    fn excludes(&self, i: usize, e: &EndpointState) -> bool {
        self.not_ready[..self.n].contains(&i)
            || self.tried.is_some_and(|(a, scope)| a.tried(scope, e.id))
    }

    #[inline]
    fn reject(&mut self, i: usize) -> bool {
        if self.n < self.not_ready.len() {
            self.not_ready[self.n] = i;
            self.n += 1;
            true
        } else {
            false
        }
    }
}

impl<S: Clone, C, A> Balance<S, C, A> {
    /// Takes the newest member list if it changed (and polls the discovery feed if it woke).
    #[inline]
    fn sync(&mut self) {
        self.members.drive();
        if self.members.version() != self.version {
            self.refresh_roster();
        }
    }

    #[cold]
    fn refresh_roster(&mut self) {
        let (roster, version) = self.members.current();
        self.roster = roster;
        self.version = version;
        for entry in &mut self.cache {
            let stale = entry.as_ref().is_some_and(|s| {
                let i = s.state.index();
                s.state.is_removed()
                    || i >= self.roster.len()
                    || !Arc::ptr_eq(self.roster.get(i), &s.member)
            });
            if stale {
                *entry = None; // removed (drained: no new request) or given a new service
            }
        }
    }

    /// Whether endpoint `i` may be picked: healthy, not ejected, of the preferred priority
    /// (all of them in panic mode).
    #[inline]
    fn eligible(&self, i: usize, now: u64, all: bool) -> bool {
        all || self.core.get().eligible(&self.roster.get(i).state, now)
    }

    /// Whether endpoint `i` passes its weight's draw (always, when weights are equal).
    #[inline]
    fn weight_draw(&mut self, i: usize, now: u64, weighted: bool) -> bool {
        if !weighted {
            return true;
        }
        let core = self.core.get();
        let share = core.effective_weight(&self.roster.get(i).state, now) / core.max_weight();
        share >= 1.0 || self.unit() < share
    }

    /// A random endpoint that may be picked and is not avoided (and not `other`), drawn in
    /// proportion to the weights: a few random draws, then a scan from a random start.
    fn draw(
        &mut self,
        now: u64,
        all: bool,
        weighted: bool,
        avoid: &Avoid<'_>,
        other: Option<usize>,
    ) -> Option<usize> {
        let n = self.roster.len();
        for _ in 0..8 {
            let i = self.random(n);
            if Some(i) != other
                && self.eligible(i, now, all)
                && !avoid.excludes(i, &self.roster.get(i).state)
                && self.weight_draw(i, now, weighted)
            {
                return Some(i);
            }
        }
        let start = self.random(n);
        (0..n).map(|k| (start + k) % n).find(|&i| {
            Some(i) != other
                && self.eligible(i, now, all)
                && !avoid.excludes(i, &self.roster.get(i).state)
        })
    }

    /// The load the strategy compares. Weights are not in it: they are in the draw, which
    /// already picks the candidates in proportion to them.
    #[inline]
    fn score(&self, i: usize, now: u64) -> f64 {
        self.core.get().load(&self.roster.get(i).state, now)
    }

    /// Finds an endpoint that may be picked and is ready; reserves it.
    fn pick<Req>(
        &mut self,
        cx: &mut Context<'_>,
        now: u64,
        hint: Option<&Attempts>,
    ) -> Option<Slot<S>>
    where
        S: Service<Req>,
    {
        self.refusals = Refusals::new();
        if self.roster.is_empty() {
            return None;
        }
        let scope = self.core.get().scope;
        // First among the endpoints the request has not been to; then, if none of those can
        // take it, among all.
        if let Some(attempts) = hint {
            let mut avoid = Avoid {
                not_ready: [0; 4],
                n: 0,
                tried: Some((attempts, scope)),
            };
            if let Some(slot) = self.pick_avoiding::<Req>(cx, now, &mut avoid) {
                return Some(slot);
            }
        }
        let mut avoid = Avoid {
            not_ready: [0; 4],
            n: 0,
            tried: None,
        };
        self.pick_avoiding::<Req>(cx, now, &mut avoid)
    }

    fn pick_avoiding<Req>(
        &mut self,
        cx: &mut Context<'_>,
        now: u64,
        avoid: &mut Avoid<'_>,
    ) -> Option<Slot<S>>
    where
        S: Service<Req>,
    {
        let n = self.roster.len();
        let core = self.core.get();
        let all = core.panicking();
        let weighted = core.weighted(now);
        match core.strategy {
            Strategy::RoundRobin | Strategy::FirstAvailable => {
                let rr = core.strategy == Strategy::RoundRobin;
                // Round robin turns one cursor the clones share, so clones used once each
                // (however many a layer above makes per request) go round as one balancer.
                let start = if rr { core.next_turn() % n } else { 0 };
                for k in 0..n {
                    let i = (start + k) % n;
                    if !self.eligible(i, now, all) || avoid.excludes(i, &self.roster.get(i).state) {
                        continue;
                    }
                    // First-available keeps its order: weights are shares, and it has none.
                    if rr && !self.weight_draw(i, now, weighted) {
                        // Passed over by its weight: its turn is spent, so the next endpoint
                        // takes its own turn, not the next request's (which would give it the
                        // turns of the endpoints its weight passes over, not its weight).
                        if rr {
                            self.core.get().next_turn();
                        }
                        continue;
                    }
                    if let Some(slot) = self.ready::<Req>(i, cx) {
                        return Some(slot);
                    }
                }
                // Weighted draws may have passed over every ready endpoint: any will do.
                if rr && weighted {
                    for k in 0..n {
                        let i = (start + k) % n;
                        if self.eligible(i, now, all)
                            && !avoid.excludes(i, &self.roster.get(i).state)
                        {
                            if let Some(slot) = self.ready::<Req>(i, cx) {
                                return Some(slot);
                            }
                        }
                    }
                }
                None
            }
            Strategy::P2cPending | Strategy::P2cPeakEwma => {
                // Two endpoints drawn among those that can take the request; the less loaded
                // is asked first. One that is not ready is put aside and another drawn in
                // its place, so the comparison is always between two that may be ready.
                let mut a = self.draw(now, all, weighted, avoid, None)?;
                loop {
                    let b = self.draw(now, all, weighted, avoid, Some(a));
                    let (first, second) = match b {
                        Some(b) if self.score(b, now) < self.score(a, now) => (b, Some(a)),
                        Some(b) => (a, Some(b)),
                        None => (a, None),
                    };
                    if let Some(slot) = self.ready::<Req>(first, cx) {
                        return Some(slot);
                    }
                    let Some(second) = second else {
                        return None; // the only candidate left is not ready
                    };
                    if !avoid.reject(first) {
                        // Many not ready: any eligible, ready one will do.
                        return self.scan::<Req>(cx, now, all, avoid);
                    }
                    a = second;
                }
            }
        }
    }

    /// The first eligible, ready endpoint from a random start.
    #[cold]
    fn scan<Req>(
        &mut self,
        cx: &mut Context<'_>,
        now: u64,
        all: bool,
        avoid: &Avoid<'_>,
    ) -> Option<Slot<S>>
    where
        S: Service<Req>,
    {
        let n = self.roster.len();
        let start = self.random(n);
        for k in 0..n {
            let i = (start + k) % n;
            if self.eligible(i, now, all) && !avoid.excludes(i, &self.roster.get(i).state) {
                if let Some(slot) = self.ready::<Req>(i, cx) {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Asks endpoint `i` whether it is ready (through this balancer's clone of it); if it
    /// is, takes that clone out to be called.
    #[inline]
    fn ready<Req>(&mut self, i: usize, cx: &mut Context<'_>) -> Option<Slot<S>>
    where
        S: Service<Req>,
    {
        let member = self.roster.get(i);
        let at = match self
            .cache
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| Arc::ptr_eq(&c.member, member)))
        {
            Some(at) => at,
            None => {
                let at = match self.cache.iter().position(Option::is_none) {
                    Some(free) => free,
                    None => {
                        self.evict = (self.evict + 1) % CACHE;
                        self.evict
                    }
                };
                let slot = materialize(member);
                self.cache[at] = Some(slot);
                at
            }
        };
        let slot = self.cache[at].as_mut()?;
        // An error from poll_ready means the endpoint failed for good: it is skipped (and
        // never dropped: membership is the discovery's to change). One not ready may say why
        // (an open circuit, a health gate).
        let (poll, why) = hint::collect(|| slot.service.poll_ready(cx));
        match poll {
            Poll::Ready(Ok(())) => {
                if slot.state.is_gated() {
                    self.core.get().set_gated(&slot.state, false);
                }
                self.cache[at].take()
            }
            _ => {
                if why == Some(Hint::Unhealthy) && !slot.state.is_gated() {
                    self.core.get().set_gated(&slot.state, true);
                }
                self.refusals.note(why);
                None
            }
        }
    }

    /// Puts a called endpoint's clone back for the next pick.
    #[inline]
    fn keep(&mut self, slot: Slot<S>) {
        match self.cache.iter().position(Option::is_none) {
            Some(free) => self.cache[free] = Some(slot),
            None => {
                self.evict = (self.evict + 1) % CACHE;
                self.cache[self.evict] = Some(slot);
            }
        }
    }

    /// Why nothing could be picked.
    fn why(&self, now: u64) -> Unavailable {
        if self.roster.is_empty() {
            return Unavailable::NoEndpoints;
        }
        let mut healthy = self
            .roster
            .iter()
            .filter(|m| m.state.reads_healthy())
            .peekable();
        if healthy.peek().is_none() {
            Unavailable::NoneHealthy
        } else if healthy.all(|m| m.state.ejected_until().is_some_and(|u| u > now)) {
            Unavailable::AllEjected
        } else if self.refusals.all_open() {
            Unavailable::CircuitsOpen
        } else if self.refusals.all_full() {
            Unavailable::AllFull
        } else {
            Unavailable::NoneReady
        }
    }

    /// When an endpoint may take requests again: the end of the earliest ejection, or the
    /// soonest first probe of an open circuit, whichever comes first (from `now`).
    fn retry_after(&self, core: &Core<C>, now: u64) -> Option<Duration> {
        let back = core
            .next_return()
            .map(|r| Duration::from_nanos(r.saturating_sub(now)));
        let probe = self
            .refusals
            .all_open()
            .then(|| self.refusals.soonest_probe())
            .flatten();
        match (back, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fails the request: `call` answers with why.
    fn give_up(&mut self, reason: Unavailable, retry_after: Option<Duration>, waited: Duration) {
        self.refused = Some(NoEndpointReady {
            reason,
            retry_after,
            waited,
        });
        self.waiting_since = None;
    }

    /// Nothing can be picked now: wait (woken by an endpoint, a health change, a membership
    /// change or the end of an ejection) up to `wait_for_ready`, then let `call` fail.
    #[cold]
    fn wait<Req>(
        &mut self,
        cx: &mut Context<'_>,
        hint: Option<&Attempts>,
    ) -> Poll<Result<(), BoxError>>
    where
        S: Service<Req>,
    {
        let shared = self.core.shared().clone();
        let core = &*shared;
        core.register(cx.waker());
        // A wait its caller dropped (a timeout above gave up on readiness) is not this one's:
        // a wait in progress is polled by its own timer once `wait_for_ready` has passed (a
        // little later on a busy runtime: twice that is the margin).
        if let Some(polled) = self.waiting_polled {
            if Instant::now().saturating_duration_since(polled) > core.wait_for_ready() * 2 {
                self.waiting_since = None;
            }
        }
        if self.waiting_since.is_none() {
            // Every endpoint failing or out: the discovery source may know better.
            core.stale();
        }
        loop {
            let since = *self.waiting_since.get_or_insert_with(Instant::now);
            let deadline = since + core.wait_for_ready();
            let now = core.now();
            let at = Instant::now();
            self.waiting_polled = Some(at);
            if at >= deadline {
                let reason = self.why(now);
                let retry_after = self.retry_after(core, now);
                self.give_up(reason, retry_after, core.wait_for_ready());
                return Poll::Ready(Ok(()));
            }
            // Every endpoint that could take the request is refused by an open circuit, and
            // none probes (nor does an ejection end) before the wait would: fail now.
            let remaining = deadline - at;
            if self.refusals.hopeless(remaining)
                && core
                    .next_return()
                    .is_none_or(|r| core.instant_at(r) > deadline)
            {
                let retry_after = self.retry_after(core, now);
                self.give_up(Unavailable::CircuitsOpen, retry_after, at - since);
                return Poll::Ready(Ok(()));
            }
            let wake = match core.next_return() {
                Some(r) => deadline.min(core.instant_at(r)),
                None => deadline,
            };
            if self.timer.poll_until(wake, cx).is_pending() {
                // A layer above (a failover set over balancers) hears why, as this one did.
                if self.refusals.all_open() {
                    hint::report(Hint::CircuitOpen {
                        probe_in: self.refusals.soonest_probe(),
                    });
                } else if self.refusals.all_unhealthy() {
                    hint::report(Hint::Unhealthy);
                }
                return Poll::Pending;
            }
            // The timer fired: an ejection may be over.
            self.sync();
            let now = core.now();
            core.sweep(now);
            if let Some(slot) = self.pick::<Req>(cx, now, hint) {
                self.chosen = Some(slot);
                self.chosen_at = 0;
                self.waiting_since = None;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S, C, A, Req> Service<Req> for Balance<S, C, A>
where
    S: Service<Req> + Clone,
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
        self.sync();
        let now = self.core.get().now_if_needed();
        self.core.get().sweep(now);
        let hint = Attempts::current();
        if let Some(slot) = self.pick::<Req>(cx, now, hint.as_ref()) {
            self.chosen = Some(slot);
            self.chosen_at = now;
            self.waiting_since = None;
            return Poll::Ready(Ok(()));
        }
        self.wait::<Req>(cx, hint.as_ref())
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(refused) = self.refused.take() {
            return ResponseFuture::failed(Box::new(refused));
        }
        let Some(mut slot) = self.chosen.take() else {
            return ResponseFuture::failed(Box::new(Misuse::called_before_ready("balancer")));
        };
        if let Some(attempts) = self.attempts.attempts(&request) {
            attempts.record(self.core.get().scope, slot.state.id);
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
        // The `balancer{balancer, target}` span around the endpoint's call, made only when a
        // subscriber wants it (one level check on the hot path otherwise).
        let span = if tracing::level_enabled!(tracing::Level::DEBUG) {
            balancer_span(&core.name, &slot.state.name)
        } else {
            None
        };
        self.chosen_at = 0;
        let in_flight = InFlight::new(self.core.for_call(), slot.state.clone(), started);
        let future = {
            let _entered = span.as_ref().map(tracing::Span::enter);
            slot.service.call(request)
        };
        self.keep(slot);
        ResponseFuture::called(future, in_flight, span)
    }
}

/// The `balancer{balancer, target}` span of a request sent to `target`, if a subscriber wants
/// it.
#[cold]
#[inline(never)]
fn balancer_span(balancer: &str, target: &str) -> Option<tracing::Span> {
    let span = tracing::debug_span!("balancer", balancer = %balancer, target = %target);
    (!span.is_disabled()).then_some(span)
}
