//! The response future: one request's attempts, the wait before each hedge, and which answer
//! ends it.

use crate::config::MAX_ATTEMPTS;
use crate::shared::Shared;
use bulwark_core::attempts::RequestAttempts;
use bulwark_core::budget::ResendPermit;
use bulwark_core::local::CallRef;
use bulwark_core::telemetry::Stopwatch;
use bulwark_core::timer::poll_until;
use bulwark_core::{BoxError, Classify, Decision, GiveUpReason, Misuse};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

pin_project! {
    /// The attempts of one request, kept inline: one place per attempt the layer may make
    /// ([`MAX_ATTEMPTS`]), so sending a hedge allocates nothing.
    struct Slots<F> {
        #[pin]
        s0: Option<F>,
        #[pin]
        s1: Option<F>,
        #[pin]
        s2: Option<F>,
        #[pin]
        s3: Option<F>,
        #[pin]
        s4: Option<F>,
    }
}

const _: () = assert!(MAX_ATTEMPTS == 5, "one slot per attempt");

impl<F> Slots<F> {
    fn get(self: Pin<&mut Self>, i: usize) -> Pin<&mut Option<F>> {
        let slots = self.project();
        match i {
            0 => slots.s0,
            1 => slots.s1,
            2 => slots.s2,
            3 => slots.s3,
            _ => slots.s4,
        }
    }
}

/// An attempt's start not known yet: it was never found pending.
const NOT_POLLED: u64 = u64::MAX;

/// What comes next for the hedges.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Not decided yet: decided when the first attempt is found still running.
    Unset,
    /// The next hedge is due at `at`.
    At { at: Instant, after_failure: bool },
    /// No hedge on a timer (no percentile yet and no delay); a non-fatal answer still sends
    /// one.
    Untimed,
    /// The next hedge is due and its budget and place are taken: waiting for the service.
    Readying { after_failure: bool },
    /// No more hedges.
    Stopped,
}

impl Next {
    /// The next hedge `delay` after `from`, or none on a timer without a delay.
    fn timed(delay: Option<std::time::Duration>, from: Instant) -> Next {
        match delay {
            Some(delay) => Next::At {
                at: from + delay,
                after_failure: false,
            },
            None => Next::Untimed,
        }
    }
}

pin_project! {
    /// The future of a [`Hedge`](crate::Hedge) call.
    ///
    /// A named state machine, never boxed: the attempts in flight live inline (one place per
    /// attempt allowed, at most five), with one inline timer for the next hedge, armed only
    /// when the first attempt has not answered at its first poll. A request that may not be
    /// hedged carries no service or request copy.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<F, S, Req, C, A>
    where
        F: Future,
    {
        #[pin]
        slots: Slots<F>,
        // The inner service for the hedges, and the request to send (None: no more hedges).
        service: Option<S>,
        request: Option<Req>,
        shared: CallRef<Shared<C, A>>,
        // Attempts sent, and which of them are still running (a bit per slot).
        sent: u8,
        running: u8,
        // When each attempt was sent (the first: first found pending), on the latency clock
        // (with a percentile only).
        started: [u64; 5],
        // When the previous attempt was sent (for the events; once known).
        last_sent: Option<Instant>,
        next: Next,
        // Each hedge's place under the resend cap (slot i's is at i - 1).
        permits: [Option<ResendPermit>; 4],
        // The latest non-fatal answer, returned if no attempt does better.
        last: Option<F::Output>,
        done: bool,
        #[pin]
        timer: Option<Sleep>,
        // When the request started, for the duration histogram (read only with a recorder
        // installed).
        began: Stopwatch,
    }
}

impl<F, S, Req, C, A> ResponseFuture<F, S, Req, C, A>
where
    F: Future,
{
    #[inline]
    pub(crate) fn new(
        future: F,
        service: Option<S>,
        request: Option<Req>,
        shared: CallRef<Shared<C, A>>,
    ) -> Self {
        let next = if service.is_some() {
            Next::Unset
        } else {
            Next::Stopped
        };
        ResponseFuture {
            slots: Slots {
                s0: Some(future),
                s1: None,
                s2: None,
                s3: None,
                s4: None,
            },
            service,
            request,
            shared,
            sent: 1,
            running: 1,
            started: [NOT_POLLED; 5],
            last_sent: None,
            next,
            permits: [None, None, None, None],
            last: None,
            done: false,
            timer: None,
            began: Stopwatch::start(),
        }
    }
}

