//! The breaker's state machine, independent of any clock or runtime.
//!
//! Times are nanoseconds since the breaker was created, passed in by the caller (the service
//! reads tokio's clock; tests and the loom model pass numbers). Everything the request path
//! touches is atomic:
//!
//! * `word` packs the state, a generation that grows on every transition, and the half-open
//!   probe counters. Admitting a call in the closed state is one load of it.
//! * `deadlines` holds, for the current generation, when the open period ends (or when the
//!   half-open wait runs out). It is double-buffered by generation parity: a transition writes
//!   the slot of the *next* generation before publishing that generation, so a reader that
//!   loads the word and then the slot of its generation, and sees the generation unchanged on a
//!   second load of the word, has read a matching pair.
//! * Transitions themselves are rare; they are serialised by a mutex that no request-path
//!   operation takes and that is never held across an `.await` (there is none here).
//! * The settings a handle can change at run time are atomics where the request path reads
//!   them (the thresholds, the slow-call threshold, the number of probes), and sit under the
//!   transition mutex where only a transition reads them (the open period, the half-open
//!   wait), beside the whole configuration now in force.
//!
//! A call carries the generation it was admitted in. Its outcome is applied only if the
//! breaker is still in that generation: a call admitted before a trip or a reset is reported,
//! but cannot change the state that followed.

use crate::config::{CircuitBreakerConfig, ConfigError, OpenPeriod};
use crate::sync::{lock, AtomicU32, AtomicU64, Mutex, Ordering};
use crate::window::{CountWindow, Sample, Stats, TimeWindow, Window};
use bulwark_core::backoff::spread_factor;
use bulwark_core::clock::nanos;
use bulwark_core::config::fixed;
use bulwark_core::{CircuitState, Event, Outcome, RandomSource, SharedListener, TripReason};
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::time::Duration;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const FORCED_OPEN: u64 = 3;
const DISABLED: u64 = 4;
const METRICS_ONLY: u64 = 5;

const STATE_SHIFT: u32 = 32;
const GEN_SHIFT: u32 = 35;
const GEN_MASK: u64 = (1 << (64 - GEN_SHIFT)) - 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Word(u64);

impl Word {
    #[inline]
    fn new(state: u64, gen: u32) -> Self {
        Word((u64::from(gen) & GEN_MASK) << GEN_SHIFT | state << STATE_SHIFT)
    }
    #[inline]
    fn state(self) -> u64 {
        (self.0 >> STATE_SHIFT) & 0b111
    }
    #[inline]
    fn gen(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32
    }
    #[inline]
    fn in_flight(self) -> u32 {
        (self.0 & 0xFFFF) as u32
    }
    #[inline]
    fn successes(self) -> u32 {
        ((self.0 >> 16) & 0xFFFF) as u32
    }
}

fn to_state(code: u64) -> CircuitState {
    match code {
        CLOSED => CircuitState::Closed,
        OPEN => CircuitState::Open,
        HALF_OPEN => CircuitState::HalfOpen,
        FORCED_OPEN => CircuitState::ForcedOpen,
        DISABLED => CircuitState::Disabled,
        _ => CircuitState::MetricsOnly,
    }
}

fn to_code(state: CircuitState) -> u64 {
    match state {
        CircuitState::Closed => CLOSED,
        CircuitState::Open => OPEN,
        CircuitState::HalfOpen => HALF_OPEN,
        CircuitState::ForcedOpen => FORCED_OPEN,
        CircuitState::Disabled => DISABLED,
        _ => METRICS_ONLY,
    }
}

/// Whether a call may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It may; report its outcome with this generation.
    Admitted { gen: u32, probe: bool },
    /// It may not.
    Rejected(Rejection),
}

/// Where a service clone waiting in readiness mode keeps its waker: its latest waker, and
/// whether the breaker's list holds it. One per clone, made the first time it is turned away.
#[derive(Debug, Default)]
pub(crate) struct WaitSlot {
    state: Mutex<(Option<Waker>, bool)>,
}

