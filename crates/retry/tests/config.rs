//! Validated configuration: typed errors naming the setting; serde with human durations.

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_retry::{BackoffRetryLayer, BudgetConfig, ConfigError, RetryConfig, MAX_ATTEMPTS};
use std::time::Duration;

#[test]
fn bad_settings_are_typed_errors_naming_them() {
    let err = BackoffRetryLayer::builder()
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::MaxAttempts {
            value: 0,
            max: MAX_ATTEMPTS
        }
    );
    assert_eq!(err.setting(), "max_attempts");
    assert_eq!(
        err.to_string(),
        "`max_attempts` must be between 1 and 10000, got 0"
    );
    assert_eq!(
        BackoffRetryLayer::builder()
            .max_attempts(20_000)
            .build()
            .unwrap_err()
            .setting(),
        "max_attempts"
    );
    assert_eq!(
        BackoffRetryLayer::builder()
            .deadline(Duration::ZERO)
            .build()
            .unwrap_err()
            .setting(),
        "deadline"
    );
    assert_eq!(
        BackoffRetryLayer::builder()
            .attempt_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .setting(),
        "attempt_timeout"
    );
    let err = BackoffRetryLayer::builder()
        .budget(BudgetConfig {
            ratio: -1.0,
            ..BudgetConfig::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "budget.ratio");
    // The backoff checks itself when built: max below base, factor below 1.
    let e = ExponentialBackoff::new(
        Duration::from_secs(1),
        2.0,
        Duration::from_millis(10),
        Jitter::None,
    )
    .unwrap_err();
    assert_eq!(ConfigError::Backoff(e).setting(), "backoff.max");
    let e = ExponentialBackoff::new(
        Duration::from_secs(1),
        0.5,
        Duration::from_secs(10),
        Jitter::None,
    )
    .unwrap_err();
    assert_eq!(ConfigError::Backoff(e).setting(), "backoff.factor");
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = RetryConfig::default();
    assert_eq!(c.max_attempts, 3);
    assert_eq!(c.backoff, ExponentialBackoff::default());
    assert_eq!(c.budget, Some(BudgetConfig::default()));
    assert_eq!(
        (c.budget.unwrap().ratio, c.budget.unwrap().floor_per_sec),
        (0.2, 10)
    );
    assert!(c.deadline.is_none() && c.attempt_timeout.is_none());
}

#[cfg(feature = "serde")]
mod serde_form {
    use super::*;
    use bulwark_retry::Builder;

    #[test]
    fn the_demo_fanout_settings_deserialize() {
        let c: RetryConfig = toml::from_str(
            r#"
            name = "fanout-store-1"
            max_attempts = 100
            deadline = "30s"
            attempt_timeout = "5s"
            backoff = { base = "100ms", factor = 2.0, max = "64s", jitter = "full" }
            budget = { ratio = 0.5, floor_per_sec = 20, window = "10s" }
            "#,
        )
        .unwrap();
        assert_eq!(c.max_attempts, 100);
        assert_eq!(c.deadline, Some(Duration::from_secs(30)));
        assert_eq!(c.backoff.max(), Duration::from_secs(64));
        assert_eq!(c.budget.unwrap().floor_per_sec, 20);
        Builder::from_config(c).build().unwrap();
        let empty: RetryConfig = toml::from_str("").unwrap();
        assert_eq!(empty, RetryConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let err = toml::from_str::<RetryConfig>("max_attempt = 3").unwrap_err();
        assert!(err.to_string().contains("max_attempt"), "{err}");
        let err = toml::from_str::<RetryConfig>(r#"backoff = { base = "1s", max = "10ms" }"#)
            .unwrap_err();
        assert!(err.to_string().contains("max"), "{err}");
        let c: RetryConfig = toml::from_str("max_attempts = 0").unwrap();
        assert_eq!(
            Builder::from_config(c).build().unwrap_err().setting(),
            "max_attempts"
        );
    }
}

#[test]
fn a_zero_retry_cap_is_refused_and_a_cap_from_the_config_is_built() {
    let mut config = RetryConfig::default();
    config.max_concurrent_retries = Some(0);
    let err = bulwark_retry::Builder::from_config(config)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "max_concurrent_retries");
    let text = "max_concurrent_retries = 3\n";
    let config: RetryConfig = toml::from_str(text).unwrap();
    let layer = bulwark_retry::Builder::from_config(config).build().unwrap();
    assert_eq!(layer.concurrency_cap().map(|c| c.max()), Some(3));
    assert!(BackoffRetryLayer::builder()
        .build()
        .unwrap()
        .concurrency_cap()
        .is_none());
}
