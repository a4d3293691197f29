//! The fan-out service, its layer and builder.

use crate::config::{ConfigError, FanOutConfig, Policy, Stragglers};
use crate::future::{Branch, ResponseFuture};
use crate::outcome::{Collect, Merge};
use bulwark_core::builder::{self, Common};
use bulwark_core::local::LocalRef;
use bulwark_core::{BoxError, Classify, DefaultClassifier, SharedListener};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// What every clone of one fan-out shares.
pub(crate) struct Shared<C, M> {
    pub(crate) names: Arc<crate::outcome::Names>,
    pub(crate) policy: Policy,
    pub(crate) branch_deadline: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) inherit_deadline: bool,
    pub(crate) stragglers: Stragglers,
    pub(crate) classifier: C,
    pub(crate) merge: M,
    pub(crate) listener: Option<SharedListener>,
    /// Set only for a fan-out made by `Layer::layer` from a list `build` refuses: every call
    /// then fails with it, and no target is called.
    pub(crate) invalid: Option<ConfigError>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Metrics,
}

/// Sends each request to every target at once and aggregates the answers. Built by
/// [`FanOutLayer`]; see the crate docs.
///
/// `poll_ready` is always ready: each target is polled ready by its own branch of the
/// response future, just before that branch calls it, so no target holds a reservation for a
/// request that has not reached it, and a slow-to-be-ready target does not hold up the others.
pub struct FanOut<S, C = DefaultClassifier, M = Collect> {
    targets: Vec<S>,
    shared: LocalRef<Shared<C, M>>,
}

impl<S: Clone, C, M> Clone for FanOut<S, C, M> {
    fn clone(&self) -> Self {
        FanOut {
            targets: self.targets.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C, M> fmt::Debug for FanOut<S, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.get();
        f.debug_struct("FanOut")
            .field("name", &s.names.fanout)
            .field("policy", &s.policy)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl<S, C, M> FanOut<S, C, M> {
    /// The targets, in order.
    pub fn targets(&self) -> &[S] {
        &self.targets
    }
}

impl<S, C, M, Req> Service<Req> for FanOut<S, C, M>
where
    S: Service<Req> + Clone,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    Req: Clone,
    C: Classify<S::Response, S::Error>,
    M: Merge<S::Response>,
{
    type Response = M::Output;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, M>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = self.shared.get();
        if shared.invalid.is_some() {
            // No branch: the future answers with the configuration error.
            return ResponseFuture::new(Vec::new(), self.shared.for_call(), None);
        }
        let in_scope = bulwark_core::deadline::inherited(shared.inherit_deadline);
        let limit = match (shared.branch_deadline, shared.deadline) {
            (None, None) => in_scope,
            (a, b) => {
                let now = Instant::now();
                let own = [a, b].into_iter().flatten().map(|d| now + d).min();
                bulwark_core::deadline::earlier(own, in_scope)
            }
        };
        // One allocation for the branches, each with its own clone of the target and of the
        // request (and, once its target is called, the target's future in a box).
        let n = self.targets.len();
        let mut branches = Vec::with_capacity(n);
        for (i, target) in self.targets.iter().enumerate() {
            let req = if i + 1 == n {
                None // filled below with the original
            } else {
                Some(request.clone())
            };
            branches.push(Branch::new(target.clone(), req));
        }
        if let Some(last) = branches.last_mut() {
            last.set_request(request);
        }
        ResponseFuture::new(branches, self.shared.for_call(), limit)
    }
}

/// Builds [`FanOut`]s over lists of targets. Built, and validated, by [`Builder`].
pub struct FanOutLayer<C = DefaultClassifier, M = Collect> {
    config: Arc<FanOutConfig>,
    classifier: C,
    merge: M,
    common: Common,
}

impl<C: Clone, M: Clone> Clone for FanOutLayer<C, M> {
    fn clone(&self) -> Self {
        FanOutLayer {
            config: self.config.clone(),
            classifier: self.classifier.clone(),
            merge: self.merge.clone(),
            common: self.common.clone(),
        }
    }
}

bulwark_core::debug_config!(FanOutLayer<C, M>);

impl FanOutLayer {
    /// A builder starting from the defaults (see [`FanOutConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(FanOutConfig::default())
    }
}

impl<C: Clone, M: Clone> FanOutLayer<C, M> {
    /// A fan-out to `targets`, in order.
    pub fn build<S>(&self, targets: Vec<S>) -> Result<FanOut<S, C, M>, ConfigError> {
        self.config.validate_for(targets.len())?;
        Ok(self.make(targets, None))
    }

