//! `bitkit ingest` and `bitkit ingest merge`.

use super::record::{dataset_outputs, input_records, FileRecord, RunRecord};
use super::{print_json, progress::IngestProgressBar, Outcome};
use anyhow::Context;
use bitkit_ingest::dataset::WriterSettings;
use bitkit_ingest::formats::{Format, TfRecordKeys, DEFAULT_FILENAME_KEY, DEFAULT_IMAGE_KEY, DEFAULT_LABEL_KEY};
use bitkit_ingest::image::ReencodeConfig;
use bitkit_ingest::pipeline::{ingest, IngestConfig, IngestSummary, Progress, DEFAULT_MAX_PIXELS};
use bitkit_ingest::plan::WorkerSplit;
use bitkit_ingest::ReaderConfig;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// ImageNet-21k / ILSVRC: a directory of per-synset tars (nXXXXXXXX.tar) or the outer tar holding them
    ImagenetTar,
    /// Flat tar shards; the class is the member's parent directory
    Tar,
    /// WebDataset tar shards; labels from .cls, .json or .txt
    Webdataset,
    /// TFRecord shards of tf.train.Example (JFT / TFDS style; gzip/zlib detected)
    Tfrecord,
    /// An ImageFolder tree ROOT/<class>/<image>
    Folder,
    /// CIFAR-10/100 binary batches (.bin)
    Cifar,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::ImagenetTar => Format::ImagenetTar,
            FormatArg::Tar => Format::Tar,
            FormatArg::Webdataset => Format::Webdataset,
            FormatArg::Tfrecord => Format::Tfrecord,
            FormatArg::Folder => Format::Folder,
            FormatArg::Cifar => Format::Cifar,
        }
    }
}

/// Convert image shards into a bitkit dataset (Parquet + dataset.json + rejects.jsonl).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(after_help = "Bad records are listed in OUT/rejects.jsonl and counted in dataset.json; good records
around them are kept. Re-running the same command after an interruption resumes where it
stopped and ends with the same bytes as an uninterrupted run.

Exit codes: 0 all records ingested, 3 finished with rejected records, 1 failure, 2 usage.

Examples:
  bitkit ingest --format imagenet-tar winter21_whole/ --out i21k/ --classes imagenet21k_wordnet_ids.txt
  bitkit ingest --format imagenet-tar winter21_whole.tar --out i21k/
  bitkit ingest --format tfrecord 'jft/train.tfrecord-*' --out jft/ --label-offset 1
  bitkit ingest --format imagenet-tar in/ --out part3/ --worker-index 3 --num-workers 8   # Slurm array task 3
  bitkit ingest merge i21k/ part0/ part1/ part2/ part3/ part4/ part5/ part6/ part7/
  bitkit ingest --format folder train/ --out train-ds/ --max-side 512 --quality 90")]
