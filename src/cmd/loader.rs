//! `bitkit loader bench | inspect | fingerprint`: the training input pipeline from the
//! command line.

use super::{print_json, Outcome};
use anyhow::Context;
use bitkit_ingest::dataset::DatasetIndex;
use bitkit_loader::grid::{grid_png, Tile};
use bitkit_loader::mixup::MixUpConfig;
use bitkit_loader::{
    hyperrule_mode, median_area, Images, Loader, LoaderConfig, Mode, OutputKind, SamplerConfig, Transform,
    DEFAULT_MAX_PIXELS,
};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum LoaderCommand {
    /// Measure images/s of the pipeline on a dataset
    #[command(after_help = "Runs one warm-up epoch, then --epochs timed epochs (or --steps batches).

Examples:
  bitkit loader bench train-ds/ --mode small --batch 128 --threads 16
  bitkit loader bench train-ds/ --mode upstream --output u8 --json
  bitkit loader bench train-ds/ --mode large --decode-only   # the decode ceiling")]
    Bench(BenchArgs),
    /// Write a PNG grid of augmented samples with their labels
    #[command(after_help = "Examples:
  bitkit loader inspect train-ds/ --mode upstream --out upstream.png
  bitkit loader inspect train-ds/ --mode small --count 32 --step 100 --out step100.png")]
    Inspect(InspectArgs),
    /// Print one line `<step> <blake3>` per batch: keys, labels, augmentation, MixUp, pixels
    #[command(
        after_help = "Two runs saw the same data in the same order with the same augmentation iff their lines agree.
The fingerprints do not depend on --threads; --start-step K prints the lines of an uninterrupted run from K.

Examples:
  bitkit loader fingerprint train-ds/ --mode small --seed 0 --steps 10
  bitkit loader fingerprint train-ds/ --mode small --seed 0 --steps 5 --start-step 5 --threads 1"
    )]
    Fingerprint(FingerprintArgs),
}

/// Everything that decides the batches.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Dataset directory written by `bitkit ingest`
    pub dataset: PathBuf,
    /// BiT pipeline: upstream, small, large, test, or auto (BiT-HyperRule from the median image area: below 96x96 -> small, else large)
    #[arg(long)]
    pub mode: String,
    /// Output side: large 480 (default), 448 or 384; test and upstream any size
    #[arg(long)]
    pub crop: Option<u32>,
    /// Samples per batch (per rank)
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decode threads (default: all cores); never changes the output
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pixel output: f32 (NCHW in [-1, 1]) or u8 (NHWC)
    #[arg(long, default_value = "f32")]
    pub output: String,
    #[arg(long, default_value_t = 0)]
    pub rank: usize,
    #[arg(long, default_value_t = 1)]
    pub world_size: usize,
    /// Drop each epoch's short last batch (BiT keeps it)
    #[arg(long)]
    pub drop_last: bool,
    /// Keys to leave out, one per line (dedup's exclude.txt)
    #[arg(long)]
    pub exclude: Option<PathBuf>,
    /// Few-shot: this many rows per class
    #[arg(long)]
    pub examples_per_class: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub fewshot_seed: u64,
    /// MixUp Beta(a, a); 0 = off
    #[arg(long, default_value_t = 0.0)]
    pub mixup_alpha: f64,
    /// Batches per optimizer update (they share one MixUp lambda)
    #[arg(long, default_value_t = 1)]
    pub batches_per_update: u64,
    /// Turn the random flip off
    #[arg(long)]
    pub no_flip: bool,
    /// Turn the random crop off (squash the whole image)
    #[arg(long)]
    pub no_crop: bool,
    /// Images above this many pixels are replaced as bad samples
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Batches built ahead of the consumer
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Timed epochs after the warm-up epoch
    #[arg(long, default_value_t = 2)]
    pub epochs: u64,
    /// Timed batches instead of --epochs
    #[arg(long)]
    pub steps: Option<u64>,
    /// Read and decode only (the same DCT-scaled region decode), no resize or output: the ceiling
    #[arg(long)]
    pub decode_only: bool,
    /// Print one JSON object instead of a line of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// The PNG to write
    #[arg(long)]
    pub out: PathBuf,
    /// Samples shown (the first of the batch)
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Which batch to show
    #[arg(long, default_value_t = 0)]
    pub step: u64,
}

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Batches to print
    #[arg(long)]
    pub steps: u64,
    /// First step
    #[arg(long, default_value_t = 0)]
    pub start_step: u64,
}

pub fn run(command: LoaderCommand) -> anyhow::Result<Outcome> {
    match command {
        LoaderCommand::Bench(args) => bench(args),
        LoaderCommand::Inspect(args) => inspect(args),
        LoaderCommand::Fingerprint(args) => fingerprint(args),
    }
}

