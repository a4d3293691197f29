//! The fan-out service, its layer and builder.

use crate::config::{ConfigError, FanOutConfig, Policy, Stragglers};
use crate::future::{Branch, ResponseFuture};
use crate::outcome::{Collect, Merge};
use bulwark_core::local::LocalRef;
use bulwark_core::{BoxError, Classify, DefaultClassifier, Listener, SharedListener};
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
    pub(crate) stragglers: Stragglers,
    pub(crate) classifier: C,
    pub(crate) merge: M,
    pub(crate) listener: Option<SharedListener>,
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
    S::Future: Unpin + Send + 'static,
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
        let limit = match (shared.branch_deadline, shared.deadline) {
            (None, None) => None,
            (a, b) => {
                let now = Instant::now();
                [a, b].into_iter().flatten().map(|d| now + d).min()
            }
        };
        // One allocation: a branch per target, each with its own clone of the target and
        // of the request.
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
    listener: Option<SharedListener>,
}

impl<C: Clone, M: Clone> Clone for FanOutLayer<C, M> {
    fn clone(&self) -> Self {
        FanOutLayer {
            config: self.config.clone(),
            classifier: self.classifier.clone(),
            merge: self.merge.clone(),
            listener: self.listener.clone(),
        }
    }
}

impl<C, M> fmt::Debug for FanOutLayer<C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOutLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FanOutLayer {
    /// A builder starting from the defaults (see [`FanOutConfig`]).
    pub fn builder() -> Builder {
        Builder::from_config(FanOutConfig::default())
    }
}

impl<C: Clone, M: Clone> FanOutLayer<C, M> {
    /// A fan-out to `targets`, in order.
    pub fn build<S>(&self, targets: Vec<S>) -> Result<FanOut<S, C, M>, ConfigError> {
        let c = &*self.config;
        c.validate_for(targets.len())?;
        let names: Box<[Arc<str>]> = (0..targets.len())
            .map(|i| {
                c.target_names
                    .get(i)
                    .map(|n| Arc::from(n.as_str()))
                    .unwrap_or_else(|| Arc::from(i.to_string()))
            })
            .collect();
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
            stragglers: c.stragglers,
            classifier: self.classifier.clone(),
            merge: self.merge.clone(),
            listener: self.listener.clone(),
        };
        Ok(FanOut {
            targets,
            shared: LocalRef::new(Arc::new(shared)),
        })
    }

    /// A fan-out to `targets`, each wrapped in `per_target` first (the seed's case: a
    /// `BackoffRetryLayer` that retries until the answer is a 201).
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

/// Builds a [`FanOutLayer`].
///
/// ```
/// use bulwark_fanout::{FanOutLayer, Policy, ConfigError};
/// let layer = FanOutLayer::builder().policy(Policy::Quorum(4)).build();
/// let err = layer.build(vec![(); 3].into_iter().map(|_| tower::service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) })).collect()).unwrap_err();
/// assert_eq!(err, ConfigError::Quorum { quorum: 4, targets: 3 });
/// ```
pub struct Builder<C = DefaultClassifier, M = Collect> {
    config: FanOutConfig,
    classifier: C,
    merge: M,
    listener: Option<SharedListener>,
}

impl<C, M> fmt::Debug for Builder<C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder starting from `config`.
    pub fn from_config(config: FanOutConfig) -> Self {
        Builder {
            config,
            classifier: DefaultClassifier,
            merge: Collect,
            listener: None,
        }
    }
}

impl<C, M> Builder<C, M> {
    /// The name reported in events, logs, metric labels and errors.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Names for the targets, in order.
    pub fn target_names<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.config.target_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// When the fan-out has succeeded (default: all targets).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// Time each target has, from the call.
    pub fn branch_deadline(mut self, deadline: Duration) -> Self {
        self.config.branch_deadline = Some(deadline);
        self
    }

    /// Let targets still running when the answer is known finish on a background task, for
    /// at most `within` (default: they are cancelled).
    pub fn finish_stragglers(mut self, within: Duration) -> Self {
        self.config.stragglers = Stragglers::Finish(within);
        self
    }

    /// Time the whole fan-out has, from the call.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// What counts as a target's success (a closure over the whole result: "201 only").
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, M> {
        Builder {
            config: self.config,
            classifier,
            merge: self.merge,
            listener: self.listener,
        }
    }

    /// How the outcomes become one answer (default: [`Collect`]).
    pub fn merge<M2>(self, merge: M2) -> Builder<C, M2> {
        Builder {
            config: self.config,
            classifier: self.classifier,
            merge,
            listener: self.listener,
        }
    }

    /// Send events to `listener`.
    pub fn listener(mut self, listener: impl Listener) -> Self {
        self.listener = Some(SharedListener::new(listener));
        self
    }

    /// The layer (the settings are checked against the targets when a fan-out is built).
    pub fn build(self) -> FanOutLayer<C, M> {
        FanOutLayer {
            config: Arc::new(self.config),
            classifier: self.classifier,
            merge: self.merge,
            listener: self.listener,
        }
    }
}
