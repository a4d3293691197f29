//! Events and the listener hook.
//!
//! Every layer reports what it does as an [`Event`]: a circuit breaker's state changes,
//! rejections and recorded outcomes today; retries, failovers and ejections as those layers
//! land. One [`Listener`] can be given to every layer, so an application wires its alerting
//! or audit log once. Events borrow their data (the layer's name among it), so emitting one
//! allocates nothing.
//!
//! Listeners run inline on the request path: they must be quick and must not block. Push to a
//! channel with `try_send` if you need to do real work.
//!
//! ```
//! use bulwark_core::{CircuitState, Event, Listener};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let opened = Arc::new(AtomicUsize::new(0));
//! let counter = opened.clone();
//! let listener = move |event: &Event<'_>| {
//!     if let Event::StateTransition { to: CircuitState::Open, .. } = event {
//!         counter.fetch_add(1, Ordering::Relaxed);
//!     }
//! };
//! listener.on_event(&Event::StateTransition {
//!     name: "store-1",
//!     from: CircuitState::Closed,
//!     to: CircuitState::Open,
//! });
//! assert_eq!(opened.load(Ordering::Relaxed), 1);
//! ```

use crate::classify::Outcome;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls flow and their outcomes are recorded; the breaker trips when the window says so.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A limited number of probe calls decide between closing and opening again.
    HalfOpen,
    /// Held open by an operator through the handle: every call is refused until released.
    ForcedOpen,
    /// Switched off by an operator: every call passes, nothing is recorded.
    Disabled,
    /// Every call passes and outcomes are recorded, but the breaker never trips.
    MetricsOnly,
}

impl CircuitState {
    /// The snake_case name used in logs, metric labels and JSON: `closed`, `open`,
    /// `half_open`, `forced_open`, `disabled`, `metrics_only`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    /// Whether calls are refused in this state (open or forced open). A half-open breaker
    /// admits its probes.
    pub const fn is_refusing(self) -> bool {
        matches!(self, CircuitState::Open | CircuitState::ForcedOpen)
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a circuit breaker tripped (moved from closed to open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TripReason {
    /// The failure rate over the window reached the threshold.
    FailureRate,
    /// The slow-call rate over the window reached the threshold.
    SlowCallRate,
    /// The configured number of consecutive failures was reached.
    ConsecutiveFailures,
    /// A half-open probe failed.
    ProbeFailed,
    /// The half-open state lasted longer than its maximum wait.
    HalfOpenTimeout,
}

impl TripReason {
    /// The snake_case name used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            TripReason::FailureRate => "failure_rate",
            TripReason::SlowCallRate => "slow_call_rate",
            TripReason::ConsecutiveFailures => "consecutive_failures",
            TripReason::ProbeFailed => "probe_failed",
            TripReason::HalfOpenTimeout => "half_open_timeout",
        }
    }
}

impl fmt::Display for TripReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a retry layer stopped retrying and returned the last outcome as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// Every allowed attempt was made.
    MaxAttempts,
    /// The retry budget was spent: retrying would add load to a backend already failing.
    Budget,
    /// The deadline would pass before (or while) the next attempt could be made.
    Deadline,
    /// The request cannot be sent again: not idempotent, or its body could not be kept.
    NotResendable,
    /// The server asked to wait longer than the configured cap.
    RetryAfterTooLong,
    /// The policy says this failure is not worth retrying.
    NotRetryable,
    /// The server asked not to retry: gRPC's `grpc-retry-pushback-ms` with a negative or
    /// malformed value.
    Pushback,
    /// The stack's cap on resends in flight at once
    /// ([`ResendCap`](crate::budget::ResendCap)) was full.
    ConcurrencyCap,
}

impl GiveUpReason {
    /// The snake_case name used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::MaxAttempts => "max_attempts",
            GiveUpReason::Budget => "budget",
            GiveUpReason::Deadline => "deadline",
            GiveUpReason::NotResendable => "not_resendable",
            GiveUpReason::RetryAfterTooLong => "retry_after_too_long",
            GiveUpReason::NotRetryable => "not_retryable",
            GiveUpReason::Pushback => "pushback",
            GiveUpReason::ConcurrencyCap => "concurrency_cap",
        }
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a failover set moved a request to the next target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailoverReason {
    /// The target's call returned an error.
    Error,
    /// The target did not answer within the per-attempt timeout.
    Timeout,
    /// The target answered with a response classified as a failure (a failover status).
    FailureResponse,
}

impl FailoverReason {
    /// The snake_case name used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailoverReason::Error => "error",
            FailoverReason::Timeout => "timeout",
            FailoverReason::FailureResponse => "failure_response",
        }
    }
}

