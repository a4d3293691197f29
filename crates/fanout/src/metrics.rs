//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the fan-out is
//! built: the handles are registered, with their help text, with the recorder current when
//! they are first used under it ([`bulwark_core::telemetry`]). Durations are read from tokio's
//! clock only while a recorder is installed.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name, `target` the
//! target's (from `target_names`, or its index). Every layer's metrics, `Event`s and `tracing`
//! events and spans are listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_fanout_requests_total` | counter | `name`, `target`, `outcome` (`success`, `failure`) | each target's part of each request, by how it ended |
//! | `bulwark_fanout_target_duration_seconds` | histogram | `name`, `target`, `outcome` | how long after the fan-out started each target's part ended (a timeout at the branch or fan-out deadline) |

use bulwark_core::telemetry::Handles;
use bulwark_core::Outcome;
use metrics::{counter, histogram, Counter, Histogram, Unit};
use std::sync::Arc;

const OUTCOMES: [&str; 2] = ["success", "failure"];

/// One target's handles: success, failure.
struct Target {
    requests: [Counter; 2],
    durations: [Histogram; 2],
}

pub(crate) struct Metrics {
    name: Box<str>,
    targets: Box<[Arc<str>]>,
    handles: Handles<Box<[Target]>>,
}

impl Metrics {
    pub(crate) fn new(name: &str, targets: &[Arc<str>]) -> Self {
        let m = Metrics {
            name: name.into(),
            targets: targets.into(),
            handles: Handles::new(),
        };
        m.handles.with(|| m.register(), |_| ());
        m
    }

    #[cold]
    fn register(&self) -> Box<[Target]> {
        metrics::describe_counter!(
            "bulwark_fanout_requests_total",
            "Each fan-out target's part of each request, by how it ended"
        );
        metrics::describe_histogram!(
            "bulwark_fanout_target_duration_seconds",
            Unit::Seconds,
            "How long after the fan-out started each target's part ended, by target and outcome"
        );
        self.targets
            .iter()
            .map(|t| Target {
                requests: OUTCOMES.map(|o| counter!("bulwark_fanout_requests_total", "name" => self.name.to_string(), "target" => t.to_string(), "outcome" => o)),
                durations: OUTCOMES.map(|o| histogram!("bulwark_fanout_target_duration_seconds", "name" => self.name.to_string(), "target" => t.to_string(), "outcome" => o)),
            })
            .collect()
    }

    #[inline]
    pub(crate) fn record(&self, target: usize, outcome: Outcome, seconds: Option<f64>) {
        let i = usize::from(outcome != Outcome::Success);
        self.handles.with(
            || self.register(),
            |targets| {
                if let Some(t) = targets.get(target) {
                    t.requests[i].increment(1);
                    if let Some(s) = seconds {
                        t.durations[i].record(s);
                    }
                }
            },
        );
    }
}
