//! A retry layer for Tower services that is safe, bounded and polite.
//!
//! * **Safe**: only what may be sent twice is retried. The policy decides from the whole
//!   result (the shared [`Classify`](bulwark_core::Classify) by default: every failure is
//!   retried); for HTTP, [`HttpRetryPolicy`] (feature `http`) retries only idempotent requests
//!   (or ones with an `Idempotency-Key`), only on connection failures and 429/502/503/504, and
//!   only while the body can be replayed ([`ReplayBody`](bulwark_core::replay::ReplayBody)
//!   keeps up to 64 KiB of a streaming body; a larger one is sent once, unretried).
//! * **Bounded**: at most `max_attempts` attempts (the first included), an optional timeout
//!   per attempt, and an optional deadline for all of them together: the layer never sleeps
//!   past it, and when the time left is shorter than the next wait it stops at once with the
//!   last outcome.
//! * **Polite**: exponential backoff with jitter between attempts (full jitter by default;
//!   see [`ExponentialBackoff`]), the server's
//!   `Retry-After` (or gRPC's `grpc-retry-pushback-ms`) honoured up to a cap, and a [`RetryBudget`]
//!   (20% of requests plus 10/s over 10 s by default) so a failing backend does not get a
//!   retry storm on top of its load. A budget can be shared by several layers.
//!
//! * **Deadline-aware**: each attempt tells the backend the time it has left (gRPC's
//!   `grpc-timeout`; for HTTP, a header of your choice), and the deadline the request carries,
//!   or the one its server received ([`InboundDeadlineLayer`], feature `http`), ends the
//!   attempts too.
//!
//! When retrying stops, the last outcome is returned as it came: a response stays a
//! response, and the [`Event::RetryGaveUp`](bulwark_core::Event::RetryGaveUp) event says why
//! (attempts, budget, deadline, ...).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_retry::BackoffRetryLayer;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! // A backend that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let backend = service_fn({
//!     let calls = calls.clone();
//!     move |q: &'static str| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n < 2 { Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) } else { Ok(q.len()) }
//!         }
//!     }
//! });
//! let mut svc = ServiceBuilder::new()
//!     .layer(BackoffRetryLayer::builder().max_attempts(3).build().unwrap())
//!     .service(backend);
//! assert_eq!(svc.ready().await.unwrap().call("dune").await.unwrap(), 4);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```
//!
//! # gRPC
//!
//! [`GrpcRetryPolicy`] (feature `grpc`) retries gRPC calls by their `grpc-status`
//! (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and INTERNAL by default, as the shared
//! [`GrpcClassifier`](bulwark_core::GrpcClassifier) sees them) and on connection failures,
//! and honours the server's `grpc-retry-pushback-ms`: a delay in milliseconds replaces the
//! backoff's (up to a cap), a negative value stops the retries
//! ([`GiveUpReason::Pushback`]). It reads the response head, where servers put the status of
//! a call that failed without sending a message (see [`bulwark_core::grpc`] for statuses
//! sent in trailers). A tonic request body cannot be cloned: wrap it with
//! [`replayable`](bulwark_core::replay::replayable) above the layer.
//!
//! ```
//! # #[cfg(feature = "grpc")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_retry::{BackoffRetryLayer, GrpcRetryPolicy};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! // A server that is busy once and asks for 50 ms, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let server = service_fn({
//!     let calls = calls.clone();
//!     move |_: http::Request<String>| {
//!         let busy = calls.fetch_add(1, Ordering::SeqCst) == 0;
//!         async move {
//!             let resp = http::Response::builder();
//!             let resp = if busy {
//!                 resp.header("grpc-status", "14").header("grpc-retry-pushback-ms", "50")
//!             } else {
//!                 resp.header("grpc-status", "0")
//!             };
//!             Ok::<_, std::io::Error>(resp.body(()).unwrap())
//!         }
//!     }
//! });
//! let mut client = BackoffRetryLayer::builder()
//!     .policy(GrpcRetryPolicy::new())
//!     .build()
//!     .unwrap()
//!     .layer(server);
//! let start = Instant::now();
//! let request = http::Request::post("/books.Store/Get").body(String::new()).unwrap();
//! let resp = client.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(resp.headers()["grpc-status"], "0");
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! assert_eq!(start.elapsed(), Duration::from_millis(50));
//! # }
//! # #[cfg(not(feature = "grpc"))]
//! # fn main() {}
//! ```
//!
//! # Cost
//!
//! On the success path: the request is cloned once (when it may be resent), the inner service
//! is cloned once (the ready one moves into the future), and the budget deposit is counted
//! locally and added to the shared budget once per 32 requests. No lock, no boxed future, and
//! no allocation for a `Clone` request that allocates none itself; a deadline or attempt
//! timeout adds a clock read, and a timer allocation when an attempt has to be waited on.
//! Telling the backend its time left (the gRPC policy, or the HTTP policy with a deadline
//! header) writes one header value per attempt. Reading the deadline in scope is one
//! relaxed atomic load per call until a process first opens a scope
//! ([`InboundDeadlineLayer`]), and a task-local read after that.
//!
//! # Feature flags
//!
//! * `http`: [`HttpRetryPolicy`], [`parse_retry_after`], [`InboundDeadlineLayer`].
//! * `grpc` (implies `http`): [`GrpcRetryPolicy`], [`parse_pushback`].
//! * `serde`: [`RetryConfig`] deserializes, durations in human form (`"100ms"`).
//! * `metrics`: counters and request-duration and attempts histograms through the `metrics`
//!   facade; names in [`metrics`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod future;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
mod grpc;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod http;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod inbound;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod policy;
mod service;
mod shared;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use bulwark_core::attempts::IDEMPOTENCY_KEY;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use bulwark_core::pushback::{
    is_connection_failure, parse_pushback, parse_retry_after, AsError, Pushback,
    GRPC_RETRY_PUSHBACK_MS,
};
pub use bulwark_core::Misuse;
pub use config::{BudgetConfig, ConfigError, RetryConfig, MAX_ATTEMPTS};
pub use error::{AttemptTimedOut, DeadlineExceeded};
pub use future::ResponseFuture;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use grpc::GrpcRetryPolicy;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::HttpRetryPolicy;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use inbound::{InboundDeadline, InboundDeadlineLayer};
pub use layer::{BackoffRetryLayer, Builder};
pub use policy::{Decision, RetryFailures, RetryPolicy};
pub use service::BackoffRetry;

pub use bulwark_core::backoff::{ExponentialBackoff, Jitter};
pub use bulwark_core::budget::{ResendCap, RetryBudget};
pub use bulwark_core::GiveUpReason;

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
