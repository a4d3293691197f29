//! Leases: a clone that has called before takes tokens in batches and spends them alone; the
//! bucket's bound holds, with the slack documented, and unused tokens go back.

use bulwark_rate_limit::{RateLimitLayer, RateLimited, LEASE_SLACK};
use std::time::Duration;
use tower::{service_fn, Layer, Service, ServiceExt};

type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, std::io::Error>>>;

fn echo() -> Echo {
    service_fn(|x: u32| std::future::ready(Ok(x)))
}

async fn attempt<S>(svc: &mut S) -> bool
where
    S: Service<u32, Response = u32, Error = bulwark_core::BoxError>,
{
    match svc.ready().await.unwrap().call(1).await {
        Ok(_) => true,
        Err(e) => {
            assert!(e.is::<RateLimited>(), "{e}");
            false
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_clone_that_has_called_leases_a_batch_and_gives_back_what_it_did_not_spend() {
    // No refill within the test: one token a day.
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(86_400))
        .burst(1_000)
        .lease(16)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut a = layer.layer(echo());
    // The first call of a clone takes one token: a clone made for one call never leases.
    assert!(attempt(&mut a).await);
    assert_eq!(handle.available(), 999);
    // The second takes 16 (an eighth of the bucket is more), spends one.
    assert!(attempt(&mut a).await);
    assert_eq!(handle.available(), 983);
    // The next 15 come from the lease: the bucket is not touched.
    for _ in 0..15 {
        assert!(attempt(&mut a).await);
    }
    assert_eq!(handle.available(), 983);
    assert!(attempt(&mut a).await);
    assert_eq!(handle.available(), 967);
    // Dropped with 15 unspent, nobody having taken a token since: they go back.
    drop(a);
    assert_eq!(handle.available(), 982);
}

#[tokio::test(start_paused = true)]
async fn a_nearly_empty_bucket_is_shared_one_token_at_a_time() {
    // burst 10, 100/s, a flood for 5 s: leases never exceed an eighth of the bucket, so with
    // 10 tokens at most each call takes one, and the count is exact.
    let layer = RateLimitLayer::builder()
        .per_second(100)
        .burst(10)
        .lease(16)
        .build()
        .unwrap();
    let mut svc = layer.layer(echo());
    let mut admitted = 0u32;
    for ms in 0..=5_000 {
        for _ in 0..20 {
            if !attempt(&mut svc).await {
                break;
            }
            admitted += 1;
        }
        if ms < 5_000 {
            tokio::time::advance(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(admitted, 510);
}

#[tokio::test(start_paused = true)]
async fn with_leases_a_flood_stays_within_the_documented_bound() {
    // burst 400, 1,000/s, two clones flooding for 2 s, each asking 50 times every 100 us:
    // exact GCRA would admit 400 + 2,000; with leases, at most 1 + 1,000 x LEASE_SLACK more.
    let layer = RateLimitLayer::builder()
        .per_second(1_000)
        .burst(400)
        .lease(64)
        .build()
        .unwrap();
    let (mut a, mut b) = (layer.layer(echo()), layer.layer(echo()));
    let mut admitted = 0u64;
    for _ in 0..=20_000 {
        for svc in [&mut a, &mut b] {
            for _ in 0..50 {
                if !attempt(svc).await {
                    break;
                }
                admitted += 1;
            }
        }
        tokio::time::advance(Duration::from_micros(100)).await;
    }
    let slack = 1_000 * LEASE_SLACK.as_millis() as u64 / 1_000;
    assert!(admitted <= 2_400 + 1 + slack, "{admitted}");
    // And not much below: a lease is lost only when its slots go stale or when a clone is
    // dropped after another took a token.
    assert!(admitted >= 2_400 - 2 * 64, "{admitted}");
}

#[test]
fn threads_with_leases_never_get_more_than_the_burst() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(86_400))
        .burst(1_000)
        .lease(16)
        .build()
        .unwrap();
    let svc = layer.layer(echo());
    let admitted: u32 = runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..500 {
                        if attempt(&mut svc).await {
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
    drop(svc);
    // Never more than the bucket held; a task that stopped with tokens in hand, not the last
    // to take one, lost them (at most a lease each).
    assert!(admitted <= 1_000, "{admitted}");
    assert!(admitted >= 1_000 - 4 * 16, "{admitted}");
    assert!(layer.handle().available() <= 1_000 - admitted);
}
