//! The serde form of the config, and per-target metrics.

#[cfg(feature = "serde")]
#[test]
fn the_config_deserializes_with_human_durations() {
    use bulwark_fanout::{FanOutConfig, Policy, Stragglers};
    use std::time::Duration;
    let c: FanOutConfig = toml::from_str(
        r#"
        name = "register"
        target_names = ["store-1", "store-2", "store-3"]
        policy = { quorum = 2 }
        branch_deadline = "10s"
        deadline = "30s"
        stragglers = { finish = "5s" }
        inherit_deadline = false
        "#,
    )
    .unwrap();
    assert_eq!(c.policy, Policy::Quorum(2));
    assert_eq!(c.deadline, Some(Duration::from_secs(30)));
    assert_eq!(c.stragglers, Stragglers::Finish(Duration::from_secs(5)));
    assert!(!c.inherit_deadline);
    c.validate_for(3).unwrap();
    assert_eq!(c.validate_for(1).unwrap_err().setting(), "policy");
    let all: FanOutConfig = toml::from_str("policy = \"all\"").unwrap();
    assert_eq!(all.policy, Policy::All);
    let err = toml::from_str::<FanOutConfig>("polcy = \"all\"").unwrap_err();
    assert!(err.to_string().contains("polcy"), "{err}");
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn per_target_counters() {
    use bulwark_core::Outcome;
    use bulwark_fanout::FanOutLayer;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower::util::BoxCloneService;
    use tower::{Service, ServiceExt};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    type Store = BoxCloneService<(), u16, std::io::Error>;
    let store = |status: u16| -> Store {
        BoxCloneService::new(tower::service_fn(move |_: ()| async move { Ok(status) }))
    };
    let mut fanout = FanOutLayer::builder()
        .name("register")
        .target_names(["store-1", "store-2"])
        .classifier(|r: &Result<u16, std::io::Error>| match r {
            Ok(201) => Outcome::Success,
            _ => Outcome::Failure,
        })
        .build()
        .unwrap()
        .build(vec![store(201), store(503)])
        .unwrap();
    for _ in 0..3 {
        fanout.ready().await.unwrap().call(()).await.unwrap();
    }
    let snapshot = snapshotter.snapshot().into_vec();
    let count = |target: &str, outcome: &str| {
        snapshot.iter().find_map(|(key, _, _, v)| {
            let k = key.key();
            let matches = k.name() == "bulwark_fanout_requests_total"
                && k.labels()
                    .any(|l| l.key() == "target" && l.value() == target)
                && k.labels()
                    .any(|l| l.key() == "outcome" && l.value() == outcome);
            match (matches, v) {
                (true, DebugValue::Counter(n)) => Some(*n),
                _ => None,
            }
        })
    };
    assert_eq!(count("store-1", "success"), Some(3));
    assert_eq!(count("store-2", "failure"), Some(3));
}