/// Why a call may not go, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) state: CircuitState,
    /// Nanoseconds until a probe is admitted, where known.
    pub(crate) retry_after: Option<u64>,
    /// The clock time at which the state will change by itself, if it will.
    pub(crate) wake_at: Option<u64>,
}

/// A consistent read of the breaker, for the handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreSnapshot {
    pub(crate) state: CircuitState,
    pub(crate) stats: Stats,
    pub(crate) not_permitted: u64,
    pub(crate) consecutive_failures: u32,
    pub(crate) retry_after: Option<u64>,
}

/// What the transition mutex guards: the trips since the breaker last closed, and the
/// settings in force (of which a transition reads the open period and the half-open wait).
struct Transitions {
    trips: u32,
    config: CircuitBreakerConfig,
}

/// An `f64` setting kept as its bits, so it can change while calls read it.
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(value: f64) -> Self {
        AtomicF64(AtomicU64::new(value.to_bits()))
    }
    #[inline]
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed)
    }
}

/// No slow-call threshold: slow calls are not tracked.
const NOT_TIMED: u64 = 0;

pub(crate) struct Core {
    name: Box<str>,
    failure_rate: AtomicF64,
    min_calls: AtomicU64,
    /// 0: off.
    consecutive_limit: AtomicU32,
    /// Nanoseconds; [`NOT_TIMED`]: slow calls are not tracked.
    slow_threshold: AtomicU64,
    slow_rate: AtomicF64,
    probes: AtomicU32,
    window: Window,
    word: AtomicU64,
    deadlines: [AtomicU64; 2],
    /// Serialises transitions and changes of settings.
    transitions: Mutex<Transitions>,
    consecutive_failures: AtomicU32,
    /// The door to the window: the generation allowed to record (high 32 bits) and how many
    /// recorders are inside (low 32 bits). See [`Core::record`] and [`Core::apply`].
    recording: AtomicU64,
    not_permitted: AtomicU64,
    waiters: Mutex<Vec<Weak<WaitSlot>>>,
    listener: Option<SharedListener>,
    random: Arc<dyn RandomSource>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = Word(self.word.load(Ordering::Relaxed));
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("state", &to_state(w.state()))
            .field("generation", &w.gen())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Builds a core from a validated config.
    pub(crate) fn new(
        config: &CircuitBreakerConfig,
        listener: Option<SharedListener>,
        random: Arc<dyn RandomSource>,
    ) -> Self {
        let window = match config.window {
            crate::Window::Count { size } => Window::Count(CountWindow::new(size)),
            crate::Window::Time { length, buckets } => {
                Window::Time(TimeWindow::new(nanos(length) / u64::from(buckets), buckets))
            }
        };
        let core = Core {
            name: config.name.clone().into_boxed_str(),
            failure_rate: AtomicF64::new(0.0),
            min_calls: AtomicU64::new(0),
            consecutive_limit: AtomicU32::new(0),
            slow_threshold: AtomicU64::new(NOT_TIMED),
            slow_rate: AtomicF64::new(0.0),
            probes: AtomicU32::new(0),
            window,
            word: AtomicU64::new(Word::new(CLOSED, 0).0),
            deadlines: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
            transitions: Mutex::new(Transitions {
                trips: 0,
                config: config.clone(),
            }),
            consecutive_failures: AtomicU32::new(0),
            recording: AtomicU64::new(0),
            not_permitted: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            listener,
            random,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Metrics::new(&config.name),
        };
        core.publish(config);
        core
    }

