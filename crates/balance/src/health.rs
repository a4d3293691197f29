//! Active health checks: a probe per endpoint, run by the balancer on a background task.

use crate::handle::Endpoints;
use bulwark_core::{BoxError, RandomSource};
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tower_service::Service;

/// When and how endpoints are probed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct HealthCheck {
    /// Time between two rounds of probes (at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub interval: Duration,
    /// A probe that takes longer fails (at most a day).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Duration,
    /// A healthy endpoint is marked unhealthy after this many failed probes in a row.
    pub unhealthy_after: u32,
    /// An unhealthy endpoint is marked healthy after this many good probes in a row.
    pub healthy_after: u32,
    /// Each interval is moved by up to this share either way, so the balancers of many
    /// clients do not probe in step.
    pub jitter: f64,
}

impl Default for HealthCheck {
    /// The software-aware load-balancing seed's settings: every 2 s, 2 s timeout, unhealthy
    /// after 2 failures, healthy after 1 success; 10% jitter.
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            unhealthy_after: 2,
            healthy_after: 1,
            jitter: 0.1,
        }
    }
}

impl HealthCheck {
    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        use crate::ConfigError;
        if self.interval.is_zero() {
            return Err(ConfigError::Zero {
                setting: "health.interval",
            });
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Zero {
                setting: "health.timeout",
            });
        }
        // A day at most: the jittered interval of a duration near `Duration::MAX` would
        // overflow.
        for (setting, d) in [
            ("health.interval", self.interval),
            ("health.timeout", self.timeout),
        ] {
            if d > Duration::from_secs(24 * 3600) {
                return Err(ConfigError::TooLong { setting });
            }
        }
        if self.unhealthy_after == 0 {
            return Err(ConfigError::Zero {
                setting: "health.unhealthy_after",
            });
        }
        if self.healthy_after == 0 {
            return Err(ConfigError::Zero {
                setting: "health.healthy_after",
            });
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::Jitter(self.jitter));
        }
        Ok(())
    }
}

/// One probe: ready, call, within the timeout. `true` means healthy.
async fn probe_once<P>(probe: &mut P, timeout: Duration) -> bool
where
    P: Service<()>,
    P::Error: Into<BoxError>,
{
    let attempt = async {
        futures_util::future::poll_fn(|cx| probe.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        probe.call(()).await.map_err(Into::into)
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(_)))
}

/// An endpoint's run of good or bad probes.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    good: u32,
    bad: u32,
}

impl Tally {
    /// Counts a probe; returns the health to set when a threshold is crossed.
    fn observe(&mut self, ok: bool, healthy_now: bool, check: &HealthCheck) -> Option<bool> {
        if ok {
            self.good = self.good.saturating_add(1);
            self.bad = 0;
            (self.good >= check.healthy_after && !healthy_now).then_some(true)
        } else {
            self.bad = self.bad.saturating_add(1);
            self.good = 0;
            (self.bad >= check.unhealthy_after && healthy_now).then_some(false)
        }
    }
}

/// Waits for the next round.
async fn pause(check: &HealthCheck, random: &dyn RandomSource) {
    let spread = 1.0 + check.jitter * (2.0 * random.next_f64() - 1.0);
    tokio::time::sleep(check.interval.mul_f64(spread.max(0.0))).await;
}

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
        pause(&check, &*random).await;
    }
}

/// Why an HTTP health probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnhealthyStatus(pub u16);

impl fmt::Display for UnhealthyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "health check answered {}", self.0)
    }
}

impl std::error::Error for UnhealthyStatus {}

#[cfg(feature = "http")]
mod http_probe {
    use super::UnhealthyStatus;
    use bulwark_core::BoxError;
    use bytes::Bytes;
    use http_body_util::Empty;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower_service::Service;

    /// A health probe that sends `GET` to a URI (the endpoint's `/health`) through an HTTP
    /// client service and treats a 2xx answer as healthy.
    ///
    /// ```
    /// use bulwark_balance::HttpProbe;
    /// use tower::service_fn;
    ///
    /// let client = service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(()))
    /// });
    /// let probe = HttpProbe::new(client, "http://127.0.0.1:8081/health".parse().unwrap());
    /// # let _ = probe;
    /// ```
    #[derive(Debug, Clone)]
    pub struct HttpProbe<S> {
        client: S,
        uri: http::Uri,
    }

    impl<S> HttpProbe<S> {
        /// Probes `uri` through `client`.
        pub fn new(client: S, uri: http::Uri) -> Self {
            HttpProbe { client, uri }
        }
    }

    impl<S, B> Service<()> for HttpProbe<S>
    where
        S: Service<http::Request<Empty<Bytes>>, Response = http::Response<B>>,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        type Response = ();
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.client.poll_ready(cx).map_err(Into::into)
        }

        fn call(&mut self, _: ()) -> Self::Future {
            let mut req = http::Request::new(Empty::new());
            *req.uri_mut() = self.uri.clone();
            let fut = self.client.call(req);
            // A probe every few seconds per endpoint: boxing its future costs nothing that
            // matters, and keeps the probe's type simple.
            Box::pin(async move {
                let resp = fut.await.map_err(Into::into)?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(Box::new(UnhealthyStatus(resp.status().as_u16())) as BoxError)
                }
            })
        }
    }
}

#[cfg(feature = "http")]
pub use http_probe::HttpProbe;
