//! The response future: the endpoint's own future, with its outcome recorded.

use crate::core::{Core, EndpointState};
use bulwark_core::local::CallRef;
use bulwark_core::slot::LazyBox;
#[cfg(feature = "metrics")]
use bulwark_core::telemetry::Stopwatch;
use bulwark_core::{BoxError, Classify, Misuse, Outcome};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Counts a request in flight on an endpoint until it ends or is dropped.
pub(crate) struct InFlight<C> {
    core: CallRef<Core<C>>,
    endpoint: Arc<EndpointState>,
    started: Option<u64>,
    /// When the call was sent, for the duration histogram (read only with a recorder).
    #[cfg(feature = "metrics")]
    watch: Stopwatch,
    /// Whether the call answered (its outcome recorded); dropped before that, it was
    /// cancelled.
    answered: bool,
}

impl<C> InFlight<C> {
    #[inline]
    pub(crate) fn new(
        core: CallRef<Core<C>>,
        endpoint: Arc<EndpointState>,
        started: Option<u64>,
    ) -> Self {
        // The start first, the count second (and the other way round when it ends): a reader
        // that sees one without the other sees a request younger than it is, not older.
        if let Some(start) = started {
            endpoint
                .started_sum
                .fetch_add(start >> 10, Ordering::Relaxed);
        }
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            core,
            endpoint,
            started,
            #[cfg(feature = "metrics")]
            watch: Stopwatch::start(),
            answered: false,
        }
    }
}

impl<C> Drop for InFlight<C> {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(start) = self.started {
            self.endpoint
                .started_sum
                .fetch_sub(start >> 10, Ordering::Relaxed);
            if !self.answered {
                // Cancelled (a hedge that lost, a caller's timeout): it took at least this
                // long, which says something when that is more than the estimate.
                self.core.cancelled(&self.endpoint, start);
            }
        }
    }
}

pin_project! {
    /// The future of a [`Balance`](crate::Balance) call: the chosen endpoint's future, whose
    /// outcome (classified by the shared classifier) and latency are recorded when it ends.
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
            in_flight: InFlight<C>,
            // The `balancer{balancer, target}` span, entered while the endpoint's future is
            // polled; only made when a subscriber wants it.
            span: LazyBox<tracing::Span>,
        },
        Failed { error: Option<BoxError> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(future: F, in_flight: InFlight<C>, span: Option<tracing::Span>) -> Self {
        let mut lazy = LazyBox::new();
        lazy.set(span);
        ResponseFuture {
            state: State::Called {
                future,
                in_flight,
                span: lazy,
            },
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
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
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
            StateProj::Called {
                future,
                in_flight,
                span,
            } => {
                let result = {
                    let _entered = span.as_deref().map(tracing::Span::enter);
                    ready!(future.poll(cx))
                };
                in_flight.answered = true;
                let core = &*in_flight.core;
                let failed = match core.classifier.classify(&result) {
                    Outcome::Success => false,
                    Outcome::Failure => true,
                    Outcome::Ignored => return Poll::Ready(result.map_err(Into::into)),
                };
                #[cfg(feature = "metrics")]
                in_flight
                    .endpoint
                    .metrics
                    .request(failed, in_flight.watch.seconds());
                core.record(&in_flight.endpoint, failed, in_flight.started);
                Poll::Ready(result.map_err(Into::into))
            }
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Box::new(Misuse::polled_after_completion("balancer"))))),
        }
    }
}
