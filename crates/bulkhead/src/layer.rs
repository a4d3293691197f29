//! The layers and their builders.

use crate::adaptive::Controller;
use crate::config::{
    AdaptiveConfig, Aimd, Algorithm, BulkheadConfig, ConfigError, Gradient, Mode, Queue,
};
use crate::handle::Handle;
use crate::service::{Bulkhead, Core, Shared};
use bulwark_core::builder::Common;
use bulwark_core::built::Built;
use bulwark_core::DefaultClassifier;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// A layer's `handle` and `handles`, over its field `built`.
macro_rules! handles {
    () => {
        /// The handle of the one bulkhead of a layer built `shared`, at once, before any
        /// service is built; `None` for a layer that builds one per service.
        pub fn handle(&self) -> Option<Handle> {
            self.built.shared_state().map(|s| Handle::new(s.clone()))
        }

        /// The handles of the bulkheads alive that this layer and its clones built, in the
        /// order they were built (one goes when the last clone of its service does); the one
        /// bulkhead of a shared layer. Find a target's by [`Handle::name`].
        pub fn handles(&self) -> Vec<Handle> {
            self.built.live().into_iter().map(Handle::new).collect()
        }
    };
}

/// Wraps services in a [`Bulkhead`] with a fixed limit. Built, and validated, by [`Builder`].
///
/// By default each service the layer wraps gets its own bulkhead: applied per target (in a
/// failover or balance set), every target has its own permits, and its overflow is counted
/// under its own name. Clones of one wrapped service share that service's bulkhead, and
/// [`BulkheadLayer::handles`] lists the bulkheads alive that the layer built.
///
/// Built [`shared`](Builder::shared), the layer holds one bulkhead, made when it is built, and
/// wraps every service with it (as tower's `GlobalConcurrencyLimitLayer` does): one limit for
/// every client of one backend, its handle at [`BulkheadLayer::handle`] before any service
/// exists.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_bulkhead::{BulkheadLayer, Full};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let layer = BulkheadLayer::builder().name("db").max_concurrent(1).shared().build().unwrap();
/// let handle = layer.handle().expect("a shared layer has one bulkhead");
/// let backend = service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) });
/// let mut reads = layer.layer(backend);
/// let mut writes = layer.layer(backend);
///
/// let read = reads.ready().await.unwrap().call(1); // takes the one permit
/// assert_eq!(handle.in_flight(), 1);
/// let err = writes.ready().await.unwrap().call(2).await.unwrap_err();
/// assert!(err.is::<Full>());
/// assert_eq!(read.await.unwrap(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct BulkheadLayer {
    config: Arc<BulkheadConfig>,
    common: Common,
    built: Built<Shared<DefaultClassifier>>,
}

impl BulkheadLayer {
    /// A builder starting from the defaults (see [`BulkheadConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(BulkheadConfig::default())
    }

    /// A layer admitting at most `max_concurrent` calls at once, failing fast beyond: the
    /// other settings at their defaults.
    pub fn new(max_concurrent: u32) -> Result<Self, ConfigError> {
        Self::builder().max_concurrent(max_concurrent).build()
    }

    /// The validated settings the layer was built with (a bulkhead's [`Handle`] has the
    /// limit and queue in force).
    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    handles!();
}

bulwark_core::debug_config!(BulkheadLayer);

/// A fixed bulkhead, from the layer's settings.
fn make_fixed(c: &BulkheadConfig, common: &Common) -> Shared<DefaultClassifier> {
    let core = Core::new(
        &c.name,
        c.max_concurrent,
        c.queue,
        c.mode,
        None,
        common.listener().cloned(),
    );
    Shared {
        core,
        classifier: DefaultClassifier,
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S, DefaultClassifier>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = self
            .built
            .get_or_make(|| make_fixed(&self.config, &self.common));
        Bulkhead::from_shared(inner, shared)
    }
}

/// Builds a [`BulkheadLayer`]; [`Builder::build`] validates every setting.
///
/// ```
/// use bulwark_bulkhead::BulkheadLayer;
/// use std::time::Duration;
///
/// let layer = BulkheadLayer::builder()
///     .name("inventory")
///     .max_concurrent(32)
///     .queue(16, Duration::from_millis(50))
///     .build()
///     .unwrap();
/// assert_eq!(layer.config().max_concurrent, 32);
///
/// let err = BulkheadLayer::builder().max_concurrent(0).build().unwrap_err();
/// assert_eq!(err.setting(), "max_concurrent");
/// assert_eq!(err.to_string(), "`max_concurrent` must be greater than zero");
/// ```
pub struct Builder {
    config: BulkheadConfig,
    common: Common,
    shared: bool,
}