impl fmt::Display for FailoverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a bulkhead (or an adaptive concurrency limit) turned a call away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowReason {
    /// Every permit was taken and there is no queue to wait in.
    Full,
    /// Every permit was taken and the queue was full too.
    QueueFull,
    /// The call waited in the queue for the whole queue timeout without a permit freeing up.
    QueueTimeout,
    /// In readiness mode: a readiness poll was turned away (counted once per wait, however
    /// often it is polled); the layer above chooses another target or waits.
    NotReady,
}

impl OverflowReason {
    /// The snake_case name used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            OverflowReason::Full => "full",
            OverflowReason::QueueFull => "queue_full",
            OverflowReason::QueueTimeout => "queue_timeout",
            OverflowReason::NotReady => "not_ready",
        }
    }
}

impl fmt::Display for OverflowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a layer did. `name` is the name the layer instance was given (for example the
/// backend a breaker guards).
///
/// New variants are added as layers land, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A circuit breaker changed state.
    StateTransition {
        /// The breaker's name.
        name: &'a str,
        /// The state it left.
        from: CircuitState,
        /// The state it entered.
        to: CircuitState,
    },
    /// A circuit breaker tripped to open; sent just before the matching `StateTransition`.
    Tripped {
        /// The breaker's name.
        name: &'a str,
        /// What made it trip.
        reason: TripReason,
        /// How long it stays open before admitting a probe.
        open_for: Duration,
    },
    /// A circuit breaker refused a call without sending it.
    CallRejected {
        /// The breaker's name.
        name: &'a str,
        /// The state that refused it.
        state: CircuitState,
        /// How long until the breaker admits a probe, where known.
        retry_after: Option<Duration>,
    },
    /// A circuit breaker recorded the outcome of a call it let through.
    OutcomeRecorded {
        /// The breaker's name.
        name: &'a str,
        /// The classification of the call.
        outcome: Outcome,
        /// Whether the call took longer than the slow-call threshold.
        slow: bool,
        /// False when the call was admitted before the latest state change: it is reported,
        /// but it did not count towards the current window or state.
        counted: bool,
    },
    /// A retry layer will send the request again after `delay`.
    RetryScheduled {
        /// The retry layer's name.
        name: &'a str,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// Whether the wait is the server's (`Retry-After`) rather than the backoff's.
        server_hint: bool,
        /// Whether the failed attempt timed out (rather than failing on its own).
        timed_out: bool,
    },
    /// A failover set sends a request on to the next target.
    FailedOver {
        /// The failover set's name.
        name: &'a str,
        /// The target that failed (its index in the ordered list).
        from: usize,
        /// The target the request goes to next.
        to: usize,
        /// Why.
        reason: FailoverReason,
    },
    /// A balancer took an endpoint out after it kept failing.
    EndpointEjected {
        /// The balancer's name.
        name: &'a str,
        /// The endpoint's index.
        endpoint: usize,
        /// How long it stays out.
        duration: Duration,
    },
    /// An ejected endpoint's time is up: it takes requests again.
    EndpointReturned {
        /// The balancer's name.
        name: &'a str,
        /// The endpoint's index.
        endpoint: usize,
    },
    /// An endpoint joined a balancer (from its list at build, or from discovery).
    EndpointAdded {
        /// The balancer's name.
        name: &'a str,
        /// The endpoint's id (its index, for a static list).
        endpoint: usize,
        /// The endpoint's name (its key, for a discovered endpoint).
        target: &'a str,
    },
    /// An endpoint left a balancer (discovery removed it): it gets no new request, and its
    /// requests in flight finish.
    EndpointRemoved {
        /// The balancer's name.
        name: &'a str,
        /// The endpoint's id.
        endpoint: usize,
        /// The endpoint's name.
        target: &'a str,
    },
    /// An endpoint was marked healthy or unhealthy (by a health check).
    EndpointHealthChanged {
        /// The balancer's name.
        name: &'a str,
        /// The endpoint's index.
        endpoint: usize,
        /// Whether it is healthy now.
        healthy: bool,
    },
    /// One target of a fan-out finished (or was cut off).
    FanOutTarget {
        /// The fan-out's name.
        name: &'a str,
        /// The target's index.
        target: usize,
        /// Its outcome: success, failure (an error, a failed answer, a timeout).
        outcome: Outcome,
    },
    /// A retry layer stopped after a failed attempt and returned its outcome as it was.
    RetryGaveUp {
        /// The retry layer's name.
        name: &'a str,
        /// Attempts made, the first included.
        attempts: u32,
        /// Why it stopped.
        reason: GiveUpReason,
    },
    /// A rate limiter refused a call for want of a token (a fail-fast call, or a readiness wait
    /// turned away: once per wait).
    RateLimited {
        /// The limiter's name.
        name: &'a str,
        /// How long until its next token.
        retry_after: Duration,
    },
    /// A hedging layer sent the request again while an earlier attempt may still answer.
    HedgeSent {
        /// The hedging layer's name.
        name: &'a str,
        /// The attempt this hedge is (2 for the first hedge).
        attempt: u32,
        /// The wait since the previous attempt was sent (zero when an attempt's non-fatal
        /// failure sent it at once).
        delay: Duration,
        /// Whether an attempt's non-fatal failure sent it (rather than the delay running out).
        after_failure: bool,
    },
    /// The answer a hedging layer returned came from a hedge, not from the first attempt.
    HedgeWon {
        /// The hedging layer's name.
        name: &'a str,
        /// The attempt that answered (2 for the first hedge).
        attempt: u32,
    },
    /// A hedge was due but was not sent: the hedge budget was spent
    /// ([`GiveUpReason::Budget`]), the stack's resend cap was full
    /// ([`GiveUpReason::ConcurrencyCap`]), the server asked for no more
    /// ([`GiveUpReason::Pushback`], [`GiveUpReason::RetryAfterTooLong`]), or the deadline in
    /// scope ([`crate::deadline`]) came before it ([`GiveUpReason::Deadline`]). The attempts
    /// in flight go on.
    HedgeRefused {
        /// The hedging layer's name.
        name: &'a str,
        /// The attempt the hedge would have been.
        attempt: u32,
        /// Why it was not sent.
        reason: GiveUpReason,
    },
    /// A bulkhead (or an adaptive concurrency limit) turned a call away without sending it.
    BulkheadRejected {
        /// The bulkhead's name.
        name: &'a str,
        /// The limit on calls in flight when it did.
        limit: u32,
        /// Why.
        reason: OverflowReason,
    },
    /// A bulkhead's limit on calls in flight changed: moved by its adaptive controller, or
    /// set through its handle.
    LimitChanged {
        /// The bulkhead's name.
        name: &'a str,
        /// The limit before.
        from: u32,
        /// The limit now.
        to: u32,
    },
    /// A layer's settings were changed at run time through its handle (a circuit breaker's,
    /// a balancer's or a bulkhead's); the new settings are read back through that handle.
    SettingsChanged {
        /// The layer instance's name.
        name: &'a str,
        /// Which kind of layer: `circuit_breaker`, `balance` or `bulkhead`.
        layer: &'static str,
    },
}

