//! The response future.

use crate::service::{Shared, NOT_TIMED};
use bulwark_core::local::CallRef;
use bulwark_core::slot::LazyBox;
use bulwark_core::telemetry::Seen;
use bulwark_core::{BoxError, Classify};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The right to report one call's outcome. A dropped, unfinished probe gives its slot back.
pub(crate) struct Permit<C> {
    local: CallRef<Shared<C>>,
    gen: u32,
    probe: bool,
    armed: bool,
    /// The recorder current when the call started, which takes its metrics.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    seen: Seen,
}

impl<C> Permit<C> {
    #[inline]
    pub(crate) fn new(local: CallRef<Shared<C>>, gen: u32, probe: bool, seen: Seen) -> Self {
        Permit {
            local,
            gen,
            probe,
            armed: true,
            seen,
        }
    }

    #[inline]
    fn complete<Res, E>(&mut self, result: &Result<Res, E>, start: u64)
    where
        C: Classify<Res, E>,
    {
        self.armed = false;
        let shared = &*self.local;
        let outcome = shared.classifier.classify(result);
        // Read once, for the slow-call threshold and the duration histogram alike.
        let end = (start != NOT_TIMED).then(|| shared.now());
        let took = end.map(|t| t.saturating_sub(start));
        let slow = match (shared.core.slow_threshold(), took) {
            (Some(threshold), Some(took)) => took > threshold,
            _ => false,
        };
        #[cfg(feature = "metrics")]
        shared.core.metrics().record(
            self.seen,
            outcome,
            slow,
            took.map(|t| std::time::Duration::from_nanos(t).as_secs_f64()),
        );
        shared.core.record(self.gen, self.probe, outcome, slow, || {
            end.unwrap_or_else(|| shared.now())
        });
    }
}

impl<C> Drop for Permit<C> {
    fn drop(&mut self) {
        if self.armed && self.probe {
            self.local.core.release_probe(self.gen);
        }
    }
}

pin_project! {
    /// The future of a [`CircuitBreaker`](crate::CircuitBreaker) call: the inner future, whose
    /// outcome is recorded when it ends, or an immediate refusal.
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
            // When the call started, if slow calls are tracked or a recorder is installed
            // (else `NOT_TIMED`).
            start: u64,
            // The `breaker{breaker, state}` span, entered while the inner future is polled;
            // only made when a subscriber wants it.
            span: LazyBox<tracing::Span>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(
        future: F,
        permit: Permit<C>,
        start: u64,
        span: LazyBox<tracing::Span>,
    ) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                permit,
                start,
                span,
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                future,
                permit,
                start,
                span,
            } => {
                let result = {
                    let _entered = span.as_deref().map(tracing::Span::enter);
                    ready!(future.poll(cx))
                };
                permit.complete(&result, *start);
                Poll::Ready(result.map_err(Into::into))
            }
            StateProj::Failed { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Ready(Err(Box::new(
                    bulwark_core::Misuse::polled_after_completion("circuit breaker"),
                ))),
            },
        }
    }
}
