//! Configuration is validated when built: each bad setting is a typed error naming it.

use bulwark_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, ConfigError, Window};
use std::time::Duration;

fn setting_of(builder: bulwark_circuit_breaker::Builder) -> &'static str {
    builder.build().unwrap_err().setting()
}

#[test]
fn every_bad_setting_is_a_typed_error_naming_it() {
    let b = CircuitBreakerLayer::builder;
    let s = Duration::from_secs;
    assert_eq!(setting_of(b().failure_rate(1.01)), "failure_rate");
    assert_eq!(setting_of(b().failure_rate(-0.1)), "failure_rate");
    assert_eq!(setting_of(b().failure_rate(0.0)), "failure_rate");
    assert_eq!(setting_of(b().failure_rate(f64::NAN)), "failure_rate");
    assert_eq!(setting_of(b().count_window(0)), "window.size");
    assert_eq!(setting_of(b().count_window(2_000_000)), "window.size");
    assert_eq!(setting_of(b().count_window(10).min_calls(11)), "min_calls");
    assert_eq!(setting_of(b().min_calls(0)), "min_calls");
    assert_eq!(setting_of(b().time_window(s(0), 10)), "window.length");
    assert_eq!(setting_of(b().time_window(s(10), 0)), "window.buckets");
    assert_eq!(setting_of(b().time_window(s(10), 20_000)), "window.buckets");
    assert_eq!(
        setting_of(b().time_window(Duration::from_millis(5), 10)),
        "window.buckets"
    );
    assert_eq!(
        setting_of(b().consecutive_failures(0)),
        "consecutive_failures"
    );
    assert_eq!(
        setting_of(b().slow_calls(s(0), 0.5)),
        "slow_calls.threshold"
    );
    assert_eq!(setting_of(b().slow_calls(s(1), 1.5)), "slow_calls.rate");
    assert_eq!(setting_of(b().open_for(s(0))), "open");
    assert_eq!(
        setting_of(b().open_backoff(s(0), 2.0, s(10), 0.0)),
        "open.initial"
    );
    assert_eq!(
        setting_of(b().open_backoff(s(1), 0.5, s(10), 0.0)),
        "open.multiplier"
    );
    assert_eq!(
        setting_of(b().open_backoff(s(1), f64::INFINITY, s(10), 0.0)),
        "open.multiplier"
    );
    assert_eq!(
        setting_of(b().open_backoff(s(10), 2.0, s(1), 0.0)),
        "open.max"
    );
    assert_eq!(
        setting_of(b().open_backoff(s(1), 2.0, s(10), 1.5)),
        "open.jitter"
    );
    assert_eq!(setting_of(b().half_open_probes(0)), "half_open_probes");
    assert_eq!(setting_of(b().half_open_probes(70_000)), "half_open_probes");
    assert_eq!(
        setting_of(b().max_wait_in_half_open(s(0))),
        "max_wait_in_half_open"
    );
    assert_eq!(setting_of(b().open_for(Duration::MAX)), "open");
}

#[test]
fn messages_name_the_setting_and_the_value() {
    let err = CircuitBreakerLayer::builder()
        .count_window(10)
        .min_calls(11)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::MinCallsExceedWindow {
            min_calls: 11,
            window: 10
        }
    );
    assert!(err.to_string().contains("`min_calls` (11)"), "{err}");
    let err = CircuitBreakerLayer::builder()
        .half_open_probes(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`half_open_probes` must be greater than zero"
    );
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = CircuitBreakerConfig::default();
    assert_eq!(c.failure_rate, 0.5);
    assert_eq!(c.window, Window::Count { size: 100 });
    assert_eq!(c.min_calls, 20);
    assert_eq!(c.half_open_probes, 1);
    assert_eq!(
        c.open,
        bulwark_circuit_breaker::OpenPeriod::Fixed(Duration::from_secs(30))
    );
    assert!(c.slow_calls.is_none() && c.consecutive_failures.is_none());
    c.validate().unwrap();
}

#[cfg(feature = "serde")]
mod serde_form {
    use super::*;
    use bulwark_circuit_breaker::{Builder, Mode, OpenPeriod};

    #[test]
    fn a_full_toml_table_deserializes_with_human_durations() {
        let c: CircuitBreakerConfig = toml::from_str(
            r#"
            name = "store-1"
            failure_rate = 0.5
            window = { kind = "time", length = "1m", buckets = 12 }
            min_calls = 5
            consecutive_failures = 3
            slow_calls = { threshold = "2s", rate = 0.8 }
            open = { initial = "10s", multiplier = 2.0, max = "5m", jitter = 0.2 }
            half_open_probes = 2
            max_wait_in_half_open = "30s"
            mode = "readiness"
            "#,
        )
        .unwrap();
        assert_eq!(c.name, "store-1");
        assert_eq!(
            c.window,
            Window::Time {
                length: Duration::from_secs(60),
                buckets: 12
            }
        );
        assert_eq!(
            c.open,
            OpenPeriod::Exponential {
                initial: Duration::from_secs(10),
                multiplier: 2.0,
                max: Duration::from_secs(300),
                jitter: 0.2
            }
        );
        assert_eq!(c.max_wait_in_half_open, Some(Duration::from_secs(30)));
        assert_eq!(c.mode, Mode::Readiness);
        Builder::from_config(c).build().unwrap();
    }

    #[test]
    fn the_demo_settings_deserialize_and_every_key_is_optional() {
        let c: CircuitBreakerConfig = toml::from_str(
            r#"
            failure_rate = 0.5
            window = { kind = "count", size = 20 }
            min_calls = 5
            open = "10s"
            half_open_probes = 1
            "#,
        )
        .unwrap();
        assert_eq!(c.open, OpenPeriod::Fixed(Duration::from_secs(10)));
        let empty: CircuitBreakerConfig = toml::from_str("").unwrap();
        assert_eq!(empty, CircuitBreakerConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let err = toml::from_str::<CircuitBreakerConfig>("failure_rat = 0.5").unwrap_err();
        assert!(err.to_string().contains("failure_rat"), "{err}");
        let err = toml::from_str::<CircuitBreakerConfig>(r#"open = "ten seconds""#).unwrap_err();
        assert!(
            err.to_string().contains("open") || err.to_string().contains("ten"),
            "{err}"
        );
        let err = toml::from_str::<CircuitBreakerConfig>(r#"mode = "sometimes""#).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        // Parsed, but out of range: caught by validation, naming the setting.
        let c: CircuitBreakerConfig = toml::from_str("failure_rate = 2.0").unwrap();
        assert_eq!(
            Builder::from_config(c).build().unwrap_err().setting(),
            "failure_rate"
        );
    }
}
