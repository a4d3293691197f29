//! The bounds axum (and any multi-threaded server) puts on a service, checked at compile time
//! for every layer: if one stops holding, this file stops compiling.
//!
//! axum's `Router::layer` and `Router::route_layer` want a layer that is
//! `Clone + Send + Sync + 'static` and whose service is `Clone + Send + Sync + 'static` with a
//! `Send + 'static` future and an `Infallible` error (our errors become responses through
//! `HandleErrorLayer::new(tower_bulwark::axum::handle_error)`); `Router::route_service` wants
//! the same of a service. A client stack shared by handlers (in the state, or captured by a
//! handler closure) needs the same bounds, since a handler's future must be `Send`.
//!
//! Three shapes are checked for each layer:
//!
//! * over axum's own `Route` (what `Router::layer` hands to a layer), with the request type the
//!   layer can take: `Request<Body>` for the breaker and the balancer; for the layers that send
//!   a request more than once (retry, failover, fan-out) the request must be `Clone`, and
//!   axum's `Body` is not, so the body is wrapped in `ReplayBody` first (a `map_request` in
//!   front: see `tests/axum.rs`);
//! * over a boxed client (`BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>,
//!   BoxError>`), the shape of an outbound stack a handler calls;
//! * over a concrete `service_fn` type, so no bound is satisfied by the boxing alone;
//!
//! each with the default and the HTTP policy or classifier. Then whole stacks go through
//! `Router::layer`, `Router::route_layer` and `Router::route_service` themselves.
//!
//! Nothing here runs anything but the Router builders: a test that compiles has passed.

#![cfg(all(
    feature = "circuit-breaker",
    feature = "retry",
    feature = "failover",
    feature = "balance",
    feature = "fanout",
    feature = "http",
    feature = "axum"
))]

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, Route};
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use std::convert::Infallible;
use std::future::{ready, Ready};
use tower::layer::util::Stack;
use tower::util::{BoxCloneSyncService, MapRequest, MapRequestLayer, ServiceFn};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_bulwark::balance::{Balance, BalanceLayer, Handle as BalanceHandle};
use tower_bulwark::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, Handle, Open};
use tower_bulwark::core::attempts::{HttpAttempts, NoAttempts};
use tower_bulwark::core::replay::{replayable, ReplayBody, DEFAULT_REPLAY_CAP};
use tower_bulwark::core::{BoxError, DefaultClassifier, HttpClassifier};
use tower_bulwark::failover::{
    AllFailed, FailOnFailure, Failover, FailoverLayer, HttpFailoverPolicy, NoTargetReady,
};
use tower_bulwark::fanout::{Collect, FanOut, FanOutFailed, FanOutLayer, FirstSuccess, HttpMerge};
use tower_bulwark::retry::{
    AttemptTimedOut, BackoffRetry, BackoffRetryLayer, DeadlineExceeded, HttpRetryPolicy,
    RetryFailures,
};
use tower_bulwark::ServiceBuilderExt;

// ---------------------------------------------------------------------------------------------
// The assertions
// ---------------------------------------------------------------------------------------------

/// What axum asks of a service, and of the services a handler's future holds: usable from
/// any worker thread, shared by every connection, a future that can move between threads.
fn assert_service<S, Req>()
where
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + Sync + 'static,
{
}

/// What `Router::route_service` asks of a service (after `HandleErrorLayer`).
fn assert_route_service<S>()
where
    S: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
}

/// What `Router::layer` and `Router::route_layer` ask of a layer.
fn assert_router_layer<L>()
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service: Service<Request> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Response: IntoResponse + 'static,
    <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
}

/// A layer (or a handle) shared by every clone of every stack it builds.
fn assert_shared<T: Clone + Send + Sync + 'static>() {}

/// An error that can go into a `BoxError`.
fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}

// ---------------------------------------------------------------------------------------------
// The inner services
// ---------------------------------------------------------------------------------------------

