//! gRPC through the layers: a tonic client channel per server, each wrapped in a circuit
//! breaker (readiness mode, `GrpcClassifier`), balanced with the gRPC health checking protocol
//! as the active health check, and retried with `GrpcRetryPolicy` on top.
//!
//! The service under test is `grpc.health.v1.Health` itself (tonic-health ships its generated
//! code), so nothing needs compiling with protoc: calls check the service `"work"`, the
//! balancer's probes check the server as a whole (`""`).
//!
//! The first test runs two real tonic servers on loopback, in real time with short intervals
//! (it takes well under a second); the pushback test drives the typed tonic client over an
//! in-process mock, in paused time.

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{Layer, Service, ServiceBuilder};
use tower_bulwark::balance::{BalanceLayer, Endpoints, HealthCheck, Strategy};
use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
use tower_bulwark::core::backoff::{ExponentialBackoff, Jitter};
use tower_bulwark::core::replay::{replayable, ReplayBody, DEFAULT_REPLAY_CAP};
use tower_bulwark::core::{BoxError, CircuitState, Event, GiveUpReason, GrpcClassifier};
use tower_bulwark::retry::{BackoffRetryLayer, GrpcRetryPolicy};

#[path = "../examples/support/grpc.rs"]
mod support;
use support::{health, serve, Broken, GrpcHealthProbe};

fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy()
}

fn backoff() -> ExponentialBackoff {
    ExponentialBackoff::new(
        Duration::from_millis(5),
        2.0,
        Duration::from_millis(50),
        Jitter::None,
    )
    .unwrap()
}

/// The client side of a retry layer: tonic's request body cannot be cloned, so it is made
/// replayable above the retry and turned back into tonic's body below it.
fn into_tonic(
    request: http::Request<ReplayBody<tonic::body::Body>>,
) -> http::Request<tonic::body::Body> {
    request.map(tonic::body::Body::new)
}

fn work() -> HealthCheckRequest {
    HealthCheckRequest {
        service: "work".into(),
    }
}

