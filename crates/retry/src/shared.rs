//! What every clone of one retry layer shares.

use crate::policy::RetryPolicy;
use bulwark_core::backoff::ExponentialBackoff;
use bulwark_core::budget::{ResendCap, RetryBudget};
use bulwark_core::deadline::earlier;
use bulwark_core::{Event, GiveUpReason, RandomSource, SharedListener};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One request's time limits, fixed when it is called.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// When the whole request must be done, if it has a deadline.
    pub(crate) deadline: Option<Instant>,
    /// The deadline as a length of time from the call (zero without one).
    pub(crate) allowed: Duration,
    /// When the first attempt must be done: its timeout or the deadline, the earlier.
    pub(crate) first: Option<Instant>,
}

pub(crate) struct Shared<P> {
    pub(crate) name: Box<str>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: ExponentialBackoff,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) cap: Option<ResendCap>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) inherit_deadline: bool,
    pub(crate) policy: P,
    pub(crate) listener: Option<SharedListener>,
    pub(crate) random: Arc<dyn RandomSource>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Metrics,
}

impl<P> std::fmt::Debug for Shared<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .field("cap", &self.cap)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("inherit_deadline", &self.inherit_deadline)
            .finish_non_exhaustive()
    }
}

impl<P> Shared<P> {
    /// The limits of `request`, called now: the layer's own deadline, cut (when inherited) to
    /// the one the request carries and the one in scope; and the first attempt's. Tells the
    /// backend the first attempt's time left through the policy. The clock is read only when
    /// there is a limit.
    #[inline]
    pub(crate) fn limits<Req, Res, E>(&self, request: &mut Req) -> Limits
    where
        P: RetryPolicy<Req, Res, E>,
    {
        let (carried, in_scope) = if self.inherit_deadline {
            (
                self.policy.time_limit(request),
                bulwark_core::deadline::current(),
            )
        } else {
            (None, None)
        };
        if self.deadline.is_none()
            && self.attempt_timeout.is_none()
            && carried.is_none()
            && in_scope.is_none()
        {
            return Limits {
                deadline: None,
                allowed: Duration::ZERO,
                first: None,
            };
        }
        let now = Instant::now();
        let deadline = earlier(
            earlier(self.deadline.map(|d| now + d), carried.map(|d| now + d)),
            in_scope,
        );
        let first = self.attempt_limit(now, deadline);
        if let Some(first) = first {
            self.policy
                .set_time_left(request, first.saturating_duration_since(now));
        }
        Limits {
            deadline,
            allowed: deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now)),
            first,
        }
    }

    /// When an attempt started `now` must be done: its timeout or the deadline, the earlier.
    #[inline]
    pub(crate) fn attempt_limit(&self, now: Instant, deadline: Option<Instant>) -> Option<Instant> {
        earlier(self.attempt_timeout.map(|t| now + t), deadline)
    }

    /// Reports a retry about to wait `delay` after failed attempt number `attempt`.
    pub(crate) fn scheduled(
        &self,
        attempt: u32,
        delay: Duration,
        server_hint: bool,
        timed_out: bool,
    ) {
        tracing::debug!(
            retry = %self.name,
            attempt,
            delay_ms = delay.as_millis() as u64,
            server_hint,
            timed_out,
            "retrying"
        );
        #[cfg(feature = "metrics")]
        self.metrics.retried();
        if let Some(l) = &self.listener {
            l.emit(&Event::RetryScheduled {
                name: &self.name,
                attempt,
                delay,
                server_hint,
                timed_out,
            });
        }
    }

    /// Reports that the layer stopped after `attempts` attempts.
    pub(crate) fn gave_up(&self, attempts: u32, reason: GiveUpReason) {
        tracing::debug!(
            retry = %self.name,
            attempts,
            reason = reason.as_str(),
            "not retrying"
        );
        #[cfg(feature = "metrics")]
        self.metrics.gave_up(reason);
        if let Some(l) = &self.listener {
            l.emit(&Event::RetryGaveUp {
                name: &self.name,
                attempts,
                reason,
            });
        }
    }
}