/// The body a client stack sends: in memory, so `Clone` already.
type ClientBody = Full<Bytes>;
/// A boxed outbound client.
type Client = BoxCloneSyncService<http::Request<ClientBody>, http::Response<ClientBody>, BoxError>;
/// axum's request with a body that can be sent more than once.
type Replayable = http::Request<ReplayBody<Body>>;

/// A concrete, unboxed client: a `service_fn` over a plain function.
type FnClient = ServiceFn<
    fn(http::Request<ClientBody>) -> Ready<Result<http::Response<ClientBody>, std::io::Error>>,
>;

fn answer(
    _: http::Request<ClientBody>,
) -> Ready<Result<http::Response<ClientBody>, std::io::Error>> {
    ready(Ok(http::Response::new(Full::new(Bytes::from_static(
        b"ok",
    )))))
}

fn fn_client() -> FnClient {
    tower::service_fn(answer as fn(_) -> _)
}

/// The mapping that makes an axum request replayable.
type ToReplayable = fn(Request) -> Replayable;

fn to_replayable(req: Request) -> Replayable {
    replayable(req, DEFAULT_REPLAY_CAP)
}

// ---------------------------------------------------------------------------------------------
// Layers and handles
// ---------------------------------------------------------------------------------------------

#[test]
fn every_layer_and_handle_is_clone_send_sync() {
    assert_shared::<CircuitBreakerLayer>();
    assert_shared::<CircuitBreakerLayer<HttpClassifier>>();
    assert_shared::<Handle>();
    assert_shared::<BackoffRetryLayer>();
    assert_shared::<BackoffRetryLayer<RetryFailures<HttpClassifier>>>();
    assert_shared::<BackoffRetryLayer<HttpRetryPolicy>>();
    assert_shared::<FailoverLayer>();
    assert_shared::<FailoverLayer<FailOnFailure<HttpClassifier>>>();
    assert_shared::<FailoverLayer<HttpFailoverPolicy>>();
    assert_shared::<BalanceLayer>();
    assert_shared::<BalanceLayer<HttpClassifier, HttpAttempts>>();
    assert_shared::<BalanceHandle>();
    assert_shared::<FanOutLayer>();
    assert_shared::<FanOutLayer<HttpClassifier, HttpMerge>>();
    assert_shared::<FanOutLayer<DefaultClassifier, FirstSuccess>>();

    assert_error::<Open>();
    assert_error::<DeadlineExceeded>();
    assert_error::<AttemptTimedOut>();
    assert_error::<NoTargetReady>();
    assert_error::<AllFailed>();
    assert_error::<tower_bulwark::balance::NoEndpointReady>();
    assert_error::<FanOutFailed>();
}

// ---------------------------------------------------------------------------------------------
// Each service: over axum's Route, a boxed client and a concrete service_fn
// ---------------------------------------------------------------------------------------------

#[test]
fn circuit_breaker_service_and_future() {
    assert_service::<CircuitBreaker<Route, DefaultClassifier>, Request>();
    assert_service::<CircuitBreaker<Route, HttpClassifier>, Request>();
    assert_service::<CircuitBreaker<Client, DefaultClassifier>, http::Request<ClientBody>>();
    assert_service::<CircuitBreaker<Client, HttpClassifier>, http::Request<ClientBody>>();
    assert_service::<CircuitBreaker<FnClient, DefaultClassifier>, http::Request<ClientBody>>();
    assert_service::<CircuitBreaker<FnClient, HttpClassifier>, http::Request<ClientBody>>();
}

