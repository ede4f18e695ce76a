//! One module per subcommand: clap `*Args`, converted into the library's config in one
//! function that destructures them exhaustively, then a call into the library.

pub mod audit;
pub mod dedup;
pub mod demo;
pub mod ingest;
pub mod loader;
#[cfg(feature = "train")]
pub mod model;
mod progress;
pub mod record;
#[cfg(feature = "train")]
pub mod train;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Convert image shards (ImageNet-21k tars, TFRecord, WebDataset, tar, folder, CIFAR) into a bitkit Parquet dataset
    Ingest(Box<ingest::IngestArgs>),
    /// Find and remove near-duplicates of downstream test sets (CIFAR, ILSVRC val, Pets, Flowers, any dataset)
    Dedup(Box<dedup::DedupArgs>),
    /// The training input pipeline: benchmark, inspect, fingerprint
    #[command(subcommand)]
    Loader(loader::LoaderCommand),
    /// BiT ResNet-v2 models: layer table and parameter count, forward a batch, export to BiT .npz
    #[cfg(feature = "train")]
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Train and evaluate BiT models: HyperRule transfer, upstream pre-training, evaluation
    #[cfg(feature = "train")]
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Audit runs: verify recorded hashes, diff two training runs, trace lineage, replay
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run the chain end to end on a built-in synthetic dataset
    Demo(demo::DemoArgs),
}

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Finished, but some input records were rejected.
    CompletedWithRejects,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::CompletedWithRejects => 3,
        }
    }
}

pub fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Ingest(args) => ingest::run(*args),
        Command::Dedup(args) => dedup::run_command(*args),
        Command::Loader(command) => loader::run(command),
        #[cfg(feature = "train")]
        Command::Model(command) => model::run(command),
        #[cfg(feature = "train")]
        Command::Train(command) => train::run(command),
        Command::Audit(command) => audit::run(command),
        Command::Demo(args) => demo::run(args),
    }
}

/// Prints one JSON object on stdout (the `--json` contract).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}
