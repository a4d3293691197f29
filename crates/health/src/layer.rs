//! The gate's settings, validated when built.

use crate::gate::{run, HealthGate, Status};
use crate::{ConfigError, HealthCheck};
use bulwark_core::{BoxError, RandomSource, SplitMix64};
use std::fmt;
use std::sync::Arc;
use tower_service::Service;

/// The name and the checks' settings.
#[derive(Debug, Clone)]
struct Settings {
    name: String,
    check: HealthCheck,
}

/// Validated settings for health gates: build one per service with
/// [`HealthGateLayer::build`], giving its probe.
#[derive(Clone)]
pub struct HealthGateLayer {
    settings: Settings,
    random: Arc<dyn RandomSource>,
}

impl fmt::Debug for HealthGateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HealthGateLayer")
            .field(&self.settings)
            .finish()
    }
}

impl HealthGateLayer {
    /// A builder, with the default [`HealthCheck`] and the name `"health"`.
    pub fn builder() -> Builder {
        Builder {
            settings: Settings {
                name: String::from("health"),
                check: HealthCheck::default(),
            },
            random: None,
        }
    }

    /// The checks' settings.
    pub fn check(&self) -> &HealthCheck {
        &self.settings.check
    }

    /// `inner` behind a gate that `probe` (any `Service<()>` whose `Ok` means healthy, such
    /// as an [`HttpProbe`](crate::HttpProbe) for `GET /health`) keeps open. The checks start
    /// now, on a task of the current tokio runtime (the first probe at once), and stop when
    /// the last clone of the gate is dropped.
    ///
    /// Fails with [`ConfigError::NoRuntime`] outside a tokio runtime.
    pub fn build<S, P>(&self, inner: S, probe: P) -> Result<HealthGate<S>, ConfigError>
    where
        P: Service<()> + Send + 'static,
        P::Error: Into<BoxError>,
        P::Future: Send,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let status = Arc::new(Status::new(self.settings.name.clone()));
        let check = self.settings.check;
        let task = runtime
            .spawn(run(status.clone(), probe, check, self.random.clone()))
            .abort_handle();
        Ok(HealthGate::new(inner, status, task))
    }
}

/// Builds a [`HealthGateLayer`].
pub struct Builder {
    settings: Settings,
    random: Option<Arc<dyn RandomSource>>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Builder").field(&self.settings).finish()
    }
}

impl Builder {
    /// The gate's name, in logs and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// When and how the service is probed.
    pub fn check(mut self, check: HealthCheck) -> Self {
        self.settings.check = check;
        self
    }

    /// The source of the intervals' jitter (seed it in tests).
    pub fn random(mut self, random: impl RandomSource) -> Self {
        self.random = Some(Arc::new(random));
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<HealthGateLayer, ConfigError> {
        self.settings.check.validate()?;
        Ok(HealthGateLayer {
            settings: self.settings,
            random: self
                .random
                .unwrap_or_else(|| Arc::new(SplitMix64::from_entropy())),
        })
    }
}
