//! The demo as a library: the example's `main` and the integration tests both start it
//! through [`start`].

// The module is compiled into the example and into its tests; each uses a different part of
// it, and its `pub` items are the interface between the files, not a public API.
#![allow(dead_code, unreachable_pub)]

pub mod client;
pub mod config;
pub mod outbound;
pub mod search;
pub mod store;

use config::Config;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_bulwark::core::BoxError;

/// The process's metrics recorder, installed on first use. The layers (feature `metrics`),
/// the store clients and the search service record into it; `GET /metrics` renders it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// A running demo: three stores and the search service.
#[derive(Debug)]
pub struct Demo {
    /// Where the search service listens.
    pub addr: SocketAddr,
    /// The stores, in order.
    pub stores: Vec<Store>,
    /// The outbound stacks and the layers' handles.
    pub outbound: outbound::Outbound,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

/// Starts three stores on ephemeral loopback ports and the search service on `listen`.
pub async fn start(config: Config, listen: SocketAddr) -> Result<Demo, BoxError> {
    let metrics = metrics_handle();
    let mut stores = Vec::with_capacity(client::STORES);
    for i in 1..=client::STORES {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        stores.push(Store::spawn(&format!("store-{i}"), addr, i as u64).await?);
    }
    let clients = client::Clients::new();
    let outbound = outbound::build(&config, &stores, &clients)?;
    let app = search::router(search::AppState {
        config: Arc::new(config),
        outbound: Arc::new(outbound.clone()),
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Demo {
        addr,
        stores,
        outbound,
        stop: Some(stop),
        server,
    })
}

impl Demo {
    /// The search service's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking requests, lets those in flight finish, then stops the stores.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the search service stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "the search service's task failed"),
        }
        for store in &self.stores {
            store.shutdown().await;
        }
    }
}
