//! The limiter's behaviour under paused time: what it admits, when, and to whom.

use bulwark_core::hint::{self, Hint};
use bulwark_core::{BoxError, Event, Misuse};
use bulwark_rate_limit::{Mode, RateLimit, RateLimitLayer, RateLimited};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tokio_test::task;
use tower::{service_fn, Layer, Service, ServiceExt};

type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, std::io::Error>>>;

fn echo() -> Echo {
    service_fn(|x: u32| std::future::ready(Ok(x)))
}

fn limited(layer: &RateLimitLayer) -> RateLimit<Echo> {
    layer.layer(echo())
}

fn noop_cx() -> Context<'static> {
    Context::from_waker(futures_util::task::noop_waker_ref())
}

/// One attempt without waiting: `Ok` if admitted, the refusal otherwise.
async fn attempt(svc: &mut RateLimit<Echo>) -> Result<u32, BoxError> {
    svc.ready().await?.call(7).await
}

fn retry_after(err: &BoxError) -> Duration {
    err.downcast_ref::<RateLimited>()
        .expect("a rate-limit refusal")
        .retry_after()
}

#[tokio::test(start_paused = true)]
async fn a_flood_gets_exactly_burst_plus_rate_times_t() {
    // burst 10, 100/s, a caller asking 20 times every millisecond for 5 s (t = 0 to 5 s
    // included): 10 + 100 x 5 = 510 admitted, not one more or less.
    let layer = RateLimitLayer::builder()
        .per_second(100)
        .burst(10)
        .build()
        .unwrap();
    let mut svc = limited(&layer);
    let mut admitted = 0u32;
    for ms in 0..=5_000 {
        for _ in 0..20 {
            match attempt(&mut svc).await {
                Ok(_) => admitted += 1,
                Err(e) => {
                    assert!(e.is::<RateLimited>());
                    break;
                }
            }
        }
        if ms == 0 {
            assert_eq!(admitted, 10, "the burst at once");
        }
        if ms < 5_000 {
            tokio::time::advance(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(admitted, 510);
    assert_eq!(layer.handle().available(), 0);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_bucket() {
    let layer = RateLimitLayer::builder()
        .per_second(1)
        .burst(5)
        .build()
        .unwrap();
    let a = limited(&layer);
    let (mut a1, mut a2) = (a.clone(), a);
    let mut other = limited(&layer.clone());
    for _ in 0..2 {
        attempt(&mut a1).await.unwrap();
        attempt(&mut a2).await.unwrap();
    }
    attempt(&mut other).await.unwrap();
    for svc in [&mut a1, &mut a2, &mut other] {
        let err = attempt(svc).await.unwrap_err();
        assert_eq!(retry_after(&err), Duration::from_secs(1));
    }
    assert_eq!(layer.handle().refused(), 3);
}

#[test]
fn threads_sharing_one_limiter_get_exactly_the_burst_between_them() {
    // No refill within the test (one token a day): 4 tasks on 2 worker threads, 500 attempts
    // each, share a burst of 1,000. Totals, not timing.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(24 * 3600))
        .burst(1_000)
        .build()
        .unwrap();
    let svc = limited(&layer);
    let admitted: u32 = runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..500 {
                        if attempt(&mut svc).await.is_ok() {
                            admitted += 1;
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    assert_eq!(admitted, 1_000);
    assert_eq!(layer.handle().refused(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn callers_wait_up_to_max_wait_and_not_beyond() {
    // One token every 100 ms, burst 1, waits of up to 250 ms.
    let layer = RateLimitLayer::builder()
        .per_second(10)
        .burst(1)
        .max_wait(Duration::from_millis(250))
        .build()
        .unwrap();
    let start = Instant::now();
    let (mut a, mut b, mut c, mut d) = (
        limited(&layer),
        limited(&layer),
        limited(&layer),
        limited(&layer),
    );
    attempt(&mut a).await.unwrap();
    // b and c reserve the tokens due at 100 ms and 200 ms, and wait for them.
    let mut b_ready = task::spawn(b.ready());
    let mut c_ready = task::spawn(c.ready());
    assert!(b_ready.poll().is_pending());
    assert!(c_ready.poll().is_pending());
    // d's would come at 300 ms, beyond its 250 ms: refused at once, told to come back then.
    let err = attempt(&mut d).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_millis(300));
    assert_eq!(Instant::now(), start);
    drop((b_ready, c_ready));

    b.ready().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(100));
    assert_eq!(b.call(1).await.unwrap(), 1);
    c.ready().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(200));
    assert_eq!(c.call(2).await.unwrap(), 2);
    // Nothing queued now: d waits for the token due at 300 ms, 100 ms away.
    assert_eq!(attempt(&mut d).await.unwrap(), 7);
    assert_eq!(Instant::now() - start, Duration::from_millis(300));
    assert_eq!(layer.handle().refused(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_says_when_the_next_token_comes_and_the_refusal_is_reported() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = RateLimitLayer::builder()
        .name("geo")
        .per_second(1)
        .burst(1)
        .listener(move |e: &Event<'_>| {
            if let Event::RateLimited { name, retry_after } = e {
                seen.lock().unwrap().push((name.to_string(), *retry_after));
            }
        })
        .build()
        .unwrap();
    let mut svc = limited(&layer);
    attempt(&mut svc).await.unwrap();
    tokio::time::advance(Duration::from_millis(300)).await;
    let err = attempt(&mut svc).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_millis(700));
    assert_eq!(err.to_string(), "rate limited: next token in 700 ms");
    assert_eq!(
        *events.lock().unwrap(),
        [(String::from("geo"), Duration::from_millis(700))]
    );
    // Coming back when told to is admitted.
    tokio::time::advance(Duration::from_millis(700)).await;
    attempt(&mut svc).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_its_token_back_when_it_was_the_last_to_reserve() {
    let layer = RateLimitLayer::builder()
        .per_second(10)
        .burst(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let start = Instant::now();
    attempt(&mut limited(&layer)).await.unwrap();

    // b reserves the token due at 100 ms, then gives up (its service is dropped).
    let mut b = limited(&layer);
    assert!(b.poll_ready(&mut noop_cx()).is_pending());
    drop(b);
    // The token is back: c gets the one due at 100 ms, not 200 ms.
    let mut c = limited(&layer);
    c.ready().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(100));
    c.call(1).await.unwrap();

    // d reserves 200 ms, e 300 ms; d gives up, but e reserved after it: d's token is lost
    // (one call fewer, never one more), and f queues at 400 ms.
    let (mut d, mut e, mut f) = (limited(&layer), limited(&layer), limited(&layer));
    assert!(d.poll_ready(&mut noop_cx()).is_pending());
    assert!(e.poll_ready(&mut noop_cx()).is_pending());
    drop(d);
    e.ready().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(300));
    f.ready().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn a_token_taken_by_poll_ready_and_not_used_is_given_back() {
    let layer = RateLimitLayer::builder()
        .per_second(1)
        .burst(1)
        .build()
        .unwrap();
    let mut a = limited(&layer);
    a.ready().await.unwrap();
    assert_eq!(layer.handle().available(), 0);
    drop(a); // ready, never called
    assert_eq!(layer.handle().available(), 1);
    attempt(&mut limited(&layer)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn readiness_mode_waits_for_a_token_says_why_and_counts_each_wait_once() {
    let layer = RateLimitLayer::builder()
        .per_second(10)
        .burst(1)
        .readiness_mode()
        .build()
        .unwrap();
    assert_eq!(layer.config().mode, Mode::Readiness);
    let start = Instant::now();
    let (mut a, mut b) = (limited(&layer), limited(&layer));
    attempt(&mut a).await.unwrap();
    for _ in 0..3 {
        let (ready, why) = hint::collect(|| b.poll_ready(&mut noop_cx()));
        assert!(ready.is_pending());
        assert_eq!(
            why,
            Some(Hint::RateLimited {
                retry_in: Duration::from_millis(100)
            })
        );
    }
    assert_eq!(layer.handle().refused(), 1, "one wait, counted once");
    b.ready().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(100));
    assert_eq!(b.call(3).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_handle_changes_rate_and_burst_at_run_time() {
    let layer = RateLimitLayer::builder()
        .per_second(1)
        .burst(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = limited(&layer);
    attempt(&mut svc).await.unwrap();
    assert!(attempt(&mut svc).await.is_err());
    handle.set_rate(100, Duration::from_secs(1)).unwrap();
    handle.set_burst(5).unwrap();
    tokio::time::advance(Duration::from_millis(10)).await;
    // What the bucket owed (1 s at the old rate) carries over as time: 990 ms to go.
    assert!(attempt(&mut svc).await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(handle.available(), 5);
    // Lowered: a full bucket holds the new burst at once, and admits no more than that.
    handle.set_burst(2).unwrap();
    assert_eq!(handle.available(), 2);
    attempt(&mut svc).await.unwrap();
    attempt(&mut svc).await.unwrap();
    assert!(attempt(&mut svc).await.is_err(), "two admitted, not five");
    assert_eq!(
        handle
            .set_rate(0, Duration::from_secs(1))
            .unwrap_err()
            .setting(),
        "rate"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_before_ready_is_a_misuse() {
    let layer = RateLimitLayer::builder().build().unwrap();
    let mut svc = limited(&layer);
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<Misuse>());
    // A waiter called before its token's time: refused as a misuse, and keeps its token.
    let layer = RateLimitLayer::builder()
        .per_second(10)
        .burst(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    attempt(&mut limited(&layer)).await.unwrap();
    let mut w = limited(&layer);
    assert!(w.poll_ready(&mut noop_cx()).is_pending());
    assert!(w.call(1).await.unwrap_err().is::<Misuse>());
    assert!(matches!(w.poll_ready(&mut noop_cx()), Poll::Pending));
    w.ready().await.unwrap();
    assert_eq!(w.call(2).await.unwrap(), 2);
}
