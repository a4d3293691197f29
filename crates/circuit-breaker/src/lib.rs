//! A circuit breaker for Tower services: closed, open and half-open over a true sliding
//! window, failing fast while open and saying how long until it probes again.
//!
//! # What it does
//!
//! * **Closed**: calls flow; each outcome, classified by a
//!   [`Classify`] (errors are failures by default; for HTTP, 5xx), goes
//!   into a sliding window: the last N calls ([`Window::Count`]) or the last N seconds in
//!   buckets ([`Window::Time`]). Once the window holds `min_calls` calls, a failure rate at or
//!   above the threshold trips the breaker; so can K failures in a row, or the share of slow
//!   calls.
//! * **Open**: calls are refused without reaching the service, for a fixed period or one that
//!   grows on each consecutive trip ([`OpenPeriod`]). In the default [`Mode::FailFast`], `call`
//!   fails at once with [`Open`], which says how long until the next probe. In
//!   [`Mode::Readiness`], `poll_ready` stays pending instead and wakes itself when the period
//!   ends: a balancer or failover set skips the target meanwhile. It says why to the layer
//!   asking ([`bulwark_core::hint::Hint::CircuitOpen`], with the time until the first probe),
//!   so a balancer whose every endpoint is open fails at once when no probe comes in time.
//! * **Half-open**: N probe calls are admitted (1 by default); more are refused. All N
//!   succeed: closed, with a fresh window. One fails: open again. A probe whose future is
//!   dropped gives its slot back.
//! * Through a [`Handle`]: read the state and a [`MetricsSnapshot`]; force it open, disable it
//!   (everything passes, nothing is recorded) or run it metrics-only (records, never trips);
//!   change its thresholds, open period and probes while it runs ([`Handle::update`]),
//!   validated as the builder validates them, without dropping a call in flight.
//! * Handles from the layer: a layer built [`shared`](Builder::shared) wraps every service
//!   with one breaker (two clients of one backend share its verdict) and gives its handle
//!   before any service exists ([`CircuitBreakerLayer::handle`]); by default each service
//!   gets its own breaker, and [`CircuitBreakerLayer::handles`] lists those alive.
//!
//! An outcome of a call admitted before the latest state change (a slow call that started
//! before a trip) is reported, but cannot change the state that followed.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_circuit_breaker::{CircuitBreakerLayer, Open};
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let layer = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .failure_rate(0.2)
//!     .count_window(10)
//!     .min_calls(5)
//!     .open_for(Duration::from_secs(20))
//!     .build()
//!     .expect("valid settings");
//!
//! // An inventory service that is down.
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|_: ()| async {
//!     Err::<(), _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
//! }));
//!
//! for _ in 0..5 {
//!     let _ = svc.ready().await.unwrap().call(()).await;
//! }
//! // The breaker is open: the next call fails at once, without reaching the service.
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! let open = err.downcast_ref::<Open>().unwrap();
//! assert_eq!(open.retry_after(), Some(Duration::from_secs(20)));
//! assert_eq!(err.to_string(), "circuit open: calls suspended for 20000 ms");
//! # }
//! ```
//!
//! # Cost
//!
//! In the closed state with a count window, admitting a call is one atomic load, and a
//! success that changes nothing in a full, failure-free window writes no shared memory at
//! all; the hot path takes no lock, allocates nothing and boxes no future (the response future
//! is a named type). Response futures count references on a per-clone handle rather than the
//! breaker's own, so threads sharing one breaker do not contend: a clone allocates that handle
//! once, on its second call. A time window, or slow-call tracking, adds reads of tokio's
//! clock. Transitions take a mutex that the request path never takes, and never across an
//! `.await`.
//!
//! # Feature flags
//!
//! * `http`: re-exports [`HttpClassifier`] and [`StatusSet`] from `bulwark-core`, to classify
//!   HTTP responses by status (5xx a failure by default).
//! * `serde`: [`CircuitBreakerConfig`] deserializes, durations in human form (`"10s"`).
//! * `metrics`: counters, a call-duration histogram and a state gauge (one series per state)
//!   through the `metrics` facade; names in [`metrics`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod future;
mod handle;
mod layer;
#[cfg(all(test, bulwark_loom))]
mod loom_tests;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod service;
mod state;
mod sync;
mod window;

pub use config::{
    CircuitBreakerConfig, ConfigError, Mode, OpenPeriod, SlowCalls, Window, MAX_BUCKETS,
    MAX_HALF_OPEN_PROBES,
};
pub use error::Open;
pub use future::ResponseFuture;
pub use handle::{Handle, MetricsSnapshot};
pub use layer::{Builder, CircuitBreakerLayer};
pub use service::CircuitBreaker;

pub use bulwark_core::{
    CircuitState, Classify, DefaultClassifier, Event, Listener, Misuse, Outcome,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use bulwark_core::{HttpClassifier, StatusSet};

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
