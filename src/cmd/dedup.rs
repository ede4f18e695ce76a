//! `bitkit dedup` and `bitkit dedup hash`.

use super::record::{dataset_outputs, FileRecord, RunRecord};
use super::{print_json, Outcome};
use anyhow::Context;
use bitkit_dedup::run::{excluded_keys, hash_upstream, run, write_clean, DedupConfig};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Find near-duplicates of downstream test images in an upstream dataset.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(
    after_help = "Test sets: cifar10-test, cifar100-test, ilsvrc2012-val, pets-test, flowers-test (read from their
official downloads, archives or extracted, under --data-dir or $BITKIT_DATA), or the path of any
dataset written by `bitkit ingest`.

Outputs in --out: pairs.parquet (every candidate, its verification and verdict), exclude.txt
(upstream keys to drop; `bitkit loader --exclude` reads it), errors.jsonl (images that could
not be decoded), report.html (counts per test set and thumbnails), summary.json.
Upstream hashes are cached in DATASET/pdq-hashes.bin, keyed by content hash.

Examples:
  bitkit dedup i21k/ --against cifar10-test --data-dir ~/data --out dedup-cifar10/
  bitkit dedup i21k/ --against cifar10-test,cifar100-test,ilsvrc2012-val,pets-test,flowers-test --out dedup/
  bitkit dedup i21k/ --against my-test-ds/ --out dedup-mine/ --write-clean i21k-clean/
  bitkit dedup hash i21k/ --worker-index 3 --num-workers 64     # Slurm array task 3: hash 1/64 of the rows"
)]
pub struct DedupArgs {
    #[command(subcommand)]
    pub command: Option<DedupCommand>,
    /// The upstream dataset (written by `bitkit ingest`)
    #[arg(required = true)]
    pub dataset: Option<PathBuf>,
    /// Comma-separated test sets (registry names or dataset paths)
    #[arg(long, required = true, value_delimiter = ',')]
    pub against: Vec<String>,
    /// Where the test-set downloads are [default: $BITKIT_DATA]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output directory
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Also write a copy of the dataset without the duplicates here
    #[arg(long)]
    pub write_clean: Option<PathBuf>,
    /// Hash cache [default: DATASET/pdq-hashes.bin]
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Hamming radius for native PDQ hashes
    #[arg(long, default_value_t = 31)]
    pub radius: u32,
    /// Hamming radius for the 32x32 CIFAR channel (PDQ of a 32x32 image is less stable; verification filters)
    #[arg(long, default_value_t = 56)]
    pub radius_cifar: u32,
    /// Hamming radius for the sheared CIFAR channel (one-axis test images: stripes, wood grain)
    #[arg(long, default_value_t = 31)]
    pub radius_sheared: u32,
    /// Verification: minimum normalized cross-correlation
    #[arg(long, default_value_t = 0.90)]
    pub min_ncc: f32,
    /// Verification: minimum SSIM (with --min-ncc)
    #[arg(long, default_value_t = 0.50)]
    pub min_ssim: f32,
    /// Verification: SSIM at or above this passes on its own
    #[arg(long, default_value_t = 0.92)]
    pub ssim_alone: f32,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DedupCommand {
    /// Hash (part of) a dataset into its cache, for cluster array jobs
    Hash(HashArgs),
}

#[derive(Debug, Args)]
pub struct HashArgs {
    pub dataset: PathBuf,
    /// Hash cache [default: DATASET/pdq-hashes.bin; with --worker-index: that name + .part-I-of-N]
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[arg(long, requires = "num_workers")]
    pub worker_index: Option<usize>,
    #[arg(long, requires = "worker_index")]
    pub num_workers: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn run_command(args: DedupArgs) -> anyhow::Result<Outcome> {
    if let Some(DedupCommand::Hash(hash)) = args.command {
        return run_hash(hash);
    }
    let DedupArgs {
        command: _,
        dataset,
        against,
        data_dir,
        out,
        write_clean: clean,
        cache,
        radius,
        radius_cifar,
        radius_sheared,
        min_ncc,
        min_ssim,
        ssim_alone,
        json,
    } = args;
    let (Some(dataset), Some(out)) = (dataset, out) else { anyhow::bail!("DATASET and --out are required") };
    let mut config = DedupConfig::new(dataset.clone(), against, out.clone());
    config.data_dir = data_dir.or_else(bitkit_dedup::testsets::data_dir_from_env);
    config.cache = cache;
    config.radius = radius;
    config.radius_cifar = radius_cifar;
    config.radius_sheared = radius_sheared;
    config.min_ncc = min_ncc;
    config.min_ssim = min_ssim;
    config.ssim_alone = ssim_alone;
    let record = RunRecord::start(
        &out,
        "dedup",
        serde_json::json!({
            "dataset": dataset, "out": out, "against": config.against, "data_dir": config.data_dir, "cache": config.cache,
            "radius": config.radius, "radius_cifar": config.radius_cifar, "radius_sheared": config.radius_sheared,
            "min_ncc": config.min_ncc,
            "min_ssim": config.min_ssim, "ssim_alone": config.ssim_alone, "write_clean": clean,
        }),
        vec![FileRecord::of(&dataset.join("dataset.json"), "upstream-dataset")?],
    )?;
    let result = run(&config, &|_| {}).with_context(|| format!("deduplicating {}", dataset.display()));
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            record.fail(&e)?;
            return Err(e);
        }
    };
    let mut outputs = Vec::new();
    for name in ["pairs.parquet", "exclude.txt", "errors.jsonl", "report.html", "summary.json"] {
        outputs.push(FileRecord::of(&out.join(name), name)?);
    }
    if let Some(clean) = &clean {
        let excluded = excluded_keys(&out)?;
        write_clean(&dataset, &excluded, clean).with_context(|| format!("writing {}", clean.display()))?;
        outputs.extend(dataset_outputs(clean)?);
    }
    record.finish("completed", 0, outputs, serde_json::to_value(&summary)?)?;
    if json {
        print_json(&summary)?;
    } else {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        for s in &summary.test_sets {
            writeln!(
                stdout,
                "{}: {} test images, {} candidate pairs, {} verified near-duplicates, {} upstream rows to remove",
                s.test_set, s.test_images, s.candidates, s.verified, s.upstream_rows_removed
            )?;
        }
        writeln!(
            stdout,
            "{} upstream rows ({} hashed now, {} undecodable); {} keys in {}",
            summary.upstream_rows,
            summary.hashed_now,
            summary.upstream_errors,
            summary.excluded,
            out.join("exclude.txt").display()
        )?;
    }
    Ok(Outcome::Success)
}

