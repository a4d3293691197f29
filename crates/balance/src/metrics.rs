//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! The recorder (a Prometheus exporter, say) may be installed before or after the balancer is
//! built: an endpoint's handles are registered, with their help text, with the recorder current
//! when they are first used under it ([`bulwark_core::telemetry`]): when it joins, and at its
//! next request after a recorder is installed. Durations are read from tokio's clock only while
//! a recorder is installed.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name, `target` the
//! endpoint's (from `endpoint_names`, or its index). Every layer's metrics, `Event`s and `tracing`
//! events and spans are listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_balance_requests_total` | counter | `name`, `target`, `outcome` (`success`, `failure`) | requests sent to the endpoint, by classified outcome |
//! | `bulwark_balance_request_duration_seconds` | histogram | `name`, `target`, `outcome` (`success`, `failure`) | how long each request to the endpoint took, by classified outcome (Envoy's `upstream_rq_time`) |
//! | `bulwark_balance_ejections_total` | counter | `name`, `target` | times the endpoint was ejected |
//! | `bulwark_balance_endpoint_healthy` | gauge | `name`, `target` | 1 while healthy, 0 while its health check says otherwise or once it has left the set |
//! | `bulwark_balance_endpoint_ejected` | gauge | `name`, `target` | 1 while ejected, 0 otherwise (and once it has left the set) |

use bulwark_core::telemetry::Handles;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};
use std::sync::atomic::{AtomicBool, Ordering};

fn describe() {
    metrics::describe_counter!(
        "bulwark_balance_requests_total",
        "Requests the balancer sent to each endpoint, by classified outcome"
    );
    metrics::describe_histogram!(
        "bulwark_balance_request_duration_seconds",
        Unit::Seconds,
        "How long each request the balancer sent to an endpoint took, by classified outcome"
    );
    metrics::describe_counter!(
        "bulwark_balance_ejections_total",
        "Times the balancer ejected the endpoint"
    );
    metrics::describe_gauge!(
        "bulwark_balance_endpoint_healthy",
        "1 while the endpoint is healthy, 0 while its health check says otherwise"
    );
    metrics::describe_gauge!(
        "bulwark_balance_endpoint_ejected",
        "1 while the endpoint is ejected, else 0"
    );
}

struct Registered {
    /// success, failure.
    requests: [Counter; 2],
    durations: [Histogram; 2],
    ejections: Counter,
    healthy: Gauge,
    ejected: Gauge,
}

/// One endpoint's metrics.
pub(crate) struct EndpointMetrics {
    balancer: Box<str>,
    endpoint: Box<str>,
    /// What the gauges show, for a recorder met later.
    healthy: AtomicBool,
    ejected: AtomicBool,
    handles: Handles<Registered>,
}

impl std::fmt::Debug for EndpointMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointMetrics")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl EndpointMetrics {
    pub(crate) fn new(balancer: &str, endpoint: &str) -> Self {
        let m = EndpointMetrics {
            balancer: balancer.into(),
            endpoint: endpoint.into(),
            healthy: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            handles: Handles::new(),
        };
        m.with(|_| ());
        m
    }

    #[inline]
    fn with(&self, f: impl FnOnce(&Registered)) {
        self.handles.with(|| self.register(), f)
    }

    #[cold]
    fn register(&self) -> Registered {
        describe();
        let (b, e) = (&self.balancer, &self.endpoint);
        let outcomes = ["success", "failure"];
        let r = Registered {
            requests: outcomes.map(|o| counter!("bulwark_balance_requests_total", "name" => b.to_string(), "target" => e.to_string(), "outcome" => o)),
            durations: outcomes.map(|o| histogram!("bulwark_balance_request_duration_seconds", "name" => b.to_string(), "target" => e.to_string(), "outcome" => o)),
            ejections: counter!("bulwark_balance_ejections_total", "name" => b.to_string(), "target" => e.to_string()),
            healthy: gauge!("bulwark_balance_endpoint_healthy", "name" => b.to_string(), "target" => e.to_string()),
            ejected: gauge!("bulwark_balance_endpoint_ejected", "name" => b.to_string(), "target" => e.to_string()),
        };
        r.healthy.set(flag(&self.healthy));
        r.ejected.set(flag(&self.ejected));
        r
    }

    /// A request to the endpoint ended, `seconds` after it was sent (if a recorder was
    /// installed then).
    #[inline]
    pub(crate) fn request(&self, failed: bool, seconds: Option<f64>) {
        let i = usize::from(failed);
        self.with(|m| {
            m.requests[i].increment(1);
            if let Some(s) = seconds {
                m.durations[i].record(s);
            }
        });
    }

    /// The endpoint was ejected.
    pub(crate) fn ejected(&self) {
        self.ejected.store(true, Ordering::Relaxed);
        self.with(|m| {
            m.ejections.increment(1);
            m.ejected.set(1.0);
        });
    }

    /// The endpoint's ejection ended (`false`).
    pub(crate) fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Ordering::Relaxed);
        self.with(|m| m.ejected.set(flag(&self.ejected)));
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.with(|m| m.healthy.set(flag(&self.healthy)));
    }
}

fn flag(b: &AtomicBool) -> f64 {
    if b.load(Ordering::Relaxed) {
        1.0
    } else {
        0.0
    }
}
