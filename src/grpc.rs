//! Our errors as gRPC statuses, for tonic servers (feature `tonic`).
//!
//! tonic's own `Status::from_error` knows its types and hyper's, not ours: an open circuit or a
//! full bulkhead below a tonic handler would reach the client as `UNKNOWN`, and the client's
//! retry policy would not know to wait. [`status`] answers with what a gRPC client expects,
//! from the error and its `source()` chain (the first of these found decides):
//!
//! | error | code | `grpc-retry-pushback-ms` |
//! | --- | --- | --- |
//! | a [`tonic::Status`] (a backend's own answer) | its own: passed through untouched (code, message, details, metadata) | as it came |
//! | [`Open`](bulwark_circuit_breaker::Open) (circuit breaker) | `UNAVAILABLE` | its `retry_after`; none while forced open |
//! | [`NoEndpointReady`](bulwark_balance::NoEndpointReady) (balancer), [`NoTargetReady`](bulwark_failover::NoTargetReady) (failover) | `UNAVAILABLE` | its `retry_after`, else 1000 |
//! | [`RateLimited`](bulwark_rate_limit::RateLimited) (rate limiter) | `UNAVAILABLE` | its `retry_after` |
//! | [`Full`](bulwark_bulkhead::Full) (bulkhead) | `UNAVAILABLE` | none |
//! | [`DeadlineExceeded`](bulwark_core::DeadlineExceeded) (retry, failover), [`AttemptTimedOut`](bulwark_retry::AttemptTimedOut) (retry) | `DEADLINE_EXCEEDED` | none |
//! | a refused, reset, aborted, not connected or broken connection (`std::io::Error`) | `UNAVAILABLE` | none |
//! | [`AllFailed`](bulwark_failover::AllFailed) (failover) whose targets' errors decide nothing above | `UNAVAILABLE` | 1000 |
//! | anything else ([`FanOutFailed`](bulwark_fanout::FanOutFailed) included) | `UNKNOWN` | none |
//!
//! The aggregates, `AllFailed` and `FanOutFailed`, are looked through: their `source()` is a
//! target's own error (the last failover target's, the first failing fan-out target's), so a
//! backend's `Status` or a refused connection under them decides. The message is the
//! `Display` of the error that decided (for `UNKNOWN`, and for a connection failure, of the
//! top error: it names every target). The pushback, in whole milliseconds rounded up, is what
//! gRPC's retry policy reads (gRFC A6); a client of this crate reads it with
//! `bulwark_core::pushback` (feature `grpc`). The mapping of which errors are an overload and
//! when to come back is the one [`axum`](crate::axum) uses for HTTP.
//!
//! ```
//! # #[cfg(feature = "circuit-breaker")]
//! # fn main() {
//! use std::time::Duration;
//! use tower_bulwark::circuit_breaker::Open;
//! use tower_bulwark::core::{BoxError, CircuitState};
//!
//! let err: BoxError = Box::new(Open::new(CircuitState::Open, Some(Duration::from_millis(1500))));
//! let status = tower_bulwark::grpc::status(&err);
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "1500");
//! assert_eq!(status.message(), "circuit open: calls suspended for 1500 ms");
//! # }
//! # #[cfg(not(feature = "circuit-breaker"))]
//! # fn main() {}
//! ```
//!
//! In a tonic handler, map the error of a call through the stack with
//! `.map_err(|e| tower_bulwark::grpc::status(&e))?` (`tests/grpc_status.rs` serves one).
//! Where the stack is itself what a server serves (a gRPC proxy, or a route built of our
//! layers over a channel), [`StatusLayer`] does it at the edge: an error becomes a
//! Trailers-Only gRPC response with the status (`tests/grpc_deadline.rs` serves one).

use crate::meaning::{meaning, Meaning, DEFAULT_RETRY_AFTER, MAX_DEPTH};
use bulwark_core::pushback::is_connection_error;
use bulwark_core::BoxError;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::Status;
use tower::{Layer, Service};

/// The metadata key a server sets to tell a client when to retry (gRFC A6).
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The gRPC status for `err` (see the module docs for the table).
pub fn status(err: &BoxError) -> Status {
    status_of(&**err)
}

