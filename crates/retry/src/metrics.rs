//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when the layer is built: install your recorder first.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name. Every
//! layer's metrics, `Event`s and `tracing` events and spans are listed together in `TELEMETRY.md`,
//! at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_retry_retries_total` | counter | `name` | retries sent (attempts after the first) |
//! | `bulwark_retry_gave_up_total` | counter | `name`, `reason` | failed attempts not retried, by reason: `max_attempts`, `budget`, `deadline`, `not_resendable`, `retry_after_too_long`, `not_retryable`, `pushback` (gRPC), `concurrency_cap` |

use bulwark_core::GiveUpReason;
use metrics::{counter, Counter};

pub(crate) struct Metrics {
    pub(crate) retries: Counter,
    gave_up: [Counter; 8],
}

const REASONS: [GiveUpReason; 8] = [
    GiveUpReason::MaxAttempts,
    GiveUpReason::Budget,
    GiveUpReason::Deadline,
    GiveUpReason::NotResendable,
    GiveUpReason::RetryAfterTooLong,
    GiveUpReason::NotRetryable,
    GiveUpReason::Pushback,
    GiveUpReason::ConcurrencyCap,
];

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        Metrics {
            retries: counter!("bulwark_retry_retries_total", "name" => name.to_owned()),
            gave_up: REASONS.map(|r| {
                counter!("bulwark_retry_gave_up_total", "name" => name.to_owned(), "reason" => r.as_str())
            }),
        }
    }

    pub(crate) fn gave_up(&self, reason: GiveUpReason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.gave_up[i].increment(1);
        }
    }
}
