//! Our errors as gRPC statuses (`tower_bulwark::grpc::status`), seen by a typed tonic client
//! over a real tonic server on loopback: the server's handler calls a stack and maps its error
//! with `grpc::status`; the client sees the code, the message and the pushback metadata.
//!
//! The service is `grpc.health.v1.Health` (tonic-health ships its generated code): the
//! requested service name says which failure the handler meets.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tonic::metadata::MetadataMap;
use tonic::transport::Endpoint;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};
use tower_bulwark::balance::{NoEndpointReady, Unavailable};
use tower_bulwark::bulkhead::{Full, OverflowReason};
use tower_bulwark::circuit_breaker::Open;
use tower_bulwark::core::{BoxError, CircuitState, DeadlineExceeded};
use tower_bulwark::failover::FailoverLayer;
use tower_bulwark::fanout::{FanOutLayer, FirstSuccess};
use tower_bulwark::grpc;
use tower_bulwark::rate_limit::RateLimited;

#[path = "../examples/support/grpc.rs"]
mod support;

type Target = BoxCloneService<(), (), BoxError>;

/// A target that opens a real TCP connection to `addr` (nothing listens there).
fn connecting(addr: SocketAddr) -> Target {
    BoxCloneService::new(tower::service_fn(move |()| async move {
        tokio::net::TcpStream::connect(addr).await?;
        Ok(())
    }))
}

/// A backend that answers with its own status, carrying metadata of its own.
fn exhausted() -> Target {
    BoxCloneService::new(tower::service_fn(|()| async {
        let mut status = tonic::Status::resource_exhausted("quota used up");
        status
            .metadata_mut()
            .insert("x-quota", "tenant-7".parse().unwrap());
        Err::<(), BoxError>(Box::new(status))
    }))
}

/// The server: each `service` name meets one failure, mapped with `grpc::status`.
#[derive(Clone)]
struct Edge {
    closed: SocketAddr,
}

impl Edge {
    async fn fail(&self, what: &str) -> BoxError {
        match what {
            "open" => Box::new(Open::new(
                CircuitState::Open,
                Some(Duration::from_micros(1_499_001)),
            )),
            "forced-open" => Box::new(Open::new(CircuitState::ForcedOpen, None)),
            "rate-limited" => Box::new(RateLimited::new(Duration::from_millis(250))),
            "full" => Box::new(Full::new("store-1", 8, OverflowReason::Full)),
            "no-endpoint" => Box::new(NoEndpointReady {
                reason: Unavailable::NoneReady,
                retry_after: None,
                waited: Duration::from_secs(1),
            }),
            "deadline" => Box::new(DeadlineExceeded {
                deadline: Duration::from_secs(2),
                attempts: 3,
            }),
            // Two targets refusing a real connection, behind failover: AllFailed, whose
            // source is the last target's io::Error.
            "refused" => {
                let mut set = FailoverLayer::builder()
                    .build()
                    .unwrap()
                    .build(vec![connecting(self.closed), connecting(self.closed)])
                    .unwrap();
                set.ready().await.unwrap().call(()).await.unwrap_err()
            }
            // A backend's own status under failover: passed through untouched.
            "backend" => {
                let mut set = FailoverLayer::builder()
                    .build()
                    .unwrap()
                    .build(vec![connecting(self.closed), exhausted()])
                    .unwrap();
                set.ready().await.unwrap().call(()).await.unwrap_err()
            }
            // A fan-out whose failing target refused the connection.
            "fan-out" => {
                let mut fanout = FanOutLayer::builder()
                    .merge(FirstSuccess)
                    .build()
                    .unwrap()
                    .build(vec![
                        BoxCloneService::new(tower::service_fn(|()| async { Ok(()) })),
                        connecting(self.closed),
                    ])
                    .unwrap();
                fanout.ready().await.unwrap().call(()).await.unwrap_err()
            }
            _ => Box::new(io::Error::other("malformed reply")),
        }
    }
}

impl support::Check for Edge {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let err = self.fail(&request.get_ref().service).await;
        Err(grpc::status(&err))
    }
}