    /// The fan-out; with `invalid`, one whose every call fails with that error. Names that do
    /// not match the targets one for one are replaced by the targets' indexes.
    fn make<S>(&self, targets: Vec<S>, invalid: Option<ConfigError>) -> FanOut<S, C, M> {
        let c = &*self.config;
        let (names, _) = builder::target_names("target_names", &c.target_names, targets.len());
        let names: Box<[Arc<str>]> = names.into_iter().map(Arc::from).collect();
        let shared = Shared {
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Metrics::new(&c.name, &names),
            names: Arc::new(crate::outcome::Names {
                fanout: Arc::from(c.name.as_str()),
                targets: names,
            }),
            policy: c.policy,
            branch_deadline: c.branch_deadline,
            deadline: c.deadline,
            inherit_deadline: c.inherit_deadline,
            stragglers: c.stragglers,
            classifier: self.classifier.clone(),
            merge: self.merge.clone(),
            listener: self.common.listener().cloned(),
            invalid,
        };
        FanOut {
            targets,
            shared: LocalRef::new(Arc::new(shared)),
        }
    }

    /// A fan-out to `targets`, each wrapped in `per_target` first (a `BackoffRetryLayer` that
    /// retries until the answer is a 201, say).
    pub fn build_with<S, L>(
        &self,
        targets: Vec<S>,
        per_target: &L,
    ) -> Result<FanOut<L::Service, C, M>, ConfigError>
    where
        L: tower_layer::Layer<S>,
    {
        self.build(targets.into_iter().map(|t| per_target.layer(t)).collect())
    }
}

/// A fan-out to a `Vec` of targets, as a [`Layer`](tower_layer::Layer): so
/// `ServiceBuilder::new().layer(fan_out).service(targets)` works, with layers stacked above.
///
/// A `Layer` cannot return an error, and a fan-out over a list [`FanOutLayer::build`] refuses
/// must not pretend to work: over no targets the `All` policy would be met by nobody, and a
/// quorum of 0 before any target answered. So:
///
/// * a list `build` would refuse (empty, or shorter than the quorum) gives a fan-out whose every call fails at once with that [`ConfigError`],
///   without calling any target (and a `tracing` error when it is made);
/// * `target_names` that do not match the list one for one only label events and errors: the
///   targets are named by their indexes instead (with a `tracing` warning), never paired up
///   wrongly.
///
/// Use [`FanOutLayer::build`] to get the typed error up front instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bulwark_fanout::{ConfigError, FanOutLayer, FirstSuccess};
/// use tower::util::BoxCloneService;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// type Store = BoxCloneService<&'static str, u16, std::io::Error>;
/// let store = || -> Store { BoxCloneService::new(service_fn(|_| async { Ok(201) })) };
/// let layer = FanOutLayer::builder().merge(FirstSuccess).build().unwrap();
///
/// let mut register = ServiceBuilder::new().layer(layer.clone()).service(vec![store(), store()]);
/// assert_eq!(register.ready().await.unwrap().call("alice").await.unwrap(), 201);
///
/// // No targets: every call fails with the error `build` would have returned.
/// let mut nobody = ServiceBuilder::new().layer(layer).service(Vec::<Store>::new());
/// let err = nobody.ready().await.unwrap().call("alice").await.unwrap_err();
/// assert_eq!(err.downcast_ref::<ConfigError>(), Some(&ConfigError::NoTargets));
/// # }
/// ```
impl<S, C: Clone, M: Clone> tower_layer::Layer<Vec<S>> for FanOutLayer<C, M> {
    type Service = FanOut<S, C, M>;

