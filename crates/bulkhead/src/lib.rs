//! A bulkhead for Tower services: at most N calls in flight, an optional bounded queue with a
//! timeout, and an adaptive limit that finds N from measured latency.
//!
//! A backend that slows down under load makes its callers pile up requests: latency grows
//! without bound and every caller waits. A bulkhead caps the calls in flight to one backend,
//! so the overflow is turned away at once (or after a short, bounded wait) and the calls that
//! are admitted are served at the backend's normal speed. It is Envoy's circuit-breaker
//! thresholds (`max_requests`, `max_pending_requests`) and Resilience4j's `Bulkhead`.
//!
//! # What it does
//!
//! * **Permits** ([`BulkheadLayer`]): `poll_ready` takes one of N permits; the response
//!   future holds it and gives it back when the call ends, or when the future is dropped
//!   (cancelled). A permit reserved by `poll_ready` for a call that never comes goes back when
//!   the service is dropped. The limit, the queue and an adaptive limit's bounds can be
//!   changed at run time through a [`Handle`], validated as the builder validates them
//!   (lowering the limit cuts off no call in flight: fewer are admitted until the count falls;
//!   a smaller queue drops none of the callers waiting). The layer gives the handles of the
//!   bulkheads it built ([`BulkheadLayer::handles`]); built [`shared`](Builder::shared), one
//!   bulkhead serves every service it wraps, its handle there before any service
//!   ([`BulkheadLayer::handle`]).
//! * **Queue** (optional): up to M callers wait, each at most a timeout, first come first
//!   served: a permit that frees up goes to the caller that has waited longest. A caller whose
//!   service is dropped leaves the queue (a permit handed to it goes on to the next).
//! * **Fail fast** ([`Mode::FailFast`], the default): when every permit is taken (and the
//!   queue is full, absent, or its wait ran out), `poll_ready` is ready and `call` fails at
//!   once with [`Full`], naming the bulkhead, its limit and why ([`OverflowReason`]).
//! * **Readiness** ([`Mode::Readiness`]): a full bulkhead is not ready; it wakes the task when
//!   a permit frees up, and tells the layer asking why
//!   ([`Hint::Full`](bulwark_core::hint::Hint::Full)), so a balancer or failover set above it
//!   skips it rather than queueing behind it.
//! * **Adaptive** ([`AdaptiveLimitLayer`]): the same permits and queue, but the limit moves
//!   with the latency measured on the calls, between a floor and a ceiling: a gradient
//!   controller ([`Gradient`], in the spirit of Envoy's adaptive concurrency filter and
//!   Netflix's gradient limit) or AIMD ([`Aimd`]). Calls over the limit are shed at once (or
//!   queued briefly). When the backend recovers the limit climbs back.
//! * **Observability**: `tracing` (DEBUG when a call is turned away and when the limit moves,
//!   INFO when it is set by hand), [`Event::BulkheadRejected`] and [`Event::LimitChanged`],
//!   and with feature `metrics` the counters, gauges and histogram in `metrics`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_bulkhead::{BulkheadLayer, Full, OverflowReason};
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let layer = BulkheadLayer::builder()
//!     .name("inventory")
//!     .max_concurrent(2)
//!     .build()
//!     .expect("valid settings");
//! // An inventory service that takes a second to answer.
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|n: u32| async move {
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//!     Ok::<_, std::io::Error>(n)
//! }));
//!
//! let first = svc.ready().await.unwrap().call(1);
//! let second = svc.ready().await.unwrap().call(2);
//! // Two calls in flight: the third fails at once, without reaching the service.
//! let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
//! let full = err.downcast_ref::<Full>().unwrap();
//! assert_eq!(full.reason(), OverflowReason::Full);
//! assert_eq!(err.to_string(), "bulkhead `inventory` full: 2 calls in flight");
//! assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 2));
//! // Their permits are back.
//! assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);
//! # }
//! ```
//!
//! # Cost
//!
//! Admitting a call is one atomic load and one compare-and-swap; its end, one decrement and
//! one load. No lock, no allocation, no boxed future (the response future is a named type);
//! futures count references on a per-clone handle rather than the bulkhead's own, so threads
//! sharing one bulkhead contend only on its count. A caller that waits in the queue takes a
//! short lock (never across an `.await`) and, the first time a service clone waits, allocates
//! its place in the queue and its timer. An adaptive limit adds two reads of tokio's clock and
//! a few atomic additions per call, and a lock once per window.
//!
//! # Feature flags
//!
//! * `serde`: [`BulkheadConfig`] and [`AdaptiveConfig`] deserialize, durations in human form
//!   (`"50ms"`).
//! * `metrics`: counters, gauges and a queue-wait histogram through the `metrics` facade; names
//!   in `metrics`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adaptive;
mod config;
mod error;
mod future;
mod handle;
mod layer;
mod limiter;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod service;

pub use adaptive::MIN_SAMPLES;
pub use config::{
    AdaptiveConfig, Aimd, Algorithm, BulkheadConfig, ConfigError, Gradient, Mode, Queue, MAX_LIMIT,
    MAX_QUEUE,
};
pub use error::Full;
pub use future::ResponseFuture;
pub use handle::Handle;
pub use layer::{AdaptiveBuilder, AdaptiveLimitLayer, Builder, BulkheadLayer};
pub use service::Bulkhead;

pub use bulwark_core::{
    Classify, DefaultClassifier, Event, Listener, Misuse, Outcome, OverflowReason,
};

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
