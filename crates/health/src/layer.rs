//! The gate's settings, validated when built.

use crate::gate::{run, HealthGate, Status};
use crate::{ConfigError, HealthCheck};
use bulwark_core::builder::Common;
use bulwark_core::{BoxError, RandomSource};
use std::sync::Arc;
use tower_service::Service;

/// The name and the checks' settings.
#[derive(Debug, Clone)]
struct GateConfig {
    name: String,
    check: HealthCheck,
}

/// Validated settings for health gates: build one per service with
/// [`HealthGateLayer::build`], giving its probe.
#[derive(Clone)]
pub struct HealthGateLayer {
    config: GateConfig,
    random: Arc<dyn RandomSource>,
}

bulwark_core::debug_config!(HealthGateLayer);

impl HealthGateLayer {
    /// A builder, with the default [`HealthCheck`] and the name `"health"`.
    pub fn builder() -> Builder {
        Builder {
            config: GateConfig {
                name: String::from("health"),
                check: HealthCheck::default(),
            },
            common: Common::default(),
        }
    }

    /// The checks' settings.
    pub fn check(&self) -> &HealthCheck {
        &self.config.check
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
        let status = Arc::new(Status::new(self.config.name.clone()));
        let check = self.config.check;
        let task = runtime
            .spawn(run(status.clone(), probe, check, self.random.clone()))
            .abort_handle();
        Ok(HealthGate::new(inner, status, task))
    }
}

/// Builds a [`HealthGateLayer`].
pub struct Builder {
    config: GateConfig,
    common: Common,
}

bulwark_core::debug_config!(Builder);

impl Builder {
    bulwark_core::builder_methods!(name);
    bulwark_core::builder_methods!(
        /// The source of the intervals' jitter (seed it in tests).
        random
    );
    bulwark_core::builder_setters! {
        /// When and how the service is probed.
        fn check(check: HealthCheck) { check = check }
    }

    /// Validates the settings.
    pub fn build(self) -> Result<HealthGateLayer, ConfigError> {
        self.config.check.validate()?;
        Ok(HealthGateLayer {
            config: self.config,
            random: self.common.random_or_entropy(),
        })
    }
}
