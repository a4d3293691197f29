//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when the bulkhead is built, so install your recorder (a Prometheus
//! exporter, say) before building the layer. A fixed bulkhead and an adaptive limit report the
//! same metrics; `name` is the layer's configured name (give each target's bulkhead its own,
//! so overflow is counted per target). Every layer's metrics, `Event`s and `tracing` events are
//! listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_bulkhead_rejected_total` | counter | `name`, `reason` (`full`, `queue_full`, `queue_timeout`, `not_ready`) | calls turned away (sheds), by why |
//! | `bulwark_bulkhead_in_flight` | gauge | `name` | calls in flight |
//! | `bulwark_bulkhead_queued` | gauge | `name` | callers waiting in the queue |
//! | `bulwark_bulkhead_limit` | gauge | `name` | the limit on calls in flight (moved by an adaptive controller, or by hand) |
//! | `bulwark_bulkhead_min_rtt_seconds` | gauge | `name` | an adaptive limit's lowest latency measured without load |

use bulwark_core::OverflowReason;
use metrics::{counter, gauge, Counter, Gauge};
use std::time::Duration;

pub(crate) struct Metrics {
    full: Counter,
    queue_full: Counter,
    queue_timeout: Counter,
    not_ready: Counter,
    pub(crate) in_flight: Gauge,
    queued: Gauge,
    limit: Gauge,
    min_rtt: Gauge,
}

impl Metrics {
    pub(crate) fn new(name: &str, limit: u32) -> Self {
        let name = name.to_owned();
        let rejected = |reason: OverflowReason| counter!("bulwark_bulkhead_rejected_total", "name" => name.clone(), "reason" => reason.as_str());
        let m = Metrics {
            full: rejected(OverflowReason::Full),
            queue_full: rejected(OverflowReason::QueueFull),
            queue_timeout: rejected(OverflowReason::QueueTimeout),
            not_ready: rejected(OverflowReason::NotReady),
            in_flight: gauge!("bulwark_bulkhead_in_flight", "name" => name.clone()),
            queued: gauge!("bulwark_bulkhead_queued", "name" => name.clone()),
            limit: gauge!("bulwark_bulkhead_limit", "name" => name.clone()),
            min_rtt: gauge!("bulwark_bulkhead_min_rtt_seconds", "name" => name),
        };
        m.limit.set(f64::from(limit));
        m
    }

    pub(crate) fn rejected(&self, reason: OverflowReason) {
        match reason {
            OverflowReason::Full => self.full.increment(1),
            OverflowReason::QueueFull => self.queue_full.increment(1),
            OverflowReason::QueueTimeout => self.queue_timeout.increment(1),
            _ => self.not_ready.increment(1),
        }
    }

    pub(crate) fn queued(&self, queued: u32) {
        self.queued.set(f64::from(queued));
    }

    pub(crate) fn limit(&self, limit: u32) {
        self.limit.set(f64::from(limit));
    }

    pub(crate) fn min_rtt(&self, min: Duration) {
        self.min_rtt.set(min.as_secs_f64());
    }
}
