//! `cargo run --example grpc_health`: gRPC through the layers, over two real tonic servers on
//! loopback, one of which fails.
//!
//! The client: a tonic `Channel` per server, each in a circuit breaker (readiness mode,
//! classifying by `grpc-status` with `GrpcClassifier`), balanced by `BalanceLayer` with the
//! gRPC health checking protocol as its active health check, and `BackoffRetryLayer` with
//! `GrpcRetryPolicy` on top; a typed `HealthClient` over the whole stack.
//!
//! The service called is `grpc.health.v1.Health` itself (tonic-health ships its generated
//! code, so no protoc is needed): calls check the service `"work"`; the balancer's probes
//! check each server as a whole (`""`). Server `healthy` answers; server `broken` fails every
//! `"work"` call with UNAVAILABLE (an HTTP 200 with `grpc-status: 14`: only a gRPC-aware
//! classifier sees the failure), and after a while reports NOT_SERVING.
//!
//! What it prints: every call succeeds (the ones sent to `broken` are retried on `healthy`);
//! `broken`'s breaker opens after 3 failures, after which the balancer skips it; when `broken`
//! turns NOT_SERVING its health probe marks it unhealthy.
//!
//! The probe (`GrpcHealthProbe` below) is a `Service<()>` calling `Health/Check` through a
//! `HealthClient` over the endpoint's channel, not through its breaker, so it still reaches a
//! server whose breaker is open. It lives here rather than in `bulwark-balance`, so that the
//! balancer does not depend on tonic and prost; copy it.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::Layer;
use tower_bulwark::balance::{BalanceLayer, Endpoints, HealthCheck, Strategy};
use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
use tower_bulwark::core::{BoxError, Event, GrpcClassifier};
use tower_bulwark::retry::{BackoffRetryLayer, GrpcRetryPolicy};

#[path = "support/grpc.rs"]
mod support;
use support::{health, serve, Broken, GrpcHealthProbe};

/// Prints what the layers report.
fn print_event(event: &Event<'_>) {
    match event {
        Event::StateTransition { name, from, to } => {
            println!("    [breaker {name}] {from:?} -> {to:?}")
        }
        Event::RetryScheduled { attempt, delay, .. } => {
            println!("    [retry] attempt {attempt} failed, retrying in {delay:?}")
        }
        Event::RetryGaveUp { reason, .. } => println!("    [retry] gave up: {reason}"),
        Event::EndpointHealthChanged {
            endpoint, healthy, ..
        } => println!("    [balance] endpoint {endpoint} healthy: {healthy}"),
        Event::EndpointEjected { endpoint, .. } => {
            println!("    [balance] endpoint {endpoint} ejected")
        }
        _ => {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let (reporter, healthy) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("work", tonic_health::ServingStatus::Serving)
        .await;
    let broken = Broken {
        health: Arc::new(AtomicI32::new(ServingStatus::Serving as i32)),
        work_calls: Arc::new(AtomicUsize::new(0)),
    };
    let addrs = [serve(healthy).await?, serve(health(broken.clone())).await?];
    println!("servers: healthy on {}, broken on {}", addrs[0], addrs[1]);

    let channels = addrs.map(|addr| {
        Endpoint::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect_lazy()
    });
    let names = ["healthy", "broken"];
    let endpoints = channels
        .iter()
        .zip(names)
        .map(|(channel, name)| {
            let breaker = CircuitBreakerLayer::builder()
                .name(name)
                .readiness_mode()
                .classifier(GrpcClassifier::new())
                .consecutive_failures(3)
                .open_for(Duration::from_secs(30))
                .listener(print_event)
                .build()?;
            Ok(breaker.layer(channel.clone()))
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let breakers: Vec<_> = endpoints.iter().map(|e| e.handle()).collect();
    let probes = channels
        .iter()
        .map(|channel| GrpcHealthProbe {
            client: HealthClient::new(channel.clone()),
        })
        .collect();
    let balance = BalanceLayer::builder()
        .endpoint_names(names)
        .strategy(Strategy::RoundRobin)
        .classifier(GrpcClassifier::new())
        .http()
        .health_check(HealthCheck {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            unhealthy_after: 1,
            healthy_after: 1,
            jitter: 0.1,
        })
        .listener(print_event)
        .build()?
        .build(Endpoints::list(endpoints).health(probes))?;
    let balancer = balance.handle();

    let retry = BackoffRetryLayer::builder()
        .max_attempts(3)
        .backoff(support::quick_backoff())
        .policy(GrpcRetryPolicy::new())
        .listener(print_event)
        .build()?;
    // Tonic's request body cannot be cloned: `with_retry` keeps a copy (up to 64 KiB) above
    // the retry, and gives the channels tonic's body again below it.
    let mut client = HealthClient::new(support::with_retry(retry, balance));

    let work = || HealthCheckRequest {
        service: "work".into(),
    };
    // `n` calls of the work method, each answer printed.
    let mut calls = async |n: u32| -> Result<(), tonic::Status> {
        for i in 1..=n {
            let answer = client.check(work()).await?;
            println!("  call {i}: {}", answer.into_inner().status().as_str_name());
        }
        Ok(())
    };
    println!("\n10 calls, round robin over both servers:");
    calls(10).await?;
    println!(
        "broken server got {} calls; breakers: healthy {:?}, broken {:?}",
        broken.work_calls.load(Ordering::SeqCst),
        breakers[0].state(),
        breakers[1].state()
    );

    println!("\nthe broken server now reports NOT_SERVING:");
    broken
        .health
        .store(ServingStatus::NotServing as i32, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for e in balancer.endpoints() {
        println!(
            "  endpoint {}: healthy {}, {} successes, {} failures",
            e.name, e.healthy, e.successes, e.failures
        );
    }

    println!("\n5 more calls:");
    calls(5).await?;
    println!(
        "broken server got {} calls in all",
        broken.work_calls.load(Ordering::SeqCst)
    );
    Ok(())
}
