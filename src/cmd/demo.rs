//! `bitkit demo`: the chain end to end on a built-in synthetic dataset, on CPU, in seconds.
//!
//! 1. Generate an ImageNet-21k style corpus (per-synset tars of synthetic JPEGs, plus one
//!    tar of hostile records: empty, not-an-image, 100000x100000 header, CMYK, PNG-as-JPEG).
//! 2. `ingest` it into a dataset, then again as 2 workers + `merge`, and check both hold the
//!    same rows.
//! 3. Read the dataset back and verify every row's blake3 against its bytes.
//! 4. Deduplicate it against a generated CIFAR-10 test set (an official-layout archive): the
//!    corpus holds upscaled JPEG copies of 3 of its test images, which must be excluded (the
//!    synthetic generator draws a class's pattern the same way for both sets, so a few more
//!    rows look alike and are excluded with them).
//! 5. Load it for training (BiT-HyperRule mode, MixUp, dedup's exclusion list): one epoch with
//!    1 thread and with all cores must give the same batch fingerprints, a resume at a middle
//!    step the same batches, and a PNG grid shows augmented samples.
//! 6. (With the `train` feature.) Fine-tune the tiny BiT ResNet-v2 on it (HyperRule-style
//!    transfer without the duplicates), pausing half-way and resuming, evaluate it on a
//!    held-out generated test set, export it to the BiT .npz layout and check the export
//!    gives the same logits.

use super::{print_json, Outcome};
use anyhow::Context;
use bitkit_ingest::dataset::DatasetReader;
use bitkit_ingest::formats::Format;
use bitkit_ingest::pipeline::{ingest, IngestConfig, Progress};
use bitkit_ingest::plan::WorkerSplit;
use bitkit_loader::grid::{grid_png, Tile};
use bitkit_loader::{hyperrule_mode, median_area, Images, Loader, LoaderConfig, MixUpConfig, OutputKind, Transform};
use clap::Args;
use std::path::{Path, PathBuf};

