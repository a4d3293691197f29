//! Fan-out for Tower services: one request to every target at once, aggregated.
//!
//! A write that must reach every replica goes to all of them at once, and succeeds when each
//! (or a quorum, or the first) has answered as it should, a target retrying with backoff
//! until it does. [`FanOut`] does that for any targets of one type:
//!
//! * the request is cloned (or replayed, with
//!   [`ReplayBody`](bulwark_core::replay::ReplayBody)) to every target, and the branches run
//!   concurrently; each target may carry its own stack ([`FanOutLayer::build_with`]): a
//!   `BackoffRetryLayer` retrying until the answer is a 201, say;
//! * what counts as a target's success is a classifier over the whole result ("201 only");
//! * the policy ([`Policy`]): all targets, a quorum, or the first success;
//! * it answers as soon as the policy is met or can no longer be met; the branches still
//!   running are cancelled (dropped), or, with [`Builder::finish_stragglers`], finish on a
//!   background task within a bound;
//! * the answer carries every target's outcome in order ([`Outcomes`]), and a merge step
//!   ([`Merge`]) turns it into one response: [`Collect`] (the outcomes themselves),
//!   [`FirstSuccess`], or for HTTP `HttpMerge` (the first success with a summary header, or
//!   [`FanOutFailed`] listing each target);
//! * a deadline per branch and one for the whole fan-out, cut short by the deadline the
//!   server serving the request received ([`bulwark_core::deadline`]; `inherit_deadline`);
//! * each target is polled ready by its own branch just before it is called: no target holds
//!   a reservation for a request that has not reached it.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use bulwark_fanout::{FanOutLayer, FirstSuccess, Policy};
//! use tower::util::BoxCloneService;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! type Store = BoxCloneService<&'static str, u16, std::io::Error>;
//! let store = || -> Store { BoxCloneService::new(service_fn(|_| async { Ok(201) })) };
//! let mut register = FanOutLayer::builder()
//!     .policy(Policy::All)
//!     .classifier(|r: &Result<u16, std::io::Error>| match r {
//!         Ok(201) => bulwark_core::Outcome::Success,
//!         _ => bulwark_core::Outcome::Failure,
//!     })
//!     .merge(FirstSuccess)
//!     .build().unwrap()
//!     .build(vec![store(), store(), store()])
//!     .unwrap();
//! assert_eq!(register.ready().await.unwrap().call("alice").await.unwrap(), 201);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod future;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod outcome;
mod service;

pub use bulwark_core::Misuse;
pub use config::{ConfigError, FanOutConfig, Policy, Stragglers};
pub use future::ResponseFuture;
pub use outcome::{
    Collect, FanOutFailed, FirstSuccess, Merge, Outcomes, TargetOutcome, TargetResult,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use outcome::{HttpMerge, SUMMARY_HEADER};
pub use service::{Builder, FanOut, FanOutLayer};

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
