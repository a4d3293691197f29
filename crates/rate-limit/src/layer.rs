//! The layer and its builder.

use crate::config::{Mode, RateLimitConfig};
use crate::handle::Handle;
use crate::limiter::Limiter;
use crate::service::RateLimit;
use bulwark_core::builder::Common;
use bulwark_core::ConfigError;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Wraps services in a [`RateLimit`]. Built, and validated, by [`Builder`].
///
/// The layer *is* the limit: every service it wraps, every clone of those and every clone of
/// the layer take their tokens from its one bucket (a client's limit towards a backend, a
/// server's limit on a route). For a limit per target, build a layer per target.
#[derive(Clone)]
pub struct RateLimitLayer {
    config: Arc<RateLimitConfig>,
    limiter: Arc<Limiter>,
}

bulwark_core::debug_config!(RateLimitLayer);

impl RateLimitLayer {
    /// A builder starting from the defaults (see [`RateLimitConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(RateLimitConfig::default())
    }

    /// The validated settings, as built (a [`Handle`] may have changed the rate and burst
    /// since: see [`Handle::settings`]).
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// A handle to the layer's limiter.
    pub fn handle(&self) -> Handle {
        Handle::new(self.limiter.clone())
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone())
    }
}

/// Builds a [`RateLimitLayer`]; [`Builder::build`] validates every setting.
///
/// ```
/// use bulwark_rate_limit::RateLimitLayer;
/// use std::time::Duration;
///
/// let layer = RateLimitLayer::builder()
///     .name("search")
///     .rate(100, Duration::from_secs(1))
///     .burst(20)
///     .max_wait(Duration::from_millis(50))
///     .build()
///     .unwrap();
/// assert_eq!(layer.config().burst(), 20);
///
/// let err = RateLimitLayer::builder().per_second(0).build().unwrap_err();
/// assert_eq!(err.setting(), "rate");
/// assert_eq!(err.to_string(), "`rate` must be greater than zero");
/// ```
pub struct Builder {
    config: RateLimitConfig,
    common: Common,
}

bulwark_core::debug_config!(Builder);

impl Builder {
    /// A builder starting from `config` (a deserialized one, say); nothing is checked until
    /// [`Builder::build`].
    pub fn from_config(config: RateLimitConfig) -> Self {
        Builder {
            config,
            common: Common::default(),
        }
    }

    bulwark_core::builder_methods!(name);

    /// Add `rate` tokens per `period` (default 100 per second), one every `period / rate`.
    pub fn rate(mut self, rate: u32, period: Duration) -> Self {
        self.config.rate = rate;
        self.config.period = period;
        self
    }

    /// Add `rate` tokens per second.
    pub fn per_second(self, rate: u32) -> Self {
        self.rate(rate, Duration::from_secs(1))
    }

    bulwark_core::builder_setters! {
        /// Hold at most `burst` tokens (default: the rate, one period's worth).
        fn burst(burst: u32) { burst = Some(burst) }

        /// Let a caller wait up to `wait` in `poll_ready` for a token before refusing it
        /// (default: refuse at once). Fail-fast mode only.
        fn max_wait(wait: Duration) { max_wait = Some(wait) }

        /// Choose fail-fast (the default) or readiness mode.
        fn mode(mode: Mode) { mode = mode }

        /// Let each clone that has called before take up to `tokens` at once and spend them
        /// on its own (default 1: none), for a high rate shared by many threads; see
        /// [`RateLimitConfig`] for what it costs in precision.
        fn lease(tokens: u32) { lease = tokens }
    }

    /// Shorthand for `.mode(Mode::Readiness)`: for endpoints of a balancer or failover set.
    pub fn readiness_mode(self) -> Self {
        self.mode(Mode::Readiness)
    }

    bulwark_core::builder_methods!(listener);

    /// Validates the settings and builds the layer (and its limiter, with a full bucket).
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        let bucket = self.config.bucket()?;
        let limiter = Limiter::new(&self.config, bucket, self.common.listener().cloned());
        Ok(RateLimitLayer {
            config: Arc::new(self.config),
            limiter: Arc::new(limiter),
        })
    }
}
