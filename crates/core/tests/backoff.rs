//! Backoff: exact schedules, the seed's preset, bounds under any config (proptest), the
//! distribution of each jitter (seeded, statistical), validation and the serde form.

use bulwark_core::{Backoff, BackoffError, ExponentialBackoff, Jitter, RandomSource, SplitMix64};
use proptest::prelude::*;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn backoff(base: Duration, factor: f64, max: Duration, jitter: Jitter) -> ExponentialBackoff {
    ExponentialBackoff::new(base, factor, max, jitter).unwrap()
}

/// A source that always returns the same float (and garbage bits), to pin jitter at its ends
/// or to misbehave on purpose.
struct Fixed(f64);

impl RandomSource for Fixed {
    fn next_u64(&self) -> u64 {
        0x5555_5555_5555_5555
    }
    fn next_f64(&self) -> f64 {
        self.0
    }
}

/// The largest f64 below 1: the top of what a well-behaved source returns.
const ALMOST_ONE: f64 = 1.0 - f64::EPSILON / 2.0;

// ---------------------------------------------------------------------------------------------
// (1) Exact values without jitter.

#[test]
fn no_jitter_doubles_from_base_and_stops_at_max() {
    let b = backoff(ms(100), 2.0, secs(5), Jitter::None);
    let r = SplitMix64::new(1);
    let waits: Vec<Duration> = (1..=9).map(|n| b.delay(n, Duration::ZERO, &r)).collect();
    assert_eq!(
        waits,
        [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(ms)
    );
    // Retry 0 is treated like retry 1; the largest retry number is simply capped.
    assert_eq!(b.delay(0, Duration::ZERO, &r), ms(100));
    assert_eq!(b.delay(10_000, Duration::ZERO, &r), secs(5));
    assert_eq!(b.delay(u32::MAX, Duration::ZERO, &r), secs(5));
    // `previous` plays no part outside decorrelated jitter.
    assert_eq!(b.delay(3, Duration::MAX, &r), ms(400));
}

#[test]
fn no_jitter_with_a_fractional_factor_is_exact_to_the_nanosecond() {
    let b = backoff(ms(100), 1.5, secs(1), Jitter::None);
    let r = SplitMix64::new(1);
    let waits: Vec<Duration> = (1..=7).map(|n| b.delay(n, Duration::ZERO, &r)).collect();
    assert_eq!(
        waits,
        [
            ms(100),
            ms(150),
            ms(225),
            Duration::from_micros(337_500),
            Duration::from_micros(506_250),
            Duration::from_nanos(759_375_000),
            secs(1)
        ]
    );
}

#[test]
fn factor_one_is_a_constant_wait() {
    let b = backoff(ms(250), 1.0, secs(1), Jitter::None);
    let r = SplitMix64::new(1);
    for n in [0, 1, 2, 50, 10_000, u32::MAX] {
        assert_eq!(b.delay(n, Duration::ZERO, &r), ms(250));
    }
}

#[test]
fn huge_factors_and_retry_numbers_stay_capped_without_panicking() {
    let r = SplitMix64::new(3);
    for factor in [1.000_001, 2.0, 10.0, 1e10, 1e300, f64::MAX] {
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::Additive(ms(100)),
        ] {
            let b = backoff(ms(100), factor, secs(64), jitter);
            for n in [0, 1, 2, 3, 64, 1_000, 10_000, u32::MAX - 1, u32::MAX] {
                for previous in [Duration::ZERO, ms(1), secs(64), Duration::MAX] {
                    let d = b.delay(n, previous, &r);
                    assert!(d <= b.ceiling(), "{b:?} retry {n}: {d:?}");
                }
            }
            if jitter == Jitter::None && factor >= 2.0 {
                assert_eq!(b.delay(u32::MAX, Duration::ZERO, &r), secs(64));
            }
        }
    }
}

