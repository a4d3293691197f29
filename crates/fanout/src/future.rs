//! The response future: every branch driven together, the policy checked as they end.

use crate::config::Stragglers;
use crate::outcome::{Merge, Outcomes, Summary, TargetOutcome, TargetResult};
use crate::service::Shared;
use bulwark_core::local::CallRef;
use bulwark_core::telemetry::Stopwatch;
use bulwark_core::timer::poll_until;
use bulwark_core::{BoxError, Classify, Event, Outcome};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// One target's part of one request.
pub(crate) struct Branch<S: Service<Req>, Req> {
    service: S,
    request: Option<Req>,
    future: Option<Pin<Box<S::Future>>>,
    result: Option<TargetResult<S::Response>>,
}

impl<S: Service<Req>, Req> Branch<S, Req> {
    pub(crate) fn new(service: S, request: Option<Req>) -> Self {
        Branch {
            service,
            request,
            future: None,
            result: None,
        }
    }

    pub(crate) fn set_request(&mut self, request: Req) {
        self.request = Some(request);
    }
}

pin_project! {
    /// The future of a [`FanOut`](crate::FanOut) call.
    ///
    /// Its branches live in one `Vec` and are polled in turn; each started branch's future
    /// is pinned in a box of its own, so a target's future need not be `Unpin` (this
    /// project's layers keep their timers inline). One inline timer serves the branch and
    /// whole-fan-out deadlines.
    pub struct ResponseFuture<S, Req, C, M>
    where
        S: Service<Req>,
    {
        branches: Vec<Branch<S, Req>>,
        shared: CallRef<Shared<C, M>>,
        limit: Option<Instant>,
        #[pin]
        timer: Option<Sleep>,
        done: bool,
        // When the fan-out started, for the per-target duration histogram (read only with a
        // recorder installed).
        started: Stopwatch,
    }
}

impl<S: Service<Req>, Req, C, M> ResponseFuture<S, Req, C, M> {
    pub(crate) fn new(
        branches: Vec<Branch<S, Req>>,
        shared: CallRef<Shared<C, M>>,
        limit: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            branches,
            shared,
            limit,
            timer: None,
            done: false,
            started: Stopwatch::start(),
        }
    }
}

impl<S: Service<Req>, Req, C, M> fmt::Debug for ResponseFuture<S, Req, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("targets", &self.branches.len())
            .field(
                "finished",
                &self.branches.iter().filter(|b| b.result.is_some()).count(),
            )
            .finish()
    }
}

impl<S, Req, C, M> Future for ResponseFuture<S, Req, C, M>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    C: Classify<S::Response, S::Error>,
    M: Merge<S::Response>,
{
    type Output = Result<M::Output, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(Err(Box::new(crate::Misuse::polled_after_completion(
                "fan-out",
            ))));
        }
        let shared = &**this.shared;
        let started = *this.started;
        let n = this.branches.len();
        if n == 0 {
            *this.done = true;
            return Poll::Ready(Err(refused(shared)));
        }
        let needed = shared.policy.needed(n);
        let mut successes = 0;
        let mut running = n;
        for (i, b) in this.branches.iter_mut().enumerate() {
            if let Some(r) = &b.result {
                running -= 1;
                successes += usize::from(r.is_success());
                continue;
            }
            if b.future.is_none() {
                // Only a ready target is called; it is asked when its branch starts.
                match b.service.poll_ready(cx) {
                    Poll::Pending => continue,
                    Poll::Ready(Err(e)) => {
                        finish_branch(shared, started, i, b, TargetResult::Error(e.into()));
                        running -= 1;
                        if successes + running < needed {
                            break;
                        }
                        continue;
                    }
                    Poll::Ready(Ok(())) => {
                        let Some(req) = b.request.take() else {
                            finish_branch(
                                shared,
                                started,
                                i,
                                b,
                                TargetResult::Error(Box::new(
                                    crate::Misuse::polled_after_completion("fan-out"),
                                )),
                            );
                            running -= 1;
                            continue;
                        };
                        b.future = Some(Box::pin(b.service.call(req)));
                    }
                }
            }
            if let Some(fut) = b.future.as_mut() {
                if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                    b.future = None;
                    let r = match shared.classifier.classify(&result) {
                        Outcome::Success => match result {
                            Ok(resp) => TargetResult::Succeeded(resp),
                            Err(e) => TargetResult::Error(e.into()),
                        },
                        _ => match result {
                            Ok(resp) => TargetResult::Failed(resp),
                            Err(e) => TargetResult::Error(e.into()),
                        },
                    };
                    successes += usize::from(r.is_success());
                    running -= 1;
                    finish_branch(shared, started, i, b, r);
                    // Decided: the branches after this one are not started.
                    if successes >= needed || successes + running < needed {
                        break;
                    }
                }
            }
        }

        let met = successes >= needed;
        let hopeless = successes + running < needed;
        if met || hopeless || running == 0 {
            return Poll::Ready(answer(this.branches, shared, met, this.done));
        }

        if let Some(limit) = *this.limit {
            if poll_until(this.timer.as_mut(), limit, cx).is_ready() {
                for (i, b) in this.branches.iter_mut().enumerate() {
                    if b.result.is_none() {
                        b.future = None; // cut off
                        finish_branch(shared, started, i, b, TargetResult::TimedOut);
                    }
                }
                return Poll::Ready(answer(this.branches, shared, met, this.done));
            }
        }
        Poll::Pending
    }
}

