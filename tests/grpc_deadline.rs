//! Deadline propagation over real tonic servers on loopback, and our errors answered as gRPC
//! statuses at a server's edge (`grpc::StatusLayer`).
//!
//! The backend is a `grpc.health.v1.Health` server (tonic-health ships its generated code)
//! that records the `grpc-timeout` each call carried; the requested service name says how it
//! answers. Real time, bounded: the longest wait is a 300 ms deadline, and every wait for an
//! event has a timeout of a few seconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::{Endpoint, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::{Layer, ServiceExt};
use tower_bulwark::core::backoff::{ExponentialBackoff, Jitter};
use tower_bulwark::core::deadline::parse_grpc_timeout;
use tower_bulwark::core::BoxError;
use tower_bulwark::grpc::{self, StatusLayer};
use tower_bulwark::retry::{BackoffRetryLayer, GrpcRetryPolicy, InboundDeadlineLayer};

#[path = "../examples/support/grpc.rs"]
mod support;
use support::with_retry;

/// The backend: `"flaky"` fails its first call with UNAVAILABLE, then answers; `"slow"`
/// answers after 30 s, and reports when its handler is dropped.
#[derive(Clone)]
struct Backend {
    /// The `grpc-timeout` of each call, parsed.
    seen: Arc<Mutex<Vec<Option<Duration>>>>,
    calls: Arc<AtomicUsize>,
    /// When a slow handler started, and when it was dropped.
    slow: mpsc::UnboundedSender<(&'static str, Instant)>,
}

struct Dropped(mpsc::UnboundedSender<(&'static str, Instant)>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send(("dropped", Instant::now()));
    }
}

impl support::Check for Backend {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(&http::HeaderValue::from_bytes(v.as_bytes()).ok()?));
        self.seen.lock().unwrap().push(timeout);
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        match request.get_ref().service.as_str() {
            "flaky" if n == 0 => Err(tonic::Status::unavailable("warming up")),
            "slow" => {
                let _ = self.slow.send(("started", Instant::now()));
                let _guard = Dropped(self.slow.clone());
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(tonic::Response::new(HealthCheckResponse { status: 1 }))
            }
            _ => Ok(tonic::Response::new(HealthCheckResponse { status: 1 })),
        }
    }
}

async fn backend() -> (
    Backend,
    mpsc::UnboundedReceiver<(&'static str, Instant)>,
    std::net::SocketAddr,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend = Backend {
        seen: Arc::default(),
        calls: Arc::default(),
        slow: tx,
    };
    let addr = support::serve(support::health(backend.clone()))
        .await
        .unwrap();
    (backend, rx, addr)
}

type Client = tower::util::BoxCloneService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    BoxError,
>;

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A tonic channel to `addr` behind `retry`.
async fn through(retry: BackoffRetryLayer<GrpcRetryPolicy>, addr: std::net::SocketAddr) -> Client {
    fn boxed(e: tonic::transport::Error) -> BoxError {
        Box::new(e)
    }
    let channel = tower::ServiceBuilder::new()
        .map_err(boxed as fn(_) -> _)
        .service(channel(addr).await);
    with_retry(retry, channel)
}

fn retry(deadline: Duration) -> BackoffRetryLayer<GrpcRetryPolicy> {
    BackoffRetryLayer::builder()
        .deadline(deadline)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(50),
                2.0,
                Duration::from_millis(50),
                Jitter::None,
            )
            .unwrap(),
        )
        .policy(GrpcRetryPolicy::new())
        .build()
        .unwrap()
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

/// A client stack whose errors are statuses (`grpc::status`), as a handler returns them.
/// Its future is boxed by hand: a handler future holding the stack's `BoxError` trips
/// rustc's check that it is `Send` (the "implementation is not general enough" error).
#[derive(Clone)]
struct ToStatus(Client);

impl tower::Service<http::Request<tonic::body::Body>> for ToStatus {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::Status;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, tonic::Status>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), tonic::Status>> {
        self.0.poll_ready(cx).map_err(|e| grpc::status(&e))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = self.0.call(request);
        Box::pin(async move { call.await.map_err(|e| grpc::status(&e)) })
    }
}

/// Waits (at most 5 s) for the slow handler's next report.
async fn next(
    rx: &mut mpsc::UnboundedReceiver<(&'static str, Instant)>,
) -> (&'static str, Instant) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the backend reports within 5 s")
        .expect("the backend is alive")
}

#[tokio::test]
async fn every_attempt_over_tonic_carries_the_time_it_has_left() {
    let (backend, _rx, addr) = backend().await;
    let mut client = HealthClient::new(through(retry(Duration::from_secs(2)), addr).await);
    client.check(check("flaky")).await.unwrap();
    let seen = backend.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], Some(Duration::from_secs(2)), "the whole deadline");
    let second = seen[1].expect("the retry carries one too");
    assert!(
        second <= Duration::from_millis(1950) && second > Duration::from_secs(1),
        "what is left after the 50 ms wait: {second:?}"
    );
}

