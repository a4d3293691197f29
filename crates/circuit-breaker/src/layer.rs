//! The layer and its builder.

use crate::config::{CircuitBreakerConfig, ConfigError, Mode, OpenPeriod, SlowCalls, Window};
use crate::service::{CircuitBreaker, Shared};
use crate::state::Core;
use bulwark_core::builder::Common;
use bulwark_core::DefaultClassifier;
use std::fmt;
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

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

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

impl<C> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

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

    /// Trip when this share of the window's calls failed (in `(0, 1]`; default 0.5).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.config.failure_rate = rate;
        self
    }

    /// Judge the last `size` calls (default 100).
    pub fn count_window(mut self, size: u32) -> Self {
        self.config.window = Window::Count { size };
        self
    }

    /// Judge the calls of the last `length`, kept in `buckets` buckets.
    pub fn time_window(mut self, length: Duration, buckets: u32) -> Self {
        self.config.window = Window::Time { length, buckets };
        self
    }

    /// The window must hold this many calls before a rate can trip (default 20).
    pub fn min_calls(mut self, calls: u32) -> Self {
        self.config.min_calls = calls;
        self
    }

    /// Also trip after `failures` failures in a row (default off).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = Some(failures);
        self
    }

    /// Also trip when this share of the window's calls took longer than `threshold`
    /// (default off). A slow half-open probe counts as a failed probe.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.config.slow_calls = Some(SlowCalls { threshold, rate });
        self
    }

    /// Stay open for `period` after each trip (default 30 s).
    pub fn open_for(mut self, period: Duration) -> Self {
        self.config.open = OpenPeriod::Fixed(period);
        self
    }

    /// Stay open longer on each consecutive trip (see [`OpenPeriod::Exponential`]).
    pub fn open_backoff(
        mut self,
        initial: Duration,
        multiplier: f64,
        max: Duration,
        jitter: f64,
    ) -> Self {
        self.config.open = OpenPeriod::Exponential {
            initial,
            multiplier,
            max,
            jitter,
        };
        self
    }

    /// Admit this many probes when half-open (default 1); all must succeed to close.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.config.half_open_probes = probes;
        self
    }

    /// Re-open when the probes have not decided within `wait` (default: no limit).
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.config.max_wait_in_half_open = Some(wait);
        self
    }

    /// Choose fail-fast (the default) or readiness mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
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
    bulwark_core::builder_methods!(random "Draw the open period's jitter from `random` (seed it in tests). Every breaker built from the layer shares it.");

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