#[test]
fn the_longest_allowed_durations_do_not_overflow() {
    let century = secs(100 * 365 * 24 * 3600);
    let r = Fixed(ALMOST_ONE);
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
        Jitter::Additive(century),
    ] {
        let b = backoff(century, f64::MAX, century, jitter);
        for n in [0, 1, 2, u32::MAX] {
            let d = b.delay(n, Duration::MAX, &r);
            assert!(d <= b.ceiling(), "{jitter:?}: {d:?}");
        }
    }
    assert_eq!(
        backoff(century, 2.0, century, Jitter::Additive(century)).ceiling(),
        century * 2
    );
}

#[test]
fn a_misbehaving_random_source_is_clamped() {
    for value in [f64::NAN, -1.0, 2.0, f64::INFINITY, f64::NEG_INFINITY, 1.0] {
        let r = Fixed(value);
        for jitter in [
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::Additive(ms(100)),
        ] {
            let b = backoff(ms(100), 2.0, secs(10), jitter);
            for n in [1, 5, 100] {
                let d = b.delay(n, ms(300), &r);
                assert!(d <= b.ceiling(), "{jitter:?} with {value}: {d:?}");
                if jitter == Jitter::Decorrelated {
                    assert!(d >= ms(100), "{value}: {d:?}");
                }
            }
        }
    }
}

#[test]
fn jitter_reaches_both_ends_of_its_range() {
    let d = ms(800); // retry 4 of 100 ms doubling
    let full = backoff(ms(100), 2.0, secs(10), Jitter::Full);
    assert_eq!(full.delay(4, Duration::ZERO, &Fixed(0.0)), Duration::ZERO);
    assert_eq!(full.delay(4, Duration::ZERO, &Fixed(ALMOST_ONE)), d);
    let equal = backoff(ms(100), 2.0, secs(10), Jitter::Equal);
    assert_eq!(equal.delay(4, Duration::ZERO, &Fixed(0.0)), d / 2);
    assert_eq!(equal.delay(4, Duration::ZERO, &Fixed(ALMOST_ONE)), d);
    assert_eq!(equal.delay(4, Duration::ZERO, &Fixed(0.5)), d * 3 / 4);
    let additive = backoff(ms(100), 2.0, secs(10), Jitter::Additive(ms(100)));
    assert_eq!(additive.delay(4, Duration::ZERO, &Fixed(0.0)), d);
    assert_eq!(
        additive.delay(4, Duration::ZERO, &Fixed(ALMOST_ONE)),
        d + ms(100)
    );
}

#[test]
fn decorrelated_grows_from_the_previous_wait_and_is_capped() {
    let b = backoff(ms(100), 2.0, secs(1), Jitter::Decorrelated);
    // Before the first retry `previous` counts as `base`: uniform in [100 ms, 300 ms].
    assert_eq!(b.delay(1, Duration::ZERO, &Fixed(0.0)), ms(100));
    assert_eq!(b.delay(1, Duration::ZERO, &Fixed(0.5)), ms(200));
    assert_eq!(b.delay(1, Duration::ZERO, &Fixed(ALMOST_ONE)), ms(300));
    // From 200 ms: uniform in [100 ms, 600 ms]; the retry number plays no part.
    assert_eq!(b.delay(1, ms(200), &Fixed(0.5)), ms(350));
    assert_eq!(b.delay(9, ms(200), &Fixed(0.5)), ms(350));
    // From 500 ms: uniform in [100 ms, 1500 ms], then capped at 1 s.
    assert_eq!(b.delay(2, ms(500), &Fixed(ALMOST_ONE)), secs(1));
    assert_eq!(b.delay(2, ms(500), &Fixed(0.0)), ms(100));
    // A previous wait below base / 3 cannot pull the wait under base.
    assert_eq!(
        b.delay(2, Duration::from_nanos(1), &Fixed(ALMOST_ONE)),
        ms(100)
    );
}

// ---------------------------------------------------------------------------------------------
// (2) The seed's preset.

