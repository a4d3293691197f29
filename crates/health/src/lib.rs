//! A readiness gate driven by active health checks, for any Tower service.
//!
//! A service that answers but is unwell (its `/health` says so, its database is gone) should
//! not be sent requests, and a balancer or failover set above it should know why it is
//! skipped. [`HealthGate`] wraps any service: a probe (any `Service<()>` whose `Ok` means
//! healthy, or [`HttpProbe`] for `GET /health`, 2xx healthy) runs on a background task, and
//! while the probes say the service is unhealthy the gate's `poll_ready` is `Pending`. When they
//! pass again the gate wakes the tasks waiting on it. While healthy, readiness, calls,
//! responses and errors are the inner service's own.
//!
//! * **Checks** ([`HealthCheck`]): every 2 s with a 2 s timeout by default; unhealthy after 2
//!   failed probes in a row, healthy after 1 good one; each interval moved by up to 10% either
//!   way so many clients do not probe in step. The first probe runs when the gate is built.
//! * **Alone**: a caller that awaits readiness waits while the service is unhealthy (put a
//!   timeout above it if it should not wait for long).
//! * **Under a failover set** (`bulwark_failover`): a gated target that is unhealthy is
//!   skipped; when every target is, the set says so (`Unavailable::NoneHealthy`).
//! * **Under a balancer** (`bulwark_balance`): an endpoint whose gate says unhealthy is
//!   unhealthy in the balancer's view (its handle, `Unavailable::NoneHealthy` when all are),
//!   and the balancer keeps asking it, so it is back as soon as its gate opens. (A balancer can
//!   also run the same checks itself, per endpoint: `Endpoints::health`.)
//! * **Why, to the layer above**: the gate reports
//!   [`Hint::Unhealthy`](bulwark_core::hint::Hint::Unhealthy) when it turns a readiness poll
//!   away (see [`bulwark_core::hint`]).
//! * **Observability**: `tracing` (INFO `endpoint health changed`, with `gate` and `healthy`)
//!   and, with feature `metrics`, the gauge `bulwark_health_healthy` (`name`): 1 while healthy.
//! * A [`Handle`] says whether the service is healthy.
//!
//! The checks run on a task spawned on the tokio runtime the gate is built in, and stop when
//! the last clone of the gate is dropped.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_health::{HealthCheck, HealthGateLayer};
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! // The service, and a probe answering from a flag (an `HttpProbe` in real life).
//! let store = service_fn(|q: &'static str| async move { Ok::<_, std::io::Error>(q.len()) });
//! let up = Arc::new(AtomicBool::new(true));
//! let flag = up.clone();
//! let probe = service_fn(move |()| {
//!     let healthy = flag.load(Ordering::SeqCst);
//!     async move { if healthy { Ok(()) } else { Err(std::io::Error::other("503")) } }
//! });
//!
//! let mut gate = HealthGateLayer::builder()
//!     .name("store-1")
//!     .check(HealthCheck { interval: Duration::from_secs(1), unhealthy_after: 1, ..HealthCheck::default() })
//!     .build()
//!     .unwrap()
//!     .build(store, probe)
//!     .unwrap();
//! assert_eq!(gate.ready().await.unwrap().call("books").await.unwrap(), 5);
//!
//! // The probe fails: after the next check the gate is not ready.
//! up.store(false, Ordering::SeqCst);
//! tokio::time::sleep(Duration::from_millis(1500)).await;
//! assert!(!gate.handle().is_healthy());
//! let waiting = tokio::time::timeout(Duration::from_millis(500), gate.ready()).await;
//! assert!(waiting.is_err(), "not ready while unhealthy");
//!
//! // It passes again: the gate opens.
//! up.store(true, Ordering::SeqCst);
//! assert_eq!(gate.ready().await.unwrap().call("maps").await.unwrap(), 4);
//! # }
//! ```
//!
//! # Feature flags
//!
//! * `http`: [`HttpProbe`].
//! * `serde`: deserialize a [`HealthCheck`] (durations in human form, `"2s"`).
//! * `metrics`: the `bulwark_health_healthy` gauge.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod check;
mod config;
mod gate;
mod layer;

pub use bulwark_core::ConfigError;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use check::HttpProbe;
pub use check::{probe_once, Tally, UnhealthyStatus};
pub use config::HealthCheck;
pub use gate::{Handle, HealthGate};
pub use layer::{Builder, HealthGateLayer};

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