    /// Stores the settings the request path reads (each takes effect on its own).
    fn publish(&self, config: &CircuitBreakerConfig) {
        self.failure_rate.set(config.failure_rate);
        self.min_calls
            .store(config.min_calls.into(), Ordering::Relaxed);
        self.consecutive_limit
            .store(config.consecutive_failures.unwrap_or(0), Ordering::Relaxed);
        let (threshold, rate) = config
            .slow_calls
            .map_or((NOT_TIMED, 0.0), |s| (nanos(s.threshold).max(1), s.rate));
        self.slow_rate.set(rate);
        self.slow_threshold.store(threshold, Ordering::Relaxed);
        self.probes
            .store(config.half_open_probes, Ordering::Relaxed);
    }

    /// The settings in force.
    pub(crate) fn config(&self) -> CircuitBreakerConfig {
        lock(&self.transitions).config.clone()
    }

    /// Puts `config` in force, validated as the builder validates it; nothing changes on an
    /// error. The name, the window and the mode are fixed when the breaker is built.
    pub(crate) fn reconfigure(&self, config: CircuitBreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let changed = {
            let mut t = lock(&self.transitions);
            fixed("name", t.config.name == config.name)?;
            fixed("window", t.config.window == config.window)?;
            fixed("mode", t.config.mode == config.mode)?;
            let changed = t.config != config;
            if changed {
                self.publish(&config);
                t.config = config;
            }
            changed
        };
        if changed {
            tracing::info!(breaker = %self.name, "circuit breaker settings changed");
            self.emit(&Event::SettingsChanged {
                name: &self.name,
                layer: "circuit_breaker",
            });
            // More probes may be admitted now: let the waiting callers look again.
            self.wake_all();
        }
        Ok(())
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The state now, as stored (an open breaker whose period ended still reads open).
    #[inline]
    pub(crate) fn current(&self) -> CircuitState {
        to_state(self.load().state())
    }

    pub(crate) fn min_calls(&self) -> u64 {
        self.min_calls.load(Ordering::Relaxed)
    }

    /// The slow-call threshold in nanoseconds, if slow calls are tracked.
    #[inline]
    pub(crate) fn slow_threshold(&self) -> Option<u64> {
        match self.slow_threshold.load(Ordering::Relaxed) {
            NOT_TIMED => None,
            t => Some(t),
        }
    }

    #[inline]
    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    /// The deadline of `w`'s generation, or `None` if the generation moved on meanwhile.
    fn deadline_of(&self, w: Word) -> Option<u64> {
        let d = self.deadlines[(w.gen() & 1) as usize].load(Ordering::Acquire);
        (self.load().gen() == w.gen()).then_some(d)
    }

    /// Asks to send one call. `now` is read only when the answer depends on the time.
    #[inline]
    pub(crate) fn acquire(&self, now: impl Fn() -> u64) -> Admission {
        let w = self.load();
        if matches!(w.state(), CLOSED | DISABLED | METRICS_ONLY) {
            return Admission::Admitted {
                gen: w.gen(),
                probe: false,
            };
        }
        self.acquire_slow(now)
    }

    #[cold]
    fn acquire_slow(&self, now: impl Fn() -> u64) -> Admission {
        loop {
            let w = self.load();
            match w.state() {
                CLOSED | DISABLED | METRICS_ONLY => {
                    return Admission::Admitted {
                        gen: w.gen(),
                        probe: false,
                    }
                }
                FORCED_OPEN => {
                    return Admission::Rejected(Rejection {
                        state: CircuitState::ForcedOpen,
                        retry_after: None,
                        wake_at: None,
                    })
                }
                OPEN => {
                    let Some(deadline) = self.deadline_of(w) else {
                        continue;
                    };
                    let t = now();
                    if t >= deadline {
                        self.transition(w.gen(), OPEN, CircuitState::HalfOpen, t, None);
                        continue;
                    }
                    return Admission::Rejected(Rejection {
                        state: CircuitState::Open,
                        retry_after: Some(deadline - t),
                        wake_at: Some(deadline),
                    });
                }
                _ => {
                    // Half-open.
                    let Some(deadline) = self.deadline_of(w) else {
                        continue;
                    };
                    if deadline != u64::MAX {
                        let t = now();
                        if t >= deadline {
                            self.transition(
                                w.gen(),
                                HALF_OPEN,
                                CircuitState::Open,
                                t,
                                Some(TripReason::HalfOpenTimeout),
                            );
                            continue;
                        }
                    }
                    let probes = self.probes.load(Ordering::Relaxed);
                    if w.in_flight() == 0 && w.successes() >= probes {
                        // Every probe needed has succeeded and none is out: `half_open_probes`
                        // was lowered to or below the successes already in. No outcome is left
                        // to close the breaker, so the call that finds it does.
                        self.transition(w.gen(), HALF_OPEN, CircuitState::Closed, now(), None);
                        continue;
                    }
                    if w.in_flight() + w.successes() < probes {
                        if self
                            .word
                            .compare_exchange(w.0, w.0 + 1, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            return Admission::Admitted {
                                gen: w.gen(),
                                probe: true,
                            };
                        }
                        continue;
                    }
                    return Admission::Rejected(Rejection {
                        state: CircuitState::HalfOpen,
                        retry_after: Some(0),
                        wake_at: (deadline != u64::MAX).then_some(deadline),
                    });
                }
            }
        }
    }

    /// Counts a refused call and reports it.
    pub(crate) fn reject(&self, rejection: &Rejection) {
        self.not_permitted.fetch_add(1, Ordering::Relaxed);
        let retry_after = rejection.retry_after.map(Duration::from_nanos);
        tracing::debug!(
            breaker = %self.name,
            state = rejection.state.as_str(),
            retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
            "circuit breaker refused a call"
        );
        #[cfg(feature = "metrics")]
        self.metrics.not_permitted();
        self.emit(&Event::CallRejected {
            name: &self.name,
            state: rejection.state,
            retry_after,
        });
    }

    /// Records the outcome of a call admitted in generation `gen`.
    ///
    /// A plain success into a full, clean count window changes nothing and is not written
    /// (the healthy hot path). Every other outcome enters through the `recording` door, which
    /// only admits the generation the call was admitted in; a transition shuts the door on the
    /// old generation and waits for the recorders inside before it resets anything. So an
    /// outcome either lands before the transition or not at all.
    #[inline]
    pub(crate) fn record(
        &self,
        gen: u32,
        probe: bool,
        outcome: Outcome,
        slow: bool,
        now: impl Fn() -> u64,
    ) {
        if !probe && outcome == Outcome::Success && !slow {
            let w = self.load();
            if w.gen() == gen && w.state() == CLOSED && self.window.success_is_noop() {
                // The healthy hot path: nothing to write.
                return self.report_outcome(outcome, slow, true);
            }
        }
        self.record_slow(gen, probe, outcome, slow, now)
    }

    #[cold]
    fn record_slow(
        &self,
        gen: u32,
        probe: bool,
        outcome: Outcome,
        slow: bool,
        now: impl Fn() -> u64,
    ) {
        if probe {
            return self.record_probe(gen, outcome, slow, now);
        }
        let w = self.load();
        if w.state() == DISABLED {
            return;
        }
        let failed = outcome == Outcome::Failure;
        let current = w.gen() == gen && matches!(w.state(), CLOSED | METRICS_ONLY);
        if outcome == Outcome::Ignored
            || (current && !failed && !slow && self.window.success_is_noop())
        {
            return self.report_outcome(outcome, slow, current && outcome != Outcome::Ignored);
        }

        let door = self.recording.fetch_add(1, Ordering::SeqCst);
        if (door >> 32) as u32 != gen {
            self.recording.fetch_sub(1, Ordering::SeqCst);
            return self.report_outcome(outcome, slow, false);
        }
        // Inside: the generation cannot move on until this recorder leaves.
        let state = self.load().state();
        let counted = matches!(state, CLOSED | METRICS_ONLY);
        let mut verdict = None;
        if counted {
            let consecutive = if failed {
                self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1
            } else {
                // Read first: a healthy breaker never writes this shared line.
                if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    self.consecutive_failures.store(0, Ordering::Release);
                }
                0
            };
            let t = if self.window.needs_clock() { now() } else { 0 };
            let stats = self.window.record(Sample { failed, slow }, t);
            if state == CLOSED {
                let limit = self.consecutive_limit.load(Ordering::Relaxed);
                verdict = if limit != 0 && consecutive >= limit {
                    Some(TripReason::ConsecutiveFailures)
                } else {
                    self.verdict(&stats)
                };
            }
        }
        self.recording.fetch_sub(1, Ordering::SeqCst);
        self.report_outcome(outcome, slow, counted);
        if let Some(reason) = verdict {
            self.transition(gen, CLOSED, CircuitState::Open, now(), Some(reason));
        }
    }

