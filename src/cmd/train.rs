//! `bitkit train transfer | upstream | eval`: BiT-HyperRule fine-tuning, upstream
//! pre-training and evaluation, each run recorded in `RUN/run.json`.

use super::record::{FileRecord, RunRecord};
use super::{print_json, Outcome};
use anyhow::{bail, Context};
use bitkit_loader::{Loader, LoaderConfig, Mode, Transform};
use bitkit_train::data::{DeviceFeeder, LossKind, Precision};
use bitkit_train::trainer::{Task, TrainArgs, Trainer};
use bitkit_train::variant::Variant;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Fine-tune with the BiT-HyperRule (resolution, schedule, MixUp from the dataset)
    #[command(
        after_help = "Defaults are BiT's: batch 512 (split into micro-batches that fit the device), SGD momentum 0.9,
base lr 0.003, no weight decay, zero-initialised head; from the training-set size n (after
exclusions and few-shot selection): n < 20k → 500 steps (decays after 200/300/400), no MixUp;
n < 500k → 10k steps, MixUp 0.1; else 20k steps, MixUp 0.1. Resolution: median image area
below 96x96 → 160/128, else 512/480. Every value can be overridden.

Examples:
  bitkit train transfer --data cifar10-train/ --eval cifar10-test/ --init BiT-M-R50x1.npz --out run/
  bitkit train transfer --data pets/ --init BiT-M-R50x1.npz --out run5/ --examples-per-class 5 --fewshot-seed 0
  bitkit train transfer --data i1k/ --init BiT-M-R50x1.npz --out run/ --exclude dedup/exclude.txt --resume"
    )]
    Transfer(Box<TrainOpts>),
    /// Pre-train from scratch: sigmoid cross-entropy on multi-hot labels, Inception crop 224
    #[command(after_help = "Defaults are BiT-S/M's: SGD momentum 0.9, lr 0.03 x batch/256, 5000 warm-up steps, weight
decay 1e-4, 90 epochs with decays after epochs 30, 60, 80; the global batch is reached by
gradient accumulation.

