//! The layer and its builder.

use crate::config::{CircuitBreakerConfig, ConfigError, Mode, OpenPeriod, SlowCalls, Window};
use crate::handle::Handle;
use crate::service::{CircuitBreaker, Shared};
use crate::state::Core;
use bulwark_core::builder::Common;
use bulwark_core::built::Built;
use bulwark_core::DefaultClassifier;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Wraps services in a [`CircuitBreaker`]. Built, and validated, by [`Builder`].
///
/// By default each service the layer wraps gets its own breaker: applied per target (in a
/// failover or balance set), every target is judged on its own outcomes. Clones of one wrapped
/// service share that service's breaker, and [`CircuitBreakerLayer::handles`] lists the
/// breakers alive that the layer (or a clone of it) built, for an admin endpoint to find one by
/// name.
///
/// Built [`shared`](Builder::shared), the layer holds one breaker, made when it is built, and
/// wraps every service with it (as tower's `GlobalConcurrencyLimitLayer` shares one limit):
/// two clients of one backend share one verdict on it, and [`CircuitBreakerLayer::handle`]
/// gives its handle before any service exists.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_circuit_breaker::{CircuitBreakerLayer, Open};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let layer = CircuitBreakerLayer::builder()
///     .name("inventory")
///     .count_window(4)
///     .min_calls(2)
///     .shared()
///     .build()
///     .unwrap();
/// let handle = layer.handle().expect("a shared layer has one breaker");
/// let down = |_: ()| async { Err::<(), _>(std::io::Error::other("down")) };
/// let mut client_a = layer.layer(service_fn(down));
/// let mut client_b = layer.layer(service_fn(down));
///
/// // Failures through one client open the breaker for the other.
/// for _ in 0..2 {
///     let _ = client_a.ready().await.unwrap().call(()).await;
/// }
/// let err = client_b.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(err.is::<Open>());
/// assert_eq!(handle.metrics().not_permitted, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    config: Arc<CircuitBreakerConfig>,
    classifier: C,
    common: Common,
    built: Built<Shared<C>>,
}

impl CircuitBreakerLayer {
    /// A builder starting from the defaults (see [`CircuitBreakerConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(CircuitBreakerConfig::default())
    }

    /// A layer with every default setting.
    pub fn new() -> Self {
        CircuitBreakerLayer {
            config: Arc::new(CircuitBreakerConfig::default()),
            classifier: DefaultClassifier,
            common: Common::default(),
            built: Built::each(),
        }
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// The validated settings the layer was built with (a breaker's [`Handle::config`] has
    /// those in force, changed or not).
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// Whether every service the layer wraps shares one breaker ([`Builder::shared`]).
    pub fn is_shared(&self) -> bool {
        self.built.shared_state().is_some()
    }
}

impl<C: Send + Sync + 'static> CircuitBreakerLayer<C> {
    /// The handle of the one breaker of a [`shared`](Builder::shared) layer, at once, before any
    /// service is built; `None` for a layer that builds a breaker per service (see
    /// [`CircuitBreakerLayer::handles`]).
    pub fn handle(&self) -> Option<Handle> {
        self.built.shared_state().map(|s| Handle::new(s.clone()))
    }

    /// The handles of the breakers alive that this layer and its clones built, in the order
    /// they were built (a breaker goes when the last clone of its service does); the one
    /// breaker of a shared layer. Find a target's breaker by [`Handle::name`] when each
    /// target's layer is named for it.
    ///
    /// ```
    /// use bulwark_circuit_breaker::CircuitBreakerLayer;
    /// use tower::{service_fn, Layer};
    ///
    /// let layer = CircuitBreakerLayer::builder().name("store-1").build().unwrap();
    /// assert!(layer.handle().is_none() && layer.handles().is_empty());
    /// let svc = layer.layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
    /// let handles = layer.handles();
    /// assert_eq!(handles.len(), 1);
    /// assert_eq!(handles[0].name(), "store-1");
    /// drop((svc, handles)); // a handle keeps its breaker alive too
    /// assert!(layer.handles().is_empty());
    /// ```
    pub fn handles(&self) -> Vec<Handle> {
        let live = self.built.live();
        live.into_iter().map(|s| Handle::new(s)).collect()
    }
}

bulwark_core::debug_config!(CircuitBreakerLayer<C>);

/// One breaker, from the layer's settings.
fn make<C>(config: &CircuitBreakerConfig, classifier: C, common: &Common) -> Shared<C> {
    let core = Core::new(
        config,
        common.listener().cloned(),
        common.random_or_entropy(),
    );
    Shared::new(core, classifier, config.mode)
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = self
            .built
            .get_or_make(|| make(&self.config, self.classifier.clone(), &self.common));
        CircuitBreaker::from_shared(inner, shared)
    }
}

