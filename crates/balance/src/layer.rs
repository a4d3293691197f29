//! The layer and its builder.

use crate::config::{BalanceConfig, ConfigError, Ejection, Strategy};
use crate::core::Core;
use crate::endpoints::{Endpoints, Source};
use crate::key::Refresh;
use crate::membership::{Members, Membership};
use crate::service::Balance;
use bulwark_core::attempts::NoAttempts;
use bulwark_core::builder::{target_names, Common};
use bulwark_core::built::Built;
use bulwark_core::{DefaultClassifier, RandomSource, SharedListener};
use std::sync::Arc;
use std::time::Duration;

/// Turns a list of endpoints into a [`Balance`]. Built, and validated, by [`Builder`].
///
/// Each balancer it builds has its own state (a balancer is over its own set of endpoints);
/// [`BalanceLayer::handles`] lists the balancers alive that it and its clones built, for an
/// admin endpoint to find one by [`Handle::name`](crate::Handle::name).
#[derive(Clone)]
pub struct BalanceLayer<C = DefaultClassifier, A = NoAttempts> {
    config: Arc<BalanceConfig>,
    classifier: C,
    attempts: A,
    listener: Option<SharedListener>,
    random: Arc<dyn RandomSource>,
    refresh: Option<Arc<dyn Refresh>>,
    built: Built<Core<C>>,
}

bulwark_core::debug_config!(BalanceLayer<C, A>);

impl BalanceLayer {
    /// A builder starting from the defaults (see [`BalanceConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(BalanceConfig::default())
    }
}

impl<C: Clone, A: Clone> BalanceLayer<C, A> {
    /// The settings the layer was built with (a balancer's [`Handle::config`](crate::Handle::config)
    /// has those in force).
    pub fn config(&self) -> &BalanceConfig {
        &self.config
    }

    /// The handles of the balancers alive that this layer and its clones built, in the order
    /// they were built (a balancer goes when the last clone of it does).
    ///
    /// ```
    /// use bulwark_balance::BalanceLayer;
    /// use tower::service_fn;
    ///
    /// let layer = BalanceLayer::builder().name("stores").build().unwrap();
    /// let echo = service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) });
    /// let balance = layer.build(vec![echo, echo]).unwrap();
    /// let handles = layer.handles();
    /// assert_eq!(handles.len(), 1);
    /// assert_eq!(handles[0].name(), "stores");
    /// assert_eq!(handles[0].endpoints().len(), 2);
    /// # drop(balance);
    /// ```
    pub fn handles(&self) -> Vec<crate::Handle>
    where
        C: Send + Sync + 'static,
    {
        let live = self.built.live();
        live.into_iter()
            .map(|core| crate::Handle::new(core))
            .collect()
    }

    /// A balancer over `endpoints`: a static list (a `Vec<S>`), or an [`Endpoints`] built
    /// from a `tower::discover` stream (a DNS name among them), either with health checks.
    ///
    /// Fails with a [`ConfigError`] naming the setting when `endpoint_names` or the health
    /// probes do not match a static list one for one, or when health checks are asked for
    /// outside a tokio runtime.
    pub fn build<S>(
        &self,
        endpoints: impl Into<Endpoints<S>>,
    ) -> Result<Balance<S, C, A>, ConfigError>
    where
        S: Clone + Send + 'static,
        C: Send + Sync + 'static,
    {
        let endpoints = endpoints.into();
        if let Some(n) = endpoints.static_len() {
            self.config.validate_for(n)?;
            if let Some(probes) = endpoints.probe_count {
                if probes != n {
                    return Err(ConfigError::Probes {
                        probes,
                        endpoints: n,
                    });
                }
            }
        } else {
            self.config.validate()?;
            if let Some(probes) = endpoints.probe_count {
                // A list of probes pairs with a list of endpoints, in order: a discovered
                // set has no order to pair them with (its probes come from `probe_for`).
                return Err(ConfigError::ProbesForDiscovered { probes });
            }
        }
        let runtime = match endpoints.health {
            Some(_) => {
                Some(tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?)
            }
            None => None,
        };
        Ok(self.make(endpoints, runtime))
    }