/// Run the chain end to end on a built-in synthetic dataset.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  bitkit demo --out /tmp/bitkit-demo")]
pub struct DemoArgs {
    /// Working directory (created; must be empty or absent) [default: a new temporary directory]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Classes of the synthetic corpus
    #[arg(long, default_value_t = 20)]
    pub classes: usize,
    /// Images per class
    #[arg(long, default_value_t = 50)]
    pub per_class: usize,
    /// Seed of the synthetic corpus
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct DemoSummary {
    out: String,
    images_generated: usize,
    rows: u64,
    rejected: u64,
    rejects_by_kind: std::collections::BTreeMap<String, u64>,
    ingest_images_per_s: f64,
    merge_matches_single_run: bool,
    hashes_verified: u64,
    dedup_excluded: u64,
    loader_mode: String,
    loader_images_per_s: f64,
    loader_thread_independent: bool,
    loader_resume_exact: bool,
    train_top1: Option<f64>,
    train_images_per_s: Option<f64>,
}

#[allow(clippy::print_stderr)]
pub fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    let DemoArgs { out, classes, per_class, seed, json } = args;
    anyhow::ensure!(classes > 0 && per_class > 0, "--classes and --per-class must be > 0");
    let out = match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            anyhow::ensure!(std::fs::read_dir(&dir)?.next().is_none(), "{} is not empty", dir.display());
            dir
        }
        None => std::env::temp_dir().join(format!("bitkit-demo-{}", std::process::id())),
    };
    let say = |line: String| {
        if !json {
            eprintln!("{line}");
        }
    };

    // 1. The corpus.
    let corpus = out.join("winter21_whole");
    let set = bitkit_fixtures::synthetic_set(classes, per_class, seed);
    bitkit_fixtures::write_imagenet_tars(&corpus, &set).context("writing the synthetic corpus")?;
    let hostile = corpus.join(bitkit_fixtures::wnid(classes) + ".tar");
    let expected = bitkit_fixtures::write_bad_imagenet_tar(&hostile).context("writing the hostile shard")?;
    // Upscaled copies of 3 CIFAR-10 test images, in a synset of their own.
    let data = out.join("data");
    bitkit_fixtures::testsets::write_cifar10_test(&data, 100, seed, bitkit_fixtures::testsets::Layout::Archive)
        .context("writing the CIFAR-10 test set")?;
    let planted_names: Vec<String> =
        PLANTED.iter().map(|i| format!("{}_planted{i}", bitkit_fixtures::wnid(classes + 1))).collect();
    let planted_bytes: Vec<Vec<u8>> = PLANTED
        .iter()
        .map(|&i| {
            let picture =
                bitkit_fixtures::testsets::cifar_test_picture(bitkit_fixtures::CifarVariant::Cifar10, seed, i);
            bitkit_fixtures::testsets::planted_copy(&picture, 160)
        })
        .collect();
    let members: Vec<(String, &[u8])> =
        planted_names.iter().zip(&planted_bytes).map(|(n, b)| (format!("{n}.JPEG"), b.as_slice())).collect();
    let members: Vec<(&str, &[u8])> = members.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let tar = bitkit_fixtures::build_tar(&members).context("building the planted synset tar")?;
    std::fs::write(corpus.join(bitkit_fixtures::wnid(classes + 1) + ".tar"), tar).context("writing the planted tar")?;
    let generated = set.samples.len() + expected.kept.len() + expected.rejects.len() + PLANTED.len();
    say(format!(
        "[1/{STEPS}] generated {generated} images in {} per-synset tars under {}, and a CIFAR-10 test set in {}",
        classes + 2,
        corpus.display(),
        data.display()
    ));

    // 2. Ingest, and ingest again as two workers + merge.
    let dataset = out.join("dataset");
    let summary = run_ingest(&corpus, &dataset, None)?;
    say(format!(
        "[2/{STEPS}] ingested into {}: {} rows, {} rejected ({:?}) at {:.0} images/s; rejects listed in rejects.jsonl",
        dataset.display(),
        summary.records_written,
        summary.records_rejected,
        summary.rejects_by_kind,
        summary.images_per_s
    ));
    let parts: Vec<PathBuf> = (0..2).map(|i| out.join(format!("worker{i}"))).collect();
    for (index, part) in parts.iter().enumerate() {
        run_ingest(&corpus, part, Some(WorkerSplit { index, count: 2 }))?;
    }
    let merged = out.join("merged");
    bitkit_ingest::merge::merge(&merged, &parts).context("merging the worker outputs")?;
    let single_rows = read_rows(&dataset)?;
    let merge_matches = single_rows == read_rows(&merged)?;
    anyhow::ensure!(merge_matches, "the 2-worker run + merge does not hold the rows of the single run");
    say(format!(
        "      2 workers + merge into {}: the same {} rows as the single run",
        merged.display(),
        single_rows.len()
    ));

    // 3. Verify.
    let mut verified = 0u64;
    for row in &single_rows {
        anyhow::ensure!(
            *blake3::hash(&row.image_bytes).as_bytes() == row.content_hash,
            "row {}: content_hash mismatch",
            row.key
        );
        verified += 1;
    }
    say(format!("[3/{STEPS}] verified the blake3 of all {verified} rows; read it with: datasets.load_dataset(\"parquet\", data_files=\"{}/part-*.parquet\")", dataset.display()));

    // 4. Dedup against the CIFAR-10 test set.
    let dedup_out = out.join("dedup");
    let config = bitkit_dedup::run::DedupConfig::new(dataset.clone(), vec!["cifar10-test".into()], dedup_out.clone());
    let config = bitkit_dedup::run::DedupConfig { data_dir: Some(data.clone()), ..config };
    let dedup = bitkit_dedup::run::run(&config, &|_| {}).context("deduplicating against cifar10-test")?;
    let excluded = bitkit_dedup::run::excluded_keys(&dedup_out)?;
    let found: Vec<&str> = excluded.iter().map(|k| k.rsplit('/').next().unwrap_or(k)).collect();
    let missing: Vec<&String> = planted_names.iter().filter(|n| !found.contains(&n.as_str())).collect();
    anyhow::ensure!(missing.is_empty(), "dedup missed the planted copies {missing:?}");
    say(format!(
        "[4/{STEPS}] dedup against cifar10-test: {} rows hashed at {:.0} images/s, {} candidate pairs; the {} planted copies found, and {} synthetic images that draw the same class pattern as a CIFAR fixture image; see {}",
        dedup.upstream_rows,
        dedup.hash_images_per_s,
        dedup.test_sets.iter().map(|s| s.candidates).sum::<u64>(),
        planted_names.len(),
        excluded.len() - planted_names.len(),
        dedup_out.join("report.html").display()
    ));

    // 5. Load for training, without the duplicates.
    let loaded = run_loader(&dataset, &dedup_out.join("exclude.txt"), &out.join("samples.png"))?;
    say(format!(
        "[5/{STEPS}] loader, BiT-HyperRule mode {} with MixUp: {:.0} images/s; 1 thread and {} threads give the same {} batch fingerprints, resuming at step {} gives the same batches; samples in {}",
        loaded.mode,
        loaded.images_per_s,
        loaded.threads,
        loaded.steps,
        loaded.steps / 2,
        out.join("samples.png").display()
    ));

    // 6. Train on it.
    #[cfg(feature = "train")]
    let trained = {
        let trained = run_train(&out, &dataset, &dedup_out.join("exclude.txt"), classes, seed)?;
        say(format!(
            "[6/{STEPS}] trained the tiny BiT ResNet-v2 on it without the duplicates ({} updates at {:.0} images/s, paused at {} and resumed): top-1 {:.1}% on {} held-out images (chance {:.1}%); exported to {} (same logits); run in {}",
            trained.steps,
            trained.images_per_s,
            trained.steps / 2,
            100.0 * trained.top1,
            trained.eval_images,
            100.0 / classes as f64,
            trained.npz.display(),
            trained.run.display()
        ));
        Some(trained)
    };
    #[cfg(not(feature = "train"))]
    let trained: Option<Trained> = None;

    if json {
        print_json(&DemoSummary {
            out: out.display().to_string(),
            images_generated: generated,
            rows: summary.records_written,
            rejected: summary.records_rejected,
            rejects_by_kind: summary.rejects_by_kind,
            ingest_images_per_s: summary.images_per_s,
            merge_matches_single_run: merge_matches,
            hashes_verified: verified,
            dedup_excluded: excluded.len() as u64,
            loader_mode: loaded.mode,
            loader_images_per_s: loaded.images_per_s,
            loader_thread_independent: true,
            loader_resume_exact: true,
            train_top1: trained.as_ref().map(|t| t.top1),
            train_images_per_s: trained.as_ref().map(|t| t.images_per_s),
        })?;
    }
    Ok(Outcome::Success)
}

