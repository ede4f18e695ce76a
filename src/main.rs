//! `bitkit`: the command line over the bitkit library crates. `main` parses, dispatches and
//! maps errors to exit codes; each subcommand lives in `cmd/`.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 completed but some input records were
//! rejected (listed in the output's `rejects.jsonl`).

mod cmd;

use clap::Parser;
use std::process::ExitCode;

// glibc's malloc returns big freed blocks to the kernel and faults fresh zeroed pages for the
// next ones: a quarter of ingest's CPU time went to page faults. mimalloc keeps and reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "bitkit", version, about = "Data toolkit for Big Transfer (BiT) pre-training and transfer", long_about = None)]
#[command(
    after_help = "Examples:\n  bitkit ingest --format imagenet-tar winter21_whole/ --out i21k/\n  bitkit ingest --format tfrecord 'jft/train.tfrecord-*' --out jft/ --label-offset 1\n  bitkit demo"
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BITKIT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match cmd::run(cli.command) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(error) => {
            // A closed pipe (`bitkit ... | head`) is not a failure.
            if error
                .chain()
                .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
            {
                return ExitCode::SUCCESS;
            }
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(1)
        }
    }
}
