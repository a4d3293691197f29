//! Property test: random arrivals (gaps in microseconds, several callers at once) against the
//! limiter and against a plain token bucket counted in nanoseconds (a level that fills by one
//! nanosecond per nanosecond up to `burst x interval`, a call taking `interval`). Without
//! leases both must admit exactly the same calls; with leases the limiter may admit no more
//! than the documented bound over the whole run.

use bulwark_rate_limit::{RateLimitLayer, RateLimited, LEASE_SLACK};
use proptest::prelude::*;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{service_fn, Layer, Service};

/// The reference: a token bucket whose level is kept as time.
struct Bucket {
    level: u64,
    full: u64,
    interval: u64,
    at: u64,
}

impl Bucket {
    fn admit(&mut self, now: u64) -> bool {
        self.level = (self.level + (now - self.at)).min(self.full);
        self.at = now;
        if self.level >= self.interval {
            self.level -= self.interval;
            true
        } else {
            false
        }
    }
}

/// One attempt, driven by hand: `true` if admitted.
fn attempt<S>(svc: &mut S) -> bool
where
    S: Service<u32, Response = u32, Error = bulwark_core::BoxError>,
{
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("fail-fast without max_wait is ready at once: {other:?}"),
    }
    match pin!(svc.call(1)).poll(&mut cx) {
        Poll::Ready(Ok(_)) => true,
        Poll::Ready(Err(e)) => {
            assert!(e.is::<RateLimited>(), "{e}");
            false
        }
        Poll::Pending => panic!("the backend answers at once"),
    }
}

/// Runs `arrivals` (gap before it in µs, which caller) against a limiter of `per_second`
/// tokens a second and `burst`, and returns the limiter's decisions.
fn run(per_second: u32, burst: u32, lease: u32, arrivals: &[(u64, usize)]) -> Vec<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let layer = RateLimitLayer::builder()
            .per_second(per_second)
            .burst(burst)
            .lease(lease)
            .build()
            .unwrap();
        let echo = || service_fn(|x: u32| std::future::ready(Ok::<_, std::io::Error>(x)));
        let mut callers: Vec<_> = (0..3).map(|_| layer.layer(echo())).collect();
        let mut decisions = Vec::with_capacity(arrivals.len());
        for &(gap, caller) in arrivals {
            tokio::time::advance(Duration::from_micros(gap)).await;
            decisions.push(attempt(&mut callers[caller]));
        }
        decisions
    })
}

fn arrivals() -> impl Strategy<Value = Vec<(u64, usize)>> {
    // Mostly bursts (gap 0), some short gaps, some long quiet spells.
    let gap = prop_oneof![
        4 => Just(0u64),
        4 => 0u64..2_000,
        1 => 0u64..2_000_000,
    ];
    prop::collection::vec((gap, 0usize..3), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn without_leases_it_admits_exactly_what_a_token_bucket_admits(
        per_second in prop_oneof![Just(1u32), Just(3), Just(7), Just(100), Just(1_000), 1u32..5_000],
        burst in 1u32..20,
        arrivals in arrivals(),
    ) {
        let decisions = run(per_second, burst, 1, &arrivals);
        let interval = 1_000_000_000u64.div_ceil(u64::from(per_second));
        let full = interval * u64::from(burst);
        let mut bucket = Bucket { level: full, full, interval, at: 0 };
        let mut now = 0;
        for (i, &(gap, _)) in arrivals.iter().enumerate() {
            now += gap * 1_000;
            prop_assert_eq!(decisions[i], bucket.admit(now), "arrival {} at {} ns", i, now);
        }
    }

    #[test]
    fn with_leases_it_admits_no_more_than_the_documented_bound(
        per_second in prop_oneof![Just(100u32), Just(1_000), 1_000u32..100_000],
        burst in 8u32..500,
        lease in 2u32..64,
        arrivals in arrivals(),
    ) {
        let decisions = run(per_second, burst, lease, &arrivals);
        let admitted = decisions.iter().filter(|d| **d).count() as u64;
        let interval = 1_000_000_000u64.div_ceil(u64::from(per_second));
        let span: u64 = arrivals.iter().map(|(gap, _)| gap * 1_000).sum();
        let slack = LEASE_SLACK.as_nanos() as u64;
        let bound = u64::from(burst) + 1 + (span + slack) / interval;
        prop_assert!(admitted <= bound, "{} admitted, bound {}", admitted, bound);
    }
}
