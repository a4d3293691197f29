//! The response future: one request's way through the targets.

use crate::error::{AllFailed, TargetFailure};
use crate::policy::FailoverPolicy;
use crate::shared::Shared;
use bulwark_core::local::CallRef;
use bulwark_core::slot::LazyBox;
use bulwark_core::telemetry::Stopwatch;
use bulwark_core::timer::poll_until;
use bulwark_core::{BoxError, DeadlineExceeded, FailoverReason, Misuse};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use tracing::Span;

pin_project! {
    /// The future of a [`Failover`](crate::Failover) call.
    ///
    /// A named state machine, never boxed, with its timer inline (as tower's `Timeout`): no
    /// allocation on the path where the first target answers. Failing over clones the next
    /// target from the set's list, and keeps the record of failures (for [`AllFailed`]) in a
    /// small box made on the first failure.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // The per-attempt timeout and the interval between attempts, armed (inline, no
        // allocation) the first time the future has to wait.
        #[pin]
        timer: Option<Sleep>,
        // When the running attempt times out: its own timeout, cut to the deadline.
        limit: Option<Instant>,
        // When the whole request must end, if a deadline is set.
        deadline: Option<Instant>,
        // That deadline as a length of time from the call, for the error that reports it.
        allowed: Duration,
        request: Option<Req>,
        shared: CallRef<Shared<S, P>>,
        current: usize,
        // Made when the request first fails over; a request that never does pays no call to
        // drop it.
        trail: LazyBox<Trail<S::Response>>,
        // When the running attempt started, for the per-target duration histogram (read only
        // with a recorder installed).
        attempt_started: Stopwatch,
    }
}

/// What a request that has failed over carries along (off the fast path).
struct Trail<Res> {
    start: usize,
    tried: usize,
    /// Attempts sent, the first included (a target skipped as not ready is not one).
    attempts: u32,
    /// The running attempt's `failover` span (attempts after the first have one), entered
    /// while its future is polled.
    span: Span,
    reason: FailoverReason,
    failures: Vec<TargetFailure>,
    /// The last attempt's failure response, if it answered with one (its error, if it failed
    /// with one, is the last failure's).
    last: Option<Res>,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Waiting,
        Choosing,
        Failed { error: Option<BoxError> },
        Done,
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    S: Service<Req>,
{
    #[inline]
    pub(crate) fn new(
        future: S::Future,
        index: usize,
        request: Option<Req>,
        shared: CallRef<Shared<S, P>>,
    ) -> Self {
        let (deadline, allowed) = shared.deadline();
        let limit = shared.attempt_limit(deadline);
        ResponseFuture {
            state: State::Calling { future },
            timer: None,
            limit,
            deadline,
            allowed,
            request,
            shared,
            current: index,
            trail: LazyBox::new(),
            attempt_started: Stopwatch::start(),
        }
    }

    pub(crate) fn failed(error: BoxError, shared: CallRef<Shared<S, P>>) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            timer: None,
            limit: None,
            deadline: None,
            allowed: Duration::ZERO,
            request: None,
            shared,
            current: 0,
            trail: LazyBox::new(),
            attempt_started: Stopwatch::off(),
        }
    }
}

impl<S, Req, P> fmt::Debug for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("current", &self.current)
            .field("failed_over", &self.trail.as_ref().map_or(0, |t| t.tried))
            .finish_non_exhaustive()
    }
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    P: FailoverPolicy<Req, S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The fast path: the first attempt, answered, and the answer is not a failure. (An
        // attempt after a failover runs in its span, in `drive`.)
        if let (None, StateProj::Calling { future }) =
            (this.trail.as_ref(), this.state.as_mut().project())
        {
            return match future.poll(cx) {
                Poll::Ready(result) => {
                    if !this.shared.policy.is_failure(&result) {
                        this.shared
                            .succeeded(*this.current, this.attempt_started.seconds());
                        this.state.set(State::Done);
                        return Poll::Ready(result.map_err(Into::into));
                    }
                    drive(this, cx, Some(Some(result)))
                }
                Poll::Pending => match *this.limit {
                    None => Poll::Pending,
                    Some(limit) => {
                        if poll_until(this.timer.as_mut(), limit, cx).is_ready() {
                            drive(this, cx, Some(None))
                        } else {
                            Poll::Pending
                        }
                    }
                },
            };
        }
        drive(this, cx, None)
    }
}

