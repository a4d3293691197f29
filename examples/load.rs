//! `cargo run --release --example load -- [--requests N] [--concurrency C] [--warmup N] [--rounds R]`:
//! the end-to-end benchmark of BENCHMARKS.md. Starts the book_search demo twice in this
//! process (each with its three stores, on ephemeral loopback ports): once as configured by
//! default (strategy `balance`: retry, balancer with health checks, per-store breaker and
//! timeout) and once with `search.strategy = "bare"` (the three store clients in round robin,
//! no layer). Then drives each with C workers over one shared keep-alive hyper client, each
//! sending `GET /book/{title}` for the catalogue's titles in turn until N requests are done,
//! after W unmeasured warm-up requests; the two run alternately, R rounds each.
//!
//! Prints, per configuration, the median of the rounds' throughputs, p50 / p99 / p99.9 of
//! every measured request of every round merged, and the count of answers that were not 200
//! (which must be 0: the program exits with code 1 otherwise); then a Markdown table, the
//! ratios full / bare, and the machine. The load generator, the demos and the stores share
//! one tokio runtime and the machine's cores: the figures are the whole system's, not the
//! middleware's alone.

#[path = "book_search/app/mod.rs"]
mod app;

use app::config::{Config, Strategy};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const USAGE: &str = "\
load: GET /book/{title} against the book_search demo, full stack vs bare hyper client

USAGE:
    cargo run --release --example load -- [OPTIONS]

OPTIONS:
    --requests N      measured requests per round and configuration (default 20000)
    --concurrency C   workers sending at once, over one keep-alive client (default 32)
    --warmup N        unmeasured requests before each round, and before the first (default 2000)
    --rounds R        rounds per configuration, run alternately full, bare, full, ... (default 5)
    --only full|bare  run one configuration only (to profile it); no ratios
    --help            print this
";

/// A request that has not answered after this counts as a failure (bounds the run's time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Args {
    requests: usize,
    concurrency: usize,
    warmup: usize,
    rounds: usize,
    /// Index into the configurations (0 full, 1 bare) to run alone.
    only: Option<usize>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        requests: 20_000,
        concurrency: 32,
        warmup: 2_000,
        rounds: 5,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        if flag == "--only" {
            let value = inline.or_else(|| it.next()).unwrap_or_default();
            args.only = Some(match value.as_str() {
                "full" => 0,
                "bare" => 1,
                _ => return Err(format!("--only: full or bare, got {value:?}")),
            });
            continue;
        }
        let (slot, range) = match flag.as_str() {
            "--requests" => (&mut args.requests, 1..=10_000_000),
            "--concurrency" => (&mut args.concurrency, 1..=4_096),
            "--warmup" => (&mut args.warmup, 0..=10_000_000),
            "--rounds" => (&mut args.rounds, 1..=100),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        };
        let value = inline
            .or_else(|| it.next())
            .ok_or_else(|| format!("{flag} needs a number"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        if !range.contains(&n) {
            return Err(format!(
                "{flag}: must be in {}..={}, got {n}",
                range.start(),
                range.end()
            ));
        }
        *slot = n;
    }
    Ok(Some(args))
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One round against one demo: `count` requests by `concurrency` workers.
struct Round {
    /// Per request, from sending to the whole body read, in microseconds.
    latencies_us: Vec<u64>,
    /// Answers other than 200, and requests that failed or timed out.
    not_ok: usize,
    /// From the first request sent to the last answer read.
    elapsed: Duration,
}

async fn drive(
    client: &HttpClient,
    uris: &Arc<Vec<http::Uri>>,
    count: usize,
    concurrency: usize,
) -> Round {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let uris = uris.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count / concurrency + 1);
            let mut not_ok = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let uri = uris[i % uris.len()].clone();
                let request = Request::get(uri)
                    .body(Empty::<Bytes>::new())
                    .expect("a GET with a valid URI");
                let sent = Instant::now();
                let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    let resp = client.request(request).await.ok()?;
                    let status = resp.status();
                    resp.into_body().collect().await.ok()?;
                    Some(status)
                })
                .await;
                let took = sent.elapsed();
                if !matches!(answer, Ok(Some(StatusCode::OK))) {
                    not_ok += 1;
                }
                latencies.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            (latencies, not_ok)
        }));
    }
    let mut round = Round {
        latencies_us: Vec::with_capacity(count),
        not_ok: 0,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        match worker.await {
            Ok((latencies, not_ok)) => {
                round.latencies_us.extend(latencies);
                round.not_ok += not_ok;
            }
            Err(e) => {
                eprintln!("load: a worker failed: {e}");
                round.not_ok += 1;
            }
        }
    }
    round.elapsed = started.elapsed();
    round
}

