//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the layer is
//! built: the handles are registered, with their help text, with the recorder current when
//! they are first used under it ([`bulwark_core::telemetry`]). Every layer's metrics, `Event`s and `tracing` events are
//! listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_rate_limit_refused_total` | counter | `name` | calls refused for want of a token (a fail-fast call, or a readiness wait turned away: once per wait) |
//! | `bulwark_rate_limit_waited_total` | counter | `name` | calls that waited in `poll_ready` for a reserved token (fail-fast mode with `max_wait`) |
//!
//! Admitted calls are not counted: a counter shared by every thread on the admitted path would
//! cost more than the limiter itself; count requests where you serve them.

use bulwark_core::telemetry::Handles;
use metrics::{counter, Counter};

struct Registered {
    refused: Counter,
    waited: Counter,
}

pub(crate) struct Metrics {
    name: Box<str>,
    handles: Handles<Registered>,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        let m = Metrics {
            name: name.into(),
            handles: Handles::new(),
        };
        m.with(|_| ());
        m
    }

    fn with(&self, f: impl FnOnce(&Registered)) {
        self.handles.with(
            || {
                metrics::describe_counter!(
                    "bulwark_rate_limit_refused_total",
                    "Calls the rate limiter refused for want of a token"
                );
                metrics::describe_counter!(
                    "bulwark_rate_limit_waited_total",
                    "Calls that waited in poll_ready for a token they reserved"
                );
                Registered {
                    refused: counter!("bulwark_rate_limit_refused_total", "name" => self.name.to_string()),
                    waited: counter!("bulwark_rate_limit_waited_total", "name" => self.name.to_string()),
                }
            },
            f,
        )
    }

    pub(crate) fn refused(&self) {
        self.with(|m| m.refused.increment(1));
    }

    pub(crate) fn waited(&self) {
        self.with(|m| m.waited.increment(1));
    }
}