fn pushback(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get("grpc-retry-pushback-ms")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_typed_tonic_client_sees_our_errors_as_the_status_a_grpc_user_expects() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let addr = support::serve(support::health(Edge { closed }))
        .await
        .unwrap();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut call = async |what: &str| {
        client
            .check(HealthCheckRequest {
                service: what.into(),
            })
            .await
            .unwrap_err()
    };

    let s = call("open").await;
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(
        pushback(s.metadata()),
        Some("1500"),
        "rounded up to whole ms"
    );
    assert!(
        s.message()
            .starts_with("circuit open: calls suspended for "),
        "{s:?}"
    );

    let s = call("forced-open").await;
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(pushback(s.metadata()), None, "no promise while forced open");

    let s = call("rate-limited").await;
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(pushback(s.metadata()), Some("250"));

    let s = call("full").await;
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(pushback(s.metadata()), None);

    let s = call("no-endpoint").await;
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(pushback(s.metadata()), Some("1000"), "the default wait");

    let s = call("deadline").await;
    assert_eq!(s.code(), Code::DeadlineExceeded);
    assert_eq!(s.message(), "deadline of 2s exceeded during attempt 3");

    let s = call("refused").await;
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(
        s.message().starts_with("all 2 failover targets failed"),
        "{s:?}"
    );

    let s = call("backend").await;
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert_eq!(s.message(), "quota used up");
    assert_eq!(s.metadata().get("x-quota").unwrap(), "tenant-7");
    assert_eq!(pushback(s.metadata()), None);

    let s = call("fan-out").await;
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().starts_with("fan-out "), "{s:?}");

    let s = call("other").await;
    assert_eq!(s.code(), Code::Unknown);
    assert_eq!(s.message(), "malformed reply");
}

/// An error of the caller's own wrapping a backend's `Status`, whose own source is a refused
/// connection: the backend's status decides, as it came, not the connection under it.
#[test]
fn a_backend_status_under_a_wrapper_decides_before_the_connection_under_it() {
    #[derive(Debug)]
    struct Wrapper(tonic::Status);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("calling the catalogue")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let mut backend = tonic::Status::permission_denied("not yours");
    backend.set_source(std::sync::Arc::new(io::Error::from(
        io::ErrorKind::ConnectionRefused,
    )));
    let err: BoxError = Box::new(Wrapper(backend));
    let status = grpc::status(&err);
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "not yours")
    );
}

/// The rows of the mapping a typed client does not reach above, from the errors themselves.
#[test]
fn each_of_our_errors_maps_to_its_row() {
    use tower_bulwark::failover::{AllFailed, NoTargetReady, TargetFailure};
    use tower_bulwark::retry::AttemptTimedOut;

    let pushback = |s: &tonic::Status| {
        s.metadata()
            .get("grpc-retry-pushback-ms")
            .map(|v| v.to_str().unwrap().to_string())
    };
    // A balancer's own time to retry goes out as the pushback.
    let err: BoxError = Box::new(NoEndpointReady {
        reason: Unavailable::CircuitsOpen,
        retry_after: Some(Duration::from_millis(1500)),
        waited: Duration::ZERO,
    });
    let s = grpc::status(&err);
    assert_eq!(
        (s.code(), pushback(&s).as_deref()),
        (Code::Unavailable, Some("1500"))
    );
    // A failover set with nothing ready and no time known: UNAVAILABLE, pushback 1 s.
    let err: BoxError = Box::new(NoTargetReady {
        targets: 2,
        reason: tower_bulwark::failover::Unavailable::AllFull,
        retry_after: None,
        waited: Duration::from_millis(100),
    });
    let s = grpc::status(&err);
    assert_eq!(
        (s.code(), pushback(&s).as_deref()),
        (Code::Unavailable, Some("1000"))
    );
    // The retry's per-attempt timeout: DEADLINE_EXCEEDED, no pushback.
    let err: BoxError = Box::new(AttemptTimedOut {
        after: Duration::from_secs(1),
        attempts: 3,
    });
    let s = grpc::status(&err);
    assert_eq!((s.code(), pushback(&s)), (Code::DeadlineExceeded, None));
    // Every failover target failed with errors that decide nothing: UNAVAILABLE, 1 s.
    let err: BoxError = Box::new(AllFailed::new(vec![TargetFailure {
        index: 0,
        target: String::from("store-1"),
        reason: String::from("bad reply"),
        error: Some(Box::new(io::Error::other("bad reply"))),
    }]));
    let s = grpc::status(&err);
    assert_eq!(
        (s.code(), pushback(&s).as_deref()),
        (Code::Unavailable, Some("1000"))
    );
}