/// [`status`], for an error that is not boxed.
pub fn status_of(err: &(dyn Error + 'static)) -> Status {
    let mut current = Some(err);
    let mut all_failed = None;
    for _ in 0..MAX_DEPTH {
        let Some(e) = current else { break };
        if let Some(status) = e.downcast_ref::<Status>() {
            return copy(status);
        }
        match meaning(e) {
            Some(Meaning::Unavailable {
                retry_after,
                otherwise,
            }) => return unavailable(e.to_string(), retry_after.or(otherwise)),
            Some(Meaning::TimedOut) => return Status::deadline_exceeded(e.to_string()),
            Some(Meaning::AllFailed) => {
                all_failed.get_or_insert(e);
            }
            Some(Meaning::FanOutFailed) => {}
            None => {
                // This error alone: a `Status` further down the chain decides before a
                // connection failure under it does.
                if is_connection_error(e) {
                    return unavailable(err.to_string(), None);
                }
            }
        }
        current = e.source();
    }
    match all_failed {
        Some(e) => unavailable(e.to_string(), Some(DEFAULT_RETRY_AFTER)),
        None => Status::unknown(err.to_string()),
    }
}

/// `UNAVAILABLE`, with the pushback when there is one.
fn unavailable(message: String, retry_after: Option<Duration>) -> Status {
    let mut status = Status::unavailable(message);
    if let Some(after) = retry_after {
        let ms = bulwark_core::deadline::millis_rounded_up(after);
        status
            .metadata_mut()
            .insert(PUSHBACK, AsciiMetadataValue::from(ms));
    }
    status
}

/// A backend's status, as it came (a `Status` cannot be cloned: its own source stays with it).
fn copy(status: &Status) -> Status {
    Status::with_details_and_metadata(
        status.code(),
        status.message(),
        status.details().to_vec().into(),
        status.metadata().clone(),
    )
}

/// Answers a gRPC service's errors as gRPC responses: an error from the wrapped service (an
/// open circuit, a deadline, no endpoint ready, ...) becomes the Trailers-Only response of
/// its [`status`], and the service's error type becomes `Infallible`, as a server route
/// needs. Responses pass through untouched.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower::{service_fn, Layer, Service, ServiceExt};
/// use tower_bulwark::core::{BoxError, DeadlineExceeded};
/// use tower_bulwark::grpc::StatusLayer;
///
/// // A stack that ran out of time.
/// let stack = service_fn(|_: http::Request<()>| async {
///     let deadline = DeadlineExceeded { deadline: std::time::Duration::from_millis(200), attempts: 2 };
///     Err::<http::Response<tonic::body::Body>, BoxError>(Box::new(deadline))
/// });
/// let mut edge = StatusLayer::new().layer(stack);
/// let response = edge.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(response.status(), 200); // gRPC says it in the headers
/// assert_eq!(response.headers()["grpc-status"], "4"); // DEADLINE_EXCEEDED
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusLayer {
    _private: (),
}

impl StatusLayer {
    /// The layer.
    pub fn new() -> Self {
        StatusLayer::default()
    }
}

impl<S> Layer<S> for StatusLayer {
    type Service = StatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusService {
            inner,
            not_ready: None,
        }
    }
}

/// A service whose errors are answered as gRPC statuses. Built by [`StatusLayer`].
#[derive(Debug)]
pub struct StatusService<S> {
    inner: S,
    // The status for the next call, when the inner service failed its readiness.
    not_ready: Option<Status>,
}

impl<S: Clone> Clone for StatusService<S> {
    fn clone(&self) -> Self {
        StatusService {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

impl<S, Req, B> Service<Req> for StatusService<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = StatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A service that fails its readiness (a balancer with no endpoint ready, an open
        // circuit in readiness mode) is answered at the call, without calling it.
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(status(&e.into()));
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.not_ready.take() {
            Some(status) => StatusFuture {
                state: State::Answered {
                    status: Some(status),
                },
            },
            None => StatusFuture {
                state: State::Calling {
                    inner: self.inner.call(request),
                },
            },
        }
    }
}

pin_project! {
    /// The future of a [`StatusService`] call.
    pub struct StatusFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The inner service's call.
        Calling { #[pin] inner: F },
        // Answered without a call; the answer until taken.
        Answered { status: Option<Status> },
    }
}

impl<F, B, E> Future for StatusFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<http::Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling { inner } => match inner.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(response)),
                Poll::Ready(Err(e)) => Poll::Ready(Ok(status(&e.into()).into_http())),
            },
            StateProj::Answered { status } => Poll::Ready(Ok(status
                .take()
                .unwrap_or_else(|| Status::internal("polled after completion"))
                .into_http())),
        }
    }
}
