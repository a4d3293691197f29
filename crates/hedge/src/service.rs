//! The hedging service.

use crate::future::ResponseFuture;
use crate::shared::Shared;
use bulwark_core::attempts::RequestAttempts;
use bulwark_core::local::LocalRef;
use bulwark_core::{BoxError, Classify};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service whose slow calls are sent again. Built by [`HedgeLayer`](crate::HedgeLayer); see
/// the crate docs.
///
/// `call` sends the first attempt on the service that `poll_ready` made ready and, when the
/// request may be hedged, moves that service into the response future (leaving a clone in
/// its place) with a copy of the request: the future polls it ready again for each hedge.
pub struct Hedge<S, C, A> {
    inner: S,
    local: LocalRef<Shared<C, A>>,
}

impl<S, C, A> Hedge<S, C, A> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<C, A>>) -> Self {
        Hedge {
            inner,
            local: LocalRef::new(shared),
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
}

impl<S: Clone, C, A> Clone for Hedge<S, C, A> {
    fn clone(&self) -> Self {
        Hedge {
            inner: self.inner.clone(),
            local: self.local.clone(),
        }
    }
}

impl<S: fmt::Debug, C, A> fmt::Debug for Hedge<S, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("config", self.local.get())
            .finish()
    }
}

impl<S, C, A, Req> Service<Req> for Hedge<S, C, A>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
    C: Classify<S::Response, S::Error>,
    A: RequestAttempts<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req, C, A>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = self.local.get();
        shared.budget.deposit();
        let mut request = request;
        if shared.max_attempts < 2 || !shared.attempts.may_resend(&request) {
            // No hedge can follow: call the ready service in place, keep nothing.
            let future = self.inner.call(request);
            return ResponseFuture::new(future, None, None, self.local.for_call());
        }
        // The attempts the request's copies share, so a balancer below avoids the endpoints
        // it has been to.
        shared.attempts.ensure(&mut request);
        let copy = request.clone();
        // Move the ready service into the future for the hedges, leave a clone here.
        let mut ready = self.inner.clone();
        std::mem::swap(&mut ready, &mut self.inner);
        let future = ready.call(request);
        ResponseFuture::new(future, Some(ready), Some(copy), self.local.for_call())
    }
}
