//! The search service's HTTP client for one store: the innermost service of every outbound
//! stack, and the one place that knows a request really went out to a store.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;
use tower_bulwark::core::{BoxError, Classify, HttpClassifier, Outcome};

/// The body of every request the search service sends to a store.
pub type Body = Full<Bytes>;

/// The largest store answer the client reads (a store's `GET /books` is a few KiB).
const MAX_ANSWER: usize = 1024 * 1024;

/// Number of stores (the contract's three).
pub const STORES: usize = 3;

/// Carried in a request's extensions: how often it was sent, in total and to each store.
/// The write path reads the per-store counts for its 502 answer; the metrics tell a first
/// attempt from a retry with it.
#[derive(Debug, Default)]
pub struct Sends {
    /// Whether the request is a fan-out (each store's retries count per store) or a read (any
    /// send after the first is a retry, wherever it goes).
    pub fan_out: bool,
    /// Sends in total.
    pub total: AtomicU32,
    /// Sends per store.
    pub per_store: [AtomicU32; STORES],
    /// The last status each store answered (0: none yet).
    pub last_status: [AtomicU16; STORES],
}

/// A shared [`Sends`]: cloned with the request, so every attempt updates the same counts.
#[derive(Debug, Clone, Default)]
pub struct SendsRef(pub Arc<Sends>);

impl SendsRef {
    /// A fresh count for one request.
    pub fn new(fan_out: bool) -> Self {
        SendsRef(Arc::new(Sends {
            fan_out,
            ..Sends::default()
        }))
    }

    /// Sends to store `index` so far.
    pub fn to_store(&self, index: usize) -> u32 {
        self.0
            .per_store
            .get(index)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The last status store `index` answered, if it answered.
    pub fn last_status(&self, index: usize) -> Option<u16> {
        self.0
            .last_status
            .get(index)
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|&s| s != 0)
    }
}

/// What the search service sent one store, counted by its clients (the read and the write
/// path's) where each request goes out: `GET /stores` reads it.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Requests sent and not yet answered (or cut).
    pub in_flight: AtomicU32,
    /// Requests whose answer the path's contract calls a success.
    pub successes: AtomicU64,
    /// Requests that failed: an error, a failing answer, or no answer within the attempt
    /// timeout.
    pub failures: AtomicU64,
    /// Requests dropped before their answer came, by a layer above that no longer needed it
    /// (a hedge answered first, the request's deadline ran out, the caller went away): not
    /// the store's failure.
    pub cancelled: AtomicU64,
}

/// The pooled hyper clients every store client shares.
#[derive(Clone, Debug)]
pub struct Clients {
    /// For book requests.
    pub books: Client<HttpConnector, Body>,
    /// For health probes (a GET with an empty body).
    pub probes: Client<HttpConnector, http_body_util::Empty<Bytes>>,
}

impl Clients {
    /// New pools. Idle connections are closed after 30 s; connecting times out after 1 s (a
    /// store on loopback that does not accept within a second is not there).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let books = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector.clone());
        let probes = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Clients { books, probes }
    }
}

/// Sends requests to one store: takes the request's path and query, sends it to the store's
/// address, reads the whole answer (up to 1 MiB), and counts it in
/// `bookstore_requests_total{store,outcome}` and, for a resend, `bookstore_retries_total{store}`.
///
/// The outcome is the path's contract's ([`StoreClient::counted_by`]), decided where the
/// request goes out. An attempt with no answer within its timeout
/// ([`StoreClient::attempt_timeout`]) fails with tower's `Elapsed` and is a failure; one
/// dropped before by a layer above (a hedge won, a deadline ran out) is counted as cancelled,
/// and `bookstore_requests_total{outcome="cancelled"}`.
#[derive(Clone)]
pub struct StoreClient {
    counters: Arc<Counters>,
    stats: Arc<StoreStats>,
    contract: Arc<dyn Classify<Answer, BoxError> + Send + Sync>,
    index: usize,
    authority: http::uri::Authority,
    http: Client<HttpConnector, Body>,
    timeout: Option<Duration>,
}

