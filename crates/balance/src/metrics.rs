//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Handles are registered when an endpoint joins the balancer: install your recorder before
//! building it.
//!
//! Labels follow the scheme every layer shares: `name` is the layer's configured name, `target` the
//! endpoint's (from `endpoint_names`, or its index). Every layer's metrics, `Event`s and `tracing`
//! events and spans are listed together in `TELEMETRY.md`, at the root of the repository.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_balance_requests_total` | counter | `name`, `target`, `outcome` (`success`, `failure`) | requests sent to the endpoint, by classified outcome |
//! | `bulwark_balance_ejections_total` | counter | `name`, `target` | times the endpoint was ejected |
//! | `bulwark_balance_endpoint_healthy` | gauge | `name`, `target` | 1 while healthy, 0 while its health check says otherwise |
//! | `bulwark_balance_endpoint_ejected` | gauge | `name`, `target` | 1 while ejected |

use metrics::{counter, gauge, Counter, Gauge};

#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    pub(crate) success: Counter,
    pub(crate) failure: Counter,
    pub(crate) ejections: Counter,
    pub(crate) healthy: Gauge,
    pub(crate) ejected: Gauge,
}

impl EndpointMetrics {
    pub(crate) fn new(balancer: &str, endpoint: &str) -> Self {
        let (b, e) = (balancer.to_owned(), endpoint.to_owned());
        let m = EndpointMetrics {
            success: counter!("bulwark_balance_requests_total", "name" => b.clone(), "target" => e.clone(), "outcome" => "success"),
            failure: counter!("bulwark_balance_requests_total", "name" => b.clone(), "target" => e.clone(), "outcome" => "failure"),
            ejections: counter!("bulwark_balance_ejections_total", "name" => b.clone(), "target" => e.clone()),
            healthy: gauge!("bulwark_balance_endpoint_healthy", "name" => b.clone(), "target" => e.clone()),
            ejected: gauge!("bulwark_balance_endpoint_ejected", "name" => b, "target" => e),
        };
        m.healthy.set(1.0);
        m.ejected.set(0.0);
        m
    }
}
