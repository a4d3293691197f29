//! What every clone of one retry layer shares.

use bulwark_core::backoff::ExponentialBackoff;
use bulwark_core::budget::{ResendCap, RetryBudget};
use bulwark_core::{Event, GiveUpReason, RandomSource, SharedListener};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Shared<P> {
    pub(crate) name: Box<str>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: ExponentialBackoff,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) cap: Option<ResendCap>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
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
            .finish_non_exhaustive()
    }
}

impl<P> Shared<P> {
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
        self.metrics.retries.increment(1);
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
