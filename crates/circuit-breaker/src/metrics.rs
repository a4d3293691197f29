//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the layer is
//! built: the handles are registered, with their help text, with the recorder current when
//! they are first used under it ([`bulwark_core::telemetry`]). Durations are read from tokio's
//! clock only while a recorder is installed.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name. Every
//! layer's metrics, `Event`s and `tracing` events and spans are listed together in `TELEMETRY.md`,
//! at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_circuit_breaker_calls_total` | counter | `name`, `outcome` (`success`, `failure`, `ignored`) | calls the breaker let through, by classified outcome |
//! | `bulwark_circuit_breaker_call_duration_seconds` | histogram | `name`, `outcome` | how long each call the breaker let through took, by classified outcome |
//! | `bulwark_circuit_breaker_slow_calls_total` | counter | `name` | let-through calls slower than the slow-call threshold |
//! | `bulwark_circuit_breaker_not_permitted_total` | counter | `name` | calls refused without reaching the inner service |
//! | `bulwark_circuit_breaker_transitions_total` | counter | `name`, `from`, `to` | state changes |
//! | `bulwark_circuit_breaker_state` | gauge | `name`, `state` | 1 for the state the breaker is in, 0 for the five others (`closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`) |

use bulwark_core::telemetry::{Handles, Seen};
use bulwark_core::{CircuitState, Outcome};
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every state, in the order of the state gauge's series.
const STATES: [CircuitState; 6] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::ForcedOpen,
    CircuitState::Disabled,
    CircuitState::MetricsOnly,
];

fn index(state: CircuitState) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(0)
}

/// The help text of every metric the breaker emits.
fn describe() {
    metrics::describe_counter!(
        "bulwark_circuit_breaker_calls_total",
        "Calls the circuit breaker let through, by classified outcome"
    );
    metrics::describe_histogram!(
        "bulwark_circuit_breaker_call_duration_seconds",
        Unit::Seconds,
        "How long each call the circuit breaker let through took, by classified outcome"
    );
    metrics::describe_counter!(
        "bulwark_circuit_breaker_slow_calls_total",
        "Calls let through that took longer than the slow-call threshold"
    );
    metrics::describe_counter!(
        "bulwark_circuit_breaker_not_permitted_total",
        "Calls the circuit breaker refused without reaching the inner service"
    );
    metrics::describe_counter!(
        "bulwark_circuit_breaker_transitions_total",
        "Circuit breaker state changes, by the states left and entered"
    );
    metrics::describe_gauge!(
        "bulwark_circuit_breaker_state",
        "1 for the state the circuit breaker is in, 0 for the others"
    );
}

struct Registered {
    /// success, failure, ignored.
    calls: [Counter; 3],
    durations: [Histogram; 3],
    slow: Counter,
    not_permitted: Counter,
    /// One series per state, in the order of `STATES`.
    state: [Gauge; 6],
}

pub(crate) struct Metrics {
    name: Box<str>,
    /// The index (in `STATES`) of the state the gauge shows, for a recorder met later.
    state: AtomicUsize,
    handles: Handles<Registered>,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        let m = Metrics {
            name: name.into(),
            state: AtomicUsize::new(0),
            handles: Handles::new(),
        };
        // Registered now for a recorder installed first, so the state shows before any call.
        m.with(|_| ());
        m
    }

    #[inline]
    fn with<R>(&self, f: impl FnOnce(&Registered) -> R) -> R {
        self.handles.with(|| self.register(), f)
    }

    #[cold]
    fn register(&self) -> Registered {
        describe();
        let name = &self.name;
        let outcomes = ["success", "failure", "ignored"];
        let r = Registered {
            calls: outcomes.map(|o| counter!("bulwark_circuit_breaker_calls_total", "name" => name.to_string(), "outcome" => o)),
            durations: outcomes.map(|o| histogram!("bulwark_circuit_breaker_call_duration_seconds", "name" => name.to_string(), "outcome" => o)),
            slow: counter!("bulwark_circuit_breaker_slow_calls_total", "name" => name.to_string()),
            not_permitted: counter!("bulwark_circuit_breaker_not_permitted_total", "name" => name.to_string()),
            state: STATES.map(|s| gauge!("bulwark_circuit_breaker_state", "name" => name.to_string(), "state" => s.as_str())),
        };
        set_state(&r.state, self.state.load(Ordering::Relaxed));
        r
    }

    /// A call the breaker let through ended: `seen` is the recorder current when it started,
    /// `seconds` how long it took, if that recorder can record.
    #[inline]
    pub(crate) fn record(&self, seen: Seen, outcome: Outcome, slow: bool, seconds: Option<f64>) {
        let i = match outcome {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Ignored => 2,
        };
        self.handles.with_seen(
            seen,
            || self.register(),
            |m| {
                m.calls[i].increment(1);
                if let Some(s) = seconds {
                    m.durations[i].record(s);
                }
                if slow {
                    m.slow.increment(1);
                }
            },
        );
    }

    pub(crate) fn not_permitted(&self) {
        self.with(|m| m.not_permitted.increment(1));
    }

    pub(crate) fn transition(&self, from: CircuitState, to: CircuitState) {
        counter!(
            "bulwark_circuit_breaker_transitions_total",
            "name" => self.name.to_string(),
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        let now = index(to);
        self.state.store(now, Ordering::Relaxed);
        self.with(|m| set_state(&m.state, now));
    }
}

/// One-hot: 1 for the state at `now`, 0 for the others.
fn set_state(gauges: &[Gauge; 6], now: usize) {
    for (i, g) in gauges.iter().enumerate() {
        g.set(if i == now { 1.0 } else { 0.0 });
    }
}
