//! The error of a layer that bounds a whole request in time: the retry's deadline over all its
//! attempts, the failover's over all its targets.

use std::fmt;
use std::time::Duration;

/// The deadline for a request as a whole (all its attempts, or all its targets) passed before
/// it had an answer.
///
/// ```
/// use bulwark_core::DeadlineExceeded;
/// use std::time::Duration;
/// let e = DeadlineExceeded { deadline: Duration::from_secs(5), attempts: 2 };
/// assert_eq!(e.to_string(), "deadline of 5s exceeded during attempt 2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineExceeded {
    /// The deadline, counted from the call.
    pub deadline: Duration,
    /// Attempts made, the one cut short included.
    pub attempts: u32,
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline of {:?} exceeded during attempt {}",
            self.deadline, self.attempts
        )
    }
}

impl std::error::Error for DeadlineExceeded {}

impl DeadlineExceeded {
    /// The error for a request whose deadline, `deadline` after its call, fell at `at`, if
    /// `at` has passed (`None` when there is no deadline or it is still ahead).
    ///
    /// ```
    /// use bulwark_core::DeadlineExceeded;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// let past = Some(Instant::now());
    /// assert!(DeadlineExceeded::passed(past, Some(Duration::from_secs(1)), 2).is_some());
    /// assert!(DeadlineExceeded::passed(None, None, 2).is_none());
    /// ```
    pub fn passed(
        at: Option<tokio::time::Instant>,
        deadline: Option<Duration>,
        attempts: u32,
    ) -> Option<DeadlineExceeded> {
        at.filter(|at| tokio::time::Instant::now() >= *at)
            .map(|_| DeadlineExceeded {
                deadline: deadline.unwrap_or_default(),
                attempts,
            })
    }
}