    fn layer(&self, targets: Vec<S>) -> Self::Service {
        let invalid = match self.config.validate_for(targets.len()) {
            Ok(()) => None,
            // Checked last, so everything else is valid; the names fall back to indexes.
            Err(ConfigError::TargetNames { names, targets, .. }) => {
                tracing::warn!(
                    fanout = %self.config.name,
                    names,
                    targets,
                    "target_names does not match the targets; naming them by index"
                );
                None
            }
            Err(e) => {
                tracing::error!(
                    fanout = %self.config.name,
                    error = %e,
                    "fan-out made from an invalid list: every call will fail"
                );
                Some(e)
            }
        };
        self.make(targets, invalid)
    }
}

/// Builds a [`FanOutLayer`].
///
/// ```
/// use bulwark_fanout::{FanOutLayer, Policy, ConfigError};
/// let layer = FanOutLayer::builder().policy(Policy::Quorum(4)).build().unwrap();
/// let err = layer.build(vec![(); 3].into_iter().map(|_| tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) })).collect()).unwrap_err();
/// assert_eq!(err, ConfigError::Quorum { quorum: 4, targets: 3 });
/// ```
pub struct Builder<C = DefaultClassifier, M = Collect> {
    config: FanOutConfig,
    classifier: C,
    merge: M,
    common: Common,
}

bulwark_core::debug_config!(Builder<C, M>);

impl Builder {
    /// A builder starting from `config`.
    pub fn from_config(config: FanOutConfig) -> Self {
        Builder {
            config,
            classifier: DefaultClassifier,
            merge: Collect,
            common: Common::default(),
        }
    }
}

impl<C, M> Builder<C, M> {
    bulwark_core::builder_methods!(name, target_names);

    bulwark_core::builder_setters! {
        /// When the fan-out has succeeded (default: all targets).
        fn policy(policy: Policy) { policy = policy }

        /// Time each target has, from the call.
        fn branch_deadline(deadline: Duration) { branch_deadline = Some(deadline) }

        /// Let targets still running when the answer is known finish on a background task, for
        /// at most `within` (default: they are cancelled).
        fn finish_stragglers(within: Duration) { stragglers = Stragglers::Finish(within) }

        /// Time the whole fan-out has, from the call.
        fn deadline(deadline: Duration) { deadline = Some(deadline) }

        /// Whether the deadline the server received cuts the fan-out short (default true; see
        /// [`FanOutConfig::inherit_deadline`]).
        fn inherit_deadline(inherit: bool) { inherit_deadline = inherit }
    }

    /// What counts as a target's success (a closure over the whole result: "201 only").
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, M> {
        Builder {
            config: self.config,
            classifier,
            merge: self.merge,
            common: self.common,
        }
    }

    /// How the outcomes become one answer (default: [`Collect`]).
    pub fn merge<M2>(self, merge: M2) -> Builder<C, M2> {
        Builder {
            config: self.config,
            classifier: self.classifier,
            merge,
            common: self.common,
        }
    }

    bulwark_core::builder_methods!(listener);

    /// Validates the settings that do not depend on the targets (see
    /// [`FanOutConfig::validate`]) and builds the layer; the rest are checked against the
    /// targets when a fan-out is built.
    pub fn build(self) -> Result<FanOutLayer<C, M>, ConfigError> {
        self.config.validate()?;
        Ok(FanOutLayer {
            config: Arc::new(self.config),
            classifier: self.classifier,
            merge: self.merge,
            common: self.common,
        })
    }
}