/// The error of a call with no branch: only a fan-out made by `Layer::layer` from a list
/// `build` refuses has none (a valid one has at least one target).
#[cold]
#[inline(never)]
fn refused<C, M>(shared: &Shared<C, M>) -> BoxError {
    Box::new(
        shared
            .invalid
            .clone()
            .unwrap_or(crate::ConfigError::NoTargets),
    )
}

/// Records how branch `i` ended; reports it (events, tracing, metrics) off the fast path.
#[inline]
fn finish_branch<S: Service<Req>, Req, C, M>(
    shared: &Shared<C, M>,
    started: Stopwatch,
    i: usize,
    branch: &mut Branch<S, Req>,
    result: TargetResult<S::Response>,
) {
    let outcome = if result.is_success() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    branch.result = Some(result);
    #[cfg(feature = "metrics")]
    shared.metrics.record(i, outcome, started.seconds());
    #[cfg(not(feature = "metrics"))]
    let _ = started;
    report(shared, i, outcome);
}

#[inline]
fn report<C, M>(shared: &Shared<C, M>, i: usize, outcome: Outcome) {
    if shared.listener.is_some() || tracing::level_enabled!(tracing::Level::DEBUG) {
        report_slow(shared, i, outcome);
    }
}

#[cold]
#[inline(never)]
fn report_slow<C, M>(shared: &Shared<C, M>, i: usize, outcome: Outcome) {
    tracing::debug!(
        fanout = %shared.names.fanout,
        target = %shared.names.targets[i],
        outcome = outcome.as_str(),
        "fan-out target finished"
    );
    if let Some(l) = &shared.listener {
        l.emit(&Event::FanOutTarget {
            name: &shared.names.fanout,
            target: i,
            outcome,
        });
    }
}

/// Cancels what still runs (drops it), or hands it to a background task within its bound,
/// and merges the outcomes.
fn answer<S: Service<Req>, Req, C, M>(
    branches: &mut Vec<Branch<S, Req>>,
    shared: &Shared<C, M>,
    met: bool,
    done: &mut bool,
) -> Result<M::Output, BoxError>
where
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    M: Merge<S::Response>,
{
    *done = true;
    if let Stragglers::Finish(within) = shared.stragglers {
        finish_in_background(branches, shared, within);
    }
    if met {
        // The shortcut: only the first success is needed.
        let successes = branches
            .iter()
            .filter(|b| matches!(b.result, Some(TargetResult::Succeeded(_))))
            .count();
        let summary = Summary {
            successes,
            targets: branches.len(),
            policy: shared.policy,
        };
        if let Some(b) = branches
            .iter_mut()
            .find(|b| matches!(b.result, Some(TargetResult::Succeeded(_))))
        {
            if let Some(TargetResult::Succeeded(first)) = b.result.take() {
                match shared.merge.merge_first(first, summary) {
                    Ok(answer) => {
                        branches.clear();
                        return answer;
                    }
                    Err(first) => b.result = Some(TargetResult::Succeeded(first)),
                }
            }
        }
    }
    let background = matches!(shared.stragglers, Stragglers::Finish(_));
    let targets = std::mem::take(branches)
        .into_iter()
        .enumerate()
        .map(|(index, b)| {
            let result = match b.result {
                Some(r) => r,
                None if background && b.request.is_none() => TargetResult::Background,
                None => TargetResult::Cancelled,
            };
            TargetOutcome { index, result }
        })
        .collect();
    shared.merge.merge(Outcomes {
        names: shared.names.clone(),
        policy: shared.policy,
        met,
        targets,
    })
}

/// Hands the branches still running to a background task for at most `within` (with no
/// runtime, they are cancelled).
#[cold]
fn finish_in_background<S: Service<Req>, Req, C, M>(
    branches: &mut [Branch<S, Req>],
    shared: &Shared<C, M>,
    within: std::time::Duration,
) where
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    let running: Vec<Pin<Box<S::Future>>> = branches
        .iter_mut()
        .filter(|b| b.result.is_none())
        .filter_map(|b| b.future.take())
        .collect();
    if running.is_empty() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let name = shared.names.fanout.clone();
        let count = running.len();
        runtime.spawn(async move {
            let all = futures_util::future::join_all(running);
            let finished = tokio::time::timeout(within, all).await.is_ok();
            tracing::debug!(fanout = %name, count, finished, "fan-out stragglers done");
        });
    }
}
