//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the layer is
//! built: the handles are registered, with their help text, with the recorder current when
//! they are first used under it ([`bulwark_core::telemetry`]). Durations are read from tokio's
//! clock only while a recorder is installed.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name. Every
//! layer's metrics, `Event`s and `tracing` events are listed together in `TELEMETRY.md`, at the
//! root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_hedge_hedges_total` | counter | `name` | hedges sent (attempts after the first) |
//! | `bulwark_hedge_wins_total` | counter | `name` | requests whose answer came from a hedge |
//! | `bulwark_hedge_request_duration_seconds` | histogram | `name` | how long each request took through the hedge, whichever attempt answered (the latency hedging shortens) |
//! | `bulwark_hedge_refused_total` | counter | `name`, `reason` | hedges due but not sent, by reason: `budget`, `concurrency_cap`, `pushback`, `retry_after_too_long`, `deadline` |

use bulwark_core::telemetry::Handles;
use bulwark_core::GiveUpReason;
use metrics::{counter, histogram, Counter, Histogram, Unit};

struct Registered {
    hedges: Counter,
    wins: Counter,
    refused: [Counter; 5],
    duration: Histogram,
}

pub(crate) struct Metrics {
    name: Box<str>,
    handles: Handles<Registered>,
}

const REASONS: [GiveUpReason; 5] = [
    GiveUpReason::Budget,
    GiveUpReason::ConcurrencyCap,
    GiveUpReason::Pushback,
    GiveUpReason::RetryAfterTooLong,
    GiveUpReason::Deadline,
];

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
                metrics::describe_counter!("bulwark_hedge_hedges_total", "Hedges sent (attempts after the first)");
                metrics::describe_counter!("bulwark_hedge_wins_total", "Requests whose answer came from a hedge, not the first attempt");
                metrics::describe_counter!("bulwark_hedge_refused_total", "Hedges that were due and not sent, by why");
                metrics::describe_histogram!(
                    "bulwark_hedge_request_duration_seconds",
                    Unit::Seconds,
                    "How long each request took through the hedge, whichever attempt answered"
                );
                let name = &self.name;
                Registered {
                    hedges: counter!("bulwark_hedge_hedges_total", "name" => name.to_string()),
                    wins: counter!("bulwark_hedge_wins_total", "name" => name.to_string()),
                    refused: REASONS.map(|r| {
                        counter!("bulwark_hedge_refused_total", "name" => name.to_string(), "reason" => r.as_str())
                    }),
                    duration: histogram!("bulwark_hedge_request_duration_seconds", "name" => name.to_string()),
                }
            },
            f,
        )
    }

    pub(crate) fn hedged(&self) {
        self.with(|m| m.hedges.increment(1));
    }

    pub(crate) fn won(&self) {
        self.with(|m| m.wins.increment(1));
    }

    pub(crate) fn refused(&self, reason: GiveUpReason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.with(|m| m.refused[i].increment(1));
        }
    }

    /// A request ended `seconds` after it started (if a recorder was installed then).
    #[inline]
    pub(crate) fn answered(&self, seconds: Option<f64>) {
        if let Some(s) = seconds {
            self.with(|m| m.duration.record(s));
        }
    }
}
