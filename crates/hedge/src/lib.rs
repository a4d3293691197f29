//! A hedging layer for Tower services: when an answer is slow, ask again elsewhere.
//!
//! Most of a service's tail latency comes from a few slow answers (a GC pause, a cold cache, a
//! noisy neighbour), and sending the same request again to another replica after a short wait
//! takes them off the tail for a few percent more load ("The Tail at Scale", Dean and Barroso;
//! Finagle's backup requests; gRPC's hedging, A6). [`Hedge`] does that:
//!
//! * **When**: after a fixed `delay`, or after a `percentile` (p95 by default) of the latencies
//!   of the answers the layer saw (an attempt cancelled after running past the delay counts
//!   as at least its time so far, so the percentile does not drift down under hedging), kept
//!   in a lock-free rolling histogram over a `window`
//!   (10 s), used once the window holds `min_samples` (100) answers (until then, the `delay` if
//!   one is set, else no hedge). Up to `max_attempts` attempts (2 by default, at most 5 as in
//!   A6), each after the delay from the previous one.
//! * **Where**: each hedge is a copy of the request, polled ready inside the request's
//!   [`Attempts`](bulwark_core::attempts::Attempts) scope as the retry layer's resends are, so
//!   a `bulwark_balance` balancer below sends it to an endpoint the request has not been to.
//!   A hedge of an `http::Request` carrying a `grpc-timeout` (stamped by a retry above, or by
//!   the caller) tells the server the time left when the hedge goes
//!   ([`RequestAttempts::resent_after`](bulwark_core::attempts::RequestAttempts::resent_after)).
//! * **Which answer**: the first that ends the request, by the stack's classifier
//!   ([`Classify::resend`](bulwark_core::Classify::resend)): a success, or a failure not worth
//!   sending again, is the answer, and every other attempt is cancelled (dropped); but an
//!   error (not a response) while another attempt is still out only stops the hedges, since
//!   that attempt may still answer (a hedge that found no endpoint does not cancel the first
//!   attempt, which did). A failure
//!   the classifier would send again is *non-fatal* (A6's `nonFatalStatusCodes`): the next
//!   hedge goes at once if attempts remain, and the last such answer is returned when every
//!   attempt has failed. Server pushback (`Retry-After`, `grpc-retry-pushback-ms`:
//!   [`Decision::RetryAfter`](bulwark_core::Decision::RetryAfter)) delays the next hedge by
//!   its wait; a pushback saying "stop" (or a wait over `max_pushback`, 30 s) stops the hedges.
//!   So does the deadline the server serving the request received
//!   ([`bulwark_core::deadline`]; `inherit_deadline`): no hedge is sent after it, and a
//!   request with no attempt out answers with its last answer then.
//! * **What**: only requests that may be sent again: with [`Builder::http`], idempotent
//!   methods (or a request carrying an `Idempotency-Key`) whose body can be replayed
//!   ([`HttpResend`](bulwark_core::attempts::HttpResend)); with
//!   [`Builder::attempts`], what your [`RequestAttempts`](bulwark_core::attempts::RequestAttempts)
//!   says. Other requests are sent once, and cost nothing more.
//! * **How much**: hedges spend from a budget (core's
//!   [`RetryBudget`](bulwark_core::budget::RetryBudget)): at most `max_extra_load` (10%) of the
//!   requests in the window, plus `min_hedges_per_sec` (1), Finagle's `maxExtraLoad`. And each
//!   hedge in flight holds a place under the stack's
//!   [`ResendCap`], when given one
//!   ([`Builder::concurrency_cap`]), shared with the retry layer: a hedge is not sent while it is
//!   full. A hedge refused by either is not sent, nor is any later hedge of that request; the
//!   attempts in flight go on.
//! * **Observability**: events [`HedgeSent`](bulwark_core::Event::HedgeSent),
//!   [`HedgeWon`](bulwark_core::Event::HedgeWon) and
//!   [`HedgeRefused`](bulwark_core::Event::HedgeRefused); `tracing` (DEBUG `hedging`, `not
//!   hedging`); counters and a histogram with feature `metrics` (names in [`metrics`]).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_hedge::HedgeLayer;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! // A backend whose first answer takes a second; the others take 10 ms.
//! let calls = Arc::new(AtomicU32::new(0));
//! let backend = service_fn({
//!     let calls = calls.clone();
//!     move |q: &'static str| {
//!         let slow = calls.fetch_add(1, Ordering::SeqCst) == 0;
//!         async move {
//!             let wait = if slow { 1000 } else { 10 };
//!             tokio::time::sleep(Duration::from_millis(wait)).await;
//!             Ok::<_, std::io::Error>(q.len())
//!         }
//!     }
//! });
//! let mut svc = tower::ServiceBuilder::new()
//!     .layer(HedgeLayer::builder().delay(Duration::from_millis(50)).build().unwrap())
//!     .service(backend);
//! let start = Instant::now();
//! assert_eq!(svc.ready().await.unwrap().call("dune").await.unwrap(), 4);
//! // The hedge went at 50 ms and answered 10 ms later; the slow attempt was dropped.
//! assert_eq!(start.elapsed(), Duration::from_millis(60));
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # }
//! ```
//!
//! # Cost
//!
//! A request that may be hedged is cloned once (the copy kept for the hedges; each hedge but
//! the last clones it again, the last takes it) and the inner service once (the ready one
//! moves into the future); one relaxed atomic add counts it in the budget.
//! An answer ready at the first poll reads no clock and arms no timer (with a percentile, its
//! latency, zero, is counted with two relaxed atomic adds); an attempt found pending reads
//! the clock and arms the one timer, and, with a percentile, its latency, counted from that
//! first poll, is recorded when it answers. The attempts are held inline in the response future (up to five places),
//! with one inline timer: no boxed future, no allocation for a `Clone` request that allocates
//! none itself, hedge or no hedge. The future is about five times as large as the inner one.
//!
//! # Feature flags
//!
//! * `http`: [`Builder::http`].
//! * `serde`: [`HedgeConfig`] deserializes, durations in human form (`"50ms"`).
//! * `metrics`: counters and a request-duration histogram through the `metrics` facade; names
//!   in [`metrics`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod future;
mod latency;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod service;
mod shared;

pub use bulwark_core::budget::ResendCap;
pub use bulwark_core::{GiveUpReason, Misuse};
pub use config::{ConfigError, HedgeConfig, MAX_ATTEMPTS};
pub use future::ResponseFuture;
pub use layer::{Builder, HedgeLayer};
pub use service::Hedge;

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
