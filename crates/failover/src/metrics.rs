//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when the failover set is built: install your recorder first.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name, `target` the
//! target's (from `target_names`, or its index). Every layer's metrics, `Event`s and `tracing`
//! events and spans are listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_failover_attempts_total` | counter | `name`, `target`, `outcome` (`success`, `error`, `timeout`, `failure_response`) | attempts sent to each target, by how they ended |

use bulwark_core::FailoverReason;
use metrics::{counter, Counter};

pub(crate) struct Metrics {
    /// Per target: success, error, timeout, failure_response.
    per_target: Vec<[Counter; 4]>,
}

impl Metrics {
    pub(crate) fn new(name: &str, targets: &[String]) -> Self {
        let c = |target: &str, outcome: &'static str| {
            counter!(
                "bulwark_failover_attempts_total",
                "name" => name.to_owned(),
                "target" => target.to_owned(),
                "outcome" => outcome
            )
        };
        Metrics {
            per_target: targets
                .iter()
                .map(|t| {
                    [
                        c(t, "success"),
                        c(t, "error"),
                        c(t, "timeout"),
                        c(t, "failure_response"),
                    ]
                })
                .collect(),
        }
    }

    #[inline]
    pub(crate) fn success(&self, index: usize) {
        self.per_target[index][0].increment(1);
    }

    pub(crate) fn failure(&self, index: usize, reason: FailoverReason) {
        let slot = match reason {
            FailoverReason::Error => 1,
            FailoverReason::Timeout => 2,
            _ => 3,
        };
        self.per_target[index][slot].increment(1);
    }
}