impl<F, S, Req, C, A> fmt::Debug for ResponseFuture<F, S, Req, C, A>
where
    F: Future,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("sent", &self.sent)
            .field("running", &self.running.count_ones())
            .field("next", &self.next)
            .field("done", &self.done)
            .finish()
    }
}

/// Whether an answer ends the request (a success, or a failure not worth sending again).
#[inline]
fn ends(decision: Decision) -> bool {
    match decision {
        Decision::Accept => true,
        Decision::Retry | Decision::RetryAfter(_) => false,
        // The server asked for no more (or for a wait past the cap): this answer is a
        // non-fatal failure, the attempts in flight go on, no hedge follows.
        Decision::GiveUp(GiveUpReason::Pushback | GiveUpReason::RetryAfterTooLong) => false,
        Decision::GiveUp(_) => true,
    }
}

/// No more hedges: the service and the request copy are let go, a place taken for a hedge
/// not sent is given back. (A macro: it takes the fields, not the projection, which `shared`
/// borrows.)
macro_rules! stop {
    ($this:ident) => {{
        if let Next::Readying { .. } = *$this.next {
            let i = usize::from(*$this.sent);
            if (1..=4).contains(&i) {
                $this.permits[i - 1] = None;
            }
        }
        *$this.next = Next::Stopped;
        *$this.service = None;
        *$this.request = None;
    }};
}

impl<F, S, Req, C, A, Res, E> Future for ResponseFuture<F, S, Req, C, A>
where
    F: Future<Output = Result<Res, E>>,
    S: Service<Req, Future = F, Response = Res, Error = E>,
    E: Into<BoxError>,
    Req: Clone,
    C: Classify<Res, E>,
    A: RequestAttempts<Req>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = ready!(poll_request(self.as_mut(), cx));
        #[cfg(feature = "metrics")]
        self.shared.metrics.answered(self.began.seconds());
        Poll::Ready(out)
    }
}

