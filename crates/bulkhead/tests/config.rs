//! Settings out of range are refused when the layer is built, naming the setting; the serde
//! form (feature `serde`) reads the same settings.

use bulwark_bulkhead::{AdaptiveLimitLayer, BulkheadLayer, Gradient};
use std::time::Duration;

#[test]
fn a_bulkhead_names_the_setting_out_of_range() {
    let setting = |b: bulwark_bulkhead::Builder| b.build().unwrap_err().setting();
    let b = BulkheadLayer::builder;
    assert_eq!(setting(b().max_concurrent(0)), "max_concurrent");
    assert_eq!(setting(b().max_concurrent(1_000_001)), "max_concurrent");
    assert_eq!(
        setting(b().queue(0, Duration::from_millis(5))),
        "queue.capacity"
    );
    assert_eq!(
        setting(b().queue(100_001, Duration::from_millis(5))),
        "queue.capacity"
    );
    assert_eq!(setting(b().queue(5, Duration::ZERO)), "queue.timeout");
    assert_eq!(
        setting(b().queue(5, Duration::from_secs(90_000))),
        "queue.timeout"
    );
    let err = b()
        .queue(5, Duration::from_millis(5))
        .readiness_mode()
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "queue");
    assert_eq!(
        err.to_string(),
        "`queue` must not be set in readiness mode: the layer above does the waiting"
    );
    assert!(b().max_concurrent(1_000_000).build().is_ok());
}

#[test]
fn an_adaptive_limit_names_the_setting_out_of_range() {
    let setting = |b: bulwark_bulkhead::AdaptiveBuilder| b.build().unwrap_err().setting();
    let b = AdaptiveLimitLayer::builder;
    assert_eq!(setting(b().limits(0, 1, 10)), "min_limit");
    assert_eq!(setting(b().limits(1, 1, 2_000_000)), "max_limit");
    assert_eq!(setting(b().limits(10, 10, 5)), "max_limit");
    assert_eq!(setting(b().limits(2, 1, 5)), "initial_limit");
    assert_eq!(setting(b().window(Duration::ZERO)), "window");
    assert_eq!(
        setting(b().gradient(Gradient::new(0.9, 0.5, None))),
        "algorithm.tolerance"
    );
    assert_eq!(
        setting(b().gradient(Gradient::new(f64::NAN, 0.5, None))),
        "algorithm.tolerance"
    );
    assert_eq!(
        setting(b().gradient(Gradient::new(1.5, 0.0, None))),
        "algorithm.smoothing"
    );
    assert_eq!(
        setting(b().gradient(Gradient::new(1.5, 0.5, Some(Duration::ZERO)))),
        "algorithm.min_rtt_interval"
    );
    assert_eq!(
        setting(b().aimd(Duration::ZERO)),
        "algorithm.latency_threshold"
    );
    let aimd = |increase, decrease| {
        bulwark_bulkhead::Aimd::new(Duration::from_millis(50), increase, decrease)
    };
    assert_eq!(setting(b().aimd_with(aimd(0, 0.9))), "algorithm.increase");
    assert_eq!(setting(b().aimd_with(aimd(1, 1.0))), "algorithm.decrease");
    assert_eq!(setting(b().aimd_with(aimd(1, 0.0))), "algorithm.decrease");
    assert_eq!(
        setting(b().queue(0, Duration::from_millis(5))),
        "queue.capacity"
    );
    assert!(b().aimd_with(aimd(2, 0.5)).build().is_ok());
}

#[cfg(feature = "serde")]
#[test]
fn the_serde_form_reads_every_setting_and_refuses_unknown_keys() {
    use bulwark_bulkhead::{AdaptiveConfig, Algorithm, BulkheadConfig, Mode, Queue};
    let config: BulkheadConfig = toml::from_str(
        r#"
        name = "inventory"
        max_concurrent = 32
        queue = { capacity = 16, timeout = "50ms" }
        mode = "fail_fast"
        "#,
    )
    .unwrap();
    assert_eq!(config.max_concurrent, 32);
    assert_eq!(
        config.queue,
        Some(Queue {
            capacity: 16,
            timeout: Duration::from_millis(50)
        })
    );
    assert_eq!(config.mode, Mode::FailFast);
    let readiness: BulkheadConfig = toml::from_str("mode = \"readiness\"").unwrap();
    assert_eq!(readiness.mode, Mode::Readiness);
    assert!(toml::from_str::<BulkheadConfig>("max_concurent = 3").is_err());

    let config: AdaptiveConfig = toml::from_str(
        r#"
        min_limit = 4
        initial_limit = 16
        max_limit = 256
        window = "200ms"
        algorithm = { kind = "gradient", tolerance = 2.0, smoothing = 0.2, min_rtt_interval = "30s" }
        "#,
    )
    .unwrap();
    assert_eq!(
        (config.min_limit, config.initial_limit, config.max_limit),
        (4, 16, 256)
    );
    assert_eq!(config.window, Duration::from_millis(200));
    assert_eq!(
        config.algorithm,
        Algorithm::Gradient(Gradient::new(2.0, 0.2, Some(Duration::from_secs(30))))
    );
    config.validate().unwrap();
    let aimd: AdaptiveConfig = toml::from_str(
        r#"algorithm = { kind = "aimd", latency_threshold = "250ms", decrease = 0.5 }"#,
    )
    .unwrap();
    assert_eq!(
        aimd.algorithm,
        Algorithm::Aimd(bulwark_bulkhead::Aimd::new(
            Duration::from_millis(250),
            1,
            0.5
        ))
    );
    assert!(toml::from_str::<AdaptiveConfig>(r#"algorithm = { kind = "vegas" }"#).is_err());
    assert!(
        toml::from_str::<AdaptiveConfig>(r#"algorithm = { kind = "aimd", tolerance = 2.0 }"#)
            .is_err()
    );
}