#[tokio::test]
async fn a_callers_deadline_crosses_a_hop_and_the_backend_stops_working_on_it() {
    let (backend, mut slow, backend_addr) = backend().await;

    // The middle server: its handler calls the backend through a retry whose own deadline is
    // 10 s; the caller's grpc-timeout, put in scope at the edge, cuts it.
    struct Middle {
        client: Mutex<HealthClient<ToStatus>>,
    }
    impl support::Check for Middle {
        async fn check(
            &self,
            request: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
            let mut client = self.client.lock().unwrap().clone();
            // A new request: nothing of the caller's is copied by hand.
            let answer = client.check(check(&request.get_ref().service)).await?;
            Ok(tonic::Response::new(answer.into_inner()))
        }
    }
    let middle = Middle {
        client: Mutex::new(HealthClient::new(ToStatus(
            through(retry(Duration::from_secs(10)), backend_addr).await,
        ))),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let middle_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Server::builder()
            .layer(InboundDeadlineLayer::grpc())
            .serve_with_incoming(
                support::health(middle),
                tonic::transport::server::TcpIncoming::from(listener),
            ),
    );

    let mut caller = HealthClient::new(channel(middle_addr).await);
    let mut request = tonic::Request::new(check("slow"));
    request.set_timeout(Duration::from_millis(300));
    let sent = Instant::now();
    let status = caller.check(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "the caller's deadline ended the call: {status:?}"
    );

    let (what, started) = next(&mut slow).await;
    assert_eq!(what, "started");
    let (what, dropped) = next(&mut slow).await;
    assert_eq!(
        what, "dropped",
        "the backend stopped working on the request"
    );
    assert!(
        dropped - started < Duration::from_secs(5),
        "by the caller's deadline, not after its 30 s of work: {:?}",
        dropped - started
    );
    assert!(
        dropped - sent >= Duration::from_millis(250),
        "{:?}",
        dropped - sent
    );
    let told = backend.seen.lock().unwrap()[0].expect("the backend was told its time");
    assert!(
        told <= Duration::from_millis(300) && told > Duration::ZERO,
        "the caller's 300 ms, less the hop, not the middle's 10 s: {told:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_grpc_proxy_built_of_our_layers_answers_their_errors_as_statuses() {
    let (backend, mut slow, backend_addr) = backend().await;
    // The proxy: every Health/Check goes to the backend through a retry with a 200 ms
    // deadline; StatusLayer turns the stack's errors into gRPC responses.
    let stack = through(retry(Duration::from_millis(200)), backend_addr).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(Server::builder().serve_with_incoming(
        StatusLayer::new().layer(stack),
        tonic::transport::server::TcpIncoming::from(listener),
    ));
    let mut client = HealthClient::new(channel(proxy_addr).await);

    // A backend's answer passes through (after one retry of its UNAVAILABLE).
    let answer = client.check(check("flaky")).await.unwrap();
    assert_eq!(answer.get_ref().status, 1);

    // The retry's deadline, as DEADLINE_EXCEEDED with its message.
    let status = client.check(check("slow")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "deadline of 200ms exceeded during attempt 1"
    );
    assert_eq!(next(&mut slow).await.0, "started");
    assert_eq!(next(&mut slow).await.0, "dropped");
    let seen = backend.seen.lock().unwrap().clone();
    assert_eq!(
        seen.last().copied().flatten(),
        Some(Duration::from_millis(200))
    );
    server.abort();
}

/// A stack that fails its readiness with an open circuit (a breaker in readiness mode
/// reports it so, a balancer with no endpoint ready likewise).
#[derive(Clone)]
struct NotReady;

impl tower::Service<http::Request<()>> for NotReady {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Err(Box::new(tower_bulwark::circuit_breaker::Open::new(
            tower_bulwark::core::CircuitState::Open,
            Some(Duration::from_millis(1500)),
        ))))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        unreachable!("never ready, never called")
    }
}

#[tokio::test]
async fn a_stack_that_fails_its_readiness_is_answered_with_the_status_at_the_call() {
    let response = StatusLayer::new()
        .layer(NotReady)
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "14", "UNAVAILABLE");
    assert_eq!(response.headers()["grpc-retry-pushback-ms"], "1500");
}