fn run_ingest(
    input: &Path,
    out: &Path,
    split: Option<WorkerSplit>,
) -> anyhow::Result<bitkit_ingest::pipeline::IngestSummary> {
    let mut config = IngestConfig::new(Format::ImagenetTar, vec![input.display().to_string()], out.to_path_buf());
    config.split = split;
    ingest(&config, &Progress::default()).with_context(|| format!("ingesting into {}", out.display()))
}

/// Steps of the demo.
#[cfg(feature = "train")]
const STEPS: usize = 6;
#[cfg(not(feature = "train"))]
const STEPS: usize = 5;

struct Trained {
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    run: PathBuf,
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    npz: PathBuf,
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    steps: u64,
    top1: f64,
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    eval_images: u64,
    images_per_s: f64,
}

/// Fine-tunes the tiny model from scratch on the demo dataset (small mode at 64 px, dedup's
/// exclusion list), pausing half-way and resuming; evaluates on a held-out generated set;
/// exports to the BiT .npz layout and checks the export's logits.
#[cfg(feature = "train")]
fn run_train(out: &Path, dataset: &Path, exclude: &Path, classes: usize, seed: u64) -> anyhow::Result<Trained> {
    use bitkit_train::tch::{Device, Kind, Tensor};
    use bitkit_train::trainer::{Task, TrainArgs, Trainer};

    // A held-out test set: the same classes, other pictures.
    let test_tars = out.join("test-tars");
    let config = bitkit_fixtures::SyntheticSetConfig {
        num_classes: classes,
        per_class: 10,
        seed: seed + 1000,
        ..Default::default()
    };
    bitkit_fixtures::write_imagenet_tars(&test_tars, &bitkit_fixtures::synthetic_set_with(&config))
        .context("writing the test set")?;
    let test = out.join("dataset-test");
    run_ingest(&test_tars, &test, None)?;

    let run = out.join("train");
    let steps = 60;
    let args = |max_updates: Option<u64>, resume: bool| {
        let mut a = TrainArgs::new(Task::Transfer, dataset.to_owned(), run.clone());
        a.eval = Some(test.clone());
        a.exclude = Some(exclude.to_owned());
        a.model = bitkit_train::Variant::by_name("tiny");
        a.device = "cpu".into();
        a.seed = seed;
        a.batch = 32;
        a.micro_batch = Some(32);
        a.steps = Some(steps);
        a.base_lr = Some(0.1);
        a.mode = Some(bitkit_loader::Mode::Small);
        a.crop = Some(64);
        a.checkpoint_every = Some(20);
        a.max_updates = max_updates;
        a.resume = resume;
        a
    };
    let first = Trainer::prepare(args(Some(steps / 2), false))?.run()?;
    anyhow::ensure!(first.status == "paused", "the first half ended {}", first.status);
    let summary = Trainer::prepare(args(None, true))?.run()?;
    anyhow::ensure!(summary.resumed_from == Some(steps / 2), "did not resume at step {}", steps / 2);
    let eval = summary.eval.context("no evaluation")?;

    let npz = run.join("model.npz");
    let (model, _) = bitkit_train::weights::model_from_file(&run.join("model.safetensors"), None, false, Device::Cpu)?;
    bitkit_train::weights::export_bit_npz(&model, &npz)?;
    let (exported, _) = bitkit_train::weights::model_from_file(&npz, None, false, Device::Cpu)?;
    let x = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let same =
        bitkit_train::eval::forward_batch(&model.net, &x).equal(&bitkit_train::eval::forward_batch(&exported.net, &x));
    anyhow::ensure!(same, "the exported .npz gives different logits");
    Ok(Trained { run, npz, steps, top1: eval.top1, eval_images: eval.images, images_per_s: summary.images_per_s })
}

