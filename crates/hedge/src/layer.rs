//! The layer and its builder.

use crate::config::{ConfigError, HedgeConfig};
use crate::latency::Latencies;
use crate::service::Hedge;
use crate::shared::Shared;
use bulwark_core::attempts::NoAttempts;
use bulwark_core::budget::{ResendCap, RetryBudget};
use bulwark_core::builder::Common;
use bulwark_core::DefaultClassifier;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Wraps services in a [`Hedge`]. Built, and validated, by [`Builder`].
///
/// Every service the layer wraps shares its settings, its latency histogram and its budget.
pub struct HedgeLayer<C = DefaultClassifier, A = NoAttempts> {
    shared: Arc<Shared<C, A>>,
}

impl<C, A> Clone for HedgeLayer<C, A> {
    fn clone(&self) -> Self {
        HedgeLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<C, A> fmt::Debug for HedgeLayer<C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HedgeLayer").field(&self.shared).finish()
    }
}

impl HedgeLayer {
    /// A builder starting from the defaults (see [`HedgeConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(HedgeConfig::default())
    }
}

impl<C, A> HedgeLayer<C, A> {
    /// The wait before a hedge now: the tracked percentile once the window holds enough
    /// answers, else the fixed delay; `None` when no hedge would be sent on a timer.
    pub fn current_delay(&self) -> Option<Duration> {
        self.shared.delay()
    }

    /// The hedge budget (the share of requests that may be hedged).
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// The resend cap the layer honours, if any.
    pub fn concurrency_cap(&self) -> Option<&ResendCap> {
        self.shared.cap.as_ref()
    }
}

impl<S, C, A> Layer<S> for HedgeLayer<C, A> {
    type Service = Hedge<S, C, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(inner, self.shared.clone())
    }
}

/// Builds a [`HedgeLayer`]; [`Builder::build`] validates every setting.
///
/// ```
/// use bulwark_hedge::HedgeLayer;
/// use std::time::Duration;
///
/// // p99 of what the layer saw, 50 ms until it has seen 200 answers; up to two hedges.
/// let layer = HedgeLayer::builder()
///     .name("catalogue")
///     .max_attempts(3)
///     .delay(Duration::from_millis(50))
///     .percentile(0.99)
///     .min_samples(200)
///     .max_extra_load(0.05)
///     .build()
///     .unwrap();
/// assert_eq!(layer.current_delay(), Some(Duration::from_millis(50)));
///
/// let err = HedgeLayer::builder().max_attempts(6).build().unwrap_err();
/// assert_eq!(err.setting(), "max_attempts");
/// ```
pub struct Builder<C = DefaultClassifier, A = NoAttempts> {
    config: HedgeConfig,
    cap: Option<ResendCap>,
    classifier: C,
    attempts: A,
    common: Common,
}

bulwark_core::debug_config!(Builder<C, A>);

impl Builder {
    /// A builder starting from `config` (a deserialized one, say).
    pub fn from_config(config: HedgeConfig) -> Self {
        Builder {
            config,
            cap: None,
            classifier: DefaultClassifier,
            attempts: NoAttempts,
            common: Common::default(),
        }
    }
}

impl<C, A> Builder<C, A> {
    bulwark_core::builder_methods!(name);

    bulwark_core::builder_setters! {
        /// Attempts per request, the first included (default 2: one hedge; at most 5).
        fn max_attempts(attempts: u32) { max_attempts = attempts }

        /// Hedge after the `percentile` (in `(0, 1]`) of the latencies the layer saw; the
        /// `delay`, if set, is used until the window holds `min_samples` answers.
        fn percentile(percentile: f64) { percentile = Some(percentile) }

        /// Answers the window must hold before the percentile is used (default 100).
        fn min_samples(samples: u32) { min_samples = samples }

        /// How far back latencies and the hedge budget count (default 10 s).
        fn window(window: Duration) { window = window }

        /// Hedges allowed per request in the window, in `[0, 1]` (default 0.1).
        fn max_extra_load(share: f64) { max_extra_load = share }

        /// Hedges allowed per second whatever the traffic (default 1).
        fn min_hedges_per_sec(hedges: u32) { min_hedges_per_sec = hedges }

        /// The longest server pushback honoured; a longer one stops the hedges (default 30 s).
        fn max_pushback(cap: Duration) { max_pushback = cap }

        /// Whether the deadline the server received stops the hedges (default true; see
        /// [`HedgeConfig::inherit_deadline`]).
        fn inherit_deadline(inherit: bool) { inherit_deadline = inherit }
    }

    /// Hedge after a fixed `delay` (and not at a percentile; call
    /// [`Builder::percentile`] after this to use `delay` only until the percentile is known).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.config.delay = Some(delay);
        self.config.percentile = None;
        self
    }

    /// Hedges count under `cap`, shared with the other layers holding a clone (the retry's):
    /// a hedge is not sent while it is full (nor any later hedge of that request).
    pub fn concurrency_cap(mut self, cap: ResendCap) -> Self {
        self.cap = Some(cap);
        self
    }

    /// Decide with `classifier` which answers end a request: what it says may be sent again
    /// ([`Classify::resend`](bulwark_core::Classify::resend)) is a non-fatal failure (the
    /// next hedge goes at once), anything else (a success, a failure not worth sending again)
    /// is the answer, except an error while another attempt is still out, which only stops
    /// the hedges. Give it the classifier the rest of the stack uses.
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, A> {
        Builder {
            config: self.config,
            cap: self.cap,
            classifier,
            attempts: self.attempts,
            common: self.common,
        }
    }

    /// Which requests may be hedged and where they keep their
    /// [`Attempts`](bulwark_core::attempts::Attempts) (a
    /// [`RequestAttempts`](bulwark_core::attempts::RequestAttempts)), so a balancer below
    /// sends a hedge to an endpoint the request has not been to. Every request, and no
    /// attempts, by default.
    pub fn attempts<A2>(self, attempts: A2) -> Builder<C, A2> {
        Builder {
            config: self.config,
            cap: self.cap,
            classifier: self.classifier,
            attempts,
            common: self.common,
        }
    }

    /// HTTP requests: only idempotent ones (or with an `Idempotency-Key`) whose body can be
    /// sent again, their attempts in their extensions (a shorthand for
    /// `.attempts(HttpResend::idempotent())`).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> Builder<C, bulwark_core::attempts::HttpResend> {
        self.attempts(bulwark_core::attempts::HttpResend::idempotent())
    }

    bulwark_core::builder_methods!(listener);

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<HedgeLayer<C, A>, ConfigError> {
        self.config.validate()?;
        let c = self.config;
        let budget =
            RetryBudget::new(c.max_extra_load, c.min_hedges_per_sec, c.window).map_err(|_| {
                ConfigError::Invalid {
                    setting: "window",
                    reason: "must be between 10ms and 24h",
                }
            })?;
        Ok(HedgeLayer {
            shared: Arc::new(Shared {
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::Metrics::new(&c.name),
                name: c.name.into_boxed_str(),
                max_attempts: c.max_attempts,
                delay: c.delay,
                latencies: c
                    .percentile
                    .map(|p| Latencies::new(p, c.min_samples, c.window)),
                budget,
                cap: self.cap,
                max_pushback: c.max_pushback,
                inherit_deadline: c.inherit_deadline,
                classifier: self.classifier,
                attempts: self.attempts,
                listener: self.common.listener().cloned(),
            }),
        })
    }
}