    /// Whether the window's totals call for a trip.
    fn verdict(&self, s: &Stats) -> Option<TripReason> {
        if s.calls < self.min_calls() {
            return None;
        }
        if s.failures > 0 && s.failure_rate() >= self.failure_rate.get() {
            return Some(TripReason::FailureRate);
        }
        let tracked = self.slow_threshold().is_some();
        (tracked && s.slow > 0 && s.slow_rate() >= self.slow_rate.get())
            .then_some(TripReason::SlowCallRate)
    }

    fn record_probe(&self, gen: u32, outcome: Outcome, slow: bool, now: impl Fn() -> u64) {
        // With slow calls tracked, a slow probe says the backend is still degraded.
        let outcome = if slow && outcome == Outcome::Success {
            Outcome::Failure
        } else {
            outcome
        };
        loop {
            let w = self.load();
            if w.gen() != gen || w.state() != HALF_OPEN {
                self.report_outcome(outcome, slow, false);
                return;
            }
            match outcome {
                Outcome::Failure => {
                    self.report_outcome(outcome, slow, true);
                    self.transition(
                        gen,
                        HALF_OPEN,
                        CircuitState::Open,
                        now(),
                        Some(TripReason::ProbeFailed),
                    );
                    return;
                }
                Outcome::Success => {
                    // One slot moves from in flight to succeeded.
                    let next = w.0 - 1 + (1 << 16);
                    if self
                        .word
                        .compare_exchange(w.0, next, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        continue;
                    }
                    self.report_outcome(outcome, slow, true);
                    if Word(next).successes() >= self.probes.load(Ordering::Relaxed) {
                        self.transition(gen, HALF_OPEN, CircuitState::Closed, now(), None);
                    }
                    return;
                }
                Outcome::Ignored => {
                    self.report_outcome(outcome, slow, false);
                    self.release_probe(gen);
                    return;
                }
            }
        }
    }