/// CIFAR-10 test images planted (upscaled) in the demo corpus.
const PLANTED: [usize; 3] = [7, 23, 61];

struct Loaded {
    mode: String,
    images_per_s: f64,
    threads: usize,
    steps: u64,
}

/// One epoch through the loader with 1 thread and with all cores, a resume from the middle,
/// and a PNG grid of the first batch.
fn run_loader(dataset: &Path, exclude: &Path, grid: &Path) -> anyhow::Result<Loaded> {
    let index = bitkit_ingest::dataset::DatasetIndex::open(dataset)?;
    let mode = hyperrule_mode(median_area((0..index.len()).map(|r| index.size(r))));
    let mut config = LoaderConfig::new(Transform::for_mode(mode, None)?, 32);
    config.sampler.seed = 1;
    config.mixup = MixUpConfig { alpha: 0.1, batches_per_update: 2 };
    config.exclude = Some(exclude.to_path_buf());
    let threads = config.threads;
    let all = std::sync::Arc::new(Loader::from_index(index, config.clone())?);
    let steps = all.steps_per_epoch() as u64;
    let started = std::time::Instant::now();
    let mut images = 0u64;
    let mut fingerprints = Vec::new();
    for batch in all.iter(0, Some(steps)) {
        let batch = batch?;
        images += batch.len() as u64;
        fingerprints.push(batch.fingerprint());
        all.recycle(batch);
    }
    let images_per_s = images as f64 / started.elapsed().as_secs_f64().max(1e-9);
    config.threads = 1;
    let one = std::sync::Arc::new(Loader::open(dataset, config.clone())?);
    let single: Vec<_> = one.iter(0, Some(steps)).map(|b| b.map(|b| b.fingerprint())).collect::<Result<_, _>>()?;
    anyhow::ensure!(single == fingerprints, "1 thread and {threads} threads gave different batches");
    let resumed: Vec<_> =
        one.iter(steps / 2, Some(steps - steps / 2)).map(|b| b.map(|b| b.fingerprint())).collect::<Result<_, _>>()?;
    anyhow::ensure!(resumed[..] == fingerprints[steps as usize / 2..], "resuming gave different batches");

    config.output = OutputKind::U8;
    let batch = Loader::open(dataset, config)?.batch(0)?;
    let Images::U8(pixels) = &batch.images else { anyhow::bail!("expected uint8 pixels") };
    let side = batch.size as usize * batch.size as usize * 3;
    let tiles: Vec<Tile> = (0..batch.len().min(16))
        .map(|i| Tile {
            pixels: &pixels[i * side..(i + 1) * side],
            size: batch.size,
            caption: format!("{} {}", batch.labels[i], batch.keys[i]),
        })
        .collect();
    grid_png(&tiles, 4, grid)?;
    Ok(Loaded { mode: mode.to_string(), images_per_s, threads, steps })
}

fn read_rows(dataset: &Path) -> anyhow::Result<Vec<bitkit_ingest::dataset::DatasetRow>> {
    let reader = DatasetReader::open(dataset)?;
    let rows = reader.rows().collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
