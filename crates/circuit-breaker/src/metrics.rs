//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when the breaker is built, so install your recorder (a Prometheus
//! exporter, say) before building the layer.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name. Every
//! layer's metrics, `Event`s and `tracing` events and spans are listed together in `TELEMETRY.md`,
//! at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_circuit_breaker_calls_total` | counter | `name`, `outcome` (`success`, `failure`, `ignored`) | calls the breaker let through, by classified outcome |
//! | `bulwark_circuit_breaker_slow_calls_total` | counter | `name` | let-through calls slower than the slow-call threshold |
//! | `bulwark_circuit_breaker_not_permitted_total` | counter | `name` | calls refused without reaching the inner service |
//! | `bulwark_circuit_breaker_transitions_total` | counter | `name`, `from`, `to` | state changes |
//! | `bulwark_circuit_breaker_state` | gauge | `name` | 0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled, 5 metrics-only |

use bulwark_core::{CircuitState, Outcome};
use metrics::{counter, gauge, Counter, Gauge};

/// The value of the state gauge for `state`.
pub fn state_gauge_value(state: CircuitState) -> f64 {
    match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
        CircuitState::ForcedOpen => 3.0,
        CircuitState::Disabled => 4.0,
        _ => 5.0,
    }
}

pub(crate) struct Metrics {
    success: Counter,
    failure: Counter,
    ignored: Counter,
    slow: Counter,
    pub(crate) not_permitted: Counter,
    state: Gauge,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        let name = name.to_owned();
        let m = Metrics {
            success: counter!("bulwark_circuit_breaker_calls_total", "name" => name.clone(), "outcome" => "success"),
            failure: counter!("bulwark_circuit_breaker_calls_total", "name" => name.clone(), "outcome" => "failure"),
            ignored: counter!("bulwark_circuit_breaker_calls_total", "name" => name.clone(), "outcome" => "ignored"),
            slow: counter!("bulwark_circuit_breaker_slow_calls_total", "name" => name.clone()),
            not_permitted: counter!("bulwark_circuit_breaker_not_permitted_total", "name" => name.clone()),
            state: gauge!("bulwark_circuit_breaker_state", "name" => name),
        };
        m.state.set(state_gauge_value(CircuitState::Closed));
        m
    }

    #[inline]
    pub(crate) fn record(&self, outcome: Outcome, slow: bool) {
        match outcome {
            Outcome::Success => self.success.increment(1),
            Outcome::Failure => self.failure.increment(1),
            Outcome::Ignored => self.ignored.increment(1),
        }
        if slow {
            self.slow.increment(1);
        }
    }

    pub(crate) fn transition(&self, name: &str, from: CircuitState, to: CircuitState) {
        counter!(
            "bulwark_circuit_breaker_transitions_total",
            "name" => name.to_owned(),
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        self.state.set(state_gauge_value(to));
    }
}
