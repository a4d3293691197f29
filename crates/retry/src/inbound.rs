//! The server edge of deadline propagation: the time a caller allows, put in scope for the
//! handler's outbound calls.

use crate::http::parse_millis;
use bulwark_core::deadline::{self, parse_grpc_timeout, Scoped, GRPC_TIMEOUT};
use http::{HeaderName, Request};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// Reads the time a server's caller allows for a request, and serves the request with that
/// deadline in scope ([`bulwark_core::deadline::scope`]): a [`BackoffRetryLayer`](crate::BackoffRetryLayer)
/// the handler calls through ends its attempts by then, and tells its own backends the time
/// left, so no backend keeps working for a caller that has given up.
///
/// Put it at the server's edge: around a tonic server's services
/// (`Server::builder().layer(InboundDeadlineLayer::grpc())`) or an axum `Router`. It only
/// reads the deadline and passes it on; the server itself ends the request when it runs out
/// (tonic does for `grpc-timeout`; for HTTP, a timeout layer such as tower-http's). A request
/// without the header is served as it is; one with a malformed value is served as if it had
/// none. A task the handler spawns does not inherit the deadline.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_retry::InboundDeadlineLayer;
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// // A handler that reports the time its caller allows.
/// let handler = service_fn(|_: http::Request<()>| async {
///     let left = bulwark_core::deadline::current().map(|at| at - Instant::now());
///     Ok::<_, std::io::Error>(left)
/// });
/// let mut server = InboundDeadlineLayer::grpc().layer(handler);
/// let call = http::Request::post("/books.Store/Get")
///     .header("grpc-timeout", "250m")
///     .body(())
///     .unwrap();
/// let left = server.ready().await.unwrap().call(call).await.unwrap();
/// assert_eq!(left, Some(Duration::from_millis(250)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct InboundDeadlineLayer {
    header: HeaderName,
    grpc: bool,
}

impl InboundDeadlineLayer {
    /// Reads gRPC's `grpc-timeout`.
    pub fn grpc() -> Self {
        InboundDeadlineLayer {
            header: GRPC_TIMEOUT,
            grpc: true,
        }
    }

    /// Reads `header` as whole milliseconds (digits only), the form
    /// [`HttpRetryPolicy::deadline_header`](crate::HttpRetryPolicy::deadline_header) writes.
    pub fn header(header: HeaderName) -> Self {
        InboundDeadlineLayer {
            header,
            grpc: false,
        }
    }

    /// The time `request` allows, counted from now, if it says.
    pub fn time_limit<B>(&self, request: &Request<B>) -> Option<Duration> {
        let value = request.headers().get(&self.header)?;
        if self.grpc {
            parse_grpc_timeout(value)
        } else {
            parse_millis(value)
        }
    }
}

impl<S> Layer<S> for InboundDeadlineLayer {
    type Service = InboundDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InboundDeadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service whose requests are served with their caller's deadline in scope. Built by
/// [`InboundDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct InboundDeadline<S> {
    inner: S,
    layer: InboundDeadlineLayer,
}

impl<S> InboundDeadline<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for InboundDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let at = self
            .layer
            .time_limit(&request)
            .map(|left| Instant::now() + left);
        let inner = &mut self.inner;
        deadline::call_in_scope(at, move || inner.call(request))
    }
}
