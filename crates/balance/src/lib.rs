//! A load balancer for Tower services that knows which endpoints are alive, and follows a
//! fleet that changes.
//!
//! One service type, [`Balance`], built one way ([`BalanceLayer::build`]) over
//! [`Endpoints`]: a static list, a `tower::discover` stream, or (feature `dns`) a DNS name
//! (`dns::DnsDiscover`: A/AAAA or SRV records, refreshed on their TTL, the last good set kept
//! when resolution fails).
//!
//! Features: `dns` (the DNS source, over hickory-resolver), `http` ([`HttpProbe`]), `metrics`
//! (per-endpoint metrics through the `metrics` facade), `serde` (deserialize
//! [`BalanceConfig`]).
//!
//! * **Strategies**: round robin, power of two choices by requests in flight, power of two
//!   choices by peak-EWMA latency (the default), first available in order. A call dropped
//!   before it answered (a hedge that lost, a caller's timeout) counts for peak EWMA as having
//!   taken at least the time it ran, when that is more than the estimate: an endpoint whose
//!   slow answers are always cut short does not look as fast as its fast ones.
//! * **Chooses among endpoints that can take the request**: an endpoint marked unhealthy,
//!   ejected, of a less preferred priority, or not ready (an open circuit breaker in readiness
//!   mode, a full concurrency limit) is never picked, and never dropped; power of two choices
//!   draws both candidates among the endpoints that may be picked, and one found not ready is
//!   replaced by another draw, so a slow endpoint is not taken because its rival was out.
//!   An ejected endpoint comes back by itself when its time is up; a request waiting for an
//!   endpoint is woken then, when an endpoint is marked healthy again, or when one joins.
//! * **Membership**: a static list, or a stream of changes ([`Endpoints::discover`], keys
//!   implementing [`EndpointKey`], with a weight and a priority): an insertion under a key
//!   already present updates that endpoint and keeps what the balancer learned of it (latency,
//!   ejections, health); a removed endpoint gets no new request and its requests in flight
//!   finish. A batch of changes copies the chunks of 64 members it touches and the table of
//!   chunk pointers (one pointer per 64 members), not the list; a clone of the balancer (a
//!   retry above clones it per request) costs a few reference counts whatever the number of
//!   endpoints.
//! * **New endpoints do not take the whole load**: an endpoint that has not answered yet
//!   counts at `default_rtt` (30 ms) for peak EWMA when it joins, decaying from then as a
//!   measure would (so it is tried after a while even if the others stay faster), and, with [`SlowStart`] (off by default),
//!   an endpoint that joins, or comes back from failing its health checks, gets a share that
//!   ramps up over a window (Envoy's formula), with every strategy.
//! * **Weights and priorities**: endpoints of a discovered set may carry a weight (their
//!   share of requests) and a priority (requests go to the most preferred priority that has an
//!   endpoint that is healthy and not ejected), as SRV records do.
//! * **Active health checks** ([`Endpoints::health`] for a list, or
//!   [`Endpoints::discover_with_health`] with a probe made per discovered endpoint): a probe
//!   per endpoint (any `Service<()>`, or [`HttpProbe`] for `GET /health`, 2xx healthy) every
//!   2 s with a 2 s timeout; unhealthy after 2 failures, healthy after 1 success; 10% jitter.
//!   The task stops when the balancer is dropped.
//! * **Resends go elsewhere**: with [`Builder::http`] (or [`Builder::attempts`] for your own
//!   request type), a retry layer stacked above that says which request it readies for
//!   ([`Attempts::scope`](bulwark_core::attempts::Attempts::scope), as the retry layer's
//!   policies do) gets an endpoint the request has not been to, reserved in `poll_ready` and
//!   used by `call`, while another can take it.
//! * **Passive ejection**: after 5 failures in a row (by the shared classification) an endpoint
//!   is ejected for 30 s times the number of its ejections, capped at 300 s (or until its
//!   health checks, having failed, pass again); each 30 s it then stays in takes one ejection
//!   off its count. At most half the endpoints are out at once (one always may be).
//!   Optionally also on the share of failures over a window ([`FailureRate`]), and an
//!   optional panic mode (`panic_threshold`, off by default): when too few endpoints are
//!   healthy and not ejected, balance over all of them.
//! * **A handle** ([`Handle`], from [`Balance::handle`] or the layer's
//!   [`BalanceLayer::handles`]): the endpoints' state, their health set by hand, and the
//!   ejection thresholds and durations, the panic threshold and `wait_for_ready` changed while
//!   it runs ([`Handle::update`]), validated as the builder validates them, without dropping a
//!   request in flight.
//! * **Observability**: events (ejected, returned, health changed), `tracing` on each and on
//!   membership changes, and per-endpoint metrics (feature `metrics`; names in [`metrics`]).
//! * **When nothing can take a request**: it asks the discovery source to look again
//!   ([`Builder::refresh`]), waits up to `wait_for_ready` (1 s), then fails with
//!   [`NoEndpointReady`], which says why (none healthy, all ejected, every circuit open, none
//!   ready) and when the first ejected endpoint returns or the first open circuit probes.
//!   Endpoints say why they are not ready ([`bulwark_core::hint`]): when every one is refused
//!   by an open circuit (a circuit breaker in readiness mode) that probes only after the wait
//!   would end, the request fails at once ([`Unavailable::CircuitsOpen`]); an endpoint that is
//!   a health gate (`bulwark_health`) saying unhealthy counts as unhealthy.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use bulwark_balance::{BalanceLayer, Strategy};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! let store = |name: &'static str| service_fn(move |_: ()| async move { Ok::<_, std::io::Error>(name) });
//! let mut stores = BalanceLayer::builder()
//!     .strategy(Strategy::RoundRobin)
//!     .build()
//!     .unwrap()
//!     .build(vec![store("a"), store("b")])
//!     .unwrap();
//! let mut seen = Vec::new();
//! for _ in 0..4 {
//!     seen.push(stores.ready().await.unwrap().call(()).await.unwrap());
//! }
//! assert_eq!(seen, ["a", "b", "a", "b"]);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod core;
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub mod dns;
mod endpoints;
mod error;
mod future;
mod handle;
mod health;
mod key;
mod layer;
#[cfg(all(test, bulwark_loom))]
mod loom_tests;
mod membership;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod roster;
mod service;
mod sync;

pub use bulwark_core::Misuse;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use bulwark_health::HttpProbe;
pub use bulwark_health::{HealthCheck, UnhealthyStatus};
pub use config::{BalanceConfig, ConfigError, Ejection, FailureRate, SlowStart, Strategy};
pub use endpoints::Endpoints;
pub use error::{NoEndpointReady, Unavailable};
pub use future::ResponseFuture;
pub use handle::{EndpointSnapshot, Handle};
pub use key::{EndpointKey, Refresh, Weighted};
pub use layer::{BalanceLayer, Builder};
pub use service::Balance;

// The README's example, run as a doctest so the registry page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
