//! The response future: one request's attempts, waits and decisions.

use crate::error::{AttemptTimedOut, DeadlineExceeded};
use crate::policy::{Decision, RetryPolicy};
use crate::shared::{Limits, Shared};
use bulwark_core::backoff::Backoff;
use bulwark_core::budget::ResendPermit;
use bulwark_core::local::CallRef;
use bulwark_core::slot::LazyBox;
use bulwark_core::timer::poll_until;
use bulwark_core::{BoxError, GiveUpReason, Misuse};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

pin_project! {
    /// The future of a [`BackoffRetry`](crate::BackoffRetry) call.
    ///
    /// A named state machine, never boxed: the running attempt, the wait before the next
    /// one, or waiting for the inner service to be ready. Its timer lives inline (as tower's
    /// `Timeout` keeps its own): armed the first time it has to wait (a backoff, or an
    /// attempt that outlives a configured timeout or deadline) and re-armed after that, with
    /// no allocation.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<F, S, Req, P>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        // The inner service for the next attempts (None when no retry can happen).
        service: Option<S>,
        // The request to send again (None when it may not be resent).
        request: Option<Req>,
        shared: CallRef<Shared<P>>,
        // Attempts started so far.
        attempts: u32,
        previous_delay: Duration,
        // When the whole request must be done, if a deadline is set.
        deadline: Option<Instant>,
        // That deadline as a length of time from the call, for the error that reports it.
        allowed: Duration,
        // When the running attempt must be done (its timeout or the deadline).
        limit: Option<Instant>,
        #[pin]
        timer: Option<Sleep>,
        // The last attempt's result, kept while waiting to retry in case the deadline ends it.
        last: Option<F::Output>,
        // The retry's place under the stack's resend cap, from when it is scheduled until its
        // attempt ends (or this future is dropped).
        permit: Option<ResendPermit>,
        // The `retry{retry, attempt}` span of a retry (attempt 2 and later), entered while
        // that attempt is called and polled; only made when a subscriber wants it.
        // A request that was never retried has none, and pays no call to drop it.
        span: LazyBox<tracing::Span>,
        // When the request started, for the duration histogram (read only with a recorder).
        started: bulwark_core::telemetry::Stopwatch,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Waiting,
        Readying,
        Done,
    }
}

impl<F, S, Req, P> ResponseFuture<F, S, Req, P>
where
    F: Future,
{
    #[inline]
    pub(crate) fn new(
        future: F,
        service: Option<S>,
        request: Option<Req>,
        shared: CallRef<Shared<P>>,
        limits: Limits,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            service,
            request,
            shared,
            attempts: 1,
            previous_delay: Duration::ZERO,
            deadline: limits.deadline,
            allowed: limits.allowed,
            limit: limits.first,
            timer: None,
            last: None,
            permit: None,
            span: LazyBox::new(),
            started: bulwark_core::telemetry::Stopwatch::start(),
        }
    }
}

impl<F, S, Req, P> fmt::Debug for ResponseFuture<F, S, Req, P>
where
    F: Future,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Waiting => "waiting",
            State::Readying => "readying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<F, S, Req, P, Res, E> Future for ResponseFuture<F, S, Req, P>
where
    F: Future<Output = Result<Res, E>>,
    S: Service<Req, Future = F, Response = Res, Error = E>,
    E: Into<BoxError>,
    Req: Clone,
    P: RetryPolicy<Req, Res, E>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = ready!(poll_request(self.as_mut(), cx));
        #[cfg(feature = "metrics")]
        self.shared
            .metrics
            .request(self.attempts, self.started.seconds());
        Poll::Ready(out)
    }
}

