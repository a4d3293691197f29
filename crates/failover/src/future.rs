//! The response future: one request's way through the targets.

use crate::error::{AllFailed, Misuse, TargetFailure};
use crate::policy::FailoverPolicy;
use crate::shared::Shared;
use bulwark_core::local::CallRef;
use bulwark_core::{BoxError, FailoverReason};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

pin_project! {
    /// The future of a [`Failover`](crate::Failover) call.
    ///
    /// A named state machine, never boxed, with its timer inline (as tower's `Timeout`): no
    /// allocation on the path where the first target answers. Failing over clones the next
    /// target from the set's list, and records each failure for [`AllFailed`].
    pub struct ResponseFuture<S, Req, P>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // The per-attempt timeout, and the interval between attempts.
        #[pin]
        timer: Option<Sleep>,
        request: Option<Req>,
        shared: CallRef<Shared<S, P>>,
        start: usize,
        current: usize,
        tried: usize,
        reason: FailoverReason,
        failures: Vec<TargetFailure>,
        last: Option<Result<S::Response, S::Error>>,
    }
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
        let timer = shared.attempt_timeout.map(tokio::time::sleep);
        ResponseFuture {
            state: State::Calling { future },
            timer,
            request,
            shared,
            start: index,
            current: index,
            tried: 0,
            reason: FailoverReason::Error,
            failures: Vec::new(),
            last: None,
        }
    }

    pub(crate) fn failed(error: BoxError, shared: CallRef<Shared<S, P>>) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            timer: None,
            request: None,
            shared,
            start: 0,
            current: 0,
            tried: 0,
            reason: FailoverReason::Error,
            failures: Vec::new(),
            last: None,
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
            .field("tried", &self.tried)
            .finish_non_exhaustive()
    }
}

/// Arms `timer` for `at` (it lives inline in the future) and polls it.
fn poll_timer(mut timer: Pin<&mut Option<Sleep>>, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
    match timer.as_mut().as_pin_mut() {
        Some(sleep) => {
            if sleep.deadline() != at {
                sleep.reset(at);
            }
        }
        None => timer.set(Some(tokio::time::sleep_until(at))),
    }
    match timer.as_pin_mut() {
        Some(sleep) => sleep.poll(cx),
        None => Poll::Pending,
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => Some(result),
                        Poll::Pending => match this.timer.as_mut().as_pin_mut() {
                            Some(timer) if this.shared.attempt_timeout.is_some() => {
                                if timer.poll(cx).is_pending() {
                                    return Poll::Pending;
                                }
                                None
                            }
                            _ => return Poll::Pending,
                        },
                    };
                    this.state.set(State::Done);
                    let shared = &**this.shared;
                    let i = *this.current;
                    let (reason, description) = match &result {
                        Some(r) if !shared.policy.is_failure(r) => {
                            shared.succeeded(i);
                            return match result {
                                Some(r) => Poll::Ready(r.map_err(Into::into)),
                                None => Poll::Ready(Err(Box::new(Misuse))),
                            };
                        }
                        Some(r) => (
                            if r.is_err() {
                                FailoverReason::Error
                            } else {
                                FailoverReason::FailureResponse
                            },
                            shared.policy.describe(r),
                        ),
                        None => (
                            FailoverReason::Timeout,
                            format!(
                                "timed out after {:?}",
                                shared.attempt_timeout.unwrap_or_default()
                            ),
                        ),
                    };
                    shared.failed(i, reason);
                    this.failures.push(TargetFailure {
                        index: i,
                        target: shared.names[i].clone(),
                        reason: description,
                    });
                    *this.last = result;
                    *this.tried += 1;
                    *this.reason = reason;
                    let more = *this.tried < shared.targets && this.request.is_some();
                    if more && !shared.interval.is_zero() {
                        let at = Instant::now() + shared.interval;
                        // Reuse the inline timer for the interval.
                        if poll_timer(this.timer.as_mut(), at, cx).is_pending() {
                            this.state.set(State::Waiting);
                            return Poll::Pending;
                        }
                    }
                    this.state.set(State::Choosing);
                }
                StateProj::Waiting => {
                    if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                        if timer.poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    this.state.set(State::Choosing);
                }
                StateProj::Choosing => {
                    let shared = &**this.shared;
                    let resendable = this
                        .request
                        .as_ref()
                        .is_some_and(|r| shared.policy.can_resend(r));
                    if !resendable {
                        // Sent once: its outcome goes back as it came.
                        this.state.set(State::Done);
                        return Poll::Ready(match this.last.take() {
                            Some(r) => r.map_err(Into::into),
                            None => Err(Box::new(AllFailed::new(std::mem::take(this.failures)))),
                        });
                    }
                    let mut next = None;
                    while *this.tried < shared.targets {
                        let j = (*this.start + *this.tried) % shared.targets;
                        let mut target = shared.template(j);
                        // Only a ready target is called; one that is not is skipped at once.
                        if let Poll::Ready(Ok(())) = target.poll_ready(cx) {
                            next = Some((j, target));
                            break;
                        }
                        this.failures.push(TargetFailure {
                            index: j,
                            target: shared.names[j].clone(),
                            reason: String::from("not ready"),
                        });
                        *this.tried += 1;
                    }
                    let Some((j, mut target)) = next else {
                        this.state.set(State::Done);
                        return Poll::Ready(match this.last.take() {
                            Some(Ok(response)) => Ok(response),
                            _ => Err(Box::new(AllFailed::new(std::mem::take(this.failures)))),
                        });
                    };
                    shared.failing_over(*this.current, j, *this.reason);
                    *this.current = j;
                    let request = match this.request.as_ref() {
                        Some(r) => r.clone(),
                        None => return Poll::Ready(Err(Box::new(Misuse))),
                    };
                    *this.last = None;
                    if let Some(t) = shared.attempt_timeout {
                        let at = Instant::now() + t;
                        match this.timer.as_mut().as_pin_mut() {
                            Some(sleep) => sleep.reset(at),
                            None => this.timer.set(Some(tokio::time::sleep_until(at))),
                        }
                    }
                    let future = target.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Failed { error } => {
                    let e = error.take().unwrap_or_else(|| Box::new(Misuse));
                    this.state.set(State::Done);
                    return Poll::Ready(Err(e));
                }
                StateProj::Done => return Poll::Ready(Err(Box::new(Misuse))),
            }
        }
    }
}