#[test]
fn google_style_is_googles_backoff() {
    let b = ExponentialBackoff::google_style();
    assert_eq!(b.base(), secs(1));
    assert_eq!(b.factor(), 2.0);
    assert_eq!(b.max(), secs(64));
    assert_eq!(b.jitter(), Jitter::Additive(ms(100)));
    assert_eq!(b.ceiling(), ms(64_100));
    // The preset is a valid configuration.
    assert_eq!(
        ExponentialBackoff::new(b.base(), b.factor(), b.max(), b.jitter()),
        Ok(b)
    );

    let r = SplitMix64::new(2024);
    let within = |d: Duration, lo: Duration| d >= lo && d <= lo + ms(100);
    let mut previous = Duration::ZERO;
    for _ in 0..1_000 {
        let first = b.delay(1, previous, &r);
        assert!(within(first, secs(1)), "retry 1: {first:?}");
        let second = b.delay(2, first, &r);
        assert!(within(second, secs(2)), "retry 2: {second:?}");
        let sixth = b.delay(6, second, &r);
        assert!(within(sixth, secs(32)), "retry 6: {sixth:?}");
        for n in [7, 8, 100, 10_000, u32::MAX] {
            let capped = b.delay(n, sixth, &r);
            assert!(within(capped, secs(64)), "retry {n}: {capped:?}");
        }
        previous = first;
    }
}

#[test]
fn the_seed_draws_a_fresh_offset_each_retry() {
    let b = ExponentialBackoff::google_style();
    let r = SplitMix64::new(5);
    let offsets: Vec<Duration> = (0..50)
        .map(|_| b.delay(7, secs(64), &r) - secs(64))
        .collect();
    let distinct: std::collections::HashSet<_> = offsets.iter().collect();
    assert!(distinct.len() > 45, "{offsets:?}");
}

#[test]
fn default_is_100ms_doubling_to_64s_with_full_jitter() {
    let b = ExponentialBackoff::default();
    assert_eq!(
        b,
        ExponentialBackoff::new(ms(100), 2.0, secs(64), Jitter::Full).unwrap()
    );
    assert_eq!(b.ceiling(), secs(64));
}

// ---------------------------------------------------------------------------------------------
// (3) Bounds under any valid configuration.

#[derive(Debug, Clone, Copy)]
enum Kind {
    None,
    Full,
    Equal,
    Decorrelated,
    Additive,
}

fn config() -> impl Strategy<Value = ExponentialBackoff> {
    (
        1_000u64..=10_000_000_000,
        1.0f64..10.0,
        prop_oneof![
            Just(Kind::None),
            Just(Kind::Full),
            Just(Kind::Equal),
            Just(Kind::Decorrelated),
            Just(Kind::Additive)
        ],
    )
        .prop_flat_map(|(base, factor, kind)| {
            (
                Just(base),
                Just(factor),
                base..=1_000_000_000_000_000u64,
                Just(kind),
            )
        })
        .prop_flat_map(|(base, factor, max, kind)| {
            (Just(base), Just(factor), Just(max), Just(kind), 0..=max)
        })
        .prop_map(|(base, factor, max, kind, extra)| {
            let jitter = match kind {
                Kind::None => Jitter::None,
                Kind::Full => Jitter::Full,
                Kind::Equal => Jitter::Equal,
                Kind::Decorrelated => Jitter::Decorrelated,
                Kind::Additive => Jitter::Additive(Duration::from_nanos(extra)),
            };
            backoff(
                Duration::from_nanos(base),
                factor,
                Duration::from_nanos(max),
                jitter,
            )
        })
}

fn previous() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn retry() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..=20_000, 1 => any::<u32>()]
}

fn unit() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(ALMOST_ONE), 0.0f64..1.0]
}

