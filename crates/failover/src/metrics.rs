//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the set is
//! built: the handles are registered, with their help text, with the recorder current when
//! they are first used under it ([`bulwark_core::telemetry`]). An attempt's duration is read
//! from tokio's clock only while a recorder is installed.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name, `target` the
//! target's (from `target_names`, or its index). Every layer's metrics, `Event`s and `tracing`
//! events and spans are listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_failover_attempts_total` | counter | `name`, `target`, `outcome` (`success`, `error`, `timeout`, `failure_response`) | attempts sent to each target, by how they ended |
//! | `bulwark_failover_attempt_duration_seconds` | histogram | `name`, `target`, `outcome` | how long each attempt took, by target and how it ended (a timeout: the attempt timeout) |

use bulwark_core::telemetry::Handles;
use bulwark_core::FailoverReason;
use metrics::{counter, histogram, Counter, Histogram, Unit};

const OUTCOMES: [&str; 4] = ["success", "error", "timeout", "failure_response"];

/// One target's handles, by outcome (in the order of `OUTCOMES`).
struct Target {
    attempts: [Counter; 4],
    durations: [Histogram; 4],
}

pub(crate) struct Metrics {
    name: Box<str>,
    targets: Box<[Box<str>]>,
    handles: Handles<Box<[Target]>>,
}

impl Metrics {
    pub(crate) fn new(name: &str, targets: &[String]) -> Self {
        let m = Metrics {
            name: name.into(),
            targets: targets.iter().map(|t| t.as_str().into()).collect(),
            handles: Handles::new(),
        };
        m.record(None, 0, None);
        m
    }

    #[cold]
    fn register(&self) -> Box<[Target]> {
        metrics::describe_counter!(
            "bulwark_failover_attempts_total",
            "Attempts the failover set sent to each target, by how they ended"
        );
        metrics::describe_histogram!(
            "bulwark_failover_attempt_duration_seconds",
            Unit::Seconds,
            "How long each attempt the failover set sent took, by target and how it ended"
        );
        self.targets
            .iter()
            .map(|t| Target {
                attempts: OUTCOMES.map(|o| counter!("bulwark_failover_attempts_total", "name" => self.name.to_string(), "target" => t.to_string(), "outcome" => o)),
                durations: OUTCOMES.map(|o| histogram!("bulwark_failover_attempt_duration_seconds", "name" => self.name.to_string(), "target" => t.to_string(), "outcome" => o)),
            })
            .collect()
    }

    /// An attempt to target `index` ended with outcome `slot` (`None`: register only).
    #[inline]
    fn record(&self, slot: Option<usize>, index: usize, seconds: Option<f64>) {
        self.handles.with(
            || self.register(),
            |targets| {
                let (Some(slot), Some(t)) = (slot, targets.get(index)) else {
                    return;
                };
                t.attempts[slot].increment(1);
                if let Some(s) = seconds {
                    t.durations[slot].record(s);
                }
            },
        );
    }

    #[inline]
    pub(crate) fn success(&self, index: usize, seconds: Option<f64>) {
        self.record(Some(0), index, seconds);
    }

    pub(crate) fn failure(&self, index: usize, reason: FailoverReason, seconds: Option<f64>) {
        let slot = match reason {
            FailoverReason::Error => 1,
            FailoverReason::Timeout => 2,
            _ => 3,
        };
        self.record(Some(slot), index, seconds);
    }
}