#[derive(serde::Serialize)]
struct HashSummary {
    dataset: String,
    cache: String,
    rows: usize,
    hashed_now: u64,
    seconds: f64,
    images_per_s: f64,
}

fn run_hash(args: HashArgs) -> anyhow::Result<Outcome> {
    let HashArgs { dataset, cache, worker_index, num_workers, json } = args;
    let base = cache.unwrap_or_else(|| dataset.join(bitkit_dedup::hashes::CACHE_FILE));
    let index = bitkit_ingest::dataset::DatasetIndex::open(&dataset)?;
    let rows = index.len();
    drop(index);
    let (path, range) = match (worker_index, num_workers) {
        (Some(i), Some(n)) => {
            anyhow::ensure!(n > 0 && i < n, "--worker-index {i} must be below --num-workers {n}");
            let (start, end) = (rows * i / n, rows * (i + 1) / n);
            (PathBuf::from(format!("{}.part-{i:05}-of-{n:05}", base.display())), Some(start..end))
        }
        _ => (base, None),
    };
    let upstream = hash_upstream(&dataset, &path, range, bitkit_ingest::pipeline::DEFAULT_MAX_PIXELS, &|_| {})
        .with_context(|| format!("hashing {}", dataset.display()))?;
    let summary = HashSummary {
        dataset: dataset.display().to_string(),
        cache: path.display().to_string(),
        rows: upstream.index.len(),
        hashed_now: upstream.hashed_now,
        seconds: upstream.hash_seconds,
        images_per_s: upstream.hashed_now as f64 / upstream.hash_seconds.max(1e-9),
    };
    if json {
        print_json(&summary)?;
    } else {
        use std::io::Write;
        writeln!(
            std::io::stdout().lock(),
            "hashed {} images in {:.1} s ({:.0}/s) into {}",
            summary.hashed_now,
            summary.seconds,
            summary.images_per_s,
            summary.cache
        )?;
    }
    Ok(Outcome::Success)
}
