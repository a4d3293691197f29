//! The bulkhead's own error.

use bulwark_core::OverflowReason;
use std::fmt;
use std::sync::Arc;

/// A call turned away by a bulkhead (or an adaptive concurrency limit) without reaching the
/// inner service: every permit was taken, and the queue was full, or absent, or the wait in it
/// ran out.
///
/// Returned (boxed) by `call` in [`Mode::FailFast`](crate::Mode::FailFast). Test for it with
/// `err.is::<Full>()`. It carries no time to retry after: a permit frees up whenever a call in
/// flight ends, which no one can foresee.
///
/// ```
/// use bulwark_bulkhead::{Full, OverflowReason};
///
/// let err = Full::new("inventory", 32, OverflowReason::QueueTimeout);
/// assert_eq!(err.limit(), 32);
/// assert_eq!(
///     err.to_string(),
///     "bulkhead `inventory` full: 32 calls in flight, and the wait in its queue ran out"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    name: Arc<str>,
    limit: u32,
    reason: OverflowReason,
}

impl Full {
    /// A refusal by the bulkhead `name`, whose limit was `limit`, for `reason`.
    pub fn new(name: impl Into<Arc<str>>, limit: u32, reason: OverflowReason) -> Self {
        Full {
            name: name.into(),
            limit,
            reason,
        }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit on calls in flight when the call was refused.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Why: no queue ([`OverflowReason::Full`]), the queue full
    /// ([`OverflowReason::QueueFull`]), or the wait in it over
    /// ([`OverflowReason::QueueTimeout`]).
    pub fn reason(&self) -> OverflowReason {
        self.reason
    }
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead `{}` full: {} calls in flight",
            self.name, self.limit
        )?;
        match self.reason {
            OverflowReason::QueueFull => f.write_str(", and its queue too"),
            OverflowReason::QueueTimeout => f.write_str(", and the wait in its queue ran out"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Full {}