Examples:
  bitkit train upstream --data i21k/ --model r50x1 --batch 4096 --out upstream/
  bitkit train upstream --data i21k/ --model r50x1 --out upstream/ --resume")]
    Upstream(Box<TrainOpts>),
    /// Evaluate weights on a dataset: top-1, top-5, loss, per-class accuracy, confusions
    #[command(after_help = "Examples:
  bitkit train eval --init run/ --data cifar10-test/
  bitkit train eval --init BiT-M-R50x1-CIFAR10.npz --data cifar10-test/ --crop 128 --json")]
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
pub struct TrainOpts {
    /// Training dataset (written by `bitkit ingest`)
    #[arg(long)]
    pub data: PathBuf,
    /// Test dataset, evaluated at the end (and every --eval-every steps)
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Starting weights: a BiT .npz, a .safetensors, a checkpoint or a run directory
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Variant to train from scratch (r50x1 ... r152x4, tiny)
    #[arg(long)]
    pub model: Option<String>,
    /// Run directory (run.json, metrics.jsonl, checkpoints/, plots, model.safetensors)
    #[arg(long)]
    pub out: PathBuf,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Global batch (per optimizer update)
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Images per forward pass (default: what fits the device)
    #[arg(long)]
    pub micro_batch: Option<usize>,
    #[arg(long)]
    pub base_lr: Option<f64>,
    /// Total optimizer updates (transfer: the HyperRule's warm-up and decays scale with it)
    #[arg(long)]
    pub steps: Option<u64>,
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Comma-separated update numbers after which the lr divides by 10
    #[arg(long, value_delimiter = ',')]
    pub decay_steps: Option<Vec<u64>>,
    /// Upstream: training length in epochs (default 90)
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Upstream: comma-separated epochs after which the lr divides by 10 (default 30,60,80)
    #[arg(long, value_delimiter = ',')]
    pub decay_epochs: Option<Vec<f64>>,
    /// Default 0 (transfer), 1e-4 (upstream)
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// MixUp Beta(a, a) (default: the HyperRule's; 0 upstream)
    #[arg(long)]
    pub mixup_alpha: Option<f64>,
    /// Loader mode: upstream, small, large, test (default: HyperRule / upstream)
    #[arg(long)]
    pub mode: Option<String>,
    #[arg(long)]
    pub precrop: Option<u32>,
    #[arg(long)]
    pub crop: Option<u32>,
    /// Turn the random flip off
    #[arg(long)]
    pub no_flip: bool,
    /// Turn the random crop off
    #[arg(long)]
    pub no_crop: bool,
    /// Few-shot: k examples per class
    #[arg(long)]
    pub examples_per_class: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub fewshot_seed: u64,
    /// Keys to leave out (dedup's exclude.txt)
    #[arg(long)]
    pub exclude: Option<PathBuf>,
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Checkpoint every N updates (and always at the end or on Ctrl-C / SIGTERM)
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest)
    #[arg(long, default_value_t = 3)]
    pub keep_checkpoints: usize,
    /// Keep the --init head when its class count matches (BiT always starts from a zero head)
    #[arg(long)]
    pub keep_head: bool,
    /// f32 or bf16 (bf16 activations, f32 weights and loss)
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Channels-last tensors (default: on for CUDA)
    #[arg(long)]
    pub channels_last: Option<bool>,
    /// libtorch threads (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Loader decode threads (default: all cores)
    #[arg(long)]
    pub loader_threads: Option<usize>,
    /// Continue from the newest checkpoint in --out
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many updates (the schedule is unchanged; --resume continues)
    #[arg(long)]
    pub max_updates: Option<u64>,
    /// Print one JSON summary
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Weights: a BiT .npz, a .safetensors, a checkpoint or a run directory
    #[arg(long)]
    pub init: PathBuf,
    /// Test dataset
    #[arg(long)]
    pub data: PathBuf,
    /// Test resolution (squash to crop x crop; default: the HyperRule's from the image sizes)
    #[arg(long)]
    pub crop: Option<u32>,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Sigmoid loss and multi-label hits (upstream models)
    #[arg(long)]
    pub multi_label: bool,
    /// Directory for the full report (`eval.json`) and its run record (`run.json`)
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(command: TrainCommand) -> anyhow::Result<Outcome> {
    match command {
        TrainCommand::Transfer(opts) => train(Task::Transfer, *opts),
        TrainCommand::Upstream(opts) => train(Task::Upstream, *opts),
        TrainCommand::Eval(args) => eval(args),
    }
}

fn precision(s: &str) -> anyhow::Result<Precision> {
    match s {
        "f32" | "fp32" | "float32" => Ok(Precision::F32),
        "bf16" | "bfloat16" => Ok(Precision::Bf16),
        other => bail!("--precision {other:?}: expected f32 or bf16"),
    }
}

