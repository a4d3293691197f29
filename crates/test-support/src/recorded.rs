//! What a debugging metrics recorder received, read by name and labels: one snapshot (the
//! debugging recorder hands histogram values out as it snapshots them), queried as often as a
//! test needs.
//!
//! ```
//! use bulwark_test_support::recorded::Recorded;
//! use metrics_util::debugging::DebuggingRecorder;
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::describe_histogram!("took_seconds", metrics::Unit::Seconds, "how long");
//!     metrics::histogram!("took_seconds", "name" => "a").record(0.25);
//! });
//! let seen = Recorded::take(&snapshotter);
//! assert_eq!(seen.histogram("took_seconds", &[("name", "a")]), vec![0.25]);
//! assert_eq!(seen.help("took_seconds"), Some("how long"));
//! seen.assert_described("took_");
//! ```

use metrics::Unit;
use metrics_util::debugging::{DebugValue, Snapshotter};
use metrics_util::MetricKind;
use std::collections::BTreeSet;

/// One metric series.
#[derive(Debug)]
pub struct Series {
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The metric's name.
    pub name: String,
    /// Its labels, in order.
    pub labels: Vec<(String, String)>,
    /// The unit it was described with.
    pub unit: Option<Unit>,
    /// The help text it was described with.
    pub help: Option<String>,
    /// Its value.
    pub value: DebugValue,
}

/// One snapshot of a debugging recorder.
#[derive(Debug)]
pub struct Recorded {
    /// Every series, in the recorder's order.
    pub series: Vec<Series>,
}

impl Recorded {
    /// Takes a snapshot.
    pub fn take(snapshotter: &Snapshotter) -> Self {
        let series = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, help, value)| {
                let kind = key.kind();
                let (_, key) = key.into_parts();
                Series {
                    kind,
                    name: key.name().to_owned(),
                    labels: key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect(),
                    unit,
                    help: help.map(|h| h.to_string()),
                    value,
                }
            })
            .collect();
        Recorded { series }
    }

    /// The series of `name` of this kind whose labels include every one of `labels`.
    pub fn find(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&Series> {
        self.series.iter().find(|s| {
            s.kind == kind
                && s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
    }

    /// A counter's value; panics if there is no such counter.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self
            .find(MetricKind::Counter, name, labels)
            .map(|s| &s.value)
        {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("counter {name} {labels:?}: {other:?}"),
        }
    }

    /// A gauge's value; panics if there is no such gauge.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(MetricKind::Gauge, name, labels).map(|s| &s.value) {
            Some(DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("gauge {name} {labels:?}: {other:?}"),
        }
    }

    /// A histogram's values since the last snapshot (none if it was never registered).
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self
            .find(MetricKind::Histogram, name, labels)
            .map(|s| &s.value)
        {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            _ => Vec::new(),
        }
    }

    /// The help text `name` was described with.
    pub fn help(&self, name: &str) -> Option<&str> {
        self.series
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.help.as_deref())
    }

    /// The names of the series, once each.
    pub fn names(&self) -> BTreeSet<&str> {
        self.series.iter().map(|s| s.name.as_str()).collect()
    }

    /// Asserts that at least one series starts with `prefix`, that every one has help text,
    /// and that every `_seconds` one is described in seconds.
    pub fn assert_described(&self, prefix: &str) {
        let ours: Vec<&Series> = self
            .series
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .collect();
        assert!(!ours.is_empty(), "no metric starts with {prefix}");
        for s in ours {
            assert!(
                s.help.as_deref().is_some_and(|h| !h.is_empty()),
                "{} has no help text",
                s.name
            );
            if s.name.ends_with("_seconds") {
                assert_eq!(s.unit, Some(Unit::Seconds), "{}'s unit", s.name);
            }
        }
    }
}
