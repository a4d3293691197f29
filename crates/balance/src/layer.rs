//! The layer and its builder.

use crate::config::{BalanceConfig, ConfigError, Ejection, Strategy};
use crate::core::Core;
use crate::service::Balance;
use bulwark_core::attempts::NoAttempts;
use bulwark_core::{DefaultClassifier, Listener, RandomSource, SharedListener, SplitMix64};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Turns a list of endpoints into a [`Balance`]. Built, and validated, by [`Builder`].
#[derive(Clone)]
pub struct BalanceLayer<C = DefaultClassifier, A = NoAttempts> {
    config: Arc<BalanceConfig>,
    classifier: C,
    attempts: A,
    listener: Option<SharedListener>,
    random: Arc<dyn RandomSource>,
}

impl<C, A> fmt::Debug for BalanceLayer<C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BalanceLayer {
    /// A builder starting from the defaults (see [`BalanceConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(BalanceConfig::default())
    }
}

impl<C: Clone, A: Clone> BalanceLayer<C, A> {
    /// The settings.
    pub fn config(&self) -> &BalanceConfig {
        &self.config
    }

    /// A balancer over `endpoints`.
    pub fn build<S>(&self, endpoints: Vec<S>) -> Result<Balance<S, C, A>, ConfigError> {
        self.config.validate_for(endpoints.len())?;
        Ok(self.make(endpoints))
    }

    /// The balancer, for settings already validated (the builder checked everything but the
    /// names against the list): names that do not match the list one for one are replaced by
    /// the endpoints' indexes, never paired up wrongly.
    fn make<S>(&self, endpoints: Vec<S>) -> Balance<S, C, A> {
        let names = &self.config.endpoint_names;
        let names: &[String] = if names.len() == endpoints.len() {
            names
        } else {
            if !names.is_empty() {
                tracing::warn!(
                    balancer = %self.config.name,
                    names = names.len(),
                    endpoints = endpoints.len(),
                    "endpoint_names does not match the endpoints; naming them by index"
                );
            }
            &[]
        };
        let core = Core::new(&self.config, self.classifier.clone(), self.listener.clone());
        Balance::new(
            endpoints,
            names,
            Arc::new(core),
            self.random.next_u64(),
            self.attempts.clone(),
        )
    }

    /// A balancer whose endpoints come and go through `discover` (a `tower::discover`
    /// stream of insertions and removals). A removed endpoint's requests in flight finish as
    /// usual. Endpoints are named by their keys.
    pub fn build_discover<D>(
        &self,
        discover: D,
    ) -> Result<crate::DiscoverBalance<D, C, A>, ConfigError>
    where
        D: tower::discover::Discover,
    {
        self.config.validate()?;
        let core = Core::new(&self.config, self.classifier.clone(), self.listener.clone());
        Ok(crate::DiscoverBalance::new(
            discover,
            Balance::new(
                Vec::new(),
                &[],
                Arc::new(core),
                self.random.next_u64(),
                self.attempts.clone(),
            ),
        ))
    }