/// The request: its attempts and hedges, to its end.
#[inline]
fn poll_request<F, S, Req, C, A, Res, E>(
    self_: Pin<&mut ResponseFuture<F, S, Req, C, A>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, BoxError>>
where
    F: Future<Output = Result<Res, E>>,
    S: Service<Req, Future = F, Response = Res, Error = E>,
    E: Into<BoxError>,
    Req: Clone,
    C: Classify<Res, E>,
    A: RequestAttempts<Req>,
{
    let mut this = self_.project();
    // The fast path: the first attempt alone, answering.
    if *this.running == 1 && *this.sent == 1 {
        if let Some(future) = this.slots.as_mut().get(0).as_pin_mut() {
            return match future.poll(cx) {
                Poll::Ready(result) => {
                    this.slots.as_mut().get(0).set(None);
                    *this.running = 0;
                    let shared = &**this.shared;
                    if let Some(latencies) = &shared.latencies {
                        match this.started[0] {
                            NOT_POLLED => latencies.record_instant(),
                            started => latencies.record(started),
                        }
                    }
                    let decision = shared.classifier.resend(&result);
                    if ends(decision) {
                        *this.done = true;
                        *this.service = None;
                        return Poll::Ready(result.map_err(Into::into));
                    }
                    drive(this, cx, Some((0, result)), false)
                }
                Poll::Pending => {
                    // The attempt's latency counts from its first poll.
                    if this.started[0] == NOT_POLLED {
                        if let Some(latencies) = &this.shared.latencies {
                            this.started[0] = latencies.now();
                        }
                    }
                    if this.service.is_none() {
                        return Poll::Pending;
                    }
                    drive(this, cx, None, true)
                }
            };
        }
    }
    drive(this, cx, None, false)
}

/// Everything but the fast path: the attempts in flight, the hedges' timer, budget, cap and
/// readiness. `ended` is an attempt the fast path saw answer; `polled_first` says the first
/// attempt was just polled and is pending.
#[inline(never)]
fn drive<F, S, Req, C, A, Res, E>(
    mut this: ResponseFutureProj<'_, F, S, Req, C, A>,
    cx: &mut Context<'_>,
    mut ended: Option<(usize, Result<Res, E>)>,
    mut polled_first: bool,
) -> Poll<Result<Res, BoxError>>
where
    F: Future<Output = Result<Res, E>>,
    S: Service<Req, Future = F, Response = Res, Error = E>,
    E: Into<BoxError>,
    Req: Clone,
    C: Classify<Res, E>,
    A: RequestAttempts<Req>,
{
    if *this.done {
        return Poll::Ready(Err(Box::new(Misuse::polled_after_completion("hedge"))));
    }
    let shared = &**this.shared;
    loop {
        // The answers: the one the fast path saw, then every attempt still running.
        for i in 0..usize::from(*this.sent) {
            let result = match ended.take() {
                Some((at, result)) if at == i => result,
                other => {
                    ended = other;
                    if *this.running & (1 << i) == 0 || (i == 0 && polled_first) {
                        continue;
                    }
                    let mut slot = this.slots.as_mut().get(i);
                    let Some(future) = slot.as_mut().as_pin_mut() else {
                        continue;
                    };
                    match future.poll(cx) {
                        Poll::Pending => continue,
                        Poll::Ready(result) => {
                            slot.set(None);
                            *this.running &= !(1 << i);
                            if let Some(latencies) = &shared.latencies {
                                match this.started[i] {
                                    NOT_POLLED => latencies.record_instant(),
                                    started => latencies.record(started),
                                }
                            }
                            result
                        }
                    }
                }
            };
            if i > 0 {
                this.permits[i - 1] = None;
            }
            let decision = shared
                .classifier
                .resend(&result)
                .capped(shared.max_pushback);
            // An error (not an answer) while another attempt is still in flight does not end
            // the request, whatever the classifier says of it: the attempt that is out there
            // may still answer. A hedge that found no endpoint to take it (a balancer's "none
            // ready") must not cancel the first attempt, which did find one. No hedge follows.
            let fatal_error = result.is_err() && *this.running != 0;
            if ends(decision) && !fatal_error {
                // The answer: cancel the others, give their places back.
                for j in 0..usize::from(*this.sent) {
                    if *this.running & (1 << j) != 0 {
                        if let (Some(latencies), started) = (&shared.latencies, this.started[j]) {
                            if started != NOT_POLLED {
                                latencies.record_cancelled(started);
                            }
                        }
                    }
                    this.slots.as_mut().get(j).set(None);
                }
                *this.running = 0;
                *this.permits = [None, None, None, None];
                *this.service = None;
                *this.request = None;
                *this.done = true;
                if i > 0 {
                    shared.won(i as u32 + 1);
                }
                return Poll::Ready(result.map_err(Into::into));
            }
            *this.last = Some(result);
            let hedges_left = u32::from(*this.sent) < shared.max_attempts;
            match decision {
                Decision::Retry | Decision::RetryAfter(_) => {
                    if hedges_left && !matches!(*this.next, Next::Stopped | Next::Readying { .. }) {
                        let wait = match decision {
                            Decision::RetryAfter(wait) => wait,
                            _ => std::time::Duration::ZERO,
                        };
                        *this.next = Next::At {
                            at: Instant::now() + wait,
                            after_failure: true,
                        };
                    }
                }
                Decision::GiveUp(reason) => {
                    // A server's pushback refuses the next hedge; a fatal error while another
                    // attempt is out only stops hedging (no hedge was refused).
                    if hedges_left && !fatal_error && !matches!(*this.next, Next::Stopped) {
                        shared.refused(u32::from(*this.sent) + 1, reason);
                    }
                    stop!(this);
                }
                // Only a fatal error reaches here (see `fatal_error`): no more hedges.
                Decision::Accept => stop!(this),
            }
        }
        polled_first = false;

        // The next hedge.
        let mut sent_hedge = false;
        if u32::from(*this.sent) < shared.max_attempts {
            loop {
                match *this.next {
                    Next::Unset => {
                        let now = Instant::now();
                        *this.last_sent = Some(now);
                        *this.next = Next::timed(shared.delay(), now);
                    }
                    Next::At { at, after_failure } => {
                        // The deadline in scope, if it comes first, ends the wait: the caller
                        // has given up by then, so no hedge is sent.
                        let deadline = shared.deadline().filter(|&d| d <= at);
                        let fire = deadline.unwrap_or(at);
                        if poll_until(this.timer.as_mut(), fire, cx).is_pending() {
                            break;
                        }
                        let attempt = u32::from(*this.sent) + 1;
                        if deadline.is_some() {
                            shared.refused(attempt, GiveUpReason::Deadline);
                            stop!(this);
                            break;
                        }
                        let permit = match &shared.cap {
                            Some(cap) => match cap.try_acquire() {
                                Some(permit) => Some(permit),
                                None => {
                                    shared.refused(attempt, GiveUpReason::ConcurrencyCap);
                                    stop!(this);
                                    break;
                                }
                            },
                            None => None,
                        };
                        if !shared.budget.try_withdraw() {
                            shared.refused(attempt, GiveUpReason::Budget);
                            stop!(this);
                            break;
                        }
                        this.permits[usize::from(*this.sent) - 1] = permit;
                        *this.next = Next::Readying { after_failure };
                    }
                    Next::Readying { after_failure } => {
                        let (Some(service), Some(request)) =
                            (this.service.as_mut(), this.request.as_ref())
                        else {
                            stop!(this);
                            break;
                        };
                        // Waiting for the service to take the hedge does not outlast the
                        // deadline in scope: the timer wakes this task then, and no hedge
                        // goes after it.
                        if let Some(deadline) = shared.deadline() {
                            if poll_until(this.timer.as_mut(), deadline, cx).is_ready() {
                                shared.refused(u32::from(*this.sent) + 1, GiveUpReason::Deadline);
                                stop!(this);
                                break;
                            }
                        }
                        // The hedge goes to an endpoint this request has not been to, when a
                        // balancer below can tell.
                        let ready = match shared.attempts.attempts(request) {
                            Some(attempts) => attempts.scope(|| service.poll_ready(cx)),
                            None => service.poll_ready(cx),
                        };
                        match ready {
                            Poll::Pending => break,
                            Poll::Ready(Err(e)) => {
                                // No hedge; the attempts in flight go on.
                                let error: BoxError = e.into();
                                tracing::debug!(hedge = %shared.name, %error, "hedge not ready");
                                stop!(this);
                                break;
                            }
                            Poll::Ready(Ok(())) => {}
                        }
                        let i = usize::from(*this.sent);
                        let last_hedge = i as u32 + 1 >= shared.max_attempts;
                        let now = Instant::now();
                        // The copy tells the server the time left now (a `grpc-timeout`), not
                        // when the previous attempt went: the kept request is aged in turn.
                        if let (Some(kept), Some(last)) = (this.request.as_mut(), *this.last_sent) {
                            shared
                                .attempts
                                .resent_after(kept, now.saturating_duration_since(last));
                        }
                        let copy = if last_hedge {
                            this.request.take()
                        } else {
                            this.request.clone()
                        };
                        let Some(copy) = copy else {
                            stop!(this);
                            break;
                        };
                        if let Some(latencies) = &shared.latencies {
                            this.started[i] = latencies.now();
                        }
                        let future = service.call(copy);
                        this.slots.as_mut().get(i).set(Some(future));
                        *this.running |= 1 << i;
                        *this.sent += 1;
                        let waited = this.last_sent.map_or(std::time::Duration::ZERO, |t| {
                            now.saturating_duration_since(t)
                        });
                        let waited = if after_failure {
                            std::time::Duration::ZERO
                        } else {
                            waited
                        };
                        shared.sent(i as u32 + 1, waited, after_failure);
                        *this.last_sent = Some(now);
                        if last_hedge {
                            *this.service = None;
                            *this.next = Next::Stopped;
                        } else {
                            *this.next = Next::timed(shared.delay(), now);
                        }
                        sent_hedge = true;
                        break;
                    }
                    Next::Untimed | Next::Stopped => break,
                }
            }
        }

        // A hedge just sent is polled at once (so it can wake this task).
        if sent_hedge {
            continue;
        }
        if *this.running != 0 {
            return Poll::Pending;
        }
        // Nothing is running: wait for the hedge that comes next, or return the last answer.
        if matches!(*this.next, Next::At { .. } | Next::Readying { .. })
            && u32::from(*this.sent) < shared.max_attempts
        {
            return Poll::Pending;
        }
        *this.done = true;
        *this.service = None;
        *this.request = None;
        return Poll::Ready(match this.last.take() {
            Some(last) => last.map_err(Into::into),
            None => Err(Box::new(Misuse::polled_after_completion("hedge"))),
        });
    }
}
