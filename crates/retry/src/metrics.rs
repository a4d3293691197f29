//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the layer is
//! built: the handles are registered, with their help text, with the recorder current when
//! they are first used under it ([`bulwark_core::telemetry`]). A request's duration is read
//! from tokio's clock only while a recorder is installed.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name. Every
//! layer's metrics, `Event`s and `tracing` events and spans are listed together in `TELEMETRY.md`,
//! at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_retry_retries_total` | counter | `name` | retries decided (attempts after the first), counted when the backoff starts: one the request never sends (dropped during the wait, or ended by its deadline first) counts too |
//! | `bulwark_retry_request_duration_seconds` | histogram | `name` | how long each request took, from its first attempt to the answer returned (waits between attempts included) |
//! | `bulwark_retry_attempts` | histogram | `name` | attempts each request took (1: no retry) |
//! | `bulwark_retry_gave_up_total` | counter | `name`, `reason` | failed attempts not retried, by reason: `max_attempts`, `budget`, `deadline`, `not_resendable`, `retry_after_too_long`, `not_retryable`, `pushback` (gRPC), `concurrency_cap` |

use bulwark_core::telemetry::Handles;
use bulwark_core::GiveUpReason;
use metrics::{counter, histogram, Counter, Histogram, Unit};

struct Registered {
    retries: Counter,
    gave_up: [Counter; 8],
    duration: Histogram,
    attempts: Histogram,
}

pub(crate) struct Metrics {
    name: Box<str>,
    handles: Handles<Registered>,
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

fn describe() {
    metrics::describe_counter!(
        "bulwark_retry_retries_total",
        "Retries decided (attempts after the first), counted when the backoff starts"
    );
    metrics::describe_counter!(
        "bulwark_retry_gave_up_total",
        "Failed attempts that were not retried, by why"
    );
    metrics::describe_histogram!(
        "bulwark_retry_request_duration_seconds",
        Unit::Seconds,
        "How long each request took through the retry layer, every attempt and wait included"
    );
    metrics::describe_histogram!(
        "bulwark_retry_attempts",
        Unit::Count,
        "Attempts each request took through the retry layer (1: no retry)"
    );
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

    #[inline]
    fn with(&self, f: impl FnOnce(&Registered)) {
        self.handles.with(
            || {
                describe();
                let name = &self.name;
                Registered {
                    retries: counter!("bulwark_retry_retries_total", "name" => name.to_string()),
                    gave_up: REASONS.map(|r| {
                        counter!("bulwark_retry_gave_up_total", "name" => name.to_string(), "reason" => r.as_str())
                    }),
                    duration: histogram!("bulwark_retry_request_duration_seconds", "name" => name.to_string()),
                    attempts: histogram!("bulwark_retry_attempts", "name" => name.to_string()),
                }
            },
            f,
        )
    }

    pub(crate) fn retried(&self) {
        self.with(|m| m.retries.increment(1));
    }

    pub(crate) fn gave_up(&self, reason: GiveUpReason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.with(|m| m.gave_up[i].increment(1));
        }
    }

    /// A request ended after `attempts` attempts, `seconds` after it started (if a recorder
    /// was installed then).
    #[inline]
    pub(crate) fn request(&self, attempts: u32, seconds: Option<f64>) {
        self.with(|m| {
            m.attempts.record(f64::from(attempts));
            if let Some(s) = seconds {
                m.duration.record(s);
            }
        });
    }
}