fn train_args(task: Task, opts: TrainOpts) -> anyhow::Result<(TrainArgs, bool)> {
    let TrainOpts {
        data,
        eval,
        init,
        model,
        out,
        device,
        seed,
        batch,
        micro_batch,
        base_lr,
        steps,
        warmup_steps,
        decay_steps,
        epochs,
        decay_epochs,
        weight_decay,
        momentum,
        mixup_alpha,
        mode,
        precrop,
        crop,
        no_flip,
        no_crop,
        examples_per_class,
        fewshot_seed,
        exclude,
        eval_every,
        checkpoint_every,
        keep_checkpoints,
        keep_head,
        precision: precision_name,
        channels_last,
        threads,
        loader_threads,
        resume,
        max_updates,
        json,
    } = opts;
    let mut a = TrainArgs::new(task, data, out);
    a.eval = eval;
    a.init = init;
    a.model = model.map(|m| m.parse::<Variant>()).transpose()?;
    a.device = device;
    a.seed = seed;
    a.batch = batch;
    a.micro_batch = micro_batch;
    a.base_lr = base_lr;
    a.steps = steps;
    a.warmup_steps = warmup_steps;
    a.decay_steps = decay_steps;
    a.epochs = epochs;
    a.decay_epochs = decay_epochs;
    a.weight_decay = weight_decay;
    a.momentum = momentum;
    a.mixup_alpha = mixup_alpha;
    a.mode = mode.map(|m| m.parse::<Mode>()).transpose()?;
    a.precrop = precrop;
    a.crop = crop;
    a.flip = !no_flip;
    a.random_crop = !no_crop;
    a.examples_per_class = examples_per_class;
    a.fewshot_seed = fewshot_seed;
    a.exclude = exclude;
    a.eval_every = eval_every;
    a.checkpoint_every = Some(checkpoint_every);
    a.keep_checkpoints = keep_checkpoints;
    a.keep_head = keep_head;
    a.precision = precision(&precision_name)?;
    a.channels_last = channels_last;
    a.threads = threads;
    a.loader_threads = loader_threads;
    a.resume = resume;
    a.max_updates = max_updates;
    Ok((a, json))
}

/// The manifest of a dataset directory stands for the dataset (it holds every part's blake3).
fn dataset_input(dir: &Path, role: &str) -> anyhow::Result<FileRecord> {
    FileRecord::of(&dir.join("dataset.json"), role)
}

fn train(task: Task, opts: TrainOpts) -> anyhow::Result<Outcome> {
    let (args, json_out) = train_args(task, opts)?;
    let out = args.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut inputs = vec![dataset_input(&args.data, "train-dataset")?];
    if let Some(e) = &args.eval {
        inputs.push(dataset_input(e, "eval-dataset")?);
    }
    if let Some(init) = &args.init {
        inputs.push(FileRecord::of(&bitkit_train::checkpoint::resolve_weights(init)?, "init")?);
    }
    if let Some(x) = &args.exclude {
        inputs.push(FileRecord::of(x, "exclude")?);
    }
    let trainer = Trainer::prepare(args)?;
    let config = json!({ "train": trainer.config, "runtime": trainer.runtime, "seed": trainer.args.seed, "out": out });
    let command = match task {
        Task::Transfer => "train transfer",
        Task::Upstream => "train upstream",
    };
    let mut record = RunRecord::start(&out, command, config, inputs)?;
    record.set("host_device", json!(trainer.runtime.device));
    let summary = match trainer.run() {
        Ok(summary) => summary,
        Err(e) => {
            let e = anyhow::Error::from(e);
            record.fail(&e)?;
            return Err(e);
        }
    };
    let mut outputs = Vec::new();
    for name in ["model.safetensors", "model.json", "metrics.jsonl", "loss.png", "lr.png", "accuracy.png"] {
        let p = out.join(name);
        if p.is_file() {
            outputs.push(FileRecord::of(&p, name)?);
        }
    }
    if let Some(ck) = &summary.checkpoint {
        for name in ["model.safetensors", "momentum.safetensors", "state.json"] {
            outputs.push(FileRecord::of(&ck.join(name), "checkpoint")?);
        }
    }
    let counts = json!({
        "steps_done": summary.steps_done, "total_steps": summary.total_steps,
        "resumed_from": summary.resumed_from, "final_loss": summary.final_loss,
        "eval_top1": summary.eval.as_ref().map(|e| e.top1), "weights": summary.weights,
    });
    record.finish(&summary.status, 0, outputs, counts)?;
    if json_out {
        print_json(&summary)?;
    } else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "train: {} at step {}/{}; loss {}; {:.1} images/s, {:.0}% waiting for data; {}",
                summary.status,
                summary.steps_done,
                summary.total_steps,
                summary.final_loss.map_or("-".into(), |l| format!("{l:.4}")),
                summary.images_per_s,
                100.0 * summary.data_wait,
                summary.eval.as_ref().map_or(String::new(), |e| format!(
                    "eval top-1 {:.2}%, top-5 {:.2}% on {} images",
                    100.0 * e.top1,
                    100.0 * e.top5,
                    e.images
                ))
            );
        }
    }
    Ok(Outcome::Success)
}

