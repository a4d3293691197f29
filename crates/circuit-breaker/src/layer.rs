//! The layer and its builder.

use crate::config::{CircuitBreakerConfig, ConfigError, Mode, OpenPeriod, SlowCalls, Window};
use crate::service::{CircuitBreaker, Shared};
use crate::state::Core;
use bulwark_core::builder::Common;
use bulwark_core::DefaultClassifier;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Wraps services in a [`CircuitBreaker`]. Built, and validated, by [`Builder`].
///
/// Each service the layer wraps gets its own breaker: applied per target (in a failover or
/// balance set), every target is judged on its own outcomes. Clones of one wrapped service
/// share that service's breaker.
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    config: Arc<CircuitBreakerConfig>,
    classifier: C,
    common: Common,
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
        }
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// The validated settings.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }
}

bulwark_core::debug_config!(CircuitBreakerLayer<C>);

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let random = self.common.random_or_entropy();
        let core = Core::new(&self.config, self.common.listener().cloned(), random);
        let shared = Shared::new(core, self.classifier.clone(), self.config.mode);
        CircuitBreaker::from_shared(inner, Arc::new(shared))
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
        }
    }

    bulwark_core::builder_methods!(listener);
    bulwark_core::builder_methods! {
        /// Draw the open period's jitter from `random` (seed it in tests). Every breaker built from
        /// the layer shares it.
        random
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        self.config.validate()?;
        Ok(CircuitBreakerLayer {
            config: Arc::new(self.config),
            classifier: self.classifier,
            common: self.common,
        })
    }
}