/// Everything but the fast path: recording a failure, the interval, choosing and calling the
/// next target, and the final answer. `ended` is an attempt the fast path saw end: its result,
/// or `None` when it timed out.
#[inline(never)]
#[allow(clippy::type_complexity)]
fn drive<S, Req, P>(
    mut this: ResponseFutureProj<'_, S, Req, P>,
    cx: &mut Context<'_>,
    mut ended: Option<Option<Result<S::Response, S::Error>>>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    P: FailoverPolicy<Req, S::Response, S::Error>,
{
    loop {
        let result = match ended.take() {
            Some(result) => result,
            None => match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    // An attempt after the first runs in its span.
                    let polled = {
                        let _entered = this.trail.as_ref().map(|t| t.span.enter());
                        future.poll(cx)
                    };
                    match polled {
                        Poll::Ready(result) => {
                            if !this.shared.policy.is_failure(&result) {
                                this.shared
                                    .succeeded(*this.current, this.attempt_started.seconds());
                                this.state.set(State::Done);
                                return Poll::Ready(result.map_err(Into::into));
                            }
                            Some(result)
                        }
                        Poll::Pending => match *this.limit {
                            Some(limit) => {
                                if poll_until(this.timer.as_mut(), limit, cx).is_pending() {
                                    return Poll::Pending;
                                }
                                None
                            }
                            None => return Poll::Pending,
                        },
                    }
                }
                StateProj::Waiting => {
                    if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                        if timer.poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    this.state.set(State::Choosing);
                    continue;
                }
                StateProj::Choosing => match choose_next(&mut this, cx) {
                    Some(answer) => {
                        this.state.set(State::Done);
                        return Poll::Ready(answer);
                    }
                    None => continue,
                },
                StateProj::Failed { error } => {
                    let e = error
                        .take()
                        .unwrap_or_else(|| Box::new(Misuse::polled_after_completion("failover")));
                    this.state.set(State::Done);
                    return Poll::Ready(Err(e));
                }
                StateProj::Done => {
                    return Poll::Ready(Err(Box::new(Misuse::polled_after_completion("failover"))))
                }
            },
        };
        // The attempt on `current` failed (`result`), or timed out (`None`).
        this.state.set(State::Done);
        let shared = &**this.shared;
        let i = *this.current;
        let attempts = this.trail.as_ref().map_or(1, |t| t.attempts);
        if let Some(e) = result
            .is_none()
            .then(|| DeadlineExceeded::passed(*this.deadline, Some(*this.allowed), attempts))
            .flatten()
        {
            // Cut by the request's deadline, not its own timeout: no target is tried after.
            shared.failed(i, FailoverReason::Timeout, this.attempt_started.seconds());
            return Poll::Ready(Err(Box::new(e)));
        }
        let (reason, description) = match &result {
            Some(r) if r.is_err() => (FailoverReason::Error, shared.policy.describe(r)),
            Some(r) => (FailoverReason::FailureResponse, shared.policy.describe(r)),
            None => (
                FailoverReason::Timeout,
                format!(
                    "timed out after {:?}",
                    shared.attempt_timeout.unwrap_or_default()
                ),
            ),
        };
        shared.failed(i, reason, this.attempt_started.seconds());
        let trail = this.trail.get_or_insert_with(|| {
            Box::new(Trail {
                start: i,
                tried: 0,
                attempts: 1,
                span: Span::none(),
                reason,
                failures: Vec::with_capacity(shared.targets),
                last: None,
            })
        });
        let (last, error) = match result {
            Some(Ok(response)) => (Some(response), None),
            Some(Err(e)) => (None, Some(e.into())),
            None => (None, None),
        };
        trail.failures.push(TargetFailure {
            index: i,
            target: shared.names[i].clone(),
            reason: description,
            error,
        });
        trail.last = last;
        trail.tried += 1;
        trail.reason = reason;
        let more = trail.tried < shared.targets && this.request.is_some();
        if more && !shared.interval.is_zero() {
            // The wait ends at the deadline, if that comes first (and no target is tried then).
            let at = bulwark_core::deadline::earlier(
                Some(Instant::now() + shared.interval),
                *this.deadline,
            )
            .unwrap_or_else(Instant::now);
            // Reuse the inline timer for the interval.
            if poll_until(this.timer.as_mut(), at, cx).is_pending() {
                this.state.set(State::Waiting);
                return Poll::Pending;
            }
        }
        this.state.set(State::Choosing);
    }
}

