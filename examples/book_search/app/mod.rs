//! The demo as a library: the example's `main` and the integration tests both start it
//! through [`start`].

// The module is compiled into the example and into its tests; each uses a different part of
// it, and its `pub` items are the interface between the files, not a public API.
#![allow(dead_code, unreachable_pub)]

pub mod client;
pub mod config;
pub mod contract;
pub mod outbound;
pub mod search;
pub mod serve;
pub mod store;

use config::Config;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_bulwark::core::BoxError;

/// What a binary of the demo (the service, the load generator) sets up first: logs to stderr
/// at `log_level` unless `RUST_LOG` says otherwise, and a multi-threaded runtime. An error
/// (the runtime cannot start) is printed with `program`'s name and becomes the exit code.
pub fn process(
    program: &str,
    log_level: &str,
) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    log_to_stderr(log_level);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{program}: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        })
}

/// Logs to stderr through `tracing`, at `default` unless `RUST_LOG` says otherwise (colours
/// only on a terminal).
fn log_to_stderr(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The buckets of every duration histogram (`*_seconds`), in seconds: from 1 ms to 30 s, the
/// range of the demo's store latencies, attempt timeouts and deadlines. With buckets, the
/// exporter renders a Prometheus histogram (what `histogram_quantile` reads), not a summary.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's metrics recorder, installed on first use. The layers (feature `metrics`),
/// the store clients and the search service record into it; `GET /metrics` renders it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
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

/// How the demo's servers face their clients: settings that are not in the TOML file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Answer the chaos controls (`PUT /stores/{name}/fault`; each store's `PUT /fault` and
    /// `POST /health/flip`) even when listening on an address that is not loopback
    /// (`--allow-chaos`). On loopback they always answer; elsewhere, without this, they answer
    /// 403.
    pub allow_chaos: bool,
    /// The search service's per-connection bounds (the stores, whose only client is the
    /// search service, use [`serve::Limits::store`]).
    pub limits: serve::Limits,
}

/// Whether a server bound to `addr` answers its chaos controls: on loopback always, elsewhere
/// (`0.0.0.0` included) only if `allow_chaos`.
pub fn chaos_allowed(addr: SocketAddr, allow_chaos: bool) -> bool {
    allow_chaos || addr.ip().to_canonical().is_loopback()
}

/// Starts three stores on ephemeral loopback ports and the search service on `listen`, with
/// the default [`Options`].
pub async fn start(config: Config, listen: SocketAddr) -> Result<Demo, BoxError> {
    start_with(config, listen, Options::default()).await
}

/// Starts three stores on ephemeral loopback ports and the search service on `listen`.
pub async fn start_with(
    config: Config,
    listen: SocketAddr,
    options: Options,
) -> Result<Demo, BoxError> {
    let metrics = metrics_handle();
    let store_limits = serve::Limits::store();
    let mut stores = Vec::with_capacity(client::STORES);
    for i in 1..=client::STORES {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let name = format!("store-{i}");
        let store = Store::spawn_with(&name, addr, i as u64, options.allow_chaos, store_limits);
        stores.push(store.await?);
    }
    let clients = client::Clients::new();
    let outbound = outbound::build(&config, &stores, &clients)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = search::router(search::AppState {
        config: Arc::new(config),
        outbound: Arc::new(outbound.clone()),
        metrics,
        chaos: chaos_allowed(addr, options.allow_chaos),
        limits: options.limits,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve::serve(listener, app, options.limits, stopped));
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
