//! One probe, the run of probes that changes health, and the wait between probes: the check
//! itself, shared by the health gate and the balancer's own health checks.

use crate::HealthCheck;
use bulwark_core::{BoxError, RandomSource};
use std::fmt;
use std::time::Duration;
use tower_service::Service;

/// One probe: ready, call, within `timeout`. `true` means healthy (the probe answered `Ok`
/// in time).
pub async fn probe_once<P>(probe: &mut P, timeout: Duration) -> bool
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

/// A service's run of good or bad probes: the check's state machine.
///
/// ```
/// use bulwark_health::{HealthCheck, Tally};
///
/// let check = HealthCheck { unhealthy_after: 2, healthy_after: 1, ..HealthCheck::default() };
/// let mut tally = Tally::default();
/// assert_eq!(tally.observe(false, true, &check), None); // one failure: still healthy
/// assert_eq!(tally.observe(false, true, &check), Some(false)); // two: unhealthy
/// assert_eq!(tally.observe(true, false, &check), Some(true)); // one success: healthy
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    good: u32,
    bad: u32,
}

impl Tally {
    /// Counts a probe (`ok`: it passed) of a service whose health is `healthy_now`; returns
    /// the health to set when a threshold of `check` is crossed.
    pub fn observe(&mut self, ok: bool, healthy_now: bool, check: &HealthCheck) -> Option<bool> {
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

impl HealthCheck {
    /// The wait before the next probe: the interval, moved by up to `jitter` of it either way.
    pub fn next_interval(&self, random: &dyn RandomSource) -> Duration {
        let spread = bulwark_core::backoff::spread_factor(self.jitter, random);
        self.interval.mul_f64(spread)
    }
}

/// Why an HTTP health probe failed: the status it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnhealthyStatus(pub u16);

impl fmt::Display for UnhealthyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "health check answered {}", self.0)
    }
}

impl std::error::Error for UnhealthyStatus {}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod http_probe {
    use super::UnhealthyStatus;
    use bulwark_core::BoxError;
    use bytes::Bytes;
    use http_body_util::Empty;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower_service::Service;

    /// A health probe that sends `GET` to a URI (the service's `/health`) through an HTTP
    /// client service and treats a 2xx answer as healthy.
    ///
    /// ```
    /// use bulwark_health::HttpProbe;
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
            // A probe every few seconds: boxing its future costs nothing that matters, and
            // keeps the probe's type simple.
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
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http_probe::HttpProbe;