/// The request: its attempts, waits and retries, to its end.
#[inline]
fn poll_request<F, S, Req, P, Res, E>(
    self_: Pin<&mut ResponseFuture<F, S, Req, P>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, BoxError>>
where
    F: Future<Output = Result<Res, E>>,
    S: Service<Req, Future = F, Response = Res, Error = E>,
    E: Into<BoxError>,
    Req: Clone,
    P: RetryPolicy<Req, Res, E>,
{
    let mut this = self_.project();
    // The fast path: the attempt answered and the policy accepts the answer.
    if this.limit.is_none() {
        if let StateProj::Calling { future } = this.state.as_mut().project() {
            return match future.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(result) => {
                    let decision = this.shared.policy.decide(&result);
                    if decision == Decision::Accept {
                        this.state.set(State::Done);
                        *this.permit = None;
                        return Poll::Ready(result.map_err(Into::into));
                    }
                    drive(this, cx, Some((Some(result), decision)))
                }
            };
        }
    }
    drive(this, cx, None)
}

/// Everything but the fast path: timeouts, retries, waits, readiness. `ended` is an attempt
/// the fast path already saw end (its result, or `None` for a timeout, and the decision).
#[inline(never)]
#[allow(clippy::type_complexity)]
fn drive<F, S, Req, P, Res, E>(
    mut this: ResponseFutureProj<'_, F, S, Req, P>,
    cx: &mut Context<'_>,
    mut ended: Option<(Option<Result<Res, E>>, Decision)>,
) -> Poll<Result<Res, BoxError>>
where
    F: Future<Output = Result<Res, E>>,
    S: Service<Req, Future = F, Response = Res, Error = E>,
    E: Into<BoxError>,
    Req: Clone,
    P: RetryPolicy<Req, Res, E>,
{
    loop {
        let (result, decision) = match ended.take() {
            Some(attempt) => attempt,
            None => match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let _entered = this.span.as_deref().map(tracing::Span::enter);
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => Some(result),
                        Poll::Pending => {
                            let Some(limit) = *this.limit else {
                                return Poll::Pending;
                            };
                            if poll_until(this.timer.as_mut(), limit, cx).is_pending() {
                                return Poll::Pending;
                            }
                            None // timed out
                        }
                    };
                    let decision = match &result {
                        Some(r) => this.shared.policy.decide(r),
                        None => Decision::Retry,
                    };
                    (result, decision)
                }
                StateProj::Waiting => {
                    let Some(wake) = *this.limit else {
                        this.state.set(State::Readying);
                        continue;
                    };
                    if poll_until(this.timer.as_mut(), wake, cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.state.set(State::Readying);
                    continue;
                }
                StateProj::Readying => {
                    let Some(service) = this.service.as_mut() else {
                        return Poll::Ready(Err(Box::new(Misuse::polled_after_completion(
                            "retry",
                        ))));
                    };
                    // A resend: the balancer below, if any, reserves an endpoint this
                    // request has not been to.
                    let hint = this
                        .request
                        .as_ref()
                        .and_then(|r| this.shared.policy.attempts(r));
                    let ready = match hint {
                        Some(attempts) => attempts.scope(|| service.poll_ready(cx)),
                        None => service.poll_ready(cx),
                    };
                    match ready {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e.into()));
                        }
                        Poll::Pending => {
                            // Waiting for readiness must not outlive the deadline either.
                            if let Some(deadline) = *this.deadline {
                                if poll_until(this.timer.as_mut(), deadline, cx).is_ready() {
                                    let shared = &**this.shared;
                                    let attempts = *this.attempts;
                                    shared.gave_up(attempts, GiveUpReason::Deadline);
                                    this.state.set(State::Done);
                                    return Poll::Ready(match this.last.take() {
                                        Some(last) => last.map_err(Into::into),
                                        None => Err(Box::new(DeadlineExceeded {
                                            deadline: *this.allowed,
                                            attempts,
                                        })),
                                    });
                                }
                            }
                            return Poll::Pending;
                        }
                    }
                    let shared = &**this.shared;
                    *this.attempts += 1;
                    let request = if *this.attempts >= shared.max_attempts {
                        this.request.take()
                    } else {
                        this.request.clone()
                    };
                    let Some(mut request) = request else {
                        return Poll::Ready(Err(Box::new(Misuse::polled_after_completion(
                            "retry",
                        ))));
                    };
                    *this.last = None;
                    let now = Instant::now();
                    *this.limit = shared.attempt_limit(now, *this.deadline);
                    if let Some(limit) = *this.limit {
                        // Tell the backend how long this attempt has.
                        shared
                            .policy
                            .set_time_left(&mut request, limit.saturating_duration_since(now));
                    }
                    let span = tracing::debug_span!(
                        "retry",
                        retry = %shared.name,
                        attempt = *this.attempts
                    );
                    this.span.set((!span.is_disabled()).then_some(span));
                    let future = {
                        let _entered = this.span.as_deref().map(tracing::Span::enter);
                        service.call(request)
                    };
                    this.state.set(State::Calling { future });
                    continue;
                }
                StateProj::Done => {
                    return Poll::Ready(Err(Box::new(Misuse::polled_after_completion("retry"))))
                }
            },
        };
        this.state.set(State::Done);
        // The attempt ended: a retry's place under the cap is free again, unless another
        // retry follows (which keeps it).
        let held = this.permit.take();
        let shared = &**this.shared;
        let attempts = *this.attempts;
        // An attempt cut short by the deadline, or one that failed once the deadline had
        // passed (a backend told of the same deadline gives up at the same moment, and its
        // error, a reset stream say, says less than the deadline does), ends the request with
        // the deadline.
        if let Some(e) = result
            .as_ref()
            .is_none_or(Result::is_err)
            .then(|| DeadlineExceeded::passed(*this.deadline, Some(*this.allowed), attempts))
            .flatten()
        {
            shared.gave_up(attempts, GiveUpReason::Deadline);
            return Poll::Ready(Err(Box::new(e)));
        }
        let server_delay = match decision {
            Decision::Accept => return Poll::Ready(finish(result, shared, attempts)),
            Decision::GiveUp(reason) => {
                shared.gave_up(attempts, reason);
                return Poll::Ready(finish(result, shared, attempts));
            }
            Decision::Retry => None,
            Decision::RetryAfter(d) => Some(d),
        };
        if attempts >= shared.max_attempts {
            shared.gave_up(attempts, GiveUpReason::MaxAttempts);
            return Poll::Ready(finish(result, shared, attempts));
        }
        let resendable = match (this.request.as_ref(), this.service.as_ref()) {
            (Some(req), Some(_)) => shared.policy.may_resend(req),
            _ => false,
        };
        if !resendable {
            shared.gave_up(attempts, GiveUpReason::NotResendable);
            return Poll::Ready(finish(result, shared, attempts));
        }
        let delay = server_delay.unwrap_or_else(|| {
            shared
                .backoff
                .delay(attempts, *this.previous_delay, &*shared.random)
        });
        let wake = Instant::now() + delay;
        if this.deadline.is_some_and(|d| wake >= d) {
            shared.gave_up(attempts, GiveUpReason::Deadline);
            return Poll::Ready(finish(result, shared, attempts));
        }
        let permit = match (held, &shared.cap) {
            (Some(permit), _) => Some(permit),
            (None, Some(cap)) => match cap.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    shared.gave_up(attempts, GiveUpReason::ConcurrencyCap);
                    return Poll::Ready(finish(result, shared, attempts));
                }
            },
            (None, None) => None,
        };
        if let Some(budget) = &shared.budget {
            if !budget.try_withdraw() {
                shared.gave_up(attempts, GiveUpReason::Budget);
                return Poll::Ready(finish(result, shared, attempts));
            }
        }
        shared.scheduled(attempts, delay, server_delay.is_some(), result.is_none());
        *this.previous_delay = delay;
        *this.last = result;
        *this.permit = permit;
        *this.limit = Some(wake);
        this.state.set(State::Waiting);
    }
}

/// The answer for the caller: the attempt's own result, or, for an attempt cut short by its
/// timeout, an [`AttemptTimedOut`] error.
fn finish<Res, E: Into<BoxError>, P>(
    result: Option<Result<Res, E>>,
    shared: &Shared<P>,
    attempts: u32,
) -> Result<Res, BoxError> {
    match result {
        Some(r) => r.map_err(Into::into),
        None => Err(Box::new(AttemptTimedOut {
            after: shared.attempt_timeout.unwrap_or_default(),
            attempts,
        })),
    }
}
