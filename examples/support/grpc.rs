//! What the gRPC example and its test share: a balancer health probe over the gRPC health
//! checking protocol, a server that fails its work, and serving a `Health` service on
//! loopback. (Copy `GrpcHealthProbe` into your code: it is 30 lines over tonic-health, kept
//! out of `bulwark-balance` so the balancer does not depend on tonic.)

// Each example and test that includes this file uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::Service;
use tower_bulwark::core::replay::{replayable, ReplayBody, DEFAULT_REPLAY_CAP};
use tower_bulwark::core::BoxError;

/// A balancer health probe over the gRPC health checking protocol: `Health/Check` for the
/// server as a whole (service `""`); healthy only when the answer is SERVING.
#[derive(Clone)]
pub(crate) struct GrpcHealthProbe {
    pub(crate) client: HealthClient<Channel>,
}

impl Service<()> for GrpcHealthProbe {
    type Response = ();
    type Error = BoxError;
    // A probe every few hundred milliseconds per endpoint: boxing its future costs nothing
    // that matters.
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        let mut client = self.client.clone();
        Box::pin(async move {
            let request = HealthCheckRequest {
                service: String::new(),
            };
            match client.check(request).await?.into_inner().status() {
                ServingStatus::Serving => Ok(()),
                other => Err(format!("health: {}", other.as_str_name()).into()),
            }
        })
    }
}

/// The broken server: `"work"` fails with UNAVAILABLE; its overall health is settable.
#[derive(Clone)]
pub(crate) struct Broken {
    pub(crate) health: Arc<AtomicI32>,
    pub(crate) work_calls: Arc<AtomicUsize>,
}

impl Broken {
    /// A server whose overall health (`Check` for service `""`) is SERVING.
    pub(crate) fn serving() -> Self {
        Broken {
            health: Arc::new(AtomicI32::new(ServingStatus::Serving as i32)),
            work_calls: Arc::default(),
        }
    }
}

impl Check for Broken {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        if request.get_ref().service == "work" {
            self.work_calls.fetch_add(1, Ordering::SeqCst);
            return Err(tonic::Status::unavailable("overloaded"));
        }
        Ok(tonic::Response::new(HealthCheckResponse {
            status: self.health.load(Ordering::SeqCst),
        }))
    }
}

/// What a server of these examples and tests answers to `Health/Check`; [`health`] serves
/// it as tonic's `Health` service, with `Watch` unimplemented.
pub(crate) trait Check: Send + Sync + 'static {
    /// The answer to `Health/Check`.
    fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> impl Future<Output = Result<tonic::Response<HealthCheckResponse>, tonic::Status>> + Send;
}

/// A [`Check`] as tonic's `Health` service.
pub(crate) struct CheckOnly<T>(T);

#[tonic::async_trait]
impl<T: Check> Health for CheckOnly<T> {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.0.check(request).await
    }

    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}

/// `check` as a tonic `Health` server.
pub(crate) fn health<T: Check>(check: T) -> HealthServer<CheckOnly<T>> {
    HealthServer::new(CheckOnly(check))
}

/// The examples' retry backoff for calls between servers on one network: 10 ms, doubling, at
/// most 200 ms, full jitter (a resend goes to another endpoint, so a short wait is enough).
pub(crate) fn quick_backoff() -> tower_bulwark::core::backoff::ExponentialBackoff {
    use tower_bulwark::core::backoff::{ExponentialBackoff, Jitter};
    ExponentialBackoff::new(
        std::time::Duration::from_millis(10),
        2.0,
        std::time::Duration::from_millis(200),
        Jitter::Full,
    )
    .expect("valid settings")
}

/// The request body of a tonic client.
type TonicRequest = http::Request<tonic::body::Body>;

/// `inner` behind `retry`, for a tonic client: tonic's request body cannot be cloned, so a
/// copy (up to 64 KiB) is kept above the retry, and the attempts below get tonic's body again.
pub(crate) fn with_retry<L, S>(
    retry: L,
    inner: S,
) -> tower::util::BoxCloneService<TonicRequest, S::Response, BoxError>
where
    S: Service<TonicRequest> + Clone + Send + 'static,
    L: tower::Layer<
        tower::util::MapRequest<
            S,
            fn(http::Request<ReplayBody<tonic::body::Body>>) -> TonicRequest,
        >,
    >,
    L::Service: Service<http::Request<ReplayBody<tonic::body::Body>>, Response = S::Response>
        + Clone
        + Send
        + 'static,
    <L::Service as Service<http::Request<ReplayBody<tonic::body::Body>>>>::Error: Into<BoxError>,
    <L::Service as Service<http::Request<ReplayBody<tonic::body::Body>>>>::Future: Send + 'static,
{
    let to_tonic: fn(http::Request<ReplayBody<tonic::body::Body>>) -> TonicRequest =
        |r| r.map(tonic::body::Body::new);
    let stack = tower::ServiceBuilder::new()
        .map_request(|r: TonicRequest| replayable(r, DEFAULT_REPLAY_CAP))
        .map_err(Into::into)
        .layer(retry)
        .map_request(to_tonic)
        .service(inner);
    tower::util::BoxCloneService::new(stack)
}

/// Serves `service` on a free loopback port; its address.
pub(crate) async fn serve<S: Health>(
    service: HealthServer<S>,
) -> Result<std::net::SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    serve_on(listener, service);
    Ok(addr)
}

/// Serves `service` on `listener` until the task is aborted.
pub(crate) fn serve_on<S: Health>(
    listener: tokio::net::TcpListener,
    service: HealthServer<S>,
) -> tokio::task::JoinHandle<()> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _ = Server::builder()
            .serve_with_incoming(service, incoming)
            .await;
    })
}
