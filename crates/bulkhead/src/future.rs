//! The response future.

use crate::service::Shared;
use bulwark_core::local::CallRef;
use bulwark_core::{BoxError, Classify};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// One call's permit: given back when the call ends, or when its future is dropped first.
pub(crate) struct Permit<C> {
    local: CallRef<Shared<C>>,
    /// When the call started (adaptive limits only).
    start: u64,
    armed: bool,
}

impl<C> Permit<C> {
    #[inline]
    pub(crate) fn new(local: CallRef<Shared<C>>, start: u64) -> Self {
        Permit {
            local,
            start,
            armed: true,
        }
    }

    /// The call ended: the permit goes back, and an adaptive limit takes the sample.
    #[inline]
    fn complete<Res, E>(&mut self, result: &Result<Res, E>)
    where
        C: Classify<Res, E>,
    {
        self.armed = false;
        let shared = &*self.local;
        shared.core.release();
        if let Some(controller) = &shared.core.adaptive {
            let outcome = shared.classifier.classify(result);
            shared.core.sample(controller, self.start, outcome);
        }
    }
}

impl<C> Drop for Permit<C> {
    fn drop(&mut self) {
        if self.armed {
            // Dropped before it ended (cancelled): the permit goes back, no sample is taken.
            self.local.core.release();
        }
    }
}

pin_project! {
    /// The future of a [`Bulkhead`](crate::Bulkhead) call: the inner future, holding its
    /// permit until it ends, or an immediate refusal.
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Called {
            #[pin]
            future: F,
            permit: Permit<C>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(future: F, permit: Permit<C>) -> Self {
        ResponseFuture {
            state: State::Called { future, permit },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Failed { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                if permit.armed {
                    permit.complete(&result);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            StateProj::Failed { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Ready(Err(Box::new(
                    bulwark_core::Misuse::polled_after_completion("bulkhead"),
                ))),
            },
        }
    }
}
