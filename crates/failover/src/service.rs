//! The failover service.

use crate::error::{NoTargetReady, Unavailable};
use crate::future::ResponseFuture;
use crate::policy::FailoverPolicy;
use crate::shared::Shared;
use bulwark_core::hint::{self, Refusals};
use bulwark_core::local::LocalRef;
use bulwark_core::timer::ServiceTimer;
use bulwark_core::{BoxError, Misuse};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower_service::Service;

/// An ordered set of targets: a request goes to one, and on a failure to the next. Built by
/// [`FailoverLayer`](crate::FailoverLayer); see the crate docs.
///
/// `poll_ready` looks for the first ready target from where requests start (the target that
/// last answered, in sticky mode; the first, in priority mode) and reserves that one only;
/// targets that are not ready are skipped without being waited on. When none is ready it
/// waits up to `wait_for_ready` (woken by any target becoming ready), then lets `call` fail
/// with [`NoTargetReady`], saying why as the targets said (see [`bulwark_core::hint`]): when
/// every target is refused by an open circuit that probes only after the wait would end, it
/// fails at once.
pub struct Failover<S, P> {
    targets: Vec<S>,
    local: LocalRef<Shared<S, P>>,
    chosen: Option<usize>,
    refused: Option<NoTargetReady>,
    /// Why the targets the latest poll asked were not ready, as they said.
    refusals: Refusals,
    waiting_since: Option<Instant>,
    wait: ServiceTimer,
}

impl<S, P> Failover<S, P> {
    pub(crate) fn new(targets: Vec<S>, shared: Arc<Shared<S, P>>) -> Self {
        Failover {
            targets,
            local: LocalRef::new(shared),
            chosen: None,
            refused: None,
            refusals: Refusals::new(),
            waiting_since: None,
            wait: ServiceTimer::new(),
        }
    }

    /// The targets, in order.
    pub fn targets(&self) -> &[S] {
        &self.targets
    }

    /// The target names, in order.
    pub fn target_names(&self) -> &[String] {
        &self.local.get().names
    }

    /// The index of the target the next request starts from.
    pub fn current(&self) -> usize {
        self.local.get().start()
    }
}

impl<S: Clone, P> Clone for Failover<S, P> {
    /// Clones every target (one `Vec` allocation); the clones share the set's settings and
    /// its sticky position.
    fn clone(&self) -> Self {
        Failover {
            targets: self.targets.clone(),
            local: self.local.clone(),
            chosen: None,
            refused: None,
            refusals: Refusals::new(),
            waiting_since: None,
            wait: ServiceTimer::new(),
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Failover<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("targets", &self.targets)
            .field("config", self.local.get())
            .finish()
    }
}

impl<S, P> Failover<S, P> {
    /// No target is ready: wait (woken by any target, or by the timer), or give up.
    #[cold]
    fn none_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let wait_for = self.local.get().wait_for_ready;
        let now = Instant::now();
        let since = *self.waiting_since.get_or_insert(now);
        let until = since + wait_for;
        if wait_for.is_zero() {
            return self.refuse(wait_for);
        }
        // Every target refused by an open circuit that probes only after the wait: now.
        if self.refusals.hopeless(until.saturating_duration_since(now)) {
            return self.refuse(now - since);
        }
        if self.wait.poll_until(until, cx).is_ready() {
            return self.refuse(wait_for);
        }
        Poll::Pending
    }

    fn refuse(&mut self, waited: std::time::Duration) -> Poll<Result<(), BoxError>> {
        let r = &self.refusals;
        let (reason, retry_after) = if r.all_open() {
            (Unavailable::CircuitsOpen, r.soonest_probe())
        } else if r.all_unhealthy() {
            (Unavailable::NoneHealthy, None)
        } else if r.all_full() {
            (Unavailable::AllFull, None)
        } else {
            (Unavailable::NoneReady, None)
        };
        self.refused = Some(NoTargetReady {
            targets: self.targets.len(),
            reason,
            retry_after,
            waited,
        });
        self.waiting_since = None;
        Poll::Ready(Ok(()))
    }
}

impl<S, P, Req> Service<Req> for Failover<S, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    P: FailoverPolicy<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.chosen.is_some() || self.refused.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.refusals = Refusals::new();
        let n = self.targets.len();
        let start = self.local.get().start();
        let mut i = if start < n { start } else { 0 };
        for _ in 0..n {
            // A target that is not ready (or failed for good) is skipped, not waited on; it
            // holds no reservation, and its waker registration brings this task back when it
            // becomes ready.
            let target = &mut self.targets[i];
            match hint::collect(|| target.poll_ready(cx)) {
                (Poll::Ready(Ok(())), _) => {
                    self.chosen = Some(i);
                    self.waiting_since = None;
                    return Poll::Ready(Ok(()));
                }
                (_, why) => self.refusals.note(why),
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        self.none_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = self.local.get();
        if let Some(refused) = self.refused.take() {
            return ResponseFuture::failed(Box::new(refused), self.local.for_call());
        }
        let Some(i) = self.chosen.take() else {
            return ResponseFuture::failed(
                Box::new(Misuse::called_before_ready("failover")),
                self.local.for_call(),
            );
        };
        let mut request = request;
        let copy = if shared.targets > 1 && shared.policy.can_resend(&request) {
            shared.policy.prepare(&mut request);
            Some(request.clone())
        } else {
            None
        };
        let future = self.targets[i].call(request);
        ResponseFuture::new(future, i, copy, self.local.for_call())
    }
}
