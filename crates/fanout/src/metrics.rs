//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_fanout_target_total` | counter | `fanout`, `target`, `outcome` (`success`, `failure`) | each target's part of each request, by how it ended (the seed's `target_domain_success_counter_total`) |

use bulwark_core::Outcome;
use metrics::{counter, Counter};
use std::sync::Arc;

pub(crate) struct Metrics {
    per_target: Vec<[Counter; 2]>,
}

impl Metrics {
    pub(crate) fn new(name: &str, targets: &[Arc<str>]) -> Self {
        let c = |target: &str, outcome: &'static str| counter!("bulwark_fanout_target_total", "fanout" => name.to_owned(), "target" => target.to_owned(), "outcome" => outcome);
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
