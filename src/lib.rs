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
//!
//! The shared pieces (classification, events, listeners, seeded randomness) are in [`core`].
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

pub use bulwark_core as core;

/// The README's example, compiled and run as a doctest so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "circuit-breaker"))]
pub struct ReadmeDoctests;

#[cfg(feature = "circuit-breaker")]
pub use bulwark_circuit_breaker as circuit_breaker;
#[cfg(feature = "circuit-breaker")]
pub use bulwark_circuit_breaker::CircuitBreakerLayer;

#[cfg(feature = "retry")]
pub use bulwark_retry as retry;
#[cfg(feature = "retry")]
pub use bulwark_retry::BackoffRetryLayer;

#[cfg(feature = "failover")]
pub use bulwark_failover as failover;
#[cfg(feature = "failover")]
pub use bulwark_failover::FailoverLayer;

#[cfg(feature = "balance")]
pub use bulwark_balance as balance;
#[cfg(feature = "balance")]
pub use bulwark_balance::BalanceLayer;

#[cfg(feature = "fanout")]
pub use bulwark_fanout as fanout;
#[cfg(feature = "fanout")]
pub use bulwark_fanout::FanOutLayer;