/// The store's counters, registered once when the client is made (after `app::start` has
/// installed the recorder), so a request only increments them.
struct Counters {
    success: metrics::Counter,
    failure: metrics::Counter,
    cancelled: metrics::Counter,
    retries: metrics::Counter,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

impl StoreClient {
    /// The client for store number `index` (0-based), named `name`, at `addr`, counting into
    /// `stats` (shared by every client of the store).
    pub fn new(
        name: &str,
        index: usize,
        addr: std::net::SocketAddr,
        http: Client<HttpConnector, Body>,
        stats: Arc<StoreStats>,
    ) -> Self {
        let authority = addr
            .to_string()
            .parse()
            .unwrap_or_else(|_| http::uri::Authority::from_static("127.0.0.1"));
        let store = name.to_string();
        let counters = Arc::new(Counters {
            success: metrics::counter!(
                "bookstore_requests_total", "store" => store.clone(), "outcome" => "success"
            ),
            failure: metrics::counter!(
                "bookstore_requests_total", "store" => store.clone(), "outcome" => "failure"
            ),
            cancelled: metrics::counter!(
                "bookstore_requests_total", "store" => store.clone(), "outcome" => "cancelled"
            ),
            retries: metrics::counter!("bookstore_retries_total", "store" => store),
        });
        StoreClient {
            counters,
            stats,
            contract: Arc::new(HttpClassifier::new()),
            index,
            authority,
            http,
            timeout: None,
        }
    }

    /// Gives each request `timeout` for its answer: past it, the request fails with tower's
    /// `Elapsed` (a failure of the store, for the layers above and for the counts).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Counts each answer as `contract` classifies it (a 5xx or an error is a failure by
    /// default).
    pub fn counted_by(
        mut self,
        contract: impl Classify<Answer, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.contract = Arc::new(contract);
        self
    }
}

impl std::fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreClient")
            .field("index", &self.index)
            .field("authority", &self.authority)
            .finish()
    }
}

/// One request to a store, counted once: by its answer's outcome when it completes (a timeout
/// is a failure), as cancelled when it is dropped before.
struct Counted {
    counters: Arc<Counters>,
    stats: Arc<StoreStats>,
    contract: Arc<dyn Classify<Answer, BoxError> + Send + Sync>,
    done: bool,
}

impl Counted {
    fn start(client: &StoreClient) -> Self {
        client.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Counted {
            counters: client.counters.clone(),
            stats: client.stats.clone(),
            contract: client.contract.clone(),
            done: false,
        }
    }

    fn finish(&mut self, result: &Result<Answer, BoxError>) {
        self.done = true;
        match self.contract.classify(result) {
            Outcome::Failure => self.failed(),
            Outcome::Success | Outcome::Ignored => {
                self.counters.success.increment(1);
                self.stats.successes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn failed(&self) {
        self.counters.failure.increment(1);
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if !self.done {
            self.counters.cancelled.increment(1);
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A store's answer, read whole.
pub type Answer = Response<Bytes>;

impl Service<Request<Body>> for StoreClient {
    type Response = Answer;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // hyper's pooled client takes any number of requests.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path)
            .build();
        let mut counted = Counted::start(self);
        let index = self.index;
        let sends = req.extensions().get::<SendsRef>().cloned();
        let retry = match &sends {
            Some(sends) => {
                let total = sends.0.total.fetch_add(1, Ordering::Relaxed);
                let here = sends
                    .0
                    .per_store
                    .get(self.index)
                    .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed));
                if sends.0.fan_out {
                    here > 0
                } else {
                    total > 0
                }
            }
            None => false,
        };
        if retry {
            counted.counters.retries.increment(1);
        }
        let fut = match uri {
            Ok(uri) => {
                *req.uri_mut() = uri;
                Some(self.http.request(req))
            }
            Err(_) => None,
        };
        let timeout = self.timeout;
        Box::pin(async move {
            let answer = async {
                let resp = fut.ok_or("the request's path is not a valid URI")?.await?;
                let (parts, body) = resp.into_parts();
                let bytes = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
                Ok(Response::from_parts(parts, bytes))
            };
            let result: Result<Answer, BoxError> = match timeout {
                Some(limit) => tokio::time::timeout(limit, answer)
                    .await
                    .unwrap_or_else(|_| Err(tower::timeout::error::Elapsed::new().into())),
                None => answer.await,
            };
            if let (Some(sends), Ok(resp)) = (&sends, &result) {
                if let Some(slot) = sends.0.last_status.get(index) {
                    slot.store(resp.status().as_u16(), Ordering::Relaxed);
                }
            }
            counted.finish(&result);
            result
        })
    }
}