    /// The balancer, for settings already validated: names that do not match a static list
    /// one for one are replaced by the endpoints' indexes, never paired up wrongly.
    fn make<S>(
        &self,
        endpoints: Endpoints<S>,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Balance<S, C, A>
    where
        S: Clone + Send + 'static,
        C: Send + Sync + 'static,
    {
        let core = self.built.get_or_make(|| {
            Core::with_refresh(
                &self.config,
                self.classifier.clone(),
                self.listener.clone(),
                self.refresh.clone(),
            )
        });
        let Endpoints {
            source,
            health,
            probes_for_list,
            ..
        } = endpoints;
        let members_core: Arc<dyn Members> = core.clone();
        let (feed, list) = match source {
            Source::List(list) => (None, Some(list)),
            Source::Feed(feed) => (Some(feed), None),
        };
        let members = Arc::new(Membership::new(members_core, feed));
        if let Some(list) = list {
            let given = &self.config.endpoint_names;
            let (names, mismatch) = target_names("endpoint_names", given, list.len());
            if mismatch.is_some() {
                tracing::warn!(
                    balancer = %self.config.name,
                    names = given.len(),
                    endpoints = list.len(),
                    "endpoint_names does not match the endpoints; naming them by index"
                );
            }
            let mut ids = Vec::with_capacity(list.len());
            members.edit(|edit| {
                for (name, endpoint) in names.into_iter().zip(list) {
                    ids.push(edit.add_initial(name, endpoint).id);
                }
            });
            if let Some(hand_over) = probes_for_list {
                hand_over(&ids);
            }
        }
        if let (Some(spawn), Some(runtime)) = (health, runtime) {
            let weak: std::sync::Weak<dyn crate::handle::Endpoints> = {
                let strong: Arc<dyn crate::handle::Endpoints> = core.clone();
                Arc::downgrade(&strong)
            };
            let _guard = runtime.enter();
            let task = spawn(weak, self.config.health, self.random.clone());
            if let Ok(mut slot) = core.health_task.lock() {
                *slot = Some(task);
            }
        }
        Balance::new(core, members, self.random.next_u64(), self.attempts.clone())
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
        L::Service: Clone + Send + 'static,
        C: Send + Sync + 'static,
    {
        self.build(
            endpoints
                .into_iter()
                .map(|e| per_endpoint.layer(e))
                .collect::<Vec<_>>(),
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
///   balancer fed by [`Endpoints::discover`] before its first endpoint;
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
impl<S, C, A> tower_layer::Layer<Vec<S>> for BalanceLayer<C, A>
where
    S: Clone + Send + 'static,
    C: Clone + Send + Sync + 'static,
    A: Clone,
{
    type Service = Balance<S, C, A>;

    fn layer(&self, endpoints: Vec<S>) -> Self::Service {
        self.make(Endpoints::list(endpoints), None)
    }
}

/// Builds a [`BalanceLayer`]; [`Builder::build`] validates the settings.
pub struct Builder<C = DefaultClassifier, A = NoAttempts> {
    config: BalanceConfig,
    classifier: C,
    attempts: A,
    common: Common,
    refresh: Option<Arc<dyn Refresh>>,
}

bulwark_core::debug_config!(Builder<C, A>);

impl Builder {
    /// A builder starting from `config` (a deserialized one, say).
    pub fn from_config(config: BalanceConfig) -> Self {
        Builder {
            config,
            classifier: DefaultClassifier,
            attempts: NoAttempts,
            common: Common::default(),
            refresh: None,
        }
    }
}

impl<C, A> Builder<C, A> {
    bulwark_core::builder_methods!(name, endpoint_names);

    bulwark_core::builder_setters! {
        /// How an endpoint is picked (default: power of two choices by peak-EWMA latency).
        fn strategy(strategy: Strategy) { strategy = strategy }

        /// Passive outlier ejection settings.
        fn ejection(ejection: Ejection) { ejection = ejection }

        /// Panic mode: when fewer than `share` of the endpoints are healthy and not ejected,
        /// balance over every (ready) endpoint instead (default: off).
        fn panic_threshold(share: f64) { panic_threshold = Some(share) }

        /// How long a request waits for an endpoint that can take it (default 1 s).
        fn wait_for_ready(wait: Duration) { wait_for_ready = wait }
    }

    /// Decide what counts as a failure (for ejection) with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, A> {
        Builder {
            config: self.config,
            classifier,
            attempts: self.attempts,
            common: self.common,
            refresh: self.refresh,
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
            common: self.common,
            refresh: self.refresh,
        }
    }

    /// For `http::Request`s: resends avoid endpoints the request has been to (the retry and
    /// failover layers' HTTP policies attach what is needed).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> Builder<C, bulwark_core::attempts::HttpAttempts> {
        self.attempts(bulwark_core::attempts::HttpAttempts)
    }

    bulwark_core::builder_methods!(listener);

    bulwark_core::builder_setters! {
        /// Active health-check settings (used when the [`Endpoints`] have probes).
        fn health_check(check: crate::HealthCheck) { health = check }

        /// Slow start for endpoints that join after the balancer is built (see [`SlowStart`](crate::SlowStart)).
        fn slow_start(slow_start: crate::SlowStart) { slow_start = Some(slow_start) }

        /// The latency assumed for an endpoint that has not answered yet, by peak EWMA (default
        /// 30 ms) when it joins, decaying from then with `ewma_decay`: a new endpoint is compared
        /// at this latency, not sent everything first, and is tried after a while even if the
        /// others stay faster.
        fn default_rtt(rtt: Duration) { default_rtt = rtt }
    }

    /// When no endpoint can take a request (every one failing, ejected or unhealthy), ask
    /// `refresh` to look again: the discovery source (a DNS name re-resolved early, as gRPC
    /// clients do when their connections fail). The source rate-limits it.
    pub fn refresh(mut self, refresh: impl Refresh) -> Self {
        self.refresh = Some(Arc::new(refresh));
        self
    }

    bulwark_core::builder_methods! {
        /// Draw the two choices from `random` (seed it in tests).
        random
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<BalanceLayer<C, A>, ConfigError> {
        self.config.validate()?;
        Ok(BalanceLayer {
            config: Arc::new(self.config),
            classifier: self.classifier,
            attempts: self.attempts,
            listener: self.common.listener().cloned(),
            random: self.common.random_or_entropy(),
            refresh: self.refresh,
            built: Built::each(),
        })
    }
}
