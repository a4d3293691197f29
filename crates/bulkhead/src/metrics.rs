//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the layer is
//! built: the handles are registered, with their help text, with the recorder current when
//! they are first used under it ([`bulwark_core::telemetry`]), the gauges set to what they
//! stand for then. A queued caller's wait is read from tokio's clock only while a recorder is
//! installed. A fixed bulkhead and an adaptive limit report the
//! same metrics; `name` is the layer's configured name (give each target's bulkhead its own,
//! so overflow is counted per target). Every layer's metrics, `Event`s and `tracing` events are
//! listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_bulkhead_rejected_total` | counter | `name`, `reason` (`full`, `queue_full`, `queue_timeout`, `not_ready`) | calls turned away (sheds), by why |
//! | `bulwark_bulkhead_queue_wait_seconds` | histogram | `name` | how long each caller that was queued waited, until it was let in or its wait ran out |
//! | `bulwark_bulkhead_in_flight` | gauge | `name` | calls in flight |
//! | `bulwark_bulkhead_queued` | gauge | `name` | callers waiting in the queue |
//! | `bulwark_bulkhead_limit` | gauge | `name` | the limit on calls in flight (moved by an adaptive controller, or by hand) |
//! | `bulwark_bulkhead_min_rtt_seconds` | gauge | `name` | an adaptive limit's lowest latency measured without load |

use crate::limiter::Limiter;
use bulwark_core::telemetry::Handles;
use bulwark_core::OverflowReason;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn describe() {
    metrics::describe_counter!(
        "bulwark_bulkhead_rejected_total",
        "Calls the bulkhead turned away without reaching the service, by why"
    );
    metrics::describe_histogram!(
        "bulwark_bulkhead_queue_wait_seconds",
        Unit::Seconds,
        "How long each queued caller waited, until it was let in or its wait ran out"
    );
    metrics::describe_gauge!(
        "bulwark_bulkhead_in_flight",
        "Calls in flight through the bulkhead"
    );
    metrics::describe_gauge!(
        "bulwark_bulkhead_queued",
        "Callers waiting in the bulkhead's queue"
    );
    metrics::describe_gauge!(
        "bulwark_bulkhead_limit",
        "The bulkhead's limit on calls in flight"
    );
    metrics::describe_gauge!(
        "bulwark_bulkhead_min_rtt_seconds",
        Unit::Seconds,
        "The adaptive limit's latency measured without load (0 for a fixed bulkhead)"
    );
}

struct Registered {
    /// full, queue_full, queue_timeout, not_ready.
    rejected: [Counter; 4],
    queue_wait: Histogram,
    in_flight: Gauge,
    queued: Gauge,
    limit: Gauge,
    min_rtt: Gauge,
}

pub(crate) struct Metrics {
    name: Box<str>,
    /// The latest minimum RTT (f64 bits, seconds), for a recorder met later.
    min_rtt: AtomicU64,
    handles: Handles<Registered>,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        Metrics {
            name: name.into(),
            min_rtt: AtomicU64::new(0f64.to_bits()),
            handles: Handles::new(),
        }
    }

    /// Runs `f` with the handles of the current recorder; registering them sets the gauges
    /// from `limiter`, and tells `f` so (`true`: a change already counted in the gauges).
    #[inline]
    fn with_fresh(&self, limiter: &Limiter, f: impl FnOnce(&Registered, bool)) {
        let fresh = std::cell::Cell::new(false);
        self.handles.with(
            || {
                fresh.set(true);
                describe();
                let name = &self.name;
                let rejected = |reason: OverflowReason| counter!("bulwark_bulkhead_rejected_total", "name" => name.to_string(), "reason" => reason.as_str());
                let m = Registered {
                    rejected: [
                        rejected(OverflowReason::Full),
                        rejected(OverflowReason::QueueFull),
                        rejected(OverflowReason::QueueTimeout),
                        rejected(OverflowReason::NotReady),
                    ],
                    queue_wait: histogram!("bulwark_bulkhead_queue_wait_seconds", "name" => name.to_string()),
                    in_flight: gauge!("bulwark_bulkhead_in_flight", "name" => name.to_string()),
                    queued: gauge!("bulwark_bulkhead_queued", "name" => name.to_string()),
                    limit: gauge!("bulwark_bulkhead_limit", "name" => name.to_string()),
                    min_rtt: gauge!("bulwark_bulkhead_min_rtt_seconds", "name" => name.to_string()),
                };
                m.in_flight.set(f64::from(limiter.in_flight()));
                m.queued.set(f64::from(limiter.queued()));
                m.limit.set(f64::from(limiter.limit()));
                m.min_rtt.set(f64::from_bits(self.min_rtt.load(Ordering::Relaxed)));
                m
            },
            |m| f(m, fresh.get()),
        )
    }

    #[inline]
    fn with(&self, limiter: &Limiter, f: impl FnOnce(&Registered)) {
        self.with_fresh(limiter, |m, _| f(m));
    }

    /// Registers the handles (for a recorder installed first, so the gauges show at once).
    pub(crate) fn register(&self, limiter: &Limiter) {
        self.with(limiter, |_| ());
    }

    pub(crate) fn rejected(&self, limiter: &Limiter, reason: OverflowReason) {
        let i = match reason {
            OverflowReason::Full => 0,
            OverflowReason::QueueFull => 1,
            OverflowReason::QueueTimeout => 2,
            _ => 3,
        };
        self.with(limiter, |m| m.rejected[i].increment(1));
    }

    /// A permit was taken (already counted by `limiter`).
    #[inline]
    pub(crate) fn admitted(&self, limiter: &Limiter) {
        self.with_fresh(limiter, |m, fresh| {
            if !fresh {
                m.in_flight.increment(1.0);
            }
        });
    }

    /// A permit was given back (already counted by `limiter`).
    #[inline]
    pub(crate) fn released(&self, limiter: &Limiter) {
        self.with_fresh(limiter, |m, fresh| {
            if !fresh {
                m.in_flight.decrement(1.0);
            }
        });
    }

    pub(crate) fn queued(&self, limiter: &Limiter) {
        self.with(limiter, |m| m.queued.set(f64::from(limiter.queued())));
    }

    /// A queued caller waited `seconds`, and was let in or timed out.
    pub(crate) fn queue_wait(&self, limiter: &Limiter, seconds: f64) {
        self.with(limiter, |m| m.queue_wait.record(seconds));
    }

    pub(crate) fn limit(&self, limiter: &Limiter) {
        self.with(limiter, |m| m.limit.set(f64::from(limiter.limit())));
    }

    pub(crate) fn min_rtt(&self, limiter: &Limiter, min: Duration) {
        let min = min.as_secs_f64();
        self.min_rtt.store(min.to_bits(), Ordering::Relaxed);
        self.with(limiter, |m| m.min_rtt.set(min));
    }
}
