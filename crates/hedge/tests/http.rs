//! HTTP requests: what may be hedged, and where a hedge goes with a balancer below.

use bulwark_balance::{BalanceLayer, Strategy};
use bulwark_core::attempts::HttpResend;
use bulwark_core::deadline::{parse_grpc_timeout, GRPC_TIMEOUT};
use bulwark_core::replay::CanReplay;
use bulwark_hedge::HedgeLayer;
use bulwark_test_support::ms;
use http::{Request, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::{Layer, ServiceExt};

/// A body that cannot be sent again (a stream bigger than the replay cap, say).
#[derive(Clone, Debug)]
struct Stream;

impl CanReplay for Stream {
    fn can_replay(&self) -> bool {
        false
    }
}

/// An endpoint answering with its name after `wait` ms, counting its calls.
fn endpoint<B: Send + 'static>(
    name: &'static str,
    wait: u64,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<B>,
    Response = Response<&'static str>,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<Response<&'static str>, std::io::Error>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |_: Request<B>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(ms(wait)).await;
            Ok::<_, std::io::Error>(Response::new(name))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_or_non_replayable_request_is_never_hedged() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = HedgeLayer::builder().delay(ms(10)).http().build().unwrap();

    // A POST: sent once, however slow.
    let svc = layer.layer(endpoint::<String>("slow", 100, calls.clone()));
    let post = Request::post("/book").body(String::from("{}")).unwrap();
    assert_eq!(*svc.clone().oneshot(post).await.unwrap().body(), "slow");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A GET with a body that cannot be replayed: once too.
    let svc = layer.layer(endpoint::<Stream>("slow", 100, calls.clone()));
    let get = Request::get("/book/dune").body(Stream).unwrap();
    svc.clone().oneshot(get).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A GET with a body in memory is hedged; so is a POST with an Idempotency-Key.
    let svc = layer.layer(endpoint::<String>("slow", 100, calls.clone()));
    let get = Request::get("/book/dune").body(String::new()).unwrap();
    svc.clone().oneshot(get).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let keyed = Request::post("/book")
        .header("idempotency-key", "k1")
        .body(String::from("{}"))
        .unwrap();
    svc.oneshot(keyed).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn with_a_balancer_below_the_hedge_goes_to_another_endpoint() {
    // First-available always picks the first endpoint that is ready: without the request's
    // attempts, the hedge would go to the slow endpoint again.
    let slow = Arc::new(AtomicUsize::new(0));
    let fast = Arc::new(AtomicUsize::new(0));
    let balancer = BalanceLayer::builder()
        .strategy(Strategy::FirstAvailable)
        .http()
        .build()
        .unwrap()
        .build(vec![
            endpoint::<String>("slow", 1000, slow.clone()),
            endpoint::<String>("fast", 1000, fast.clone()),
        ])
        .unwrap();
    let svc = HedgeLayer::builder()
        .delay(ms(50))
        .http()
        .build()
        .unwrap()
        .layer(balancer);
    let get = Request::get("/book/dune").body(String::new()).unwrap();
    let start = tokio::time::Instant::now();
    let answer = svc.clone().oneshot(get).await.unwrap();
    // Both take a second: the first attempt (sent first) answers first, and the hedge, sent
    // at 50 ms, went to the other endpoint.
    assert_eq!(*answer.body(), "slow");
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(slow.load(Ordering::SeqCst), 1);
    assert_eq!(fast.load(Ordering::SeqCst), 1, "the hedge went elsewhere");
}

/// A gRPC answer: `grpc-status` and, when given, `grpc-retry-pushback-ms`, after `wait` ms.
fn grpc_server(
    script: &'static [(u64, &'static str, Option<&'static str>)],
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<String>,
    Response = Response<()>,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<Response<()>, std::io::Error>> + Send,
> + Clone {
    tower::service_fn(move |_: Request<String>| {
        let (wait, status, pushback) = script[calls.fetch_add(1, Ordering::SeqCst)];
        async move {
            tokio::time::sleep(ms(wait)).await;
            let mut resp = Response::builder().header("grpc-status", status);
            if let Some(p) = pushback {
                resp = resp.header("grpc-retry-pushback-ms", p);
            }
            Ok(resp.body(()).unwrap())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn grpc_pushback_read_by_the_grpc_classifier_delays_or_stops_the_hedges() {
    let layer = || {
        HedgeLayer::builder()
            .max_attempts(3)
            .delay(ms(1000))
            .classifier(bulwark_core::GrpcClassifier::new())
            .attempts(bulwark_core::attempts::HttpResend::any_method())
            .build()
            .unwrap()
    };
    let call = || {
        Request::post("/books.Store/Get")
            .body(String::new())
            .unwrap()
    };

    // UNAVAILABLE with a 100 ms pushback: the next hedge goes 100 ms later, not at once.
    let calls = Arc::new(AtomicUsize::new(0));
    static DELAYED: [(u64, &str, Option<&str>); 2] = [(10, "14", Some("100")), (10, "0", None)];
    let svc = layer().layer(grpc_server(&DELAYED, calls.clone()));
    let start = tokio::time::Instant::now();
    let answer = svc.oneshot(call()).await.unwrap();
    assert_eq!(answer.headers()["grpc-status"], "0");
    assert_eq!(start.elapsed(), ms(120));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // UNAVAILABLE with a negative pushback: no more hedges, the answer is that one.
    let calls = Arc::new(AtomicUsize::new(0));
    static STOP: [(u64, &str, Option<&str>); 1] = [(10, "14", Some("-1"))];
    let svc = layer().layer(grpc_server(&STOP, calls.clone()));
    let answer = svc.oneshot(call()).await.unwrap();
    assert_eq!(answer.headers()["grpc-status"], "14");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // NOT_FOUND is an answer: no hedge at all.
    let calls = Arc::new(AtomicUsize::new(0));
    static FOUND: [(u64, &str, Option<&str>); 1] = [(10, "5", None)];
    let svc = layer().layer(grpc_server(&FOUND, calls.clone()));
    let answer = svc.oneshot(call()).await.unwrap();
    assert_eq!(answer.headers()["grpc-status"], "5");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_tells_the_server_the_time_left_when_it_goes() {
    // A gRPC call (a POST, hedged under `any_method`) carrying `grpc-timeout: 1S`, as a
    // retry above stamps it: the hedge, sent 50 ms later, says 950 ms.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = {
        let seen = seen.clone();
        tower::service_fn(move |request: Request<String>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(
                request
                    .headers()
                    .get(GRPC_TIMEOUT)
                    .and_then(parse_grpc_timeout),
            );
            async move {
                tokio::time::sleep(ms(if n % 2 == 0 { 100 } else { 10 })).await;
                Ok::<_, std::io::Error>(Response::new(n))
            }
        })
    };
    let svc = HedgeLayer::builder()
        .delay(ms(50))
        .attempts(HttpResend::any_method())
        .build()
        .unwrap()
        .layer(backend);
    let call = Request::post("/books.Search/Find")
        .header(GRPC_TIMEOUT, "1S")
        .body(String::new())
        .unwrap();
    assert_eq!(*svc.clone().oneshot(call).await.unwrap().body(), 1);
    assert_eq!(*seen.lock().unwrap(), vec![Some(ms(1000)), Some(ms(950))]);

    // Without the header, none is added.
    seen.lock().unwrap().clear();
    let call = Request::post("/books.Search/Find")
        .body(String::new())
        .unwrap();
    svc.oneshot(call).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![None, None]);
}
