//! `cargo run --release --example book_search`: a book-search service in front of three mock
//! book stores, every tower-bulwark layer wired in. The contract is in the README.

mod app;

use app::config::{parse_args, Command, Config, USAGE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let (listen, config_path, allow_chaos) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run {
            listen,
            config,
            allow_chaos,
        }) => (listen, config, allow_chaos),
        Err(message) => {
            eprintln!("book_search: {message}");
            return ExitCode::from(2);
        }
    };
    let config = match &config_path {
        None => Config::default(),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("book_search: cannot read {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            match Config::from_toml(&text) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("book_search: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        }
    };

    let runtime = match app::process("book_search", "info") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let options = app::Options {
            allow_chaos,
            ..app::Options::default()
        };
        let demo = match app::start_with(config, listen, options).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("book_search: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = demo.url();
        println!("book-search listening on {url}");
        for store in &demo.stores {
            println!("{} listening on {}", store.name(), store.url());
        }
        println!();
        println!("try:");
        println!("  curl -s {url}/book/Dune");
        println!("  curl -s {url}/stores");
        println!("  curl -s -X PUT {url}/stores/store-1/fault -d '{{\"mode\":\"down\"}}'");
        if !app::chaos_allowed(demo.addr, allow_chaos) {
            println!(
                "  (the chaos controls answer 403: {} is not loopback; --allow-chaos turns them on)",
                demo.addr
            );
        }
        println!(
            "  curl -s -X POST {url}/book -d '{{\"title\":\"A Memory Called Empire\",\"author\":\"Arkady Martine\",\"isbn\":\"9781250186430\",\"price\":12.99}}'"
        );
        println!("  curl -s {url}/metrics | grep bookstore_");
        println!("Ctrl-C stops everything.");

        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("book_search: cannot listen for Ctrl-C: {e}");
        }
        tracing::info!("shutting down");
        demo.shutdown().await;
        ExitCode::SUCCESS
    })
}
