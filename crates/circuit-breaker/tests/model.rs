//! Property test: random sequences of calls (finished at once, held, finished later or
//! dropped) and clock advances, run against the breaker and against a small reference model
//! of the count window and the state machine. After every step both must agree on the state,
//! the window's calls and failures, and whether each call was admitted; and no more probes
//! than allowed may ever be in flight.

use bulwark_circuit_breaker::{CircuitBreakerLayer, CircuitState, Open, Outcome};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::{Layer, Service};

#[derive(Debug, Clone)]
struct Settings {
    window: usize,
    min_calls: usize,
    rate: f64,
    probes: u32,
    open_ms: u64,
    consecutive: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Call(Outcome),
    Hold,
    Finish(usize, Outcome),
    Drop(usize),
    Advance(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MState {
    Closed,
    Open { until: u64 },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

struct Model {
    s: Settings,
    state: MState,
    gen: u64,
    window: VecDeque<bool>,
    consecutive: u32,
}

impl Model {
    fn new(s: Settings) -> Self {
        Model {
            s,
            state: MState::Closed,
            gen: 0,
            window: VecDeque::new(),
            consecutive: 0,
        }
    }

    fn refresh(&mut self, now: u64) {
        if let MState::Open { until } = self.state {
            if now >= until {
                self.state = MState::HalfOpen {
                    in_flight: 0,
                    succeeded: 0,
                };
                self.gen += 1;
            }
        }
    }

    fn acquire(&mut self, now: u64) -> Option<(u64, bool)> {
        self.refresh(now);
        match &mut self.state {
            MState::Closed => Some((self.gen, false)),
            MState::Open { .. } => None,
            MState::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded < self.s.probes {
                    *in_flight += 1;
                    Some((self.gen, true))
                } else {
                    None
                }
            }
        }
    }

    fn trip(&mut self, now: u64) {
        self.state = MState::Open {
            until: now + self.s.open_ms * 1_000_000,
        };
        self.gen += 1;
    }

    fn close(&mut self) {
        self.state = MState::Closed;
        self.window.clear();
        self.consecutive = 0;
        self.gen += 1;
    }

    fn complete(&mut self, gen: u64, probe: bool, outcome: Outcome, now: u64) {
        if gen != self.gen {
            return;
        }
        if probe {
            if let MState::HalfOpen {
                in_flight,
                succeeded,
            } = &mut self.state
            {
                match outcome {
                    Outcome::Success => {
                        *in_flight -= 1;
                        *succeeded += 1;
                        if *succeeded == self.s.probes {
                            self.close();
                        }
                    }
                    Outcome::Failure => self.trip(now),
                    Outcome::Ignored => *in_flight -= 1,
                }
            }
            return;
        }
        if self.state != MState::Closed || outcome == Outcome::Ignored {
            return;
        }
        let failed = outcome == Outcome::Failure;
        if self.window.len() == self.s.window {
            self.window.pop_front();
        }
        self.window.push_back(failed);
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        let calls = self.window.len();
        let failures = self.window.iter().filter(|f| **f).count();
        let by_rate = calls >= self.s.min_calls
            && failures > 0
            && failures as f64 / calls as f64 >= self.s.rate;
        let by_run = self.s.consecutive.is_some_and(|k| self.consecutive >= k);
        if by_rate || by_run {
            self.trip(now);
        }
    }

    fn drop_call(&mut self, gen: u64, probe: bool) {
        if let (true, true, MState::HalfOpen { in_flight, .. }) =
            (probe, gen == self.gen, &mut self.state)
        {
            *in_flight -= 1;
        }
    }

    fn state(&self) -> CircuitState {
        match self.state {
            MState::Closed => CircuitState::Closed,
            MState::Open { .. } => CircuitState::Open,
            MState::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

enum Req {
    Now(Outcome),
    Later(oneshot::Receiver<Outcome>),
}

type Fut = Pin<Box<dyn Future<Output = Result<Outcome, bulwark_core::BoxError>>>>;

struct Held {
    future: Fut,
    tx: oneshot::Sender<Outcome>,
    admitted: (u64, bool),
}

fn settings() -> impl Strategy<Value = Settings> {
    (1usize..8)
        .prop_flat_map(|window| {
            (
                Just(window),
                1..=window,
                prop::sample::select(vec![0.25, 0.5, 0.75, 1.0]),
                1u32..4,
                1u64..10,
                prop::option::of(1u32..4),
            )
        })
        .prop_map(
            |(window, min_calls, rate, probes, open_s, consecutive)| Settings {
                window,
                min_calls,
                rate,
                probes,
                open_ms: open_s * 1000,
                consecutive,
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => outcome().prop_map(Op::Call),
        2 => Just(Op::Hold),
        2 => (0usize..4, outcome()).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => (0usize..4).prop_map(Op::Drop),
        2 => (0u64..12_000).prop_map(Op::Advance),
    ]
}

fn poll_once(f: &mut Fut) -> Poll<Result<Outcome, bulwark_core::BoxError>> {
    let waker = futures_util::task::noop_waker();
    f.as_mut().poll(&mut Context::from_waker(&waker))
}

fn run(s: Settings, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut builder = CircuitBreakerLayer::builder()
            .failure_rate(s.rate)
            .count_window(s.window as u32)
            .min_calls(s.min_calls as u32)
            .half_open_probes(s.probes)
            .open_for(Duration::from_millis(s.open_ms));
        if let Some(k) = s.consecutive {
            builder = builder.consecutive_failures(k);
        }
        let inner = tower::service_fn(|req: Req| async move {
            match req {
                Req::Now(o) => Ok::<_, std::io::Error>(o),
                Req::Later(rx) => Ok(rx.await.unwrap_or(Outcome::Ignored)),
            }
        });
        let mut svc = builder
            .classifier(|r: &Result<Outcome, std::io::Error>| *r.as_ref().unwrap())
            .build()
            .unwrap()
            .layer(inner);
        let handle = svc.handle();
        let mut model = Model::new(s.clone());
        let mut held: Vec<Held> = Vec::new();
        let mut now: u64 = 0;
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);

        for op in ops {
            match op {
                Op::Call(o) => {
                    let expected = model.acquire(now);
                    assert!(svc.poll_ready(&mut cx).is_ready());
                    let mut f: Fut = Box::pin(svc.call(Req::Now(o)));
                    let Poll::Ready(result) = poll_once(&mut f) else {
                        panic!("an immediate call finishes at once");
                    };
                    let refused = result.as_ref().err().is_some_and(|e| e.is::<Open>());
                    prop_assert_eq!(refused, expected.is_none(), "admission of {:?}", op);
                    if let Some((gen, probe)) = expected {
                        model.complete(gen, probe, o, now);
                    }
                }
                Op::Hold => {
                    let expected = model.acquire(now);
                    assert!(svc.poll_ready(&mut cx).is_ready());
                    let (tx, rx) = oneshot::channel();
                    let mut f: Fut = Box::pin(svc.call(Req::Later(rx)));
                    match poll_once(&mut f) {
                        Poll::Ready(r) => {
                            prop_assert!(r.unwrap_err().is::<Open>());
                            prop_assert!(expected.is_none(), "refused but the model admitted");
                        }
                        Poll::Pending => {
                            let admitted = expected.expect("admitted but the model refused");
                            held.push(Held {
                                future: f,
                                tx,
                                admitted,
                            });
                        }
                    }
                }
                Op::Finish(i, o) => {
                    if i < held.len() {
                        let mut h = held.remove(i);
                        h.tx.send(o).unwrap();
                        prop_assert!(poll_once(&mut h.future).is_ready());
                        model.complete(h.admitted.0, h.admitted.1, o, now);
                    }
                }
                Op::Drop(i) => {
                    if i < held.len() {
                        let h = held.remove(i);
                        drop(h.future);
                        model.drop_call(h.admitted.0, h.admitted.1);
                    }
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    now += ms * 1_000_000;
                }
            }
            model.refresh(now);
            let m = handle.metrics();
            prop_assert_eq!(m.state, model.state(), "state after {:?}", op);
            if model.state == MState::Closed {
                let failures = model.window.iter().filter(|f| **f).count() as u64;
                prop_assert_eq!(m.calls, model.window.len() as u64, "calls after {:?}", op);
                prop_assert_eq!(m.failures, failures, "failures after {:?}", op);
            }
            let probes_in_flight = held
                .iter()
                .filter(|h| h.admitted.1 && h.admitted.0 == model.gen)
                .count();
            prop_assert!(probes_in_flight <= s.probes as usize);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_reference_model(
        s in settings(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(s, ops)?;
    }
}