impl Event<'_> {
    /// The name of the layer instance that emitted the event.
    pub fn name(&self) -> &str {
        match self {
            Event::StateTransition { name, .. }
            | Event::Tripped { name, .. }
            | Event::CallRejected { name, .. }
            | Event::OutcomeRecorded { name, .. }
            | Event::RetryScheduled { name, .. }
            | Event::FailedOver { name, .. }
            | Event::FanOutTarget { name, .. }
            | Event::EndpointEjected { name, .. }
            | Event::EndpointReturned { name, .. }
            | Event::EndpointAdded { name, .. }
            | Event::EndpointRemoved { name, .. }
            | Event::EndpointHealthChanged { name, .. }
            | Event::RetryGaveUp { name, .. }
            | Event::RateLimited { name, .. }
            | Event::HedgeSent { name, .. }
            | Event::HedgeWon { name, .. }
            | Event::HedgeRefused { name, .. }
            | Event::BulkheadRejected { name, .. }
            | Event::LimitChanged { name, .. }
            | Event::SettingsChanged { name, .. } => name,
        }
    }
}

/// Receives [`Event`]s. Called inline, from whichever task or thread caused the event: keep it
/// quick and never block. Implemented for every `Fn(&Event<'_>) + Send + Sync + 'static`.
pub trait Listener: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event<'_>);
}

impl<F> Listener for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// The default listener: ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopListener;

impl Listener for NoopListener {
    fn on_event(&self, _: &Event<'_>) {}
}

/// A listener shared by the layers it was given to.
#[derive(Clone)]
pub struct SharedListener(Arc<dyn Listener>);

impl SharedListener {
    /// Wraps a listener so several layers can share it.
    pub fn new(listener: impl Listener) -> Self {
        SharedListener(Arc::new(listener))
    }

    /// Delivers one event.
    #[inline]
    pub fn emit(&self, event: &Event<'_>) {
        self.0.on_event(event)
    }
}

impl fmt::Debug for SharedListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedListener(..)")
    }
}

impl<L: Listener> From<Arc<L>> for SharedListener {
    fn from(listener: Arc<L>) -> Self {
        SharedListener(listener)
    }
}
