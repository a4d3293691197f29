//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when the layer is built: install your recorder first.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name. Every
//! layer's metrics, `Event`s and `tracing` events are listed together in `TELEMETRY.md`, at the
//! root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_hedge_hedges_total` | counter | `name` | hedges sent (attempts after the first) |
//! | `bulwark_hedge_wins_total` | counter | `name` | requests whose answer came from a hedge |
//! | `bulwark_hedge_refused_total` | counter | `name`, `reason` | hedges due but not sent, by reason: `budget`, `concurrency_cap`, `pushback`, `retry_after_too_long` |

use bulwark_core::GiveUpReason;
use metrics::{counter, Counter};

pub(crate) struct Metrics {
    pub(crate) hedges: Counter,
    pub(crate) wins: Counter,
    refused: [Counter; 4],
}

const REASONS: [GiveUpReason; 4] = [
    GiveUpReason::Budget,
    GiveUpReason::ConcurrencyCap,
    GiveUpReason::Pushback,
    GiveUpReason::RetryAfterTooLong,
];

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        Metrics {
            hedges: counter!("bulwark_hedge_hedges_total", "name" => name.to_owned()),
            wins: counter!("bulwark_hedge_wins_total", "name" => name.to_owned()),
            refused: REASONS.map(|r| {
                counter!("bulwark_hedge_refused_total", "name" => name.to_owned(), "reason" => r.as_str())
            }),
        }
    }

    pub(crate) fn refused(&self, reason: GiveUpReason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.refused[i].increment(1);
        }
    }
}