fn open(args: PipelineArgs, decode_only: bool, force_u8: bool) -> anyhow::Result<Arc<Loader>> {
    let PipelineArgs {
        dataset,
        mode,
        crop,
        batch,
        seed,
        threads,
        output,
        rank,
        world_size,
        drop_last,
        exclude,
        examples_per_class,
        fewshot_seed,
        mixup_alpha,
        batches_per_update,
        no_flip,
        no_crop,
        max_pixels,
        prefetch,
    } = args;
    let index = DatasetIndex::open(&dataset).with_context(|| format!("opening dataset {}", dataset.display()))?;
    let mode: Mode = if mode == "auto" {
        hyperrule_mode(median_area((0..index.len()).map(|r| index.size(r))))
    } else {
        mode.parse()?
    };
    let mut transform = Transform::for_mode(mode, crop)?;
    transform.flip &= !no_flip;
    transform.random_crop &= !no_crop;
    let mut config = LoaderConfig::new(transform, batch);
    config.sampler = SamplerConfig { seed, batch_size: batch, rank, world_size, drop_last };
    config.output = if force_u8 { OutputKind::U8 } else { output.parse()? };
    config.mixup = MixUpConfig { alpha: mixup_alpha, batches_per_update };
    config.exclude = exclude;
    config.examples_per_class = examples_per_class;
    config.fewshot_seed = fewshot_seed;
    config.max_pixels = max_pixels;
    if let Some(threads) = threads {
        config.threads = threads;
    }
    config.prefetch = prefetch;
    config.decode_only = decode_only;
    let loader = Loader::from_index(index, config).with_context(|| format!("loading {}", dataset.display()))?;
    Ok(Arc::new(loader))
}

#[derive(serde::Serialize)]
struct BenchSummary {
    mode: String,
    crop: u32,
    output: &'static str,
    decode_only: bool,
    threads: usize,
    batch: usize,
    images: u64,
    seconds: f64,
    images_per_s: f64,
    replaced: u64,
}

fn bench(args: BenchArgs) -> anyhow::Result<Outcome> {
    let BenchArgs { pipeline, epochs, steps, decode_only, json } = args;
    let loader = open(pipeline, decode_only, false)?;
    let spe = loader.steps_per_epoch() as u64;
    // Warm-up epoch: page cache, thread start, buffer pool.
    for batch in loader.iter(0, Some(spe)) {
        loader.recycle(batch?);
    }
    let timed = steps.unwrap_or(spe * epochs.max(1));
    let (mut images, mut replaced) = (0u64, 0u64);
    let started = Instant::now();
    for batch in loader.iter(spe, Some(timed)) {
        let batch = batch?;
        images += batch.len() as u64;
        replaced += batch.replaced.len() as u64;
        loader.recycle(batch);
    }
    let seconds = started.elapsed().as_secs_f64();
    let config = loader.config();
    let summary = BenchSummary {
        mode: config.transform.mode.to_string(),
        crop: config.transform.crop,
        output: config.output.as_str(),
        decode_only,
        threads: config.threads,
        batch: config.sampler.batch_size,
        images,
        seconds,
        images_per_s: images as f64 / seconds.max(1e-9),
        replaced,
    };
    if json {
        print_json(&summary)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} {} {}{}: {:.1} images/s ({} images in {:.2} s, {} threads, batch {})",
            summary.mode,
            summary.crop,
            summary.output,
            if decode_only { " decode-only" } else { "" },
            summary.images_per_s,
            summary.images,
            summary.seconds,
            summary.threads,
            summary.batch
        )?;
    }
    Ok(Outcome::Success)
}

fn inspect(args: InspectArgs) -> anyhow::Result<Outcome> {
    let InspectArgs { mut pipeline, out, count, step } = args;
    pipeline.batch = pipeline.batch.min(count.max(1));
    let loader = open(pipeline, false, true)?;
    let batch = loader.batch(step)?;
    let Images::U8(pixels) = &batch.images else { anyhow::bail!("inspect renders uint8 batches") };
    let classes = loader.index().classes();
    let side = batch.size as usize;
    let tiles: Vec<Tile> = (0..batch.len())
        .map(|i| {
            let label = batch.labels[i];
            let name = classes
                .and_then(|c| usize::try_from(label).ok().and_then(|l| c.get(l)))
                .map_or(String::new(), |n| format!(" {n}"));
            Tile {
                pixels: &pixels[i * side * side * 3..(i + 1) * side * side * 3],
                size: batch.size,
                caption: format!("{label}{name}{}", if batch.plans[i].flip { " flip" } else { "" }),
            }
        })
        .collect();
    let columns = (tiles.len() as f64).sqrt().ceil().max(1.0) as usize;
    grid_png(&tiles, columns, &out)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "wrote {} ({} samples of step {step})", out.display(), tiles.len())?;
    Ok(Outcome::Success)
}

fn fingerprint(args: FingerprintArgs) -> anyhow::Result<Outcome> {
    let FingerprintArgs { pipeline, steps, start_step } = args;
    let loader = open(pipeline, false, false)?;
    let mut stdout = std::io::stdout().lock();
    for (i, batch) in loader.iter(start_step, Some(steps)).enumerate() {
        let batch = batch?;
        writeln!(stdout, "{} {}", start_step + i as u64, batch.fingerprint().to_hex())?;
        loader.recycle(batch);
    }
    Ok(Outcome::Success)
}
