//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when the layer is built, so install your recorder (a Prometheus
//! exporter, say) before building it. Every layer's metrics, `Event`s and `tracing` events are
//! listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_rate_limit_refused_total` | counter | `name` | calls refused for want of a token (a fail-fast call, or a readiness wait turned away: once per wait) |
//! | `bulwark_rate_limit_waited_total` | counter | `name` | calls that waited in `poll_ready` for a reserved token (fail-fast mode with `max_wait`) |
//!
//! Admitted calls are not counted: a counter shared by every thread on the admitted path would
//! cost more than the limiter itself; count requests where you serve them.

use metrics::{counter, Counter};

pub(crate) struct Metrics {
    pub(crate) refused: Counter,
    pub(crate) waited: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        Metrics {
            refused: counter!("bulwark_rate_limit_refused_total", "name" => name.to_owned()),
            waited: counter!("bulwark_rate_limit_waited_total", "name" => name.to_owned()),
        }
    }
}