bulwark_core::debug_config!(Builder);

impl Builder {
    /// A builder starting from `config` (a deserialized one, say); nothing is checked until
    /// [`Builder::build`].
    pub fn from_config(config: BulkheadConfig) -> Self {
        Builder {
            config,
            common: Common::default(),
            shared: false,
        }
    }

    bulwark_core::builder_methods!(name);

    bulwark_core::builder_setters! {
        /// At most this many calls in flight (default 100).
        fn max_concurrent(limit: u32) { max_concurrent = limit }

        /// Let up to `capacity` callers wait, each at most `timeout`, for a permit (first come,
        /// first served) rather than failing at once (fail-fast mode only).
        fn queue(capacity: u32, timeout: Duration) { queue = Some(Queue { capacity, timeout }) }

        /// Choose fail-fast (the default) or readiness mode.
        fn mode(mode: Mode) { mode = mode }
    }

    /// Shorthand for `.mode(Mode::Readiness)`: for targets of a balancer or failover set.
    pub fn readiness_mode(self) -> Self {
        self.mode(Mode::Readiness)
    }

    bulwark_core::builder_methods!(listener);

    /// Build one bulkhead with the layer, shared by every service it wraps, its handle at
    /// [`BulkheadLayer::handle`] (default: a bulkhead per service). See [`BulkheadLayer`].
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Validates the settings and builds the layer (and, if [`shared`](Builder::shared), its
    /// bulkhead).
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        self.config.validate()?;
        let built = match self.shared {
            true => Built::shared(Arc::new(make_fixed(&self.config, &self.common))),
            false => Built::each(),
        };
        Ok(BulkheadLayer {
            config: Arc::new(self.config),
            common: self.common,
            built,
        })
    }
}

/// Wraps services in a [`Bulkhead`] whose limit is found from measured latency (see the crate
/// docs). Built, and validated, by [`AdaptiveBuilder`].
///
/// By default each service the layer wraps gets its own limit and controller, listed by
/// [`AdaptiveLimitLayer::handles`]; built [`shared`](AdaptiveBuilder::shared), one limit and
/// controller, made with the layer, serve every service it wraps (its handle at
/// [`AdaptiveLimitLayer::handle`]).
#[derive(Clone)]
pub struct AdaptiveLimitLayer<C = DefaultClassifier> {
    config: Arc<AdaptiveConfig>,
    classifier: C,
    common: Common,
    built: Built<Shared<C>>,
}

impl AdaptiveLimitLayer {
    /// A builder starting from the defaults (see [`AdaptiveConfig`]).
    pub fn builder() -> AdaptiveBuilder {
        AdaptiveBuilder::from_config(AdaptiveConfig::default())
    }

    /// A layer with every default setting (the gradient controller).
    pub fn new() -> Self {
        AdaptiveLimitLayer {
            config: Arc::new(AdaptiveConfig::default()),
            classifier: DefaultClassifier,
            common: Common::default(),
            built: Built::each(),
        }
    }
}

impl Default for AdaptiveLimitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// The validated settings the layer was built with.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }
}

impl<C: Send + Sync + 'static> AdaptiveLimitLayer<C> {
    handles!();
}

bulwark_core::debug_config!(AdaptiveLimitLayer<C>);

/// An adaptive limit, from the layer's settings.
fn make_adaptive<C>(c: &AdaptiveConfig, classifier: C, common: &Common) -> Shared<C> {
    let controller = Controller::new(
        c.algorithm,
        c.initial_limit,
        c.min_limit,
        c.max_limit,
        c.window,
    );
    let core = Core::new(
        &c.name,
        controller.limit(),
        c.queue,
        c.mode,
        Some(controller),
        common.listener().cloned(),
    );
    Shared { core, classifier }
}

impl<S, C: Clone> Layer<S> for AdaptiveLimitLayer<C> {
    type Service = Bulkhead<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = self
            .built
            .get_or_make(|| make_adaptive(&self.config, self.classifier.clone(), &self.common));
        Bulkhead::from_shared(inner, shared)
    }
}

