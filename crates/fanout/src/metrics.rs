//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when a fan-out is built: install your recorder first.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name, `target` the
//! target's (from `target_names`, or its index). Every layer's metrics, `Event`s and `tracing`
//! events and spans are listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_fanout_requests_total` | counter | `name`, `target`, `outcome` (`success`, `failure`) | each target's part of each request, by how it ended |

use bulwark_core::Outcome;
use metrics::{counter, Counter};
use std::sync::Arc;

pub(crate) struct Metrics {
    per_target: Vec<[Counter; 2]>,
}

impl Metrics {
    pub(crate) fn new(name: &str, targets: &[Arc<str>]) -> Self {
        let c = |target: &str, outcome: &'static str| counter!("bulwark_fanout_requests_total", "name" => name.to_owned(), "target" => target.to_owned(), "outcome" => outcome);
        Metrics {
            per_target: targets
                .iter()
                .map(|t| [c(t, "success"), c(t, "failure")])
                .collect(),
        }
    }

    #[inline]
    pub(crate) fn record(&self, target: usize, outcome: Outcome) {
        let i = usize::from(outcome != Outcome::Success);
        self.per_target[target][i].increment(1);
    }
}
