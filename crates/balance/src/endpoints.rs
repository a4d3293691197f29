//! What a balancer balances over: a static list, or a `tower::discover` stream (a DNS name
//! among them), each optionally with active health checks.

use crate::key::EndpointKey;
use crate::membership::{DiscoverFeed, Feed, OnInsert};
use bulwark_core::BoxError;
use std::fmt;
use tower::discover::Discover;
use tower_service::Service;

/// Starts the health-check task: given the balancer's endpoints (weakly), the settings and
/// the random source, returns the task's abort handle.
pub(crate) type SpawnHealth = Box<
    dyn FnOnce(
            std::sync::Weak<dyn crate::handle::Endpoints>,
            crate::HealthCheck,
            std::sync::Arc<dyn bulwark_core::RandomSource>,
        ) -> tokio::task::AbortHandle
        + Send,
>;

/// Hands a static list's probes to the health task, with the ids its endpoints got.
pub(crate) type HandOver = Box<dyn FnOnce(&[usize]) + Send>;

pub(crate) enum Source<S> {
    List(Vec<S>),
    Feed(Box<dyn Feed<S>>),
}

/// The endpoints of a balancer, for [`BalanceLayer::build`](crate::BalanceLayer::build): a
/// static list (a `Vec<S>` converts into one), or a `tower::discover` stream whose members
/// come and go (the DNS source of the `dns` feature is one); either with active health
/// checks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_balance::{BalanceLayer, Endpoints};
/// use tower::discover::Change;
/// use tower::{service_fn, Service, ServiceExt};
///
/// let store = |name: &'static str| service_fn(move |_: ()| async move { Ok::<_, std::io::Error>(name) });
/// let layer = BalanceLayer::builder().build().unwrap();
///
/// // A static list.
/// let mut fixed = layer.build(vec![store("a"), store("b")]).unwrap();
/// assert!(["a", "b"].contains(&fixed.ready().await.unwrap().call(()).await.unwrap()));
///
/// // A stream of changes (here a channel; a DNS source in real life).
/// let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
/// let stream = tokio_stream_like(rx);
/// let mut discovered = layer.build(Endpoints::discover(stream)).unwrap();
/// tx.send(Ok::<_, std::io::Error>(Change::Insert("store-c", store("c")))).unwrap();
/// assert_eq!(discovered.ready().await.unwrap().call(()).await.unwrap(), "c");
/// # fn tokio_stream_like<T>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> impl futures_util::Stream<Item = T> + Unpin {
/// #     futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
/// # }
/// # }
/// ```
pub struct Endpoints<S> {
    pub(crate) source: Source<S>,
    pub(crate) health: Option<SpawnHealth>,
    /// For a static list: its probes, one per endpoint in order, handed over at build.
    pub(crate) probes_for_list: Option<HandOver>,
    /// For a static list: how many probes were given.
    pub(crate) probe_count: Option<usize>,
}

impl<S> fmt::Debug for Endpoints<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.source {
            Source::List(l) => format!("list of {}", l.len()),
            Source::Feed(_) => String::from("discovered"),
        };
        f.debug_struct("Endpoints")
            .field("source", &kind)
            .field("health_checked", &self.health.is_some())
            .finish()
    }
}

impl<S> From<Vec<S>> for Endpoints<S> {
    fn from(list: Vec<S>) -> Self {
        Endpoints::list(list)
    }
}

impl<S> Endpoints<S> {
    /// A static list, named by the builder's `endpoint_names` (or their indexes).
    pub fn list(endpoints: Vec<S>) -> Self {
        Endpoints {
            source: Source::List(endpoints),
            health: None,
            probes_for_list: None,
            probe_count: None,
        }
    }

    /// The number of endpoints of a static list (`None` for a discovered set).
    pub(crate) fn static_len(&self) -> Option<usize> {
        match &self.source {
            Source::List(l) => Some(l.len()),
            Source::Feed(_) => None,
        }
    }

    /// Endpoints from a `tower::discover` stream: an insertion adds an endpoint (or, under a
    /// key already present, gives it a new service, weight and priority, keeping what the
    /// balancer learned of it); a removal drains one (it gets no new request; its requests in
    /// flight finish). Keys name the endpoints and may carry a weight and a priority
    /// ([`EndpointKey`]). A stream error is logged and the members are kept.
    pub fn discover<D>(discover: D) -> Self
    where
        D: Discover<Service = S> + Unpin + Send + 'static,
        D::Key: EndpointKey + Send + 'static,
        D::Error: Into<BoxError>,
        S: Clone + 'static,
    {
        Endpoints {
            source: Source::Feed(Box::new(DiscoverFeed::new(discover, None))),
            health: None,
            probes_for_list: None,
            probe_count: None,
        }
    }

    /// Active health checks for a discovered set: `probe_for` makes the probe of each
    /// endpoint as it arrives, from its key (any `Service<()>` whose `Ok` means healthy, such
    /// as an [`HttpProbe`](crate::HttpProbe) for `GET /health`); a removed endpoint's probe is
    /// dropped. The checks run on a background task that stops when the balancer is dropped
    /// (so the balancer must be built inside a tokio runtime).
    pub fn discover_with_health<D, P, F>(discover: D, mut probe_for: F) -> Self
    where
        D: Discover<Service = S> + Unpin + Send + 'static,
        D::Key: EndpointKey + Send + 'static,
        D::Error: Into<BoxError>,
        S: Clone + 'static,
        P: Service<()> + Send + 'static,
        P::Error: Into<BoxError>,
        P::Future: Send,
        F: FnMut(&D::Key) -> P + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(usize, P)>();
        let on_insert: OnInsert<D::Key> = Box::new(move |key, id| {
            let _ = tx.send((id, probe_for(key)));
        });
        Endpoints {
            source: Source::Feed(Box::new(DiscoverFeed::new(discover, Some(on_insert)))),
            health: Some(spawn_health(rx)),
            probes_for_list: None,
            probe_count: None,
        }
    }

    /// Active health checks for a static list: one probe per endpoint, in order (any
    /// `Service<()>` whose `Ok` means healthy, such as an [`HttpProbe`](crate::HttpProbe)).
    /// The checks run on a background task that stops when the balancer is dropped (so the
    /// balancer must be built inside a tokio runtime). A list of probes that does not match
    /// the endpoints one for one is refused at build
    /// ([`ConfigError::Probes`](crate::ConfigError::Probes)), and so is one given for a
    /// discovered set ([`ConfigError::ProbesForDiscovered`](crate::ConfigError::ProbesForDiscovered):
    /// use [`Endpoints::discover_with_health`]).
    pub fn health<P>(mut self, probes: Vec<P>) -> Self
    where
        P: Service<()> + Send + 'static,
        P::Error: Into<BoxError>,
        P::Future: Send,
    {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(usize, P)>();
        let count = probes.len();
        self.probes_for_list = Some(Box::new(move |ids: &[usize]| {
            for (id, probe) in ids.iter().zip(probes) {
                let _ = tx.send((*id, probe));
            }
        }));
        self.health = Some(spawn_health(rx));
        self.probe_count = Some(count);
        self
    }
}

fn spawn_health<P>(rx: tokio::sync::mpsc::UnboundedReceiver<(usize, P)>) -> SpawnHealth
where
    P: Service<()> + Send + 'static,
    P::Error: Into<BoxError>,
    P::Future: Send,
{
    Box::new(move |endpoints, check, random| {
        tokio::spawn(crate::health::run(endpoints, rx, check, random)).abort_handle()
    })
}