proptest! {
    #[test]
    fn delay_never_exceeds_the_ceiling(
        b in config(),
        n in retry(),
        prev in previous(),
        r in unit(),
        seed in any::<u64>(),
    ) {
        let plain = backoff(b.base(), b.factor(), b.max(), Jitter::None);
        let d = plain.delay(n, prev, &Fixed(r));
        prop_assert!(d >= b.base() && d <= b.max());
        let rng = SplitMix64::new(seed);
        for wait in [b.delay(n, prev, &Fixed(r)), b.delay(n, prev, &rng)] {
            prop_assert!(wait <= b.ceiling(), "{:?} > {:?}", wait, b.ceiling());
            match b.jitter() {
                Jitter::None => prop_assert_eq!(wait, d),
                Jitter::Full => prop_assert!(wait <= d),
                Jitter::Equal => prop_assert!(wait >= d / 2 && wait <= d),
                Jitter::Decorrelated => {
                    prop_assert!(wait >= b.base() && wait <= b.max());
                    let prev = if prev.is_zero() { b.base() } else { prev };
                    prop_assert!(wait <= prev.saturating_mul(3).max(b.base()));
                }
                Jitter::Additive(extra) => prop_assert!(wait >= d && wait <= d + extra),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn without_jitter_waits_never_shrink(b in config(), n in 0u32..=20_000) {
        let plain = backoff(b.base(), b.factor(), b.max(), Jitter::None);
        let r = Fixed(0.0);
        prop_assert!(plain.delay(n, Duration::ZERO, &r) <= plain.delay(n + 1, Duration::ZERO, &r));
    }

    #[test]
    fn a_decorrelated_chain_stays_between_base_and_max(b in config(), seed in any::<u64>()) {
        let b = backoff(b.base(), b.factor(), b.max(), Jitter::Decorrelated);
        let rng = SplitMix64::new(seed);
        let mut prev = Duration::ZERO;
        for n in 1..=64 {
            let wait = b.delay(n, prev, &rng);
            let upper = if prev.is_zero() { b.base() } else { prev } * 3;
            prop_assert!(wait >= b.base() && wait <= b.max().min(upper));
            prev = wait;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (4) Distributions, from a seeded source.

const DRAWS: usize = 20_000;
const BINS: usize = 10;

/// The 99.9th percentile of the chi-square distribution with 9 degrees of freedom: a uniform
/// sample lands above it one time in a thousand, so with fixed seeds a failure means a skewed
/// distribution, not bad luck.
const CHI_SQUARE_9_DOF_P999: f64 = 27.88;

/// Checks that `samples` are uniform over `[lo, hi]`: each of 10 equal bins within 15% of its
/// expected count (about 7 standard deviations for 2,000 per bin) and the chi-square statistic
/// below its 99.9th percentile; the mean within 2% of the midpoint's distance from `lo`.
fn assert_uniform(samples: &[Duration], lo: Duration, hi: Duration) {
    let (lo_s, hi_s) = (lo.as_secs_f64(), hi.as_secs_f64());
    let width = hi_s - lo_s;
    let mut bins = [0usize; BINS];
    let mut sum = 0.0;
    for s in samples {
        assert!(*s >= lo && *s <= hi, "{s:?} outside [{lo:?}, {hi:?}]");
        let x = (s.as_secs_f64() - lo_s) / width;
        sum += x;
        bins[((x * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let expected = samples.len() as f64 / BINS as f64;
    let chi: f64 = bins
        .iter()
        .map(|&b| (b as f64 - expected).powi(2) / expected)
        .sum();
    for b in bins {
        assert!(
            (b as f64 - expected).abs() <= 0.15 * expected,
            "bins {bins:?}, expected {expected} each"
        );
    }
    assert!(
        chi < CHI_SQUARE_9_DOF_P999,
        "chi-square {chi}, bins {bins:?}"
    );
    let mean = sum / samples.len() as f64;
    assert!((mean - 0.5).abs() <= 0.01, "mean at {mean} of the range");
}

fn draw(b: &ExponentialBackoff, n: u32, previous: Duration, seed: u64) -> Vec<Duration> {
    let r = SplitMix64::new(seed);
    (0..DRAWS).map(|_| b.delay(n, previous, &r)).collect()
}

fn mean(samples: &[Duration]) -> f64 {
    samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64
}

#[test]
fn full_jitter_is_uniform_over_zero_to_d() {
    let b = backoff(ms(100), 2.0, secs(64), Jitter::Full);
    let d = ms(1600); // retry 5
    let samples = draw(&b, 5, Duration::ZERO, 11);
    assert_uniform(&samples, Duration::ZERO, d);
    let m = mean(&samples);
    assert!(
        (m / (d.as_secs_f64() / 2.0) - 1.0).abs() <= 0.02,
        "mean {m}"
    );
    // Capped: uniform over [0, max].
    assert_uniform(&draw(&b, 40, Duration::ZERO, 12), Duration::ZERO, secs(64));
}

#[test]
fn equal_jitter_is_uniform_over_half_d_to_d() {
    let b = backoff(ms(100), 2.0, secs(64), Jitter::Equal);
    let d = ms(800); // retry 4
    let samples = draw(&b, 4, Duration::ZERO, 21);
    assert_uniform(&samples, d / 2, d);
    let m = mean(&samples);
    assert!(
        (m / (d.as_secs_f64() * 0.75) - 1.0).abs() <= 0.02,
        "mean {m}"
    );
}

#[test]
fn additive_jitter_is_uniform_over_d_to_d_plus_extra() {
    let b = ExponentialBackoff::google_style();
    for (n, d, seed) in [(1, secs(1), 31), (4, secs(8), 32), (10_000, secs(64), 33)] {
        let samples = draw(&b, n, Duration::ZERO, seed);
        assert_uniform(&samples, d, d + ms(100));
        let m = mean(&samples) - d.as_secs_f64();
        assert!((m / 0.05 - 1.0).abs() <= 0.02, "mean offset {m}");
    }
}

#[test]
fn decorrelated_jitter_is_uniform_over_base_to_three_previous() {
    let b = backoff(ms(100), 2.0, secs(64), Jitter::Decorrelated);
    // Before the first retry: [base, 3 base].
    assert_uniform(&draw(&b, 1, Duration::ZERO, 41), ms(100), ms(300));
    // From 1 s: [100 ms, 3 s].
    assert_uniform(&draw(&b, 3, secs(1), 42), ms(100), secs(3));
}

#[test]
fn decorrelated_jitter_caps_with_a_point_mass_at_max() {
    // From 1 s with a 2 s cap: uniform over [100 ms, 3 s], so (3 - 2) / 2.9 of the draws land
    // exactly on the cap and the rest are uniform below it.
    let b = backoff(ms(100), 2.0, secs(2), Jitter::Decorrelated);
    let samples = draw(&b, 2, secs(1), 43);
    let at_cap = samples.iter().filter(|d| **d == secs(2)).count();
    let expected = DRAWS as f64 * 1.0 / 2.9;
    assert!(
        (at_cap as f64 / expected - 1.0).abs() <= 0.05,
        "{at_cap} at the cap, expected about {expected}"
    );
    let below: Vec<Duration> = samples.into_iter().filter(|d| *d < secs(2)).collect();
    assert!(below.len() >= 12_000);
    let chunk = below.len() / BINS * BINS;
    let (lo, hi) = (ms(100), secs(2));
    let mut bins = [0usize; BINS];
    for s in &below[..chunk] {
        let x = (s.as_secs_f64() - lo.as_secs_f64()) / (hi - lo).as_secs_f64();
        bins[((x * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let per_bin = chunk as f64 / BINS as f64;
    for b in bins {
        assert!((b as f64 - per_bin).abs() <= 0.15 * per_bin, "{bins:?}");
    }
}

#[test]
fn a_decorrelated_chain_spreads_clients_apart() {
    // Many clients failing together, each with its own feedback chain: by the fifth retry
    // their waits are spread over most of [base, max] rather than bunched.
    let b = backoff(ms(100), 2.0, secs(10), Jitter::Decorrelated);
    let r = SplitMix64::new(51);
    let mut waits = Vec::new();
    for _ in 0..2_000 {
        let mut prev = Duration::ZERO;
        for n in 1..=5 {
            prev = b.delay(n, prev, &r);
        }
        waits.push(prev);
    }
    let distinct: std::collections::HashSet<_> = waits.iter().collect();
    assert!(distinct.len() > 1_900);
    assert!(waits.iter().all(|w| *w >= ms(100) && *w <= secs(10)));
}

// ---------------------------------------------------------------------------------------------
// (5) Validation.

#[test]
fn every_invalid_setting_is_a_typed_error_naming_it() {
    let century = secs(100 * 365 * 24 * 3600);
    let cases: Vec<(Result<ExponentialBackoff, BackoffError>, &str, BackoffError)> = vec![
        (
            ExponentialBackoff::new(Duration::ZERO, 2.0, secs(1), Jitter::Full),
            "base",
            BackoffError::ZeroBase,
        ),
        (
            ExponentialBackoff::new(
                century + Duration::from_nanos(1),
                2.0,
                century * 2,
                Jitter::Full,
            ),
            "base",
            BackoffError::TooLong {
                setting: "base",
                value: century + Duration::from_nanos(1),
            },
        ),
        (
            ExponentialBackoff::new(ms(100), 0.5, secs(1), Jitter::Full),
            "factor",
            BackoffError::InvalidFactor { factor: 0.5 },
        ),
        (
            ExponentialBackoff::new(ms(100), 0.999, secs(1), Jitter::Full),
            "factor",
            BackoffError::InvalidFactor { factor: 0.999 },
        ),
        (
            ExponentialBackoff::new(ms(100), -2.0, secs(1), Jitter::Full),
            "factor",
            BackoffError::InvalidFactor { factor: -2.0 },
        ),
        (
            ExponentialBackoff::new(ms(100), f64::INFINITY, secs(1), Jitter::Full),
            "factor",
            BackoffError::InvalidFactor {
                factor: f64::INFINITY,
            },
        ),
        (
            ExponentialBackoff::new(ms(100), 2.0, ms(50), Jitter::Full),
            "max",
            BackoffError::MaxBelowBase {
                max: ms(50),
                base: ms(100),
            },
        ),
        (
            ExponentialBackoff::new(ms(100), 2.0, Duration::MAX, Jitter::Full),
            "max",
            BackoffError::TooLong {
                setting: "max",
                value: Duration::MAX,
            },
        ),
        (
            ExponentialBackoff::new(ms(100), 2.0, secs(1), Jitter::Additive(ms(1001))),
            "jitter",
            BackoffError::JitterAboveMax {
                extra: ms(1001),
                max: secs(1),
            },
        ),
    ];
    for (result, setting, expected) in cases {
        let err = result.unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        assert_eq!(err, expected);
        assert!(err.to_string().contains(&format!("`{setting}`")), "{err}");
    }

    // NaN is never equal to itself, so it is checked apart.
    let err = ExponentialBackoff::new(ms(100), f64::NAN, secs(1), Jitter::Full).unwrap_err();
    assert_eq!(err.setting(), "factor");
    assert!(matches!(err, BackoffError::InvalidFactor { factor } if factor.is_nan()));
}

#[test]
fn error_messages_name_the_setting_and_the_values() {
    let err = ExponentialBackoff::new(ms(100), 2.0, ms(50), Jitter::Full).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backoff `max` (50ms) is below `base` (100ms)"
    );
    let err = ExponentialBackoff::new(ms(100), 0.5, secs(1), Jitter::Full).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backoff `factor` (0.5) must be a finite number of at least 1"
    );
    let err = ExponentialBackoff::new(Duration::ZERO, 2.0, secs(1), Jitter::Full).unwrap_err();
    assert_eq!(err.to_string(), "backoff `base` must be greater than zero");
    let err =
        ExponentialBackoff::new(ms(100), 2.0, secs(1), Jitter::Additive(secs(2))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backoff `jitter` (additive 2s) is above `max` (1s)"
    );
    // It is a std error, boxable into the crate's BoxError.
    let boxed: bulwark_core::BoxError = err.into();
    assert!(boxed.is::<BackoffError>());
}

#[test]
fn the_edges_of_every_range_are_valid() {
    let century = secs(100 * 365 * 24 * 3600);
    for (base, factor, max, jitter) in [
        (
            Duration::from_nanos(1),
            1.0,
            Duration::from_nanos(1),
            Jitter::None,
        ),
        (ms(100), 1.0, ms(100), Jitter::Additive(ms(100))),
        (ms(100), f64::MAX, secs(1), Jitter::Additive(Duration::ZERO)),
        (century, 2.0, century, Jitter::Additive(century)),
    ] {
        let b = ExponentialBackoff::new(base, factor, max, jitter).unwrap();
        assert_eq!(
            (b.base(), b.factor(), b.max(), b.jitter()),
            (base, factor, max, jitter)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (6) The serde form.

#[cfg(feature = "serde")]
mod serde_form {
    use super::*;

    fn parse(text: &str) -> Result<ExponentialBackoff, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn every_jitter_form_round_trips_through_toml() {
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::Additive(ms(100)),
            Jitter::Additive(Duration::from_micros(1_500)),
        ] {
            let b = backoff(Duration::from_micros(250_500), 1.5, secs(90), jitter);
            let text = toml::to_string(&b).unwrap();
            assert_eq!(parse(&text).unwrap(), b, "{text}");
        }
    }

    #[test]
    fn a_full_table_with_human_durations_deserializes() {
        let b = parse(
            r#"
            base = "1s"
            factor = 2.0
            max = "64s"
            jitter = { additive = "100ms" }
            "#,
        )
        .unwrap();
        assert_eq!(b, ExponentialBackoff::google_style());
        for (text, jitter) in [
            ("none", Jitter::None),
            ("full", Jitter::Full),
            ("equal", Jitter::Equal),
            ("decorrelated", Jitter::Decorrelated),
        ] {
            let b = parse(&format!("jitter = \"{text}\"")).unwrap();
            assert_eq!(b.jitter(), jitter);
        }
        let b = parse("base = \"250ms\"\nmax = \"1m 30s\"\nfactor = 3").unwrap();
        assert_eq!((b.base(), b.factor(), b.max()), (ms(250), 3.0, secs(90)));
    }

    #[test]
    fn every_key_is_optional() {
        assert_eq!(parse("").unwrap(), ExponentialBackoff::default());
        let b = parse("factor = 1.5").unwrap();
        assert_eq!(b, backoff(ms(100), 1.5, secs(64), Jitter::Full),);
    }

    #[test]
    fn unknown_keys_and_malformed_values_are_errors() {
        let err = parse("bsae = \"1s\"").unwrap_err();
        assert!(err.to_string().contains("bsae"), "{err}");
        let err = parse("jitter = { additive = \"100ms\", extra = 1 }").unwrap_err();
        assert!(
            err.to_string().contains("extra") || err.to_string().contains("additive"),
            "{err}"
        );
        let err = parse("jitter = \"sometimes\"").unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        let err = parse("base = \"ten seconds\"").unwrap_err();
        assert!(
            err.to_string().contains("base") || err.to_string().contains("ten"),
            "{err}"
        );
    }

    #[test]
    fn invalid_combinations_are_errors_naming_the_setting() {
        for (text, setting) in [
            ("base = \"1s\"\nmax = \"500ms\"", "`max`"),
            ("factor = 0.5", "`factor`"),
            ("base = \"0s\"", "`base`"),
            ("max = \"1s\"\njitter = { additive = \"2s\" }", "`jitter`"),
            ("max = \"200years\"", "`max`"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(setting), "{text}: {err}");
        }
    }
}
