//! Validated configuration: typed errors naming the setting; serde with human durations.

use bulwark_failover::{ConfigError, FailoverConfig, FailoverLayer, Mode};
use std::time::Duration;
use tower::util::BoxCloneService;

type T = BoxCloneService<(), (), std::io::Error>;

fn target() -> T {
    BoxCloneService::new(tower::service_fn(|_: ()| async { Ok(()) }))
}

#[test]
fn bad_settings_are_typed_errors_naming_them() {
    let layer = FailoverLayer::builder().build().unwrap();
    let err = layer.build(Vec::<T>::new()).unwrap_err();
    assert_eq!(err, ConfigError::NoTargets);
    assert_eq!(err.to_string(), "`targets` must not be empty");
    let err = FailoverLayer::builder()
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "attempt_timeout");
    let err = FailoverLayer::builder()
        .target_names(["a", "b"])
        .build()
        .unwrap()
        .build(vec![target()])
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::TargetNames {
            setting: "target_names",
            names: 2,
            targets: 1
        }
    );
    let err = FailoverLayer::builder()
        .interval(Duration::from_secs(100_000))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "interval");
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = FailoverConfig::default();
    assert_eq!(c.mode, Mode::Sticky);
    assert_eq!(c.attempt_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.interval, Duration::ZERO);
    assert_eq!(c.wait_for_ready, Duration::from_secs(1));
}

#[cfg(feature = "serde")]
#[test]
fn the_demo_settings_deserialize_and_unknown_keys_are_errors() {
    let c: FailoverConfig = toml::from_str(
        r#"
        name = "stores"
        target_names = ["store-1", "store-2", "store-3"]
        mode = "priority"
        attempt_timeout = "5s"
        interval = "250ms"
        wait_for_ready = "1s"
        "#,
    )
    .unwrap();
    assert_eq!(c.mode, Mode::Priority);
    assert_eq!(c.attempt_timeout, Some(Duration::from_secs(5)));
    assert_eq!(c.interval, Duration::from_millis(250));
    c.validate_for(3).unwrap();
    let err = toml::from_str::<FailoverConfig>("timeout = \"5s\"").unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
    let c: FailoverConfig = toml::from_str("attempt_timeout = \"0s\"").unwrap();
    assert_eq!(c.validate().unwrap_err().setting(), "attempt_timeout");
}