/// Builds a [`CircuitBreakerLayer`]; [`Builder::build`] validates every setting.
///
/// ```
/// use bulwark_circuit_breaker::{CircuitBreakerLayer, ConfigError};
/// use std::time::Duration;
///
/// let layer = CircuitBreakerLayer::builder()
///     .name("inventory")
///     .failure_rate(0.2)
///     .time_window(Duration::from_secs(60), 12)
///     .min_calls(10)
///     .consecutive_failures(5)
///     .slow_calls(Duration::from_secs(2), 0.8)
///     .open_backoff(Duration::from_secs(5), 2.0, Duration::from_secs(120), 0.1)
///     .half_open_probes(3)
///     .readiness_mode()
///     .build()
///     .unwrap();
/// assert_eq!(layer.config().half_open_probes, 3);
///
/// let err = CircuitBreakerLayer::builder().failure_rate(1.5).build().unwrap_err();
/// assert_eq!(err.setting(), "failure_rate");
/// assert_eq!(err.to_string(), "`failure_rate` must be in (0, 1], got 1.5");
/// ```
pub struct Builder<C = DefaultClassifier> {
    config: CircuitBreakerConfig,
    classifier: C,
    common: Common,
    shared: bool,
}

bulwark_core::debug_config!(Builder<C>);

impl Builder {
    /// A builder starting from `config` (a deserialized one, say); nothing is checked until
    /// [`Builder::build`].
    pub fn from_config(config: CircuitBreakerConfig) -> Self {
        Builder {
            config,
            classifier: DefaultClassifier,
            common: Common::default(),
            shared: false,
        }
    }
}

impl<C> Builder<C> {
    bulwark_core::builder_methods!(name);

    bulwark_core::builder_setters! {
        /// Trip when this share of the window's calls failed (in `(0, 1]`; default 0.5).
        fn failure_rate(rate: f64) { failure_rate = rate }

        /// Judge the last `size` calls (default 100).
        fn count_window(size: u32) { window = Window::Count { size } }

        /// Judge the calls of the last `length`, kept in `buckets` buckets.
        fn time_window(length: Duration, buckets: u32) { window = Window::Time { length, buckets } }

        /// The window must hold this many calls before a rate can trip (default 20).
        fn min_calls(calls: u32) { min_calls = calls }

        /// Also trip after `failures` failures in a row (default off).
        fn consecutive_failures(failures: u32) { consecutive_failures = Some(failures) }

        /// Also trip when this share of the window's calls took longer than `threshold`
        /// (default off). A slow half-open probe counts as a failed probe.
        fn slow_calls(threshold: Duration, rate: f64) {
            slow_calls = Some(SlowCalls { threshold, rate })
        }

        /// Stay open for `period` after each trip (default 30 s).
        fn open_for(period: Duration) { open = OpenPeriod::Fixed(period) }

        /// Stay open longer on each consecutive trip (see [`OpenPeriod::Exponential`]).
        fn open_backoff(initial: Duration, multiplier: f64, max: Duration, jitter: f64) {
            open = OpenPeriod::Exponential { initial, multiplier, max, jitter }
        }

        /// Admit this many probes when half-open (default 1); all must succeed to close.
        fn half_open_probes(probes: u32) { half_open_probes = probes }

        /// Re-open when the probes have not decided within `wait` (default: no limit).
        fn max_wait_in_half_open(wait: Duration) { max_wait_in_half_open = Some(wait) }

        /// Choose fail-fast (the default) or readiness mode.
        fn mode(mode: Mode) { mode = mode }
    }

    /// Shorthand for `.mode(Mode::Readiness)`: for targets of a balancer or failover set.
    pub fn readiness_mode(self) -> Self {
        self.mode(Mode::Readiness)
    }

    /// Decide outcomes with `classifier` (a [`Classify`](bulwark_core::Classify) type or a
    /// closure over the whole result).
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2> {
        Builder {
            config: self.config,
            classifier,
            common: self.common,
            shared: self.shared,
        }
    }

    bulwark_core::builder_methods!(listener);
    bulwark_core::builder_methods! {
        /// Draw the open period's jitter from `random` (seed it in tests). Every breaker built from
        /// the layer shares it.
        random
    }

    /// Build one breaker with the layer, shared by every service it wraps, its handle at
    /// [`CircuitBreakerLayer::handle`] (default: a breaker per service). See
    /// [`CircuitBreakerLayer`].
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Validates the settings and builds the layer (and, if [`shared`](Builder::shared), its
    /// breaker).
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError>
    where
        C: Clone,
    {
        self.config.validate()?;
        let built = match self.shared {
            true => Built::shared(Arc::new(make(
                &self.config,
                self.classifier.clone(),
                &self.common,
            ))),
            false => Built::each(),
        };
        Ok(CircuitBreakerLayer {
            config: Arc::new(self.config),
            classifier: self.classifier,
            common: self.common,
            built,
        })
    }
}