#[test]
fn backoff_retry_service_and_future() {
    // `Request<Body>` is not `Clone`: over a Route, the retry takes a replayable request.
    assert_service::<BackoffRetry<Route, RetryFailures>, Replayable>();
    assert_service::<BackoffRetry<Route, HttpRetryPolicy>, Replayable>();
    assert_service::<BackoffRetry<Client, RetryFailures>, http::Request<ClientBody>>();
    assert_service::<BackoffRetry<Client, HttpRetryPolicy>, http::Request<ClientBody>>();
    assert_service::<BackoffRetry<FnClient, RetryFailures>, http::Request<ClientBody>>();
    // The HTTP policy searches the error's source chain: it takes `BoxError`, `io::Error` or
    // `Infallible` errors (a breaker below it, `map_err(Into::into)`, or `AsError`).
    assert_service::<BackoffRetry<FnClient, HttpRetryPolicy>, http::Request<ClientBody>>();
    // And what axum is given: the mapping in front makes it a service of `Request<Body>`.
    assert_service::<MapRequest<BackoffRetry<Route, HttpRetryPolicy>, ToReplayable>, Request>();
}

#[test]
fn failover_service_and_future() {
    assert_service::<Failover<Route, FailOnFailure>, Replayable>();
    assert_service::<Failover<Route, HttpFailoverPolicy>, Replayable>();
    assert_service::<Failover<Client, FailOnFailure>, http::Request<ClientBody>>();
    assert_service::<Failover<Client, FailOnFailure<HttpClassifier>>, http::Request<ClientBody>>();
    assert_service::<Failover<Client, HttpFailoverPolicy>, http::Request<ClientBody>>();
    assert_service::<Failover<FnClient, FailOnFailure>, http::Request<ClientBody>>();
    assert_service::<Failover<FnClient, HttpFailoverPolicy>, http::Request<ClientBody>>();
}

#[test]
fn balance_service_and_future() {
    assert_service::<Balance<Route, DefaultClassifier, NoAttempts>, Request>();
    assert_service::<Balance<Route, HttpClassifier, HttpAttempts>, Request>();
    assert_service::<Balance<Client, DefaultClassifier, NoAttempts>, http::Request<ClientBody>>();
    assert_service::<Balance<Client, HttpClassifier, HttpAttempts>, http::Request<ClientBody>>();
    assert_service::<Balance<FnClient, DefaultClassifier, NoAttempts>, http::Request<ClientBody>>();
    assert_service::<Balance<FnClient, HttpClassifier, HttpAttempts>, http::Request<ClientBody>>();
    // A balancer fed by a `Discover` stream (or a DNS name) is the same type: the stream
    // lives in the state the clones share, so it is `Clone + Send + Sync` too.
}

#[test]
fn fan_out_service_and_future() {
    assert_service::<FanOut<Route, DefaultClassifier, Collect>, Replayable>();
    assert_service::<FanOut<Route, HttpClassifier, HttpMerge>, Replayable>();
    assert_service::<FanOut<Client, DefaultClassifier, Collect>, http::Request<ClientBody>>();
    assert_service::<FanOut<Client, HttpClassifier, HttpMerge>, http::Request<ClientBody>>();
    assert_service::<FanOut<Client, DefaultClassifier, FirstSuccess>, http::Request<ClientBody>>();
    assert_service::<FanOut<FnClient, HttpClassifier, HttpMerge>, http::Request<ClientBody>>();
    // A fan-out over per-target stacks of our own layers (the seed's write path).
    assert_service::<
        FanOut<
            BackoffRetry<CircuitBreaker<Client, HttpClassifier>, HttpRetryPolicy>,
            HttpClassifier,
            HttpMerge,
        >,
        http::Request<ClientBody>,
    >();
}

#[test]
fn over_hyper_utils_client() {
    type Hyper = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        ClientBody,
    >;
    type Req = http::Request<ClientBody>;
    assert_service::<CircuitBreaker<Hyper, HttpClassifier>, Req>();
    // The HTTP retry policy reads the error's sources through `AsError`, which hyper-util's
    // error does not implement: the retry goes over the breaker (which boxes the error), or
    // over a `map_err(BoxError::from)`.
    assert_service::<BackoffRetry<CircuitBreaker<Hyper, HttpClassifier>, HttpRetryPolicy>, Req>();
    type Boxed = tower::util::MapErr<Hyper, fn(hyper_util::client::legacy::Error) -> BoxError>;
    assert_service::<BackoffRetry<Boxed, HttpRetryPolicy>, Req>();
    // The default policy takes any error.
    assert_service::<BackoffRetry<Hyper, RetryFailures>, Req>();
    assert_service::<Failover<Hyper, HttpFailoverPolicy>, Req>();
    assert_service::<Balance<Hyper, HttpClassifier, HttpAttempts>, Req>();
    assert_service::<FanOut<Hyper, HttpClassifier, HttpMerge>, Req>();
}

