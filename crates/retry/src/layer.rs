//! The layer and its builder.

use crate::config::{BudgetConfig, ConfigError, RetryConfig};
use crate::policy::RetryFailures;
use crate::service::BackoffRetry;
use crate::shared::Shared;
use bulwark_core::backoff::ExponentialBackoff;
use bulwark_core::budget::{ResendCap, RetryBudget};
use bulwark_core::builder::Common;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Wraps services in a [`BackoffRetry`]. Built, and validated, by [`Builder`].
///
/// Every service the layer wraps shares its settings, policy and budget: the budget then
/// bounds the retries of all of them together.
pub struct BackoffRetryLayer<P = RetryFailures> {
    shared: Arc<Shared<P>>,
}

impl<P> Clone for BackoffRetryLayer<P> {
    fn clone(&self) -> Self {
        BackoffRetryLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<P> fmt::Debug for BackoffRetryLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BackoffRetryLayer")
            .field(&self.shared)
            .finish()
    }
}

impl BackoffRetryLayer {
    /// A builder starting from the defaults (see [`RetryConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(RetryConfig::default())
    }
}

impl<P> BackoffRetryLayer<P> {
    /// The retry budget the layer draws on, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.budget.as_ref()
    }

    /// The cap on retries in flight the layer honours, if any: give a clone to the other
    /// layers that resend (a hedging layer) so they share it.
    pub fn concurrency_cap(&self) -> Option<&ResendCap> {
        self.shared.cap.as_ref()
    }
}

impl<S, P> Layer<S> for BackoffRetryLayer<P> {
    type Service = BackoffRetry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        BackoffRetry::new(inner, self.shared.clone())
    }
}

/// How the builder gets its budget.
enum BudgetChoice {
    Own(Option<BudgetConfig>),
    Shared(Arc<RetryBudget>),
}

/// Builds a [`BackoffRetryLayer`]; [`Builder::build`] validates every setting.
///
/// ```
/// use bulwark_core::backoff::{ExponentialBackoff, Jitter};
/// use bulwark_retry::BackoffRetryLayer;
/// use std::time::Duration;
///
/// let layer = BackoffRetryLayer::builder()
///     .name("inventory")
///     .max_attempts(4)
///     .backoff(ExponentialBackoff::new(
///         Duration::from_millis(50), 2.0, Duration::from_secs(2), Jitter::Full,
///     ).unwrap())
///     .deadline(Duration::from_secs(5))
///     .attempt_timeout(Duration::from_secs(1))
///     .build()
///     .unwrap();
/// # let _ = layer;
///
/// let err = BackoffRetryLayer::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.setting(), "max_attempts");
/// ```
pub struct Builder<P = RetryFailures> {
    config: RetryConfig,
    budget: BudgetChoice,
    cap: Option<ResendCap>,
    policy: P,
    common: Common,
}

bulwark_core::debug_config!(Builder<P>);

impl Builder {
    /// A builder starting from `config` (a deserialized one, say).
    pub fn from_config(config: RetryConfig) -> Self {
        let budget = BudgetChoice::Own(config.budget);
        Builder {
            config,
            budget,
            cap: None,
            policy: RetryFailures::default(),
            common: Common::default(),
        }
    }
}

impl<P> Builder<P> {
    bulwark_core::builder_methods!(name);

    bulwark_core::builder_setters! {
        /// Attempts per request, the first included (default 3).
        fn max_attempts(attempts: u32) { max_attempts = attempts }

        /// The wait before each retry.
        fn backoff(backoff: ExponentialBackoff) { backoff = backoff }
    }

    /// A budget of this layer's own.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.config.budget = Some(budget);
        self.budget = BudgetChoice::Own(Some(budget));
        self
    }

    /// Draw on a budget shared with other layers.
    pub fn shared_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// No budget: retries are bounded by the attempts alone. Not recommended in front of a
    /// backend that others call too.
    pub fn no_budget(mut self) -> Self {
        self.config.budget = None;
        self.budget = BudgetChoice::Own(None);
        self
    }

    /// At most `cap.max()` resends in flight at once, shared with every layer holding a
    /// clone of `cap` (Envoy's `max_retries`): a retry that finds it full is not sent, and
    /// the last answer is returned ([`GiveUpReason::ConcurrencyCap`](crate::GiveUpReason::ConcurrencyCap)).
    /// On top of the budget; replaces `max_concurrent_retries`.
    pub fn concurrency_cap(mut self, cap: ResendCap) -> Self {
        self.cap = Some(cap);
        self
    }

    bulwark_core::builder_setters! {
        /// Time for all attempts together, counted from the call.
        fn deadline(deadline: Duration) { deadline = Some(deadline) }

        /// Time for each attempt.
        fn attempt_timeout(timeout: Duration) { attempt_timeout = Some(timeout) }

        /// Whether the deadline the request carries or the server received also ends the
        /// attempts (default true; see [`RetryConfig::inherit_deadline`]).
        fn inherit_deadline(inherit: bool) { inherit_deadline = inherit }
    }

    /// Decide what to retry with `policy`.
    pub fn policy<P2>(self, policy: P2) -> Builder<P2> {
        Builder {
            config: self.config,
            budget: self.budget,
            cap: self.cap,
            policy,
            common: self.common,
        }
    }

    /// Retry what `classifier` calls a failure (a shorthand for
    /// `.policy(RetryFailures::new(classifier))`).
    pub fn classifier<C>(self, classifier: C) -> Builder<RetryFailures<C>> {
        self.policy(RetryFailures::new(classifier))
    }

    /// The HTTP policy: idempotent requests, 429/502/503/504 and connection failures,
    /// `Retry-After` (see [`HttpRetryPolicy`](crate::HttpRetryPolicy)).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> Builder<crate::HttpRetryPolicy> {
        self.policy(crate::HttpRetryPolicy::new())
    }

    bulwark_core::builder_methods!(listener);
    bulwark_core::builder_methods! {
        /// Draw jitter from `random` (seed it in tests).
        random
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<BackoffRetryLayer<P>, ConfigError> {
        self.config.validate()?;
        let budget = match self.budget {
            BudgetChoice::Shared(b) => Some(b),
            BudgetChoice::Own(None) => None,
            BudgetChoice::Own(Some(b)) => Some(Arc::new(
                RetryBudget::new(b.ratio, b.floor_per_sec, b.window)
                    .map_err(ConfigError::Budget)?,
            )),
        };
        let c = self.config;
        let cap = self
            .cap
            .or_else(|| c.max_concurrent_retries.map(ResendCap::new));
        Ok(BackoffRetryLayer {
            shared: Arc::new(Shared {
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::Metrics::new(&c.name),
                name: c.name.into_boxed_str(),
                max_attempts: c.max_attempts,
                backoff: c.backoff,
                budget,
                cap,
                deadline: c.deadline,
                attempt_timeout: c.attempt_timeout,
                inherit_deadline: c.inherit_deadline,
                policy: self.policy,
                listener: self.common.listener().cloned(),
                random: self.common.random_or_entropy(),
            }),
        })
    }
}