/// Calls the next ready target (returning `None`: the state is `Calling` again), or gives the
/// final answer.
fn choose_next<S, Req, P>(
    this: &mut ResponseFutureProj<'_, S, Req, P>,
    cx: &mut Context<'_>,
) -> Option<Result<S::Response, BoxError>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    P: FailoverPolicy<Req, S::Response, S::Error>,
{
    let shared = &**this.shared;
    let Some(trail) = this.trail.as_mut() else {
        return Some(Err(Box::new(Misuse::polled_after_completion("failover"))));
    };
    // No target is tried once the deadline has passed (an attempt failed at or after it, or
    // the wait between targets reached it): the last response as it came, or the deadline.
    if let Some(e) = DeadlineExceeded::passed(*this.deadline, Some(*this.allowed), trail.attempts) {
        return Some(match trail.last.take() {
            Some(response) => Ok(response),
            None => Err(Box::new(e)),
        });
    }
    let resendable = this
        .request
        .as_ref()
        .is_some_and(|r| shared.policy.can_resend(r));
    if !resendable {
        // Sent once: its outcome goes back as it came.
        let error = trail.failures.last_mut().and_then(|f| f.error.take());
        return Some(match (trail.last.take(), error) {
            (Some(response), _) => Ok(response),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Box::new(AllFailed::new(std::mem::take(
                &mut trail.failures,
            )))),
        });
    }
    let mut next = None;
    while trail.tried < shared.targets {
        let j = (trail.start + trail.tried) % shared.targets;
        let mut target = shared.template(j);
        // Only a ready target is called; one that is not is skipped at once.
        if let Poll::Ready(Ok(())) = target.poll_ready(cx) {
            next = Some((j, target));
            break;
        }
        trail.failures.push(TargetFailure {
            index: j,
            target: shared.names[j].clone(),
            reason: String::from("not ready"),
            error: None,
        });
        trail.tried += 1;
    }
    let Some((j, mut target)) = next else {
        return Some(match trail.last.take() {
            Some(response) => Ok(response),
            None => Err(Box::new(AllFailed::new(std::mem::take(
                &mut trail.failures,
            )))),
        });
    };
    trail.attempts = trail.attempts.saturating_add(1);
    shared.failing_over(*this.current, j, trail.reason, trail.attempts);
    *this.current = j;
    let mut request = match this.request.as_ref() {
        Some(r) => r.clone(),
        None => return Some(Err(Box::new(Misuse::polled_after_completion("failover")))),
    };
    shared.policy.resending(&mut request);
    trail.last = None;
    *this.limit = shared.attempt_limit(*this.deadline);
    *this.attempt_started = Stopwatch::start();
    // Each attempt after the first runs in a span naming the layer, the target and the
    // attempt (the first, on the fast path, has none: it costs nothing there).
    trail.span = tracing::debug_span!(
        "failover",
        failover = %shared.name,
        target = %shared.names[j],
        attempt = trail.attempts
    );
    let future = trail.span.in_scope(|| target.call(request));
    this.state.set(State::Calling { future });
    None
}
