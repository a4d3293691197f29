//! Validated configuration: typed errors naming the setting; serde with human durations.

use bulwark_hedge::{ConfigError, HedgeConfig, HedgeLayer, MAX_ATTEMPTS};
use std::time::Duration;

#[test]
fn bad_settings_are_typed_errors_naming_them() {
    let setting = |b: bulwark_hedge::Builder| b.build().unwrap_err().setting();
    let err = HedgeLayer::builder().max_attempts(6).build().unwrap_err();
    assert_eq!(
        err,
        ConfigError::MaxAttempts {
            value: 6,
            max: MAX_ATTEMPTS
        }
    );
    assert_eq!(
        err.to_string(),
        "`max_attempts` must be between 1 and 5, got 6"
    );
    assert_eq!(
        setting(HedgeLayer::builder().max_attempts(0)),
        "max_attempts"
    );
    assert_eq!(
        setting(HedgeLayer::builder().delay(Duration::ZERO)),
        "delay"
    );
    assert_eq!(setting(HedgeLayer::builder().percentile(1.5)), "percentile");
    assert_eq!(setting(HedgeLayer::builder().percentile(0.0)), "percentile");
    assert_eq!(setting(HedgeLayer::builder().min_samples(0)), "min_samples");
    assert_eq!(
        setting(HedgeLayer::builder().window(Duration::from_millis(5))),
        "window"
    );
    assert_eq!(
        setting(HedgeLayer::builder().window(Duration::from_secs(100_000))),
        "window"
    );
    assert_eq!(
        setting(HedgeLayer::builder().max_extra_load(1.5)),
        "max_extra_load"
    );
    assert_eq!(
        setting(HedgeLayer::builder().max_extra_load(f64::NAN)),
        "max_extra_load"
    );
    assert_eq!(
        setting(HedgeLayer::builder().max_pushback(Duration::ZERO)),
        "max_pushback"
    );
    // Neither a delay nor a percentile: nothing says when to hedge.
    let mut config = HedgeConfig::default();
    config.percentile = None;
    let err = config.validate().unwrap_err();
    assert_eq!(err.setting(), "delay");
    assert!(err.to_string().contains("`percentile`"), "{err}");
    // One attempt turns hedging off; a delay alone, or with a percentile, is fine.
    HedgeLayer::builder().max_attempts(1).build().unwrap();
    HedgeLayer::builder()
        .delay(Duration::from_millis(20))
        .build()
        .unwrap();
    HedgeLayer::builder()
        .delay(Duration::from_millis(20))
        .percentile(0.99)
        .build()
        .unwrap();
}

#[test]
fn a_delay_then_a_percentile_keeps_the_delay_until_the_percentile_is_known() {
    let layer = HedgeLayer::builder()
        .delay(Duration::from_millis(20))
        .percentile(0.99)
        .build()
        .unwrap();
    assert_eq!(layer.current_delay(), Some(Duration::from_millis(20)));
    let layer = HedgeLayer::builder().build().unwrap();
    assert_eq!(layer.current_delay(), None, "the default waits for samples");
}

mod serde_form {
    use super::*;

    #[test]
    fn every_key_reads_with_human_durations() {
        let text = r#"
            name = "catalogue"
            max_attempts = 3
            delay = "40ms"
            percentile = 0.99
            min_samples = 200
            window = "30s"
            max_extra_load = 0.05
            min_hedges_per_sec = 2
            max_pushback = "5s"
            inherit_deadline = false
        "#;
        let config: HedgeConfig = toml::from_str(text).unwrap();
        assert_eq!(config.name, "catalogue");
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.delay, Some(Duration::from_millis(40)));
        assert_eq!(config.percentile, Some(0.99));
        assert_eq!(config.min_samples, 200);
        assert_eq!(config.window, Duration::from_secs(30));
        assert_eq!(config.max_extra_load, 0.05);
        assert_eq!(config.min_hedges_per_sec, 2);
        assert_eq!(config.max_pushback, Duration::from_secs(5));
        assert!(!config.inherit_deadline);
        bulwark_hedge::Builder::from_config(config).build().unwrap();
        let empty: HedgeConfig = toml::from_str("").unwrap();
        assert_eq!(empty, HedgeConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let err = toml::from_str::<HedgeConfig>("delai = \"10ms\"").unwrap_err();
        assert!(err.to_string().contains("delai"), "{err}");
        let err = toml::from_str::<HedgeConfig>("delay = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("delay"), "{err}");
        let config: HedgeConfig = toml::from_str("max_attempts = 9").unwrap();
        assert_eq!(config.validate().unwrap_err().setting(), "max_attempts");
    }
}