/// Builds an [`AdaptiveLimitLayer`]; [`AdaptiveBuilder::build`] validates every setting.
///
/// ```
/// use bulwark_bulkhead::{AdaptiveLimitLayer, Algorithm};
/// use std::time::Duration;
///
/// let layer = AdaptiveLimitLayer::builder()
///     .name("search")
///     .limits(4, 16, 200)
///     .aimd(Duration::from_millis(250))
///     .build()
///     .unwrap();
/// assert!(matches!(layer.config().algorithm, Algorithm::Aimd(_)));
///
/// let err = AdaptiveLimitLayer::builder().limits(10, 5, 100).build().unwrap_err();
/// assert_eq!(err.setting(), "initial_limit");
/// ```
pub struct AdaptiveBuilder<C = DefaultClassifier> {
    config: AdaptiveConfig,
    classifier: C,
    common: Common,
    shared: bool,
}

bulwark_core::debug_config!(AdaptiveBuilder<C>);

impl AdaptiveBuilder {
    /// A builder starting from `config` (a deserialized one, say); nothing is checked until
    /// [`AdaptiveBuilder::build`].
    pub fn from_config(config: AdaptiveConfig) -> Self {
        AdaptiveBuilder {
            config,
            classifier: DefaultClassifier,
            common: Common::default(),
            shared: false,
        }
    }
}

impl<C> AdaptiveBuilder<C> {
    bulwark_core::builder_methods!(name);

    /// The floor, the starting limit and the ceiling (defaults 1, 20, 1000). The gradient
    /// controller holds its first window at the floor (see
    /// [`AdaptiveConfig::initial_limit`]).
    pub fn limits(mut self, min: u32, initial: u32, max: u32) -> Self {
        self.config.min_limit = min;
        self.config.initial_limit = initial;
        self.config.max_limit = max;
        self
    }

    bulwark_core::builder_setters! {
        /// Gather samples over windows of this length (default 100 ms).
        fn window(window: Duration) { window = window }

        /// Move the limit with `algorithm` (default: the gradient controller).
        fn algorithm(algorithm: Algorithm) { algorithm = algorithm }

        /// The gradient controller with these settings (see [`Gradient`]).
        fn gradient(gradient: Gradient) { algorithm = Algorithm::Gradient(gradient) }

        /// The AIMD controller, a call slower than `latency_threshold` counting as overload,
        /// the other settings at their defaults (see [`Aimd`]).
        fn aimd(latency_threshold: Duration) { algorithm = Algorithm::aimd(latency_threshold) }

        /// The AIMD controller with these settings.
        fn aimd_with(aimd: Aimd) { algorithm = Algorithm::Aimd(aimd) }

        /// Let up to `capacity` callers over the limit wait, each at most `timeout`, for a
        /// permit (fail-fast mode only; default: shed at once).
        fn queue(capacity: u32, timeout: Duration) { queue = Some(Queue { capacity, timeout }) }

        /// Choose fail-fast (the default) or readiness mode.
        fn mode(mode: Mode) { mode = mode }
    }

    /// Shorthand for `.mode(Mode::Readiness)`: for targets of a balancer or failover set.
    pub fn readiness_mode(self) -> Self {
        self.mode(Mode::Readiness)
    }

    /// Decide which outcomes count as failures (a sign of overload for AIMD) with
    /// `classifier` (a [`Classify`](bulwark_core::Classify) type or a closure over the whole
    /// result; default: every error). An ignored outcome is not a sample.
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveBuilder<C2> {
        AdaptiveBuilder {
            config: self.config,
            classifier,
            common: self.common,
            shared: self.shared,
        }
    }

    bulwark_core::builder_methods!(listener);

    /// Build one limit and controller with the layer, shared by every service it wraps, its
    /// handle at [`AdaptiveLimitLayer::handle`] (default: one per service).
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Validates the settings and builds the layer (and, if [`shared`](AdaptiveBuilder::shared),
    /// its limit).
    pub fn build(self) -> Result<AdaptiveLimitLayer<C>, ConfigError>
    where
        C: Clone,
    {
        self.config.validate()?;
        let built = match self.shared {
            true => Built::shared(Arc::new(make_adaptive(
                &self.config,
                self.classifier.clone(),
                &self.common,
            ))),
            false => Built::each(),
        };
        Ok(AdaptiveLimitLayer {
            config: Arc::new(self.config),
            classifier: self.classifier,
            common: self.common,
            built,
        })
    }
}
