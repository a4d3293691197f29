//! Ordered failover for Tower services, sticky to the last target that worked.
//!
//! A request goes to one target of an ordered list. If that attempt fails (an error, no answer
//! within the per-attempt timeout, or a response classified as a failure: for HTTP the
//! failover statuses 501, 502, 503 and 504), the same request (cloned, or replayed with
//! [`ReplayBody`](bulwark_core::replay::ReplayBody)) goes to the next target, until one
//! answers or every target has been tried.
//!
//! * **Sticky** (default): the next request starts from the
//!   target that last answered. **Priority**: it starts from the first target that is ready,
//!   so traffic returns to the primary as soon as it recovers.
//! * **Readiness**: only the chosen target is called, and only once it is ready. A target that
//!   is not ready (an open circuit breaker in readiness mode, a full pool) is skipped without
//!   waiting on it and without holding a reservation on the others. When none is ready, a
//!   request waits up to `wait_for_ready`, then fails with [`NoTargetReady`], which says why
//!   as the targets said ([`bulwark_core::hint`]: every circuit open, none healthy, none
//!   ready). When every target is refused by an open circuit that probes only after the wait
//!   would end, it fails at once, with the soonest probe as `retry_after`.
//! * **Deadline** (optional, `Builder::deadline`): a bound on the whole request, every
//!   target it tries included; each attempt's time is cut to what is left, and when it passes
//!   the call fails with [`DeadlineExceeded`] (no retry layer is needed just for a deadline).
//!   The deadline its server received, put in scope at the server's edge
//!   ([`bulwark_core::deadline`]), ends the request too (`Builder::inherit_deadline`). With
//!   [`HttpFailoverPolicy`], a request carrying a `grpc-timeout` (stamped by a retry above, or
//!   by the caller) tells each next target the time left when it reaches it.
//! * **Failure, declared once**: [`FailOnFailure`] fails over on what the stack's classifier
//!   says may be sent again ([`Classify::resend`](bulwark_core::Classify::resend)), the same
//!   classifier the breakers and the balancer use; [`HttpFailoverPolicy`] (feature `http`)
//!   takes an `HttpClassifier` with its resend statuses.
//! * **When every target failed**: the last response as it came, so an HTTP caller still sees
//!   the status; or, when the last outcome was an error, [`AllFailed`], which lists each
//!   target's failure in order (`all 3 failover targets failed: [0] connection refused;
//!   [1] timed out after 5s; [2] 503 Service Unavailable`) and keeps each target's own error,
//!   typed ([`TargetFailure::error`]): its `source()` is the last of them, so a caller walking
//!   the chain finds what the transport said (the `std::io::Error` of a refused connection).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_failover::FailoverLayer;
//! use std::time::Duration;
//! use tower::{service_fn, util::BoxCloneService, Service, ServiceExt};
//!
//! type Target = BoxCloneService<&'static str, String, std::io::Error>;
//! let down: Target = BoxCloneService::new(service_fn(|_| async {
//!     Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
//! }));
//! let up: Target = BoxCloneService::new(service_fn(|q: &'static str| async move {
//!     Ok(format!("found {q}"))
//! }));
//!
//! let mut stores = FailoverLayer::builder()
//!     .attempt_timeout(Duration::from_secs(5))
//!     .build()
//!     .unwrap()
//!     .build(vec![down, up])
//!     .unwrap();
//! let answer = stores.ready().await.unwrap().call("dune").await.unwrap();
//! assert_eq!(answer, "found dune");
//! assert_eq!(stores.current(), 1, "sticky: the next request starts at the target that answered");
//! # }
//! ```
//!
//! # Cost
//!
//! When the first target answers: one readiness check, the request cloned once (when it may
//! be resent), the attempt's timer inline in the future as in tower's `Timeout`, and no
//! allocation and no lock. Failing over takes a short lock to clone the next target, and
//! records each failure (that allocates, off the fast path).
//!
//! # Feature flags
//!
//! * `http`: [`HttpFailoverPolicy`].
//! * `serde`: [`FailoverConfig`] deserializes, durations in human form (`"5s"`).
//! * `metrics`: per-target counters and attempt-duration histograms; names in [`metrics`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod future;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod policy;
mod service;
mod shared;

pub use bulwark_core::{DeadlineExceeded, Misuse};
pub use config::{ConfigError, FailoverConfig, Mode};
pub use error::{AllFailed, NoTargetReady, TargetFailure, Unavailable};
pub use future::ResponseFuture;
pub use layer::{Builder, FailoverLayer};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use policy::HttpFailoverPolicy;
pub use policy::{FailOnFailure, FailoverPolicy};
pub use service::Failover;

pub use bulwark_core::FailoverReason;

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
