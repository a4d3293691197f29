//! tower-bulwark: resilience middleware for [Tower](https://docs.rs/tower) services.
//!
//! Each layer is its own crate and composes around any `tower::Service`; this facade
//! re-exports them behind features (`full` enables all).
//!
//! | layer | module | feature | status |
//! | --- | --- | --- | --- |
//! | circuit breaker | [`circuit_breaker`] | `circuit-breaker` (default) | available |
//! | backoff retry | [`retry`] | `retry` (default) | available |
//! | ordered failover | [`failover`] | `failover` (default) | available |
//! | load balancing | [`balance`] | `balance` (default) | available |
//! | fan-out | [`fanout`] | `fanout` (default) | available |
//! | health-check readiness gate | [`health`] | `health` (default) | available |
//! | bulkhead and adaptive concurrency limit | [`bulkhead`] | `bulkhead` (default) | available |
//! | rate limiter, `Clone` and shared | [`rate_limit`] | `rate-limit` (default) | available |
//! | hedged requests | [`hedge`] | `hedge` (default) | available |
//! | `ServiceBuilder` methods | [`ServiceBuilderExt`] | (each with its layer's) | available |
//! | errors as HTTP responses | [`axum`](mod@axum) | `axum` | available |
//! | one file for a whole stack | [`config`] | `serde` | available |
//! | gRPC: classify by `grpc-status`, retry with pushback | `core::grpc`, `retry::GrpcRetryPolicy` | `grpc` | available |
//!
//! The shared pieces (classification, events, listeners, seeded randomness) are in [`core`].
//!
//! # `ServiceBuilderExt`
//!
//! Import [`ServiceBuilderExt`] and the layers become `ServiceBuilder` methods, so a stack
//! reads top to bottom like tower's own:
//! `ServiceBuilder::new().circuit_breaker(breaker).backoff_retry(retry).service(client)`.
//! The set layers (`failover`, `balance`, `fan_out`) take a `Vec` of services in
//! `.service(vec![..])`, so they come last.
//!
//! # axum
//!
//! With the `axum` feature, [`axum`](mod@axum) maps this project's errors to responses, so
//! no server has to write it: an open breaker, a balancer with nothing ready or a failover
//! set whose every target failed is a 503 with `Retry-After`, a full bulkhead a 503, a
//! deadline a 504, any other upstream failure a 502; the body is JSON.
//! Use `HandleErrorLayer::new(tower_bulwark::axum::handle_error)`, or
//! [`BulwarkError`](axum::BulwarkError) as a handler's error type; [`classify_error`](axum::classify_error)
//! gives the decision alone, for hyper or a body of your own.
//!
//! # Configuration
//!
//! With the `serde` feature every layer's settings deserialize (durations in human form,
//! `"30s"`; unknown keys refused), and [`config::StackConfig`] reads a whole client stack from
//! one file, one table per layer, validating each as the layer's builder does; an error names
//! the table and the key (`retry.max_attempts: ...`). `examples/stack.toml` lists every key.
//!
//! # Telemetry
//!
//! Every layer reports what it does three ways: `tracing` events (and a span for each attempt
//! after the first, naming the layer, the target and the attempt; the circuit breaker and the
//! balancer a span around each call), metrics through the `metrics` facade (feature `metrics`;
//! Prometheus names, labelled `name` and `target` in every layer, latency histograms in
//! seconds, help text for each; the recorder may be installed before or after the layers are
//! built) and [`Event`](core::Event)s to a [`Listener`](core::Listener).
//! `TELEMETRY.md`, at the root of the repository, lists each of them.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "circuit-breaker")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
//!
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .failure_rate(0.5)
//!     .count_window(20)
//!     .min_calls(5)
//!     .open_for(Duration::from_secs(10))
//!     .build()?;
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req * 2) }));
//!
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "circuit-breaker"))]
//! # fn main() {}
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use bulwark_core as core;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod builder;
#[cfg(all(
    feature = "serde",
    any(
        feature = "circuit-breaker",
        feature = "retry",
        feature = "failover",
        feature = "balance",
        feature = "fanout",
        feature = "rate-limit",
        feature = "hedge",
        feature = "bulkhead"
    )
))]
// (labelled with the feature a user turns on for it; the layers are on by default)
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
#[cfg(any(feature = "axum", feature = "tonic"))]
mod meaning;
pub use builder::ServiceBuilderExt;

/// The README's examples, compiled (and, but for the axum server, run) as doctests so they
/// cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "full"))]
pub struct ReadmeDoctests;

#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub use bulwark_circuit_breaker as circuit_breaker;
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub use bulwark_circuit_breaker::CircuitBreakerLayer;

#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use bulwark_retry as retry;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use bulwark_retry::BackoffRetryLayer;

#[cfg(feature = "failover")]
#[cfg_attr(docsrs, doc(cfg(feature = "failover")))]
pub use bulwark_failover as failover;
#[cfg(feature = "failover")]
#[cfg_attr(docsrs, doc(cfg(feature = "failover")))]
pub use bulwark_failover::FailoverLayer;

#[cfg(feature = "balance")]
#[cfg_attr(docsrs, doc(cfg(feature = "balance")))]
pub use bulwark_balance as balance;
#[cfg(feature = "balance")]
#[cfg_attr(docsrs, doc(cfg(feature = "balance")))]
pub use bulwark_balance::BalanceLayer;

#[cfg(feature = "fanout")]
#[cfg_attr(docsrs, doc(cfg(feature = "fanout")))]
pub use bulwark_fanout as fanout;
#[cfg(feature = "fanout")]
#[cfg_attr(docsrs, doc(cfg(feature = "fanout")))]
pub use bulwark_fanout::FanOutLayer;

#[cfg(feature = "health")]
#[cfg_attr(docsrs, doc(cfg(feature = "health")))]
pub use bulwark_health as health;
#[cfg(feature = "health")]
#[cfg_attr(docsrs, doc(cfg(feature = "health")))]
pub use bulwark_health::HealthGateLayer;

#[cfg(feature = "hedge")]
#[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
pub use bulwark_hedge as hedge;
#[cfg(feature = "hedge")]
#[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
pub use bulwark_hedge::HedgeLayer;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use bulwark_rate_limit as rate_limit;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use bulwark_rate_limit::RateLimitLayer;

#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
pub use bulwark_bulkhead as bulkhead;
#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
pub use bulwark_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};

// The registry page's example (crates-io.md), run as a doctest so it stays true.
#[cfg(all(doctest, feature = "circuit-breaker"))]
#[doc = include_str!("../crates-io.md")]
struct CratesIoReadmeDoctests;
