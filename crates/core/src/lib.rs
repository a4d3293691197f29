//! What every tower-bulwark layer shares, and nothing else.
//!
//! * [`classify`]: one idea of what a call's outcome was ([`Outcome::Success`],
//!   [`Outcome::Failure`] or [`Outcome::Ignored`]), decided from the whole
//!   `Result<Response, Error>`. The same classifier decides what a circuit breaker records, what
//!   a retry retries, what a failover fails over on and what a balancer ejects, so a 404 from a
//!   healthy backend is an answer everywhere, never a failure in one layer and a success in the
//!   next.
//! * [`event`]: the [`Event`] every layer reports (state changes, rejections, recorded outcomes)
//!   and the [`Listener`] hook that receives them. Listeners are synchronous and must not block;
//!   the default listens to nothing.
//! * [`random`]: an injectable, thread-safe [`RandomSource`] so jitter can be seeded in tests.
//! * [`backoff`]: the wait between retries (exponential, with none, full, equal, decorrelated
//!   or additive jitter), used by the retry layer and by fan-out targets behind it.
//! * [`budget`]: the retry budget (a share of recent requests plus a floor), shareable by
//!   several layers.
//! * [`grpc`] (feature `grpc`): `GrpcClassifier`, which classifies gRPC responses by their
//!   `grpc-status` (in the headers of a Trailers-Only response, or in the trailers), and
//!   `GrpcBody`, which reports the status of a call whose status comes in the trailers.
//! * [`replay`] (feature `http`): `ReplayBody`, which keeps up to a cap of a streaming body as
//!   it is first sent, so retry, failover and fan-out can send a request again.
//! * [`pushback`] (feature `http`): what a server said about when to come back
//!   (`Retry-After`, `grpc-retry-pushback-ms`), read into one [`Pushback`](pushback::Pushback).
//! * [`attempts`]: which endpoints a request has been sent to, shared by its clones, so a
//!   balancer sends a resend somewhere else.
//! * [`builder`]: what every layer's builder shares (a listener, a random source, the names
//!   of a set's targets).
//! * [`config`]: [`ConfigError`], the error every layer's builder returns for a setting out of
//!   range, naming the setting, and the checks the builders share.
//! * [`hint`]: why a service turned a readiness poll away (an open circuit and when it probes,
//!   failing health checks), told to the balancer or failover set that asked, so it can say why
//!   nothing is ready, or fail at once when waiting cannot help.
//! * [`mode`]: [`Mode`], fail fast or not ready: what the breaker, the bulkhead and the rate
//!   limiter do while they turn calls away.
//! * [`telemetry`]: what every layer's `metrics` feature shares: `Handles`, metric handles
//!   registered (with their help text) with whichever recorder is current when they are used,
//!   so the recorder may be installed before or after the layers are built (feature
//!   `metrics`), and [`Stopwatch`](telemetry::Stopwatch), a start time read from tokio's clock
//!   only while a recorder is installed.
//! * [`misuse`]: [`Misuse`], the one error every layer returns for a `call` before `poll_ready`
//!   said ready, or a future polled after it finished.
//!
//! # Feature flags
//!
//! * `http`: [`HttpClassifier`] and [`StatusSet`], classifying `http::Response`s by status;
//!   request replay; `HttpAttempts`.
//! * `grpc` (implies `http`): [`GrpcClassifier`], [`GrpcCode`] and [`GrpcCodeSet`], and the
//!   [`grpc`] module.
//! * `metrics`: [`telemetry::Handles`], metric handles that follow the recorder whenever it is installed,
//!   which every layer's `metrics` feature uses.
//! * `serde`: deserialize a [`StatusSet`] and an [`ExponentialBackoff`] (and, with `grpc`, a
//!   [`GrpcCodeSet`] and a [`GrpcCode`], by name or number).
//!
//! # Example
//!
//! ```
//! use bulwark_core::{Classify, DefaultClassifier, Outcome};
//!
//! let ok: Result<u32, &str> = Ok(7);
//! let err: Result<u32, &str> = Err("connection refused");
//! assert_eq!(DefaultClassifier.classify(&ok), Outcome::Success);
//! assert_eq!(DefaultClassifier.classify(&err), Outcome::Failure);
//!
//! // Any closure over the whole result is a classifier too.
//! let even_is_ok = |r: &Result<u32, &str>| match r {
//!     Ok(n) if n % 2 == 0 => Outcome::Success,
//!     Ok(_) => Outcome::Failure,
//!     Err(_) => Outcome::Ignored,
//! };
//! assert_eq!(even_is_ok.classify(&ok), Outcome::Failure);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod attempts;
pub mod backoff;
pub mod budget;
// Internal: the states a layer built, for its handles. Public only because the layer crates of
// this workspace use it; not part of the API.
pub mod builder;
#[doc(hidden)]
pub mod built;
pub mod classify;
// Internal: nanoseconds on tokio's clock since a start, for times kept in atomics. Public only
// because the layer crates of this workspace use it; not part of the API.
#[doc(hidden)]
pub mod clock;
pub mod config;
pub mod deadline;
pub mod event;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
pub mod hint;
pub mod mode;
// Internal: per-clone reference counts for the layers' response futures. Public only because
// the layer crates of this workspace use it; not part of the API.
#[doc(hidden)]
pub mod local;
#[cfg(all(test, bulwark_loom))]
mod loom_tests;
pub mod misuse;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod pushback;
pub mod random;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod replay;
// Internal: per-slot snapshots of counters for windows that slide by time. Public only because
// the layer crates of this workspace use it; not part of the API.
#[doc(hidden)]
pub mod rolling;
// Internal: a box made only when needed (a retry's span, a failover's trail). Public only
// because the layer crates of this workspace use it; not part of the API.
#[doc(hidden)]
pub mod slot;
mod sync;
pub mod telemetry;
// Internal: one timer per future or service, armed for a deadline. Public only because the
// layer crates of this workspace use it; not part of the API.
#[doc(hidden)]
pub mod timer;

pub use backoff::{Backoff, BackoffError, ExponentialBackoff, Jitter};
pub use classify::{Classify, Decision, DefaultClassifier, Outcome};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use classify::{HttpClassifier, StatusSet};
pub use config::ConfigError;
pub use deadline::DeadlineExceeded;
pub use event::{
    CircuitState, Event, FailoverReason, GiveUpReason, Listener, NoopListener, OverflowReason,
    SharedListener, TripReason,
};
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use grpc::{GrpcClassifier, GrpcCode, GrpcCodeSet};
pub use misuse::{Misuse, MisuseKind};
pub use mode::Mode;
pub use random::{RandomSource, SplitMix64};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use replay::{replayable, CanReplay, ReplayBody, ReplayError, DEFAULT_REPLAY_CAP};

/// The error type every tower-bulwark service returns: the inner service's error, or one of the
/// layers' own small leaf errors, boxed. Test which one with `err.is::<T>()` or
/// `err.downcast_ref::<T>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
