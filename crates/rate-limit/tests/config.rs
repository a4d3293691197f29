//! Invalid settings fail when built, naming the setting.

use bulwark_rate_limit::{ConfigError, Mode, RateLimitConfig, RateLimitLayer};
use std::time::Duration;

/// The defaults, changed by `change`.
fn with(change: impl FnOnce(&mut RateLimitConfig)) -> RateLimitConfig {
    let mut config = RateLimitConfig::default();
    change(&mut config);
    config
}

fn setting(config: RateLimitConfig) -> &'static str {
    config.validate().unwrap_err().setting()
}

#[test]
fn each_setting_out_of_range_is_named() {
    assert_eq!(setting(with(|c| c.rate = 0)), "rate");
    assert_eq!(setting(with(|c| c.period = Duration::ZERO)), "period");
    assert_eq!(
        setting(with(|c| c.period = Duration::from_secs(2 * 86_400))),
        "period"
    );
    assert_eq!(setting(with(|c| c.burst = Some(0))), "burst");
    // More than a token per nanosecond.
    assert_eq!(
        setting(with(|c| {
            c.rate = 1_000;
            c.period = Duration::from_nanos(999);
        })),
        "rate"
    );
    // A bucket holding more than 100 years.
    assert_eq!(
        setting(with(|c| {
            c.rate = 1;
            c.period = Duration::from_secs(86_400);
            c.burst = Some(u32::MAX);
        })),
        "burst"
    );
    assert_eq!(
        setting(with(|c| c.max_wait = Some(Duration::from_secs(86_401)))),
        "max_wait"
    );
    assert_eq!(setting(with(|c| c.lease = 0)), "lease");
    assert_eq!(setting(with(|c| c.lease = 1_025)), "lease");
    let err = RateLimitLayer::builder()
        .readiness_mode()
        .max_wait(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "max_wait");
    assert_eq!(
        err.to_string(),
        "`max_wait` cannot be set in readiness mode, which waits for as long as it takes"
    );
    assert_eq!(
        RateLimitLayer::builder().burst(0).build().unwrap_err(),
        ConfigError::Zero { setting: "burst" }
    );
    // The extremes that are allowed.
    with(|c| {
        c.rate = 1_000_000_000;
        c.burst = Some(u32::MAX);
    })
    .validate()
    .unwrap();
    with(|c| {
        c.mode = Mode::Readiness;
        c.max_wait = Some(Duration::ZERO);
    })
    .validate()
    .unwrap();
}

#[cfg(feature = "serde")]
#[test]
fn a_config_deserializes_with_human_durations_and_refuses_unknown_keys() {
    let config: RateLimitConfig = toml::from_str(
        r#"
        name = "search"
        rate = 50
        period = "1s"
        burst = 10
        max_wait = "20ms"
        mode = "fail_fast"
        lease = 8
        "#,
    )
    .unwrap();
    assert_eq!(config.rate, 50);
    assert_eq!(config.burst(), 10);
    assert_eq!(config.max_wait, Some(Duration::from_millis(20)));
    assert_eq!(config.lease, 8);
    config.validate().unwrap();
    let readiness: RateLimitConfig = toml::from_str(r#"mode = "readiness""#).unwrap();
    assert_eq!(readiness.mode, Mode::Readiness);
    assert_eq!(readiness.burst(), 100);
    let err = toml::from_str::<RateLimitConfig>("burts = 3").unwrap_err();
    assert!(err.to_string().contains("burts"), "{err}");
}
