//! [`ServiceBuilderExt`]: this project's layers as `ServiceBuilder` methods.

#[cfg(any(
    feature = "circuit-breaker",
    feature = "retry",
    feature = "failover",
    feature = "balance",
    feature = "fanout",
    feature = "rate-limit",
    feature = "hedge",
    feature = "bulkhead"
))]
use tower::layer::util::Stack;
use tower::ServiceBuilder;

#[cfg(feature = "balance")]
use bulwark_balance::BalanceLayer;
#[cfg(feature = "bulkhead")]
use bulwark_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
#[cfg(feature = "circuit-breaker")]
use bulwark_circuit_breaker::CircuitBreakerLayer;
#[cfg(feature = "failover")]
use bulwark_failover::FailoverLayer;
#[cfg(feature = "fanout")]
use bulwark_fanout::FanOutLayer;
#[cfg(feature = "hedge")]
use bulwark_hedge::HedgeLayer;
#[cfg(feature = "rate-limit")]
use bulwark_rate_limit::RateLimitLayer;
#[cfg(feature = "retry")]
use bulwark_retry::BackoffRetryLayer;

mod sealed {
    /// Only `tower::ServiceBuilder` implements [`ServiceBuilderExt`](super::ServiceBuilderExt),
    /// so methods can be added to it without breaking anyone.
    pub trait Sealed {}

    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// This project's layers as methods of [`tower::ServiceBuilder`], so a stack reads top to
/// bottom like tower's own (`.timeout(..)`, `.rate_limit(..)`):
///
/// ```
/// # #[cfg(all(feature = "circuit-breaker", feature = "retry"))]
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
/// use tower_bulwark::{BackoffRetryLayer, CircuitBreakerLayer, ServiceBuilderExt};
///
/// let mut svc = ServiceBuilder::new()
///     .circuit_breaker(CircuitBreakerLayer::builder().name("inventory").build()?)
///     .backoff_retry(BackoffRetryLayer::builder().max_attempts(3).build()?)
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
/// assert_eq!(svc.ready().await?.call(41).await?, 42);
/// # Ok(())
/// # }
/// # #[cfg(not(all(feature = "circuit-breaker", feature = "retry")))]
/// # fn main() {}
/// ```
///
/// Each method is `.layer(layer)` with the layer's type spelled out, and is there when its
/// layer's feature is on. The first method is the outermost layer: above, the breaker sees one
/// outcome per request, after the retries.
///
/// [`failover`](ServiceBuilderExt::failover), [`balance`](ServiceBuilderExt::balance) and
/// [`fan_out`](ServiceBuilderExt::fan_out) are layers over a *list* of services: the builder
/// then takes a `Vec` in `.service(vec![..])`, so they come last, just before `.service`.
/// Layers above them wrap the whole set; to give each target its own stack (a breaker in
/// readiness mode, say), build the targets with their own `ServiceBuilder`, or use the
/// layer's `build_with`. As a `Layer` they cannot return an error for a list their `build`
/// would refuse (an empty one, say); what happens instead is in each method's docs, and
/// never a panic.
///
/// The trait is sealed: only `ServiceBuilder` implements it.
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds a [`CircuitBreakerLayer`]: fails fast with
    /// [`Open`](bulwark_circuit_breaker::Open) while the inner service keeps failing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use std::time::Duration;
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, Open};
    /// use tower_bulwark::ServiceBuilderExt;
    ///
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .consecutive_failures(3)
    ///     .open_for(Duration::from_secs(10))
    ///     .build()?;
    /// let mut svc = ServiceBuilder::new().circuit_breaker(breaker).service(service_fn(|_: ()| async {
    ///     Err::<(), _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    /// }));
    /// for _ in 0..3 {
    ///     let _ = svc.ready().await?.call(()).await;
    /// }
    /// let err = svc.ready().await?.call(()).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Open>().unwrap().retry_after(), Some(Duration::from_secs(10)));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// Adds a [`BackoffRetryLayer`]: retries what its policy calls a failure, with backoff,
    /// within its attempts, deadline and budget.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::{BackoffRetryLayer, ServiceBuilderExt};
    ///
    /// // Fails twice, then answers.
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let backend = service_fn({
    ///     let calls = calls.clone();
    ///     move |_: ()| {
    ///         let n = calls.fetch_add(1, Ordering::SeqCst);
    ///         async move {
    ///             if n < 2 { Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) } else { Ok(n) }
    ///         }
    ///     }
    /// });
    /// let retry = BackoffRetryLayer::builder().max_attempts(3).build()?;
    /// let mut svc = ServiceBuilder::new().backoff_retry(retry).service(backend);
    /// assert_eq!(svc.ready().await?.call(()).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn backoff_retry<P>(
        self,
        layer: BackoffRetryLayer<P>,
    ) -> ServiceBuilder<Stack<BackoffRetryLayer<P>, L>>;

    /// Adds a [`FailoverLayer`] over the `Vec` of targets given to `.service(..)`, tried in
    /// order. An empty `Vec` answers every call, after `wait_for_ready`, with
    /// [`NoTargetReady`](bulwark_failover::NoTargetReady); `target_names` that do not match
    /// the targets are replaced by indexes ([`FailoverLayer::build`] reports both as errors).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use tower::util::BoxCloneService;
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::{FailoverLayer, ServiceBuilderExt};
    ///
    /// type Store = BoxCloneService<(), &'static str, std::io::Error>;
    /// let down: Store = BoxCloneService::new(service_fn(|_: ()| async {
    ///     Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    /// }));
    /// let up: Store = BoxCloneService::new(service_fn(|_: ()| async { Ok("store-2") }));
    ///
    /// let mut stores = ServiceBuilder::new()
    ///     .failover(FailoverLayer::builder().target_names(["store-1", "store-2"]).build()?)
    ///     .service(vec![down, up]);
    /// assert_eq!(stores.ready().await?.call(()).await?, "store-2");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "failover")]
    #[cfg_attr(docsrs, doc(cfg(feature = "failover")))]
    fn failover<P>(self, layer: FailoverLayer<P>) -> ServiceBuilder<Stack<FailoverLayer<P>, L>>;

    /// Adds a [`HedgeLayer`]: a request still unanswered after the delay is sent again (to
    /// another endpoint, with a balancer below), and the first answer wins.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::{HedgeLayer, ServiceBuilderExt};
    ///
    /// // The first call takes a second, the next 10 ms.
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let backend = service_fn({
    ///     let calls = calls.clone();
    ///     move |_: ()| {
    ///         let n = calls.fetch_add(1, Ordering::SeqCst);
    ///         async move {
    ///             tokio::time::sleep(Duration::from_millis(if n == 0 { 1000 } else { 10 })).await;
    ///             Ok::<_, std::io::Error>(n)
    ///         }
    ///     }
    /// });
    /// let hedge = HedgeLayer::builder().delay(Duration::from_millis(50)).build()?;
    /// let mut svc = ServiceBuilder::new().hedge(hedge).service(backend);
    /// assert_eq!(svc.ready().await?.call(()).await?, 1, "the hedge answered");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "hedge")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
    fn hedge<C, A>(self, layer: HedgeLayer<C, A>) -> ServiceBuilder<Stack<HedgeLayer<C, A>, L>>;

    /// Adds a [`BalanceLayer`] over the `Vec` of endpoints given to `.service(..)`. An empty
    /// `Vec` answers every call, after `wait_for_ready`, with
    /// [`NoEndpointReady`](bulwark_balance::NoEndpointReady); `endpoint_names` that do not
    /// match the endpoints are replaced by indexes ([`BalanceLayer::build`] reports the names
    /// as an error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::balance::{BalanceLayer, Strategy};
    /// use tower_bulwark::ServiceBuilderExt;
    ///
    /// let store = |name: &'static str| service_fn(move |_: ()| async move { Ok::<_, std::io::Error>(name) });
    /// let mut stores = ServiceBuilder::new()
    ///     .balance(BalanceLayer::builder().strategy(Strategy::RoundRobin).build()?)
    ///     .service(vec![store("a"), store("b")]);
    /// let mut seen = Vec::new();
    /// for _ in 0..4 {
    ///     seen.push(stores.ready().await?.call(()).await?);
    /// }
    /// assert_eq!(seen, ["a", "b", "a", "b"]);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "balance")]
    #[cfg_attr(docsrs, doc(cfg(feature = "balance")))]
    fn balance<C, A>(
        self,
        layer: BalanceLayer<C, A>,
    ) -> ServiceBuilder<Stack<BalanceLayer<C, A>, L>>;

    /// Adds a [`FanOutLayer`] over the `Vec` of targets given to `.service(..)`. A list
    /// [`FanOutLayer::build`] would refuse (empty, an impossible quorum, a zero deadline)
    /// answers every call at once with that [`ConfigError`](bulwark_fanout::ConfigError),
    /// calling no target: never a success by default (the `All` policy over no targets).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use tower::util::BoxCloneService;
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::fanout::{FanOutLayer, FirstSuccess, Policy};
    /// use tower_bulwark::ServiceBuilderExt;
    ///
    /// // The fan-out's targets' futures must be `Unpin`: box them.
    /// type Replica = BoxCloneService<&'static str, u16, std::io::Error>;
    /// let replica = || -> Replica { BoxCloneService::new(service_fn(|_| async { Ok(201) })) };
    /// let mut register = ServiceBuilder::new()
    ///     .fan_out(FanOutLayer::builder().policy(Policy::All).merge(FirstSuccess).build()?)
    ///     .service(vec![replica(), replica(), replica()]);
    /// assert_eq!(register.ready().await?.call("alice").await?, 201);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "fanout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fanout")))]
    fn fan_out<C, M>(self, layer: FanOutLayer<C, M>)
        -> ServiceBuilder<Stack<FanOutLayer<C, M>, L>>;

    /// Adds a [`RateLimitLayer`]: every service it wraps, and every clone of those, on any
    /// thread, takes its tokens from the layer's one bucket; a call with none left fails at
    /// once with [`RateLimited`](bulwark_rate_limit::RateLimited) (or waits up to the
    /// layer's `max_wait`). Named so as not to clash with tower's own `rate_limit(num, per)`,
    /// whose limiter is neither `Clone` nor shared.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::rate_limit::RateLimited;
    /// use tower_bulwark::{RateLimitLayer, ServiceBuilderExt};
    ///
    /// let svc = ServiceBuilder::new()
    ///     .shared_rate_limit(RateLimitLayer::builder().per_second(1).burst(1).build()?)
    ///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
    /// let (mut a, mut b) = (svc.clone(), svc);
    /// assert_eq!(a.ready().await?.call(1).await?, 1);
    /// let err = b.ready().await?.call(2).await.unwrap_err();
    /// assert!(err.is::<RateLimited>(), "the clones share one bucket");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    fn shared_rate_limit(self, layer: RateLimitLayer) -> ServiceBuilder<Stack<RateLimitLayer, L>>;

    /// Adds a [`BulkheadLayer`]: at most N calls in flight; beyond, a bounded queue or
    /// [`Full`](bulwark_bulkhead::Full) at once (or, in readiness mode, not ready).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use std::time::Duration;
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::bulkhead::{BulkheadLayer, Full};
    /// use tower_bulwark::ServiceBuilderExt;
    ///
    /// let mut svc = ServiceBuilder::new()
    ///     .bulkhead(BulkheadLayer::new(1)?)
    ///     .service(service_fn(|n: u32| async move {
    ///         tokio::time::sleep(Duration::from_secs(1)).await;
    ///         Ok::<_, std::io::Error>(n)
    ///     }));
    /// let first = svc.ready().await?.call(1);
    /// let err = svc.ready().await?.call(2).await.unwrap_err();
    /// assert!(err.is::<Full>());
    /// assert_eq!(first.await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn bulkhead(self, layer: BulkheadLayer) -> ServiceBuilder<Stack<BulkheadLayer, L>>;

    /// Adds an [`AdaptiveLimitLayer`]: a bulkhead whose limit is found from the latency it
    /// measures (a gradient or an AIMD controller), calls over it shed at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::bulkhead::AdaptiveLimitLayer;
    /// use tower_bulwark::ServiceBuilderExt;
    ///
    /// let mut svc = ServiceBuilder::new()
    ///     .adaptive_limit(AdaptiveLimitLayer::builder().limits(4, 32, 256).build()?)
    ///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
    /// assert_eq!(svc.ready().await?.call(7).await?, 7);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn adaptive_limit<C>(
        self,
        layer: AdaptiveLimitLayer<C>,
    ) -> ServiceBuilder<Stack<AdaptiveLimitLayer<C>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn backoff_retry<P>(
        self,
        layer: BackoffRetryLayer<P>,
    ) -> ServiceBuilder<Stack<BackoffRetryLayer<P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "failover")]
    #[cfg_attr(docsrs, doc(cfg(feature = "failover")))]
    fn failover<P>(self, layer: FailoverLayer<P>) -> ServiceBuilder<Stack<FailoverLayer<P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "hedge")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
    fn hedge<C, A>(self, layer: HedgeLayer<C, A>) -> ServiceBuilder<Stack<HedgeLayer<C, A>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "balance")]
    #[cfg_attr(docsrs, doc(cfg(feature = "balance")))]
    fn balance<C, A>(
        self,
        layer: BalanceLayer<C, A>,
    ) -> ServiceBuilder<Stack<BalanceLayer<C, A>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "fanout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fanout")))]
    fn fan_out<C, M>(
        self,
        layer: FanOutLayer<C, M>,
    ) -> ServiceBuilder<Stack<FanOutLayer<C, M>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    fn shared_rate_limit(self, layer: RateLimitLayer) -> ServiceBuilder<Stack<RateLimitLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn bulkhead(self, layer: BulkheadLayer) -> ServiceBuilder<Stack<BulkheadLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn adaptive_limit<C>(
        self,
        layer: AdaptiveLimitLayer<C>,
    ) -> ServiceBuilder<Stack<AdaptiveLimitLayer<C>, L>> {
        self.layer(layer)
    }
}
