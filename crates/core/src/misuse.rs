//! The error for a caller that breaks the `Service` contract.
//!
//! `poll_ready` returning `Ready(Ok)` allows exactly one `call`, and a future that has
//! finished is not polled again. Every tower-bulwark layer reports a caller that does
//! otherwise with one small error, [`Misuse`], naming the layer, rather than panicking.
//!
//! ```
//! use bulwark_core::{BoxError, Misuse, MisuseKind};
//!
//! let err: BoxError = Box::new(Misuse::called_before_ready("retry"));
//! let misuse = err.downcast_ref::<Misuse>().unwrap();
//! assert_eq!(misuse.layer(), "retry");
//! assert_eq!(misuse.kind(), MisuseKind::CalledBeforeReady);
//! assert_eq!(err.to_string(), "retry called before poll_ready returned Ready(Ok)");
//! ```

use std::fmt;

/// A layer was called without a `poll_ready` that returned `Ready(Ok)` first, or its
/// response future was polled after it finished: a bug in the caller, reported as an error
/// rather than a panic. A leaf error: no source, no allocation beyond its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misuse {
    layer: &'static str,
    kind: MisuseKind,
}

/// How the caller broke the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MisuseKind {
    /// `call` without a `poll_ready` that returned `Ready(Ok)` first.
    CalledBeforeReady,
    /// A response future polled again after it returned `Ready`.
    PolledAfterCompletion,
}

impl Misuse {
    /// `layer` (its kind, as "retry" or "circuit breaker") was called before it was ready.
    pub const fn called_before_ready(layer: &'static str) -> Self {
        Misuse {
            layer,
            kind: MisuseKind::CalledBeforeReady,
        }
    }

    /// A future of `layer` was polled after it finished.
    pub const fn polled_after_completion(layer: &'static str) -> Self {
        Misuse {
            layer,
            kind: MisuseKind::PolledAfterCompletion,
        }
    }

    /// The kind of layer that reported it ("retry", "failover", "balancer", "circuit
    /// breaker", "fan-out").
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// How the caller broke the contract.
    pub fn kind(&self) -> MisuseKind {
        self.kind
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MisuseKind::CalledBeforeReady => {
                write!(
                    f,
                    "{} called before poll_ready returned Ready(Ok)",
                    self.layer
                )
            }
            MisuseKind::PolledAfterCompletion => {
                write!(f, "{} future polled after completion", self.layer)
            }
        }
    }
}

impl std::error::Error for Misuse {}
