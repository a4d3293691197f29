//! What every clone of one hedging layer shares.

use crate::latency::Latencies;
use bulwark_core::budget::{ResendCap, RetryBudget};
use bulwark_core::{Event, GiveUpReason, SharedListener};
use std::time::Duration;

pub(crate) struct Shared<C, A> {
    pub(crate) name: Box<str>,
    pub(crate) max_attempts: u32,
    /// The fixed delay (or the percentile's fallback).
    pub(crate) delay: Option<Duration>,
    /// The tracked latencies, when hedging at a percentile.
    pub(crate) latencies: Option<Latencies>,
    pub(crate) budget: RetryBudget,
    pub(crate) cap: Option<ResendCap>,
    pub(crate) max_pushback: Duration,
    pub(crate) inherit_deadline: bool,
    pub(crate) classifier: C,
    pub(crate) attempts: A,
    pub(crate) listener: Option<SharedListener>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Metrics,
}

impl<C, A> std::fmt::Debug for Shared<C, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hedge")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("delay", &self.delay)
            .field("latencies", &self.latencies)
            .field("budget", &self.budget)
            .field("cap", &self.cap)
            .field("max_pushback", &self.max_pushback)
            .field("inherit_deadline", &self.inherit_deadline)
            .finish_non_exhaustive()
    }
}

impl<C, A> Shared<C, A> {
    /// The wait before a hedge: the tracked percentile once there is one, else the fixed
    /// delay; `None`: no hedge on a timer.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        match &self.latencies {
            Some(l) => l.delay().or(self.delay),
            None => self.delay,
        }
    }

    /// Reports a hedge sent as attempt `attempt`.
    pub(crate) fn sent(&self, attempt: u32, delay: Duration, after_failure: bool) {
        tracing::debug!(
            hedge = %self.name,
            attempt,
            delay_ms = delay.as_millis() as u64,
            after_failure,
            "hedging"
        );
        #[cfg(feature = "metrics")]
        self.metrics.hedged();
        if let Some(l) = &self.listener {
            l.emit(&Event::HedgeSent {
                name: &self.name,
                attempt,
                delay,
                after_failure,
            });
        }
    }

    /// Reports that attempt `attempt`, a hedge, gave the answer.
    pub(crate) fn won(&self, attempt: u32) {
        #[cfg(feature = "metrics")]
        self.metrics.won();
        if let Some(l) = &self.listener {
            l.emit(&Event::HedgeWon {
                name: &self.name,
                attempt,
            });
        }
    }

    /// The deadline in scope that stops the hedges, when inherited.
    #[inline]
    pub(crate) fn deadline(&self) -> Option<tokio::time::Instant> {
        bulwark_core::deadline::inherited(self.inherit_deadline)
    }

    /// Reports a hedge that was due as attempt `attempt` and was not sent.
    pub(crate) fn refused(&self, attempt: u32, reason: GiveUpReason) {
        tracing::debug!(
            hedge = %self.name,
            attempt,
            reason = reason.as_str(),
            "not hedging"
        );
        #[cfg(feature = "metrics")]
        self.metrics.refused(reason);
        if let Some(l) = &self.listener {
            l.emit(&Event::HedgeRefused {
                name: &self.name,
                attempt,
                reason,
            });
        }
    }
}