#[test]
fn composed_client_stacks() {
    // Retry over breaker over the client; failover and balance over such stacks.
    type Stack1 = BackoffRetry<CircuitBreaker<Client, HttpClassifier>, HttpRetryPolicy>;
    assert_service::<Stack1, http::Request<ClientBody>>();
    assert_service::<Failover<Stack1, HttpFailoverPolicy>, http::Request<ClientBody>>();
    assert_service::<
        BackoffRetry<
            Balance<CircuitBreaker<FnClient, HttpClassifier>, HttpClassifier, HttpAttempts>,
            HttpRetryPolicy,
        >,
        http::Request<ClientBody>,
    >();
}

// ---------------------------------------------------------------------------------------------
// What axum's Router accepts
// ---------------------------------------------------------------------------------------------

/// `HandleErrorLayer` outside one of our layers: the pair `Router::layer` takes.
type Mapped<L> = Stack<L, HandleErrorLayer<fn(BoxError) -> HandleErrorFut, ()>>;
type HandleErrorFut = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

#[test]
fn router_layer_bounds_hold_for_the_per_request_layers() {
    assert_router_layer::<Mapped<CircuitBreakerLayer>>();
    assert_router_layer::<Mapped<CircuitBreakerLayer<HttpClassifier>>>();
    // The retry behind the mapping to a replayable body (outermost first: HandleError, the
    // mapping, the retry).
    assert_router_layer::<
        Mapped<Stack<BackoffRetryLayer<HttpRetryPolicy>, MapRequestLayer<ToReplayable>>>,
    >();
    assert_router_layer::<Mapped<Stack<BackoffRetryLayer, MapRequestLayer<ToReplayable>>>>();
    // Both, breaker inside the retry.
    assert_router_layer::<
        Mapped<
            Stack<
                CircuitBreakerLayer<HttpClassifier>,
                Stack<BackoffRetryLayer<HttpRetryPolicy>, MapRequestLayer<ToReplayable>>,
            >,
        >,
    >();
}

#[test]
fn set_layers_are_route_services() {
    // Failover, balance and fan-out take a `Vec` of services, not one: they are not
    // `Layer<Route>`, so they go in a route as its service (or in a handler's client).
    type Mapped<S> = axum::error_handling::HandleError<S, fn(BoxError) -> HandleErrorFut, ()>;
    assert_route_service::<Mapped<MapRequest<Failover<Route, HttpFailoverPolicy>, ToReplayable>>>();
    assert_route_service::<Mapped<Balance<Route, HttpClassifier, HttpAttempts>>>();
    assert_route_service::<
        Mapped<MapRequest<FanOut<Route, HttpClassifier, HttpMerge>, ToReplayable>>,
    >();
    assert_route_service::<Mapped<CircuitBreaker<Route, HttpClassifier>>>();
}

/// `handle_error` as the boxed function type the assertions above name.
fn boxed_handle_error(err: BoxError) -> HandleErrorFut {
    Box::pin(tower_bulwark::axum::handle_error(err))
}

