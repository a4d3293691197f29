//! The retry layer's own errors.

use std::fmt;
use std::time::Duration;

/// An attempt ran longer than the per-attempt timeout and no retry followed (attempts,
/// budget or deadline ran out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimedOut {
    /// The per-attempt timeout.
    pub after: Duration,
    /// Attempts made, the first included.
    pub attempts: u32,
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {} timed out after {:?} and was not retried",
            self.attempts, self.after
        )
    }
}

impl std::error::Error for AttemptTimedOut {}

pub use bulwark_core::DeadlineExceeded;