/// Nearest-rank percentile of a sorted slice.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One configuration's results over every round.
struct Totals {
    label: &'static str,
    throughputs: Vec<f64>,
    latencies_us: Vec<u64>,
    not_ok: usize,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| String::from("unknown CPU"))
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| String::from("unknown"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("load: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match app::process("load", "warn") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let full = Config::default();
    let mut bare = Config::default();
    bare.search.strategy = Strategy::Bare;
    let demos = match (
        app::start(full, listen).await,
        app::start(bare, listen).await,
    ) {
        (Ok(f), Ok(b)) => [f, b],
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("load: cannot start the demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let titles: Vec<String> = app::store::catalogue()
        .into_iter()
        .map(|b| app::search::encode_path_segment(&b.title))
        .collect();
    let uris: Vec<Arc<Vec<http::Uri>>> = demos
        .iter()
        .map(|d| {
            Arc::new(
                titles
                    .iter()
                    .map(|t| {
                        format!("{}/book/{t}", d.url())
                            .parse()
                            .expect("a valid URI")
                    })
                    .collect(),
            )
        })
        .collect();

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build(connector);

    eprintln!(
        "load: {} rounds x {} configurations of {} requests ({} warm-up) at concurrency {}; load average before: {}",
        args.rounds,
        if args.only.is_some() { 1 } else { demos.len() },
        args.requests,
        args.warmup,
        args.concurrency,
        load_average()
    );
    let mut totals = [
        Totals {
            label: "full stack (strategy balance)",
            throughputs: Vec::new(),
            latencies_us: Vec::new(),
            not_ok: 0,
        },
        Totals {
            label: "bare hyper client (strategy bare)",
            throughputs: Vec::new(),
            latencies_us: Vec::new(),
            not_ok: 0,
        },
    ];
    let run_started = Instant::now();
    // Both demos warmed up before the first measured round, so that the first configuration
    // measured does not pay alone for the process's first requests (connections, allocator).
    for (i, total) in totals.iter_mut().enumerate() {
        if args.warmup > 0 && args.only.is_none_or(|only| only == i) {
            total.not_ok += drive(&client, &uris[i], args.warmup, args.concurrency)
                .await
                .not_ok;
        }
    }
    for round in 1..=args.rounds {
        for (i, total) in totals.iter_mut().enumerate() {
            if args.only.is_some_and(|only| only != i) {
                continue;
            }
            if args.warmup > 0 {
                let warm = drive(&client, &uris[i], args.warmup, args.concurrency).await;
                total.not_ok += warm.not_ok;
            }
            let r = drive(&client, &uris[i], args.requests, args.concurrency).await;
            let rps = args.requests as f64 / r.elapsed.as_secs_f64();
            let mut sorted = r.latencies_us.clone();
            sorted.sort_unstable();
            eprintln!(
                "round {round} {:<34} {:>9.0} req/s  p50 {:>6} us  p99 {:>6} us  not 200: {}",
                total.label,
                rps,
                percentile(&sorted, 0.50),
                percentile(&sorted, 0.99),
                r.not_ok
            );
            total.throughputs.push(rps);
            total.latencies_us.extend(r.latencies_us);
            total.not_ok += r.not_ok;
        }
    }
    let run_time = run_started.elapsed();
    for demo in demos {
        demo.shutdown().await;
    }

    println!();
    println!(
        "| configuration | requests/s, median of {} rounds | each round | p50 µs | p99 µs | p99.9 µs | not 200 (warm-up included) |",
        args.rounds
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut summary = Vec::new();
    for total in &mut totals {
        if total.throughputs.is_empty() {
            continue;
        }
        total.latencies_us.sort_unstable();
        let l = &total.latencies_us;
        let rps = median(&total.throughputs);
        let p99 = percentile(l, 0.99);
        let rounds: Vec<String> = total
            .throughputs
            .iter()
            .map(|t| format!("{t:.0}"))
            .collect();
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} |",
            total.label,
            rps,
            rounds.join(", "),
            percentile(l, 0.50),
            p99,
            percentile(l, 0.999),
            total.not_ok
        );
        summary.push((rps, p99));
    }
    println!();
    if let [(full_rps, full_p99), (bare_rps, bare_p99)] = summary[..] {
        let throughput_ratio = full_rps / bare_rps;
        let p99_ratio = full_p99 as f64 / bare_p99.max(1) as f64;
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "throughput full / bare: {throughput_ratio:.3} (target >= 0.90: {})",
            verdict(throughput_ratio >= 0.90)
        );
        println!(
            "p99 full / bare: {p99_ratio:.3} (target <= 1.20: {})",
            verdict(p99_ratio <= 1.20)
        );
    }
    println!(
        "latencies: every measured request of every round merged ({} per configuration), from sending to the whole body read",
        args.rounds * args.requests
    );
    println!(
        "command: cargo run --release --example load -- --requests {} --concurrency {} --warmup {} --rounds {}{}",
        args.requests,
        args.concurrency,
        args.warmup,
        args.rounds,
        match args.only {
            Some(0) => " --only full",
            Some(_) => " --only bare",
            None => "",
        }
    );
    println!(
        "machine: {} cores available ({}), {}; tower-bulwark {}; load average after: {}; run took {:.1} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        command_output("rustc", &["--version"]).unwrap_or_else(|| String::from("rustc: unknown")),
        env!("CARGO_PKG_VERSION"),
        load_average(),
        run_time.as_secs_f64()
    );
    let not_ok: usize = totals.iter().map(|t| t.not_ok).sum();
    if not_ok > 0 {
        eprintln!("load: {not_ok} requests did not answer 200 (warm-up included)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