#[tokio::test]
async fn the_router_builders_take_every_layer() {
    let breaker = CircuitBreakerLayer::builder()
        .classifier(HttpClassifier::new())
        .build()
        .unwrap();
    let retry = BackoffRetryLayer::builder()
        .http()
        .max_attempts(2)
        .build()
        .unwrap();
    let handler = || get(|| async { "ok" });

    // Router::layer and Router::route_layer, with `handle_error` as axum's docs write it.
    let _ = Router::<()>::new()
        .route("/a", handler())
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(tower_bulwark::axum::handle_error))
                .circuit_breaker(breaker.clone()),
        )
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(tower_bulwark::axum::handle_error))
                .map_request(to_replayable as ToReplayable)
                .backoff_retry(retry.clone())
                .circuit_breaker(breaker.clone()),
        );

    // The set layers as route services, here over `MethodRouter`s (axum's `Route` has no
    // public constructor; any axum service will do).
    let route = handler;
    let failover = FailoverLayer::builder()
        .http()
        .build()
        .unwrap()
        .build(vec![route(), route()])
        .unwrap();
    let balance = BalanceLayer::builder()
        .classifier(HttpClassifier::new())
        .http()
        .build()
        .unwrap()
        .build(vec![route(), route()])
        .unwrap();
    let fan_out = FanOutLayer::builder()
        .classifier(HttpClassifier::new())
        .merge(HttpMerge)
        .build()
        .unwrap()
        .build(vec![route(), route()])
        .unwrap();
    let mapped = |f: fn(BoxError) -> HandleErrorFut| HandleErrorLayer::new(f);
    let _ = Router::<()>::new()
        .route_service(
            "/failover",
            ServiceBuilder::new()
                .layer(mapped(boxed_handle_error))
                .map_request(to_replayable as ToReplayable)
                .service(failover),
        )
        .route_service(
            "/balance",
            ServiceBuilder::new()
                .layer(mapped(boxed_handle_error))
                .service(balance),
        )
        .route_service(
            "/fan-out",
            ServiceBuilder::new()
                .layer(mapped(boxed_handle_error))
                .map_request(to_replayable as ToReplayable)
                .service(fan_out),
        );

    // And client stacks held by handlers (see below for the shapes a handler can await).
    let unboxed = ServiceBuilder::new()
        .backoff_retry(retry.clone())
        .circuit_breaker(breaker.clone())
        .service(fn_client());
    let boxed = Client::new(
        ServiceBuilder::new()
            .backoff_retry(retry)
            .circuit_breaker(breaker)
            .service(Client::new(fn_client().map_err(BoxError::from))),
    );
    let _ = Router::<()>::new()
        .route("/unboxed", get(move || proxy(unboxed.clone())))
        .route("/boxed", get(move || proxy(boxed.clone())));
}

/// A handler's body: call the client stack, answer its status or the mapped error.
async fn proxy<S>(client: S) -> Response
where
    S: Service<http::Request<ClientBody>, Response = http::Response<ClientBody>, Error = BoxError>,
{
    let req = http::Request::new(Full::new(Bytes::from_static(b"q")));
    match client.oneshot(req).await {
        Ok(res) => res.status().into_response(),
        Err(err) => tower_bulwark::axum::error_response(&*err),
    }
}

// ---------------------------------------------------------------------------------------------
// Awaiting a stack inside a handler (an `async` block that must be `Send`)
// ---------------------------------------------------------------------------------------------

fn assert_send<T: Send>(_: &T) {}

