//! The retry service.

use crate::future::ResponseFuture;
use crate::policy::RetryPolicy;
use crate::shared::Shared;
use bulwark_core::local::LocalRef;
use bulwark_core::BoxError;
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

/// Requests counted locally before they are added to the budget in one go.
const DEPOSIT_BATCH: u32 = 32;

/// A service whose failed calls are retried. Built by
/// [`BackoffRetryLayer`](crate::BackoffRetryLayer); see the crate docs.
///
/// `call` sends the first attempt on the service that `poll_ready` made ready and moves it
/// into the response future, leaving a clone in its place; the future polls it ready again
/// before each retry. The request is cloned once up front (only when it may be resent), so a
/// retry never needs the caller's request back.
pub struct BackoffRetry<S, P> {
    inner: S,
    local: LocalRef<Shared<P>>,
    /// Requests not yet added to the budget (added in batches: one atomic add per batch).
    pending_deposits: u32,
}

impl<S, P> BackoffRetry<S, P> {
    pub(crate) fn new(inner: S, shared: std::sync::Arc<Shared<P>>) -> Self {
        BackoffRetry {
            inner,
            local: LocalRef::new(shared),
            pending_deposits: 0,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn flush_deposits(&mut self) {
        if self.pending_deposits > 0 {
            if let Some(b) = &self.local.get().budget {
                b.deposit_many(self.pending_deposits.into());
            }
            self.pending_deposits = 0;
        }
    }
}

impl<S: Clone, P> Clone for BackoffRetry<S, P> {
    fn clone(&self) -> Self {
        BackoffRetry {
            inner: self.inner.clone(),
            local: self.local.clone(),
            pending_deposits: 0,
        }
    }
}

impl<S, P> Drop for BackoffRetry<S, P> {
    fn drop(&mut self) {
        self.flush_deposits();
    }
}

impl<S: fmt::Debug, P> fmt::Debug for BackoffRetry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackoffRetry")
            .field("inner", &self.inner)
            .field("config", self.local.get())
            .finish()
    }
}

impl<S, P, Req> Service<Req> for BackoffRetry<S, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    P: RetryPolicy<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = self.local.get();
        if shared.budget.is_some() {
            self.pending_deposits += 1;
            if self.pending_deposits >= DEPOSIT_BATCH {
                self.flush_deposits();
            }
        }
        let shared = self.local.get();
        let mut request = request;
        let limits = shared.limits(&mut request);
        let copy = if shared.max_attempts > 1 && shared.policy.may_resend(&request) {
            shared.policy.prepare(&mut request);
            Some(request.clone())
        } else {
            None
        };
        if copy.is_none() {
            // No retry can follow: call the ready service in place, keep nothing.
            let future = self.inner.call(request);
            return ResponseFuture::new(future, None, None, self.local.for_call(), limits);
        }
        // Move the ready service into the future for the retries, leave a clone here.
        let mut ready = self.inner.clone();
        std::mem::swap(&mut ready, &mut self.inner);
        let future = ready.call(request);
        ResponseFuture::new(future, Some(ready), copy, self.local.for_call(), limits)
    }
}