fn eval(args: EvalArgs) -> anyhow::Result<Outcome> {
    let EvalArgs { init, data, crop, batch, device, multi_label, out, json: json_out, threads } = args;
    let device = bitkit_train::device::select(&device)?;
    if let Some(t) = threads {
        bitkit_train::tch::set_num_threads(t as i32);
    }
    let file = bitkit_train::checkpoint::resolve_weights(&init)?;
    let (model, _) = bitkit_train::weights::model_from_file(&file, None, false, device)?;
    let index =
        bitkit_ingest::dataset::DatasetIndex::open(&data).with_context(|| format!("opening {}", data.display()))?;
    let crop = crop.unwrap_or_else(|| {
        match bitkit_loader::hyperrule_mode(bitkit_loader::median_area((0..index.len()).map(|r| index.size(r)))) {
            Mode::Small => 128,
            _ => 480,
        }
    });
    let names = index.classes().map(<[String]>::to_vec);
    let mut config = LoaderConfig::new(Transform::for_mode(Mode::Test, Some(crop))?, batch.max(1));
    config.output = if device.is_cuda() { bitkit_loader::OutputKind::U8 } else { bitkit_loader::OutputKind::F32 };
    let loader = Arc::new(Loader::from_index(index, config)?);
    let mut feeder = DeviceFeeder::new(device, device.is_cuda(), Precision::F32);
    let kind = if multi_label { LossKind::Sigmoid } else { LossKind::Softmax };
    let r = bitkit_train::eval::evaluate(&model.net, &loader, &mut feeder, kind, names.as_deref())?;
    let report = json!({"weights": file, "data": data, "crop": crop, "model": model.net.variant.name,
        "classes": model.net.classes, "result": r});
    if let Some(dir) = &out {
        let inputs = vec![FileRecord::of(&file, "weights")?, dataset_input(&data, "eval-dataset")?];
        let config = json!({"init": init, "data": data, "crop": crop, "batch": batch, "multi_label": multi_label});
        let record = RunRecord::start(dir, "train eval", config, inputs)?;
        let path = dir.join("eval.json");
        let mut bytes = serde_json::to_vec_pretty(&report)?;
        bytes.push(b'\n');
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        let counts = json!({"images": r.images, "top1": r.top1, "top5": r.top5, "loss": r.loss});
        record.finish("completed", 0, vec![FileRecord::of(&path, "eval")?], counts)?;
    }
    if json_out {
        print_json(&report)?;
    } else {
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        writeln!(
            o,
            "{} images: top-1 {:.2}%  top-5 {:.2}%  loss {:.4}",
            r.images,
            100.0 * r.top1,
            100.0 * r.top5,
            r.loss
        )?;
        let mut worst: Vec<_> = r.per_class.iter().filter(|c| c.images > 0).collect();
        worst.sort_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
        writeln!(o, "lowest per-class accuracy:")?;
        for c in worst.iter().take(5) {
            writeln!(
                o,
                "  {:>5} {:<24} {:>6.2}% ({}/{})",
                c.class,
                c.name.as_deref().unwrap_or(""),
                100.0 * c.accuracy,
                c.correct,
                c.images
            )?;
        }
        writeln!(o, "most frequent confusions (true -> predicted: count):")?;
        for c in r.confusions.iter().take(5) {
            let name =
                |k: i64| names.as_ref().and_then(|n| n.get(k as usize)).cloned().unwrap_or_else(|| k.to_string());
            writeln!(o, "  {} -> {}: {}", name(c.true_class), name(c.predicted), c.count)?;
        }
    }
    Ok(Outcome::Success)
}