pub struct IngestArgs {
    #[command(subcommand)]
    pub merge: Option<IngestSubcommand>,
    /// Input format
    #[arg(long, value_enum, required = true)]
    pub format: Option<FormatArg>,
    /// Shard files, directories of shards (sorted) or globs
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output dataset directory
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Class list: one wnid/name per line, id = line index (default: sorted wnids / folder names)
    #[arg(long)]
    pub classes: Option<PathBuf>,
    /// Threads for parsing, probing and hashing [default: all cores]
    #[arg(long)]
    pub workers: Option<usize>,
    /// This worker's index for a split run (Slurm array / Kubernetes Indexed Job)
    #[arg(long, requires = "num_workers")]
    pub worker_index: Option<usize>,
    /// Number of workers of a split run; each takes a disjoint block of shards
    #[arg(long, requires = "worker_index")]
    pub num_workers: Option<usize>,
    /// Fail on the first rejected record instead of listing it and going on
    #[arg(long)]
    pub strict: bool,
    /// TFRecord: feature holding the encoded image
    #[arg(long, default_value = DEFAULT_IMAGE_KEY)]
    pub image_key: String,
    /// TFRecord: int64 feature holding the label(s); multi-label lists are kept whole
    #[arg(long, default_value = DEFAULT_LABEL_KEY)]
    pub label_key: String,
    /// TFRecord: bytes feature stored as image.path
    #[arg(long, default_value = DEFAULT_FILENAME_KEY)]
    pub filename_key: String,
    /// Subtracted from stored labels (1 for the 1-based Inception/TPU convention)
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub label_offset: i64,
    /// Resize images whose shorter side exceeds N (antialiased) and re-encode as 4:2:0 JPEG
    #[arg(long, requires = "quality")]
    pub max_side: Option<u32>,
    /// JPEG quality (1-100) of re-encoded images
    #[arg(long, requires = "max_side")]
    pub quality: Option<u8>,
    /// Reject images whose header declares more pixels (decompression-bomb guard)
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Largest record (image, tar member, TFRecord payload) read into memory, in MiB
    #[arg(long, default_value_t = bitkit_ingest::DEFAULT_MAX_RECORD_BYTES >> 20)]
    pub max_record_mb: u64,
    /// Read shards with read() instead of memory maps (for shards another process may truncate
    /// while they are read: a mapped file cut short kills the process with SIGBUS)
    #[arg(long)]
    pub no_mmap: bool,
    /// Target image bytes per Parquet row group, in MiB
    #[arg(long, default_value_t = bitkit_ingest::dataset::writer::DEFAULT_ROW_GROUP_BYTES >> 20)]
    pub row_group_mb: u64,
    /// Target image bytes per Parquet part file, in MiB
    #[arg(long, default_value_t = bitkit_ingest::dataset::writer::DEFAULT_PART_BYTES >> 20)]
    pub part_mb: u64,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum IngestSubcommand {
    /// Combine the outputs of --worker-index/--num-workers runs into one dataset
    #[command(after_help = "Example:\n  bitkit ingest merge i21k/ part0/ part1/ part2/ part3/")]
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Output dataset directory
    pub out: PathBuf,
    /// Worker output directories (all workers of the run, any order)
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
}

fn mib(value: u64, flag: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(value > 0, "{flag} must be > 0");
    value.checked_mul(1 << 20).with_context(|| format!("{flag} is too large"))
}

/// Turns the flags into the library's config; destructured so no flag is silently ignored.
fn resolve(args: IngestArgs) -> anyhow::Result<(IngestConfig, bool, bool)> {
    let IngestArgs {
        merge: _,
        format,
        inputs,
        out,
        classes,
        workers,
        worker_index,
        num_workers,
        strict,
        image_key,
        label_key,
        filename_key,
        label_offset,
        max_side,
        quality,
        max_pixels,
        max_record_mb,
        no_mmap,
        row_group_mb,
        part_mb,
        json,
        quiet,
    } = args;
    let format = format.context("--format is required")?;
    let out = out.context("--out is required")?;
    let mut config = IngestConfig::new(format.into(), inputs, out);
    config.classes_file = classes;
    if let Some(workers) = workers {
        anyhow::ensure!(workers > 0, "--workers must be > 0");
        config.workers = workers;
    }
    config.split = match (worker_index, num_workers) {
        (Some(index), Some(count)) => Some(WorkerSplit { index, count }),
        _ => None,
    };
    config.strict = strict;
    config.tfrecord = TfRecordKeys { image_key, label_key, filename_key, label_offset };
    config.reencode = match (max_side, quality) {
        (Some(max_side), Some(quality)) => Some(ReencodeConfig { max_side, quality }),
        _ => None,
    };
    config.max_pixels = max_pixels;
    config.reader = ReaderConfig { max_record_bytes: mib(max_record_mb, "--max-record-mb")?, mmap: !no_mmap };
    config.abort_after_parts = std::env::var("BITKIT_FAULT_ABORT_AFTER_PARTS").ok().and_then(|v| v.parse().ok());
    config.writer = WriterSettings {
        row_group_bytes: mib(row_group_mb, "--row-group-mb")?,
        part_bytes: mib(part_mb, "--part-mb")?,
    };
    Ok((config, json, quiet))
}

pub fn run(args: IngestArgs) -> anyhow::Result<Outcome> {
    if let Some(IngestSubcommand::Merge(merge)) = args.merge {
        return run_merge(merge);
    }
    let (config, json, quiet) = resolve(args)?;
    let record = RunRecord::begin(&config.out, "ingest", serde_json::Value::Null, Vec::new());
    let progress = Arc::new(Progress::default());
    let bar = IngestProgressBar::start(progress.clone(), quiet || json);
    let result = ingest(&config, &progress);
    bar.finish();
    let summary = result.with_context(|| format!("ingesting into {}", config.out.display()))?;
    let outcome = if summary.records_rejected > 0 { Outcome::CompletedWithRejects } else { Outcome::Success };
    finish_record(record, &config, &summary, outcome)?;
    report(&summary, json, quiet)?;
    Ok(outcome)
}

/// Writes `OUT/run.json`: the resolved configuration (the manifest's), the input shards
/// (hashed when they total at most 16 GiB), every output file and the counts.
fn finish_record(
    mut record: RunRecord,
    config: &IngestConfig,
    summary: &IngestSummary,
    outcome: Outcome,
) -> anyhow::Result<()> {
    let manifest = bitkit_ingest::dataset::Manifest::read(&config.out)?;
    let shards = bitkit_ingest::plan::expand_inputs(config.format, &config.inputs)?;
    record.set("inputs", serde_json::to_value(input_records(&shards, "shard")?)?);
    record.set(
        "config",
        serde_json::json!({
            "format": config.format.as_str(),
            "inputs": config.inputs,
            "out": config.out,
            "workers": config.workers,
            "split": config.split.map(|s| serde_json::json!({"index": s.index, "count": s.count})),
            "dataset": manifest.config,
        }),
    );
    let counts = serde_json::to_value(summary)?;
    let status = if summary.records_rejected > 0 { "completed_with_rejects" } else { "completed" };
    record.finish(status, outcome.code(), dataset_outputs(&config.out)?, counts)
}

#[allow(clippy::print_stderr)]
fn report(summary: &IngestSummary, json: bool, quiet: bool) -> anyhow::Result<()> {
    if json {
        print_json(summary)?;
    }
    if !quiet {
        if summary.already_complete {
            eprintln!(
                "{}: already a complete dataset of these inputs ({} rows); nothing to do",
                summary.out, summary.records_written
            );
            return Ok(());
        }
        eprintln!(
            "{}: {} records read, {} written, {} rejected in {} shards ({} skipped as done) in {:.2}s: {:.0} images/s, {:.1} MB/s",
            summary.out,
            summary.records_read,
            summary.records_written,
            summary.records_rejected,
            summary.shards,
            summary.shards_skipped,
            summary.seconds,
            summary.images_per_s,
            summary.mb_per_s
        );
        if summary.records_rejected > 0 {
            let kinds: Vec<String> = summary.rejects_by_kind.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            eprintln!("rejected records are listed in {}/rejects.jsonl ({})", summary.out, kinds.join(", "));
        }
    }
    Ok(())
}

fn run_merge(args: MergeArgs) -> anyhow::Result<Outcome> {
    let MergeArgs { out, parts, json } = args;
    let inputs = parts
        .iter()
        .map(|p| FileRecord::of(&p.join("dataset.json"), "worker-dataset"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let record = RunRecord::begin(&out, "ingest merge", serde_json::json!({ "parts": parts, "out": out }), inputs);
    let summary =
        bitkit_ingest::merge::merge(&out, &parts).with_context(|| format!("merging into {}", out.display()))?;
    let code = if summary.rejected > 0 { Outcome::CompletedWithRejects } else { Outcome::Success }.code();
    record.finish("completed", code, dataset_outputs(&out)?, serde_json::to_value(&summary)?)?;
    if json {
        print_json(&summary)?;
    } else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "{}: merged {} workers: {} rows in {} parts, {} rejected",
                summary.out, summary.workers, summary.rows, summary.parts, summary.rejected
            );
        }
    }
    Ok(if summary.rejected > 0 { Outcome::CompletedWithRejects } else { Outcome::Success })
}
