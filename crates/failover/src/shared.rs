//! What every clone of one failover set shares.

use crate::config::Mode;
use bulwark_core::builder::target_names;
use bulwark_core::{Event, FailoverReason, SharedListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct Shared<S, P> {
    pub(crate) name: Box<str>,
    pub(crate) names: Box<[String]>,
    /// Pristine targets to clone for failover attempts (cold path: taken under the lock).
    templates: Mutex<Vec<S>>,
    pub(crate) targets: usize,
    pub(crate) mode: Mode,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) inherit_deadline: bool,
    pub(crate) interval: Duration,
    pub(crate) wait_for_ready: Duration,
    pub(crate) policy: P,
    /// The target that last answered (sticky mode starts there).
    sticky: AtomicUsize,
    pub(crate) listener: Option<SharedListener>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Metrics,
}

impl<S, P> std::fmt::Debug for Shared<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("name", &self.name)
            .field("targets", &self.names)
            .field("mode", &self.mode)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("inherit_deadline", &self.inherit_deadline)
            .field("interval", &self.interval)
            .field("wait_for_ready", &self.wait_for_ready)
            .field("sticky", &self.sticky.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S, P> Shared<S, P> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        names: Vec<String>,
        templates: Vec<S>,
        mode: Mode,
        attempt_timeout: Option<Duration>,
        deadline: Option<Duration>,
        inherit_deadline: bool,
        interval: Duration,
        wait_for_ready: Duration,
        policy: P,
        listener: Option<SharedListener>,
    ) -> Self {
        let targets = templates.len();
        // `build` refuses names that do not match the targets; as a `Layer` over a `Vec` the
        // set cannot: they are replaced by indexes (never paired up wrongly, never indexed
        // out of bounds).
        let (labels, mismatch) = target_names("target_names", &names, targets);
        if mismatch.is_some() {
            tracing::warn!(
                failover = %name,
                names = names.len(),
                targets,
                "target_names does not match the targets; naming them by index"
            );
        }
        let names: Box<[String]> = labels.into();
        Shared {
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Metrics::new(&name, &names),
            name: name.into_boxed_str(),
            names,
            templates: Mutex::new(templates),
            targets,
            mode,
            attempt_timeout,
            deadline,
            inherit_deadline,
            interval,
            wait_for_ready,
            policy,
            sticky: AtomicUsize::new(0),
            listener,
        }
    }

    /// When a request called now must end, if it must, and that as a length of time (zero
    /// without a deadline): the set's own deadline, cut to the one in scope when inherited.
    #[inline]
    pub(crate) fn deadline(&self) -> (Option<Instant>, Duration) {
        let in_scope = bulwark_core::deadline::inherited(self.inherit_deadline);
        if self.deadline.is_none() && in_scope.is_none() {
            return (None, Duration::ZERO);
        }
        let now = Instant::now();
        let at = bulwark_core::deadline::earlier(self.deadline.map(|d| now + d), in_scope);
        (
            at,
            at.map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
        )
    }

    /// When the running attempt must end: its own timeout, cut to the request's deadline.
    #[inline]
    pub(crate) fn attempt_limit(&self, deadline: Option<Instant>) -> Option<Instant> {
        let own = self.attempt_timeout.map(|t| Instant::now() + t);
        match (own, deadline) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }

    /// Where the next request starts.
    #[inline]
    pub(crate) fn start(&self) -> usize {
        match self.mode {
            Mode::Sticky => self.sticky.load(Ordering::Relaxed),
            Mode::Priority => 0,
        }
    }

    /// A target answered.
    #[inline]
    pub(crate) fn succeeded(&self, index: usize, seconds: Option<f64>) {
        let _ = seconds;
        #[cfg(feature = "metrics")]
        self.metrics.success(index, seconds);
        if self.mode == Mode::Sticky && self.sticky.load(Ordering::Relaxed) != index {
            self.sticky.store(index, Ordering::Relaxed);
            tracing::info!(failover = %self.name, target = %self.names[index], "now sticking to target");
        }
    }

    /// A target failed and the request moves on (or not).
    pub(crate) fn failed(&self, index: usize, reason: FailoverReason, seconds: Option<f64>) {
        let _ = (index, reason, seconds);
        #[cfg(feature = "metrics")]
        self.metrics.failure(index, reason, seconds);
    }

    /// The request goes from target `from` to target `to`, as attempt number `attempt`.
    pub(crate) fn failing_over(
        &self,
        from: usize,
        to: usize,
        reason: FailoverReason,
        attempt: u32,
    ) {
        tracing::debug!(
            failover = %self.name,
            from = %self.names[from],
            to = %self.names[to],
            reason = reason.as_str(),
            attempt,
            "failing over"
        );
        if let Some(l) = &self.listener {
            l.emit(&Event::FailedOver {
                name: &self.name,
                from,
                to,
                reason,
            });
        }
    }

    /// A fresh clone of target `index`.
    pub(crate) fn template(&self, index: usize) -> S
    where
        S: Clone,
    {
        let templates = match self.templates.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        templates[index].clone()
    }
}