    /// A balancer over `endpoints` whose health is checked with `probes` (one per endpoint,
    /// in order; any `Service<()>` whose `Ok` means healthy, such as an
    /// `HttpProbe` for `GET /health`) on a background task that stops when the balancer is
    /// dropped. Needs a tokio runtime.
    pub fn build_with_health<S, P>(
        &self,
        endpoints: Vec<S>,
        probes: Vec<P>,
    ) -> Result<Balance<S, C, A>, ConfigError>
    where
        C: Send + Sync + 'static,
        P: tower_service::Service<()> + Send + 'static,
        P::Error: Into<bulwark_core::BoxError>,
        P::Future: Send,
    {
        if probes.len() != endpoints.len() {
            return Err(ConfigError::Probes {
                probes: probes.len(),
                endpoints: endpoints.len(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let balance = self.build(endpoints)?;
        let shared = balance.core_arc();
        let weak: std::sync::Weak<dyn crate::handle::Endpoints> = {
            let strong: Arc<dyn crate::handle::Endpoints> = shared.clone();
            Arc::downgrade(&strong)
        };
        let task = runtime.spawn(crate::health::run(
            weak,
            probes,
            self.config.health,
            self.random.clone(),
        ));
        if let Ok(mut slot) = shared.health_task.lock() {
            *slot = Some(task.abort_handle());
        }
        Ok(balance)
    }

    /// Like [`BalanceLayer::build_discover`], with active health checks: `probe_for` makes
    /// the probe of each endpoint as it arrives (from its key); a removed endpoint's probe is
    /// dropped. The checks run on a background task that stops when the balancer is dropped.
    /// Needs a tokio runtime.
    pub fn build_discover_with_health<D, P, F>(
        &self,
        discover: D,
        mut probe_for: F,
    ) -> Result<crate::DiscoverBalance<D, C, A>, ConfigError>
    where
        D: tower::discover::Discover,
        C: Send + Sync + 'static,
        P: tower_service::Service<()> + Send + 'static,
        P::Error: Into<bulwark_core::BoxError>,
        P::Future: Send,
        F: FnMut(&D::Key) -> P + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let balance = self.build_discover(discover)?;
        let shared = balance.balance().core_arc();
        let weak: std::sync::Weak<dyn crate::handle::Endpoints> = {
            let strong: Arc<dyn crate::handle::Endpoints> = shared.clone();
            Arc::downgrade(&strong)
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = runtime.spawn(crate::health::run_dynamic(
            weak,
            rx,
            self.config.health,
            self.random.clone(),
        ));
        if let Ok(mut slot) = shared.health_task.lock() {
            *slot = Some(task.abort_handle());
        }
        Ok(balance.with_probes(Box::new(move |key, id| {
            let _ = tx.send((id, probe_for(key)));
        })))
    }

    /// A balancer over `endpoints`, each wrapped in `per_endpoint` first (a circuit breaker
    /// in readiness mode, a timeout): one call for the whole per-endpoint stack.
    pub fn build_with<S, L>(
        &self,
        endpoints: Vec<S>,
        per_endpoint: &L,
    ) -> Result<Balance<L::Service, C, A>, ConfigError>
    where
        L: tower_layer::Layer<S>,
    {
        self.build(
            endpoints
                .into_iter()
                .map(|e| per_endpoint.layer(e))
                .collect(),
        )
    }
}

/// A balancer over a `Vec` of endpoints, as a [`Layer`](tower_layer::Layer): so
/// `ServiceBuilder::new().layer(balance).service(endpoints)` works, with layers stacked above.
///
/// A `Layer` cannot return an error, so the checks [`BalanceLayer::build`] makes against the
/// list turn into behaviour, as they do for the failover layer:
///
/// * an empty list gives a balancer that has nothing to pick: each request waits
///   `wait_for_ready`, then fails with [`NoEndpointReady`](crate::NoEndpointReady) (reason
///   [`Unavailable::NoEndpoints`](crate::Unavailable::NoEndpoints)), like a
///   [`build_discover`](BalanceLayer::build_discover) balancer before its first endpoint;
/// * `endpoint_names` that do not match the list one for one are replaced by the endpoints'
///   indexes (with a `tracing` warning), never paired up wrongly.
///
/// Use [`BalanceLayer::build`] to get a typed error for these instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_balance::{BalanceLayer, NoEndpointReady, Strategy, Unavailable};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// let layer = BalanceLayer::builder().strategy(Strategy::RoundRobin).build().unwrap();
/// let store = |name: &'static str| service_fn(move |_: ()| async move { Ok::<_, std::io::Error>(name) });
/// let mut stores = ServiceBuilder::new().layer(layer.clone()).service(vec![store("a"), store("b")]);
/// assert_eq!(stores.ready().await.unwrap().call(()).await.unwrap(), "a");
///
/// // An empty list: nothing to pick, the request fails after `wait_for_ready` (1 s).
/// let empty: Vec<tower::util::BoxCloneService<(), &'static str, std::io::Error>> = Vec::new();
/// let mut none = ServiceBuilder::new().layer(layer).service(empty);
/// let err = none.ready().await.unwrap().call(()).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<NoEndpointReady>().unwrap().reason, Unavailable::NoEndpoints);
/// # }
/// ```
impl<S, C: Clone, A: Clone> tower_layer::Layer<Vec<S>> for BalanceLayer<C, A> {
    type Service = Balance<S, C, A>;

    fn layer(&self, endpoints: Vec<S>) -> Self::Service {
        self.make(endpoints)
    }
}

/// Builds a [`BalanceLayer`]; [`Builder::build`] validates the settings.
pub struct Builder<C = DefaultClassifier, A = NoAttempts> {
    config: BalanceConfig,
    classifier: C,
    attempts: A,
    listener: Option<SharedListener>,
    random: Option<Arc<dyn RandomSource>>,
}

impl<C, A> fmt::Debug for Builder<C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder starting from `config` (a deserialized one, say).
    pub fn from_config(config: BalanceConfig) -> Self {
        Builder {
            config,
            classifier: DefaultClassifier,
            attempts: NoAttempts,
            listener: None,
            random: None,
        }
    }
}

impl<C, A> Builder<C, A> {
    /// The name reported in events, logs and errors.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Names for the endpoints, in order (one per endpoint).
    pub fn endpoint_names<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.config.endpoint_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// How an endpoint is picked (default: power of two choices by peak-EWMA latency).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
        self
    }

    /// Passive outlier ejection settings.
    pub fn ejection(mut self, ejection: Ejection) -> Self {
        self.config.ejection = ejection;
        self
    }

    /// Panic mode: when fewer than `share` of the endpoints are healthy and not ejected,
    /// balance over every (ready) endpoint instead (default: off).
    pub fn panic_threshold(mut self, share: f64) -> Self {
        self.config.panic_threshold = Some(share);
        self
    }

    /// How long a request waits for an endpoint that can take it (default 1 s).
    pub fn wait_for_ready(mut self, wait: Duration) -> Self {
        self.config.wait_for_ready = wait;
        self
    }

    /// Decide what counts as a failure (for ejection) with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, A> {
        Builder {
            config: self.config,
            classifier,
            attempts: self.attempts,
            listener: self.listener,
            random: self.random,
        }
    }

    /// Read the request's [`Attempts`](bulwark_core::attempts::Attempts) with `attempts`,
    /// so a retry or failover stacked above sends a resend to an endpoint the request has not
    /// been to, while one can take it.
    pub fn attempts<A2>(self, attempts: A2) -> Builder<C, A2> {
        Builder {
            config: self.config,
            classifier: self.classifier,
            attempts,
            listener: self.listener,
            random: self.random,
        }
    }

    /// For `http::Request`s: resends avoid endpoints the request has been to (the retry and
    /// failover layers' HTTP policies attach what is needed).
    #[cfg(feature = "http")]
    pub fn http(self) -> Builder<C, bulwark_core::attempts::HttpAttempts> {
        self.attempts(bulwark_core::attempts::HttpAttempts)
    }

    /// Send events to `listener`.
    pub fn listener(mut self, listener: impl Listener) -> Self {
        self.listener = Some(SharedListener::new(listener));
        self
    }

    /// Active health-check settings (used by
    /// [`BalanceLayer::build_with_health`]).
    pub fn health_check(mut self, check: crate::HealthCheck) -> Self {
        self.config.health = check;
        self
    }

    /// Draw the two choices from `random` (seed it in tests).
    pub fn random(mut self, random: impl RandomSource) -> Self {
        self.random = Some(Arc::new(random));
        self
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<BalanceLayer<C, A>, ConfigError> {
        self.config.validate()?;
        Ok(BalanceLayer {
            config: Arc::new(self.config),
            classifier: self.classifier,
            attempts: self.attempts,
            listener: self.listener,
            random: self
                .random
                .unwrap_or_else(|| Arc::new(SplitMix64::from_entropy())),
        })
    }
}