#[tokio::test]
async fn breaker_retry_and_health_checked_balance_over_real_tonic_servers() {
    // Server 0 answers; server 1 fails every call with UNAVAILABLE.
    let (reporter, healthy) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("work", tonic_health::ServingStatus::Serving)
        .await;
    let good = serve(healthy).await.unwrap();
    let broken = Broken {
        health: Arc::new(AtomicI32::new(ServingStatus::Serving as i32)),
        work_calls: Arc::new(AtomicUsize::new(0)),
    };
    let bad = serve(health(broken.clone())).await.unwrap();

    // Per endpoint: its channel in a breaker that opens after 3 failures in a row and stays
    // open for the whole test; in readiness mode, so the balancer skips it while open.
    let breaker = CircuitBreakerLayer::builder()
        .readiness_mode()
        .classifier(GrpcClassifier::new())
        .consecutive_failures(3)
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    let channels = [channel(good), channel(bad)];
    let endpoints: Vec<_> = channels.iter().map(|c| breaker.layer(c.clone())).collect();
    let breakers: Vec<_> = endpoints.iter().map(|e| e.handle()).collect();
    let probes: Vec<_> = channels
        .iter()
        .map(|c| GrpcHealthProbe {
            client: HealthClient::new(c.clone()),
        })
        .collect();
    let balance = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .classifier(GrpcClassifier::new())
        .http() // a retry goes to an endpoint the call has not been to
        .health_check(HealthCheck {
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(1),
            unhealthy_after: 1,
            healthy_after: 1,
            jitter: 0.0,
        })
        .build()
        .unwrap()
        .build(Endpoints::list(endpoints).health(probes))
        .unwrap();
    let balancer = balance.handle();

    let gave_up = Arc::new(Mutex::new(Vec::new()));
    let seen = gave_up.clone();
    let retry = BackoffRetryLayer::builder()
        .max_attempts(3)
        .backoff(backoff())
        .policy(GrpcRetryPolicy::new())
        .listener(move |e: &Event<'_>| {
            if let Event::RetryGaveUp { reason, .. } = e {
                seen.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .map_request(|r: http::Request<tonic::body::Body>| replayable(r, DEFAULT_REPLAY_CAP))
        .layer(retry)
        .map_request(into_tonic)
        .service(balance);
    let mut client = HealthClient::new(stack);

    // Every call succeeds: those sent to the broken server are retried on the other.
    for i in 0..20 {
        let answer = client.check(work()).await.unwrap_or_else(|status| {
            panic!("call {i} failed: {status:?}");
        });
        assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
    }
    assert!(gave_up.lock().unwrap().is_empty());

    // The broken server's breaker opened after its third UNAVAILABLE (HTTP 200 each time:
    // only the gRPC classification sees them), and it got no call after that.
    assert_eq!(broken.work_calls.load(Ordering::SeqCst), 3);
    assert_eq!(breakers[1].state(), CircuitState::Open);
    assert_eq!(breakers[0].state(), CircuitState::Closed);
    assert_eq!(breakers[1].metrics().failures, 3);

    // Both servers report SERVING so far: both are healthy.
    assert!(balancer.endpoints().iter().all(|e| e.healthy));

    // The broken server now says NOT_SERVING: its probe marks it unhealthy.
    broken
        .health
        .store(ServingStatus::NotServing as i32, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while balancer.endpoints()[1].healthy {
        assert!(
            Instant::now() < deadline,
            "the probe never marked it unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(balancer.endpoints()[0].healthy);

    // And calls still succeed, all on the healthy server.
    for _ in 0..5 {
        let answer = client.check(work()).await.unwrap();
        assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
    }
    assert_eq!(broken.work_calls.load(Ordering::SeqCst), 3);
}

/// A mock gRPC server: each call takes the next reply. `None` is an OK answer (one SERVING
/// message, then `grpc-status: 0` in the trailers); `Some(ms)` is a Trailers-Only
/// UNAVAILABLE with that `grpc-retry-pushback-ms`.
#[derive(Clone)]
struct Mock {
    replies: Arc<Mutex<Vec<Option<&'static str>>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Service<http::Request<tonic::body::Body>> for Mock {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        self.calls.lock().unwrap().push(Instant::now());
        let reply = {
            let mut replies = self.replies.lock().unwrap();
            if replies.is_empty() {
                None
            } else {
                replies.remove(0)
            }
        };
        let response = http::Response::builder().header("content-type", "application/grpc");
        let response = match reply {
            Some(pushback) => response
                .header("grpc-status", "14")
                .header("grpc-retry-pushback-ms", pushback)
                .body(tonic::body::Body::empty()),
            None => {
                // HealthCheckResponse { status: SERVING } in one gRPC frame, then the trailers.
                let message = Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 0x01]);
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let frames = [
                    Ok::<_, std::convert::Infallible>(Frame::data(message)),
                    Ok(Frame::trailers(trailers)),
                ];
                let body = StreamBody::new(futures_util::stream::iter(frames));
                response.body(tonic::body::Body::new(body))
            }
        };
        std::future::ready(Ok(response.unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn the_server_pushback_delays_or_stops_retries_of_a_typed_tonic_call() {
    let client = |replies: Vec<Option<&'static str>>| {
        let mock = Mock {
            replies: Arc::new(Mutex::new(replies)),
            calls: Arc::default(),
        };
        let gave_up = Arc::new(Mutex::new(Vec::new()));
        let seen = gave_up.clone();
        let retry = BackoffRetryLayer::builder()
            .max_attempts(3)
            .backoff(backoff())
            .policy(GrpcRetryPolicy::new())
            .listener(move |e: &Event<'_>| {
                if let Event::RetryGaveUp { reason, .. } = e {
                    seen.lock().unwrap().push(*reason);
                }
            })
            .build()
            .unwrap();
        let stack = ServiceBuilder::new()
            .map_request(|r: http::Request<tonic::body::Body>| replayable(r, DEFAULT_REPLAY_CAP))
            .layer(retry)
            .map_request(into_tonic)
            .service(mock.clone());
        // An origin is needed by tonic's client when nothing below adds one.
        let origin = "http://mock".parse().unwrap();
        (
            HealthClient::with_origin(stack, origin),
            mock.calls,
            gave_up,
        )
    };

    // A pushback of 50 ms: the retry comes 50 ms later (not after the 5 ms backoff).
    let (mut health, calls, gave_up) = client(vec![Some("50")]);
    let start = Instant::now();
    let answer = health.check(work()).await.unwrap();
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1] - start, Duration::from_millis(50));
    assert!(gave_up.lock().unwrap().is_empty());

    // A pushback of -1: no retry; the caller gets the UNAVAILABLE at once.
    let (mut health, calls, gave_up) = client(vec![Some("-1")]);
    let start = Instant::now();
    let status = health.check(work()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(*gave_up.lock().unwrap(), vec![GiveUpReason::Pushback]);
}
