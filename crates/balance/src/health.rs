//! Active health checks: a probe per endpoint, run by the balancer on a background task. The
//! check itself (one probe, the thresholds, the jittered interval) is `bulwark_health`'s, the
//! same as a health gate's.

use crate::handle::Endpoints;
use bulwark_core::{BoxError, RandomSource};
use bulwark_health::{probe_once, HealthCheck, Tally};
use std::sync::{Arc, Weak};
use tower_service::Service;

/// Runs the probes until the balancer is gone: probes arrive with their endpoint's id (made
/// when the endpoint joins) and are dropped when the endpoint leaves.
pub(crate) async fn run<P>(
    endpoints: Weak<dyn Endpoints>,
    mut arrivals: tokio::sync::mpsc::UnboundedReceiver<(usize, P)>,
    check: HealthCheck,
    random: Arc<dyn RandomSource>,
) where
    P: Service<()>,
    P::Error: Into<BoxError>,
{
    let mut probes: Vec<(Arc<crate::core::EndpointState>, P, Tally)> = Vec::new();
    loop {
        {
            let Some(target) = endpoints.upgrade() else {
                return;
            };
            while let Ok((id, probe)) = arrivals.try_recv() {
                if let Some(state) = target.state_of(id) {
                    probes.retain(|p| p.0.id != id);
                    probes.push((state, probe, Tally::default()));
                }
            }
            // A member that left takes its probe with it.
            probes.retain(|p| !p.0.is_removed());
        }
        let results = futures_util::future::join_all(
            probes
                .iter_mut()
                .map(|(_, p, _)| probe_once(p, check.timeout)),
        )
        .await;
        let Some(target) = endpoints.upgrade() else {
            return;
        };
        for ((state, _, tally), ok) in probes.iter_mut().zip(results) {
            if let Some(healthy) = tally.observe(ok, state.is_healthy(), &check) {
                target.set_health(state, healthy);
            }
        }
        drop(target);
        tokio::time::sleep(check.next_interval(&*random)).await;
    }
}
