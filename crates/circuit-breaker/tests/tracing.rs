//! State changes, refusals and outcomes reach `tracing` (with the breaker's name), through a
//! small collecting subscriber.

mod common;

use bulwark_circuit_breaker::CircuitBreakerLayer;
use common::{secs, send, Backend, Reply};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tower::Layer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn transitions_refusals_and_outcomes_are_traced() {
    let collect = Collect::default();
    let _guard = tracing::subscriber::set_default(collect.clone());
    let mut svc = CircuitBreakerLayer::builder()
        .name("store-2")
        .count_window(2)
        .min_calls(2)
        .open_for(secs(10))
        .build()
        .unwrap()
        .layer(Backend::default());
    let _ = send(&mut svc, Reply::Fail).await;
    let _ = send(&mut svc, Reply::Fail).await;
    let _ = send(&mut svc, Reply::Ok).await;
    let lines = collect.0.lock().unwrap().clone();
    let find = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(find("recorded an outcome"), 2, "{lines:#?}");
    assert_eq!(find("outcome=\"failure\""), 2, "{lines:#?}");
    assert_eq!(find("WARN message=circuit breaker opened"), 1, "{lines:#?}");
    assert_eq!(find("reason=\"failure_rate\""), 1, "{lines:#?}");
    assert_eq!(find("refused a call"), 1, "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains("breaker=store-2")),
        "{lines:#?}"
    );
}