/// The future of a handler that awaits a client stack must be `Send`. The generic checks above
/// hold for every layer, but rustc's check of an `async` block is weaker than its check of a
/// generic bound (rust-lang/rust#64552): when the *inner* service's type names `BoxError`
/// (a `BoxCloneSyncService<_, _, BoxError>`, say), any middleware whose impl requires
/// `S::Error: Into<BoxError>` over it is rejected inside an `async` block with
/// "implementation of `From` is not general enough", tower's own `Timeout` included
/// (`Timeout<BoxCloneSyncService<_, _, BoxError>>` fails the same way); our layers share that
/// bound with every tower middleware, so they share the limitation. What works, checked here:
/// an inner service with a concrete error type (hyper-util's `Client`, a `service_fn`, a box
/// over `io::Error`), or the whole stack boxed at the end (`BoxCloneSyncService::new(stack)`,
/// as the book_search demo does), or the stack behind `HandleErrorLayer` (whose future is
/// boxed).
#[test]
fn a_handler_can_await_a_stack() {
    let breaker = || {
        CircuitBreakerLayer::builder()
            .classifier(HttpClassifier::new())
            .build()
            .unwrap()
    };
    let retry = || BackoffRetryLayer::builder().http().build().unwrap();
    let req = || http::Request::new(Full::new(Bytes::new()));

    // Unboxed, over a concrete client: every layer.
    let stack = ServiceBuilder::new()
        .backoff_retry(retry())
        .circuit_breaker(breaker())
        .service(fn_client());
    assert_send(&stack.clone().oneshot(req()));
    assert_send(&async move { stack.oneshot(req()).await });
    let failover = FailoverLayer::builder()
        .http()
        .build()
        .unwrap()
        .build(vec![fn_client(), fn_client()])
        .unwrap();
    assert_send(&async move { failover.oneshot(req()).await });
    let balance = BalanceLayer::builder()
        .classifier(HttpClassifier::new())
        .http()
        .build()
        .unwrap()
        .build(vec![fn_client(), fn_client()])
        .unwrap();
    assert_send(&async move { balance.oneshot(req()).await });
    let fan_out = FanOutLayer::builder()
        .classifier(HttpClassifier::new())
        .merge(HttpMerge)
        .build()
        .unwrap()
        .build(vec![fn_client(), fn_client()])
        .unwrap();
    assert_send(&async move { fan_out.oneshot(req()).await });

    // Over a box whose error is `io::Error`.
    type IoClient =
        BoxCloneSyncService<http::Request<ClientBody>, http::Response<ClientBody>, std::io::Error>;
    let stack = ServiceBuilder::new()
        .backoff_retry(retry())
        .circuit_breaker(breaker())
        .service(IoClient::new(fn_client()));
    assert_send(&async move { stack.oneshot(req()).await });

    // Over a box whose error is `BoxError`: box the whole stack.
    let stack = Client::new(
        ServiceBuilder::new()
            .backoff_retry(retry())
            .circuit_breaker(breaker())
            .service(Client::new(fn_client().map_err(BoxError::from))),
    );
    assert_send(&async move { stack.oneshot(req()).await });
}

#[cfg(feature = "bulkhead")]
#[test]
fn bulkhead_service_future_layers_and_handle() {
    use tower_bulwark::bulkhead::{AdaptiveLimitLayer, Bulkhead, BulkheadLayer, Full, Handle};
    assert_shared::<BulkheadLayer>();
    assert_shared::<AdaptiveLimitLayer>();
    assert_shared::<AdaptiveLimitLayer<HttpClassifier>>();
    assert_shared::<Handle>();
    assert_error::<Full>();
    assert_service::<Bulkhead<Route, DefaultClassifier>, Request>();
    assert_service::<Bulkhead<Route, HttpClassifier>, Request>();
    assert_service::<Bulkhead<Client, DefaultClassifier>, http::Request<ClientBody>>();
    assert_service::<Bulkhead<FnClient, HttpClassifier>, http::Request<ClientBody>>();
}

#[cfg(feature = "rate-limit")]
#[test]
fn rate_limit_service_future_layer_and_handle() {
    use tower_bulwark::rate_limit::{Handle, RateLimit, RateLimitLayer, RateLimited};
    assert_shared::<RateLimitLayer>();
    assert_shared::<Handle>();
    assert_error::<RateLimited>();
    assert_service::<RateLimit<Route>, Request>();
    assert_service::<RateLimit<Client>, http::Request<ClientBody>>();
    assert_service::<RateLimit<FnClient>, http::Request<ClientBody>>();
    // In a Router, behind the error mapping.
    assert_router_layer::<Mapped<RateLimitLayer>>();
}