    /// Frees the probe slot of a probe that ended without an outcome (dropped, or ignored).
    pub(crate) fn release_probe(&self, gen: u32) {
        loop {
            let w = self.load();
            if w.gen() != gen || w.state() != HALF_OPEN || w.in_flight() == 0 {
                return;
            }
            if self
                .word
                .compare_exchange(w.0, w.0 - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.wake_all();
                return;
            }
        }
    }

    #[inline]
    fn report_outcome(&self, outcome: Outcome, slow: bool, counted: bool) {
        // This runs on every call: keep the tracing event's code out of line, behind the one
        // relaxed load that the level check is.
        if tracing::level_enabled!(tracing::Level::TRACE) {
            self.trace_outcome(outcome, slow, counted);
        }
        if let Some(listener) = &self.listener {
            listener.emit(&Event::OutcomeRecorded {
                name: &self.name,
                outcome,
                slow,
                counted,
            });
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_outcome(&self, outcome: Outcome, slow: bool, counted: bool) {
        tracing::trace!(
            breaker = %self.name,
            outcome = outcome.as_str(),
            slow,
            counted,
            "circuit breaker recorded an outcome"
        );
    }

    #[inline]
    fn emit(&self, event: &Event<'_>) {
        if let Some(listener) = &self.listener {
            listener.emit(event);
        }
    }

    /// How long trip number `trips` (1 for the first since the last close) keeps it open.
    fn open_period(&self, open: OpenPeriod, trips: u32) -> u64 {
        match open {
            OpenPeriod::Fixed(d) => nanos(d),
            OpenPeriod::Exponential {
                initial,
                multiplier,
                max,
                jitter,
            } => {
                let exp = trips.saturating_sub(1).min(1024) as i32;
                let cap = max.as_secs_f64();
                let base = (initial.as_secs_f64() * multiplier.powi(exp)).min(cap);
                let secs = (base * spread_factor(jitter, &*self.random)).clamp(0.0, cap);
                nanos(Duration::from_secs_f64(secs)).max(1)
            }
        }
    }

    /// Moves from (`gen`, `from`) to `to`; does nothing if the breaker left that state meanwhile.
    fn transition(
        &self,
        gen: u32,
        from: u64,
        to: CircuitState,
        now: u64,
        reason: Option<TripReason>,
    ) -> bool {
        let open_for = {
            let mut t = lock(&self.transitions);
            let w = self.load();
            if w.gen() != gen || w.state() != from {
                return false;
            }
            self.apply(w, to, now, &mut t)
        };
        self.announce(to_state(from), to, reason, open_for);
        true
    }

    /// Moves to `to` from whatever state the breaker is in (the handle's operations).
    pub(crate) fn force(&self, to: CircuitState, now: u64) {
        let (from, open_for) = {
            let mut t = lock(&self.transitions);
            let w = self.load();
            (to_state(w.state()), self.apply(w, to, now, &mut t))
        };
        self.announce(from, to, None, open_for);
    }

    /// Performs a transition; the caller holds the transition lock. Returns the open period.
    fn apply(&self, w: Word, to: CircuitState, now: u64, t: &mut Transitions) -> u64 {
        let next_gen = (w.gen().wrapping_add(1)) & GEN_MASK as u32;
        // Shut the recording door on the old generation, once the recorders inside have left
        // (they are a few atomic operations from leaving, and never block).
        let (old_door, new_door) = (u64::from(w.gen()) << 32, u64::from(next_gen) << 32);
        while self
            .recording
            .compare_exchange(old_door, new_door, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            crate::sync::spin();
        }
        let mut open_for = 0;
        let deadline = match to {
            CircuitState::Open => {
                t.trips = t.trips.saturating_add(1);
                open_for = self.open_period(t.config.open, t.trips);
                now.saturating_add(open_for)
            }
            CircuitState::HalfOpen => t
                .config
                .max_wait_in_half_open
                .map_or(u64::MAX, |m| now.saturating_add(nanos(m))),
            _ => u64::MAX,
        };
        if matches!(
            to,
            CircuitState::Closed | CircuitState::MetricsOnly | CircuitState::Disabled
        ) {
            t.trips = 0;
            self.window.reset();
            self.consecutive_failures.store(0, Ordering::Release);
        }
        self.deadlines[(next_gen & 1) as usize].store(deadline, Ordering::Release);
        self.word
            .store(Word::new(to_code(to), next_gen).0, Ordering::Release);
        open_for
    }

    /// Reports a transition; called after the transition lock is released, so a listener may
    /// read the breaker.
    fn announce(
        &self,
        from: CircuitState,
        to: CircuitState,
        reason: Option<TripReason>,
        open_for: u64,
    ) {
        if let (CircuitState::Open, Some(reason)) = (to, reason) {
            let open_for = Duration::from_nanos(open_for);
            tracing::warn!(
                breaker = %self.name,
                from = from.as_str(),
                reason = reason.as_str(),
                open_ms = open_for.as_millis() as u64,
                "circuit breaker opened"
            );
            self.emit(&Event::Tripped {
                name: &self.name,
                reason,
                open_for,
            });
        } else {
            tracing::info!(
                breaker = %self.name,
                from = from.as_str(),
                to = to.as_str(),
                "circuit breaker state changed"
            );
        }
        #[cfg(feature = "metrics")]
        self.metrics.transition(from, to);
        self.emit(&Event::StateTransition {
            name: &self.name,
            from,
            to,
        });
        self.wake_all();
    }

    /// Registers the task waiting in a service clone (its `slot`) to wake on the next state
    /// change or freed probe slot. The list holds each waiting clone once, weakly, with the
    /// clone's latest waker: a clone that is dropped takes its waker (and the task memory it
    /// keeps) with it, so the list does not grow with every task ever turned away.
    pub(crate) fn register(&self, slot: &Arc<WaitSlot>, waker: &Waker) {
        let add = {
            let mut s = lock(&slot.state);
            match &s.0 {
                Some(w) if w.will_wake(waker) => {}
                _ => s.0 = Some(waker.clone()),
            }
            !std::mem::replace(&mut s.1, true)
        };
        if add {
            let mut waiters = lock(&self.waiters);
            if waiters.len() == waiters.capacity() {
                // About to grow: drop the entries of clones that are gone first.
                waiters.retain(|w| w.strong_count() > 0);
            }
            waiters.push(Arc::downgrade(slot));
        }
    }

    fn wake_all(&self) {
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for slot in waiters.iter().filter_map(Weak::upgrade) {
            let waker = {
                let mut s = lock(&slot.state);
                s.1 = false;
                s.0.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// The state now, moving open to half-open (or half-open to open) if its time has come.
    pub(crate) fn state(&self, now: u64) -> CircuitState {
        loop {
            let w = self.load();
            let Some(deadline) = self.deadline_of(w) else {
                continue;
            };
            match w.state() {
                OPEN if now >= deadline => {
                    self.transition(w.gen(), OPEN, CircuitState::HalfOpen, now, None);
                }
                HALF_OPEN if now >= deadline => {
                    self.transition(
                        w.gen(),
                        HALF_OPEN,
                        CircuitState::Open,
                        now,
                        Some(TripReason::HalfOpenTimeout),
                    );
                }
                s => return to_state(s),
            }
        }
    }

    pub(crate) fn snapshot(&self, now: u64) -> CoreSnapshot {
        let state = self.state(now);
        let w = self.load();
        let retry_after = match w.state() {
            OPEN => self.deadline_of(w).map(|d| d.saturating_sub(now)),
            HALF_OPEN => Some(0),
            CLOSED | DISABLED | METRICS_ONLY => Some(0),
            _ => None,
        };
        CoreSnapshot {
            state,
            stats: self.window.stats(now),
            not_permitted: self.not_permitted.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            retry_after,
        }
    }

    /// Half-open probes in flight and succeeded (for the loom model).
    #[cfg(all(test, bulwark_loom))]
    pub(crate) fn probe_counts(&self) -> (u32, u32) {
        let w = self.load();
        (w.in_flight(), w.successes())
    }

    #[cfg(all(test, bulwark_loom))]
    pub(crate) fn generation(&self) -> u32 {
        self.load().gen()
    }

    #[cfg(all(test, bulwark_loom))]
    pub(crate) fn consecutive(&self) -> u32 {
        self.consecutive_failures.load(Ordering::SeqCst)
    }

    #[cfg(all(test, bulwark_loom))]
    pub(crate) fn window_stats(&self, now: u64) -> Stats {
        self.window.stats(now)
    }

    #[cfg(all(test, bulwark_loom))]
    pub(crate) fn window_recount(&self) -> Stats {
        match &self.window {
            Window::Count(w) => w.recount(),
            Window::Time(w) => w.stats(0),
        }
    }
}
