//! The layer and its builder.

use crate::config::{ConfigError, FailoverConfig, Mode};
use crate::policy::FailOnFailure;
use crate::service::Failover;
use crate::shared::Shared;
use bulwark_core::builder::Common;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Turns an ordered list of targets into a [`Failover`]. Built, and validated, by
/// [`Builder`].
///
/// Use [`FailoverLayer::build`] (or [`FailoverLayer::build_with`], which wraps each target
/// in a per-target layer such as a circuit breaker) to get a typed error for an empty list.
/// As a [`Layer`] over `Vec<S>` it cannot return one: an empty list then answers every call
/// (after `wait_for_ready`) with [`NoTargetReady`](crate::NoTargetReady), and `target_names`
/// that do not match the list one for one are replaced by the targets' indexes (with a
/// `tracing` warning).
#[derive(Clone)]
pub struct FailoverLayer<P = FailOnFailure> {
    config: Arc<FailoverConfig>,
    policy: P,
    common: Common,
}

bulwark_core::debug_config!(FailoverLayer<P>);

impl FailoverLayer {
    /// A builder starting from the defaults (see [`FailoverConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(FailoverConfig::default())
    }
}

impl<P: Clone> FailoverLayer<P> {
    /// The settings.
    pub fn config(&self) -> &FailoverConfig {
        &self.config
    }

    /// A failover set over `targets`, in order.
    pub fn build<S: Clone>(&self, targets: Vec<S>) -> Result<Failover<S, P>, ConfigError> {
        self.config.validate_for(targets.len())?;
        Ok(self.make(targets))
    }

    /// A failover set over `targets`, each wrapped in `per_target` (a circuit breaker in
    /// readiness mode, say: an open target is then skipped until its breaker lets a probe
    /// through).
    pub fn build_with<S, L>(
        &self,
        targets: Vec<S>,
        per_target: &L,
    ) -> Result<Failover<L::Service, P>, ConfigError>
    where
        L: Layer<S>,
        L::Service: Clone,
    {
        self.build(targets.into_iter().map(|t| per_target.layer(t)).collect())
    }

    fn make<S: Clone>(&self, targets: Vec<S>) -> Failover<S, P> {
        let c = &*self.config;
        let shared = Shared::new(
            c.name.clone(),
            c.target_names.clone(),
            targets.clone(),
            c.mode,
            c.attempt_timeout,
            c.deadline,
            c.inherit_deadline,
            c.interval,
            c.wait_for_ready,
            self.policy.clone(),
            self.common.listener().cloned(),
        );
        Failover::new(targets, Arc::new(shared))
    }
}

impl<S: Clone, P: Clone> Layer<Vec<S>> for FailoverLayer<P> {
    type Service = Failover<S, P>;

    fn layer(&self, targets: Vec<S>) -> Self::Service {
        self.make(targets)
    }
}

/// Builds a [`FailoverLayer`]; [`Builder::build`] validates the settings.
///
/// ```
/// use bulwark_failover::{FailoverLayer, Mode};
/// use std::time::Duration;
///
/// let layer = FailoverLayer::builder()
///     .name("stores")
///     .target_names(["store-1", "store-2", "store-3"])
///     .attempt_timeout(Duration::from_secs(5))
///     .mode(Mode::Sticky)
///     .build()
///     .unwrap();
/// let err = layer.build(Vec::<tower::util::BoxCloneService<(), (), std::io::Error>>::new()).unwrap_err();
/// assert_eq!(err.setting(), "targets");
/// ```
pub struct Builder<P = FailOnFailure> {
    config: FailoverConfig,
    policy: P,
    common: Common,
}

bulwark_core::debug_config!(Builder<P>);

impl Builder {
    /// A builder starting from `config` (a deserialized one, say).
    pub fn from_config(config: FailoverConfig) -> Self {
        Builder {
            config,
            policy: FailOnFailure::default(),
            common: Common::default(),
        }
    }
}

impl<P> Builder<P> {
    bulwark_core::builder_methods!(name, target_names);

    bulwark_core::builder_setters! {
        /// Sticky (the default) or priority.
        fn mode(mode: Mode) { mode = mode }

        /// Time for each attempt (default 30 s).
        fn attempt_timeout(timeout: Duration) { attempt_timeout = Some(timeout) }

        /// No time limit per attempt.
        fn no_attempt_timeout() { attempt_timeout = None }

        /// Wait between a failed attempt and the next target (default none).
        fn interval(interval: Duration) { interval = interval }

        /// How long to wait for a ready target before failing (default 1 s).
        fn wait_for_ready(wait: Duration) { wait_for_ready = wait }

        /// Time for the whole request, every target it tries included (default none): when
        /// it passes, the attempt under way is dropped and the call fails with
        /// [`DeadlineExceeded`](bulwark_core::DeadlineExceeded). Each attempt's time is cut to
        /// what is left.
        fn deadline(deadline: Duration) { deadline = Some(deadline) }

        /// Whether the deadline in scope (its server's caller's, see
        /// [`bulwark_core::deadline`]) also ends the request (default true).
        fn inherit_deadline(inherit: bool) { inherit_deadline = inherit }
    }

    /// Decide what is a failure with `policy`.
    pub fn policy<P2>(self, policy: P2) -> Builder<P2> {
        Builder {
            config: self.config,
            policy,
            common: self.common,
        }
    }

    /// Fail over on what `classifier` calls a failure.
    pub fn classifier<C>(self, classifier: C) -> Builder<FailOnFailure<C>> {
        self.policy(FailOnFailure::new(classifier))
    }

    /// The HTTP policy: errors and 501-504 fail over, bodies must be replayable.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> Builder<crate::HttpFailoverPolicy> {
        self.policy(crate::HttpFailoverPolicy::new())
    }

    bulwark_core::builder_methods!(listener);

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<FailoverLayer<P>, ConfigError> {
        self.config.validate()?;
        Ok(FailoverLayer {
            config: Arc::new(self.config),
            policy: self.policy,
            common: self.common,
        })
    }
}
