//! A rate limiter for Tower services that is `Clone`: one token bucket shared by every clone
//! and every thread, lock-free, with an optional bounded wait.
//!
//! tower's own `RateLimit` is not `Clone` (tower#794), so it cannot sit under a `Buffer`-free
//! stack that clones its service per request (axum's router, a retry), and each of its
//! instances counts on its own. [`RateLimitLayer`] owns one bucket; every service it wraps and
//! every clone of those take their tokens from it, on any thread.
//!
//! # What it does
//!
//! * **A token bucket**: `burst` tokens at most, refilled at `rate` per `period`, one token at
//!   a time (every `period / rate`). Over any stretch of time `t`, it admits at most
//!   `burst + rate x t / period` calls, and a caller that keeps asking gets exactly that.
//! * **Fail fast** ([`Mode::FailFast`], the default): a call with no token left fails at once
//!   with [`RateLimited`], which says when the next token comes ([`RateLimited::retry_after`];
//!   `tower-bulwark`'s axum mapping answers 503 with `Retry-After`).
//! * **Or wait, up to a bound** (`max_wait`): a caller whose token comes within the bound
//!   reserves it and waits for it in `poll_ready` on one timer; callers queue in the order they
//!   reserved. Beyond the bound, it fails as above. A waiter that gives up (its service is
//!   dropped) gives its token back if nobody reserved one after it; otherwise that one token is
//!   lost (the limiter then admits one call fewer, never one more).
//! * **Readiness mode** ([`Mode::Readiness`]): `poll_ready` stays `Pending` until a token is
//!   there, reserving nothing meanwhile, and wakes itself when the next one is due. For an
//!   endpoint under a balancer or a failover set, which picks another meanwhile; it is told
//!   why ([`Hint::RateLimited`](bulwark_core::hint::Hint::RateLimited), with the time until
//!   the next token).
//! * A [`Handle`] reads the tokens left and the refusals, and changes the rate and burst at
//!   run time.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_rate_limit::{RateLimitLayer, RateLimited};
//! use std::time::Duration;
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! // 2 calls at once, then one every 100 ms.
//! let layer = RateLimitLayer::builder()
//!     .name("geocoder")
//!     .rate(10, Duration::from_secs(1))
//!     .burst(2)
//!     .build()
//!     .expect("valid settings");
//! let svc = layer.layer(service_fn(|q: &'static str| async move { Ok::<_, std::io::Error>(q.len()) }));
//!
//! // Clones share the bucket.
//! let (mut a, mut b) = (svc.clone(), svc);
//! assert_eq!(a.ready().await.unwrap().call("paris").await.unwrap(), 5);
//! assert_eq!(b.ready().await.unwrap().call("oslo").await.unwrap(), 4);
//! let err = a.ready().await.unwrap().call("rome").await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().unwrap();
//! assert_eq!(limited.retry_after(), Duration::from_millis(100));
//!
//! tokio::time::sleep(Duration::from_millis(100)).await;
//! assert_eq!(a.ready().await.unwrap().call("rome").await.unwrap(), 4);
//! # }
//! ```
//!
//! # Cost
//!
//! Admitting a call reads tokio's clock and moves one shared atomic (the bucket's theoretical
//! arrival time, GCRA) with a compare-and-swap; it takes no lock, allocates nothing and boxes
//! no future. The timer a caller waits on is made the first time that clone waits, and reused.
//! Threads sharing one limiter contend on that atomic; with `lease` above 1
//! ([`Builder::lease`]), a clone that has called before takes tokens in batches and spends
//! them without touching it, at a small, documented price in precision (see
//! [`RateLimitConfig`]).
//!
//! # Feature flags
//!
//! * `serde`: [`RateLimitConfig`] and [`Mode`] deserialize, durations in human form (`"1s"`).
//! * `metrics`: counters through the `metrics` facade; names in [`metrics`].
#![cfg_attr(docsrs, feature(doc_cfg))]

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

pub use config::{ConfigError, Mode, RateLimitConfig, LEASE_SLACK, MAX_LEASE};
pub use error::RateLimited;
pub use future::ResponseFuture;
pub use handle::Handle;
pub use layer::{Builder, RateLimitLayer};
pub use service::RateLimit;

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
