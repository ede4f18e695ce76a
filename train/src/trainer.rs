//! The training loop shared by `bitkit train transfer` (BiT-HyperRule) and
//! `bitkit train upstream` (BIT_SPEC §5.1, §6).
//!
//! One optimizer update = `batch / micro_batch` loader batches whose losses are each divided by
//! that count and back-propagated (BiT's `batch_split`); loader batch k of update s is loader
//! step s·split + k, so the data, the augmentation and the MixUp draws of every update are
//! fixed by (seed, step) alone. A resumed run loads the parameters and momentum buffers of a
//! checkpoint and continues at its step: on CPU it matches an uninterrupted run bit for bit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bitkit_loader::{
    hyperrule_mode, median_area, Loader, LoaderConfig, MixUpConfig, Mode, OutputKind, SamplerConfig, Transform,
};
use serde::Serialize;
use tch::Device;

use crate::checkpoint::{self, CheckpointState};
use crate::data::{batch_loss, DeviceFeeder, LossKind, Precision};
use crate::error::TrainError;
use crate::eval::{evaluate, EvalResult};
use crate::schedule::{upstream_base_lr, LrSchedule, Regime, HYPERRULE_BASE_LR};
use crate::sgd::Sgd;
use crate::variant::Variant;
use crate::weights::{self, HeadLoad, Model};

/// Which recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Transfer,
    Upstream,
}

/// What the user asked for; `None` means "the recipe's default".
#[derive(Debug, Clone)]
pub struct TrainArgs {
    pub task: Task,
    pub data: PathBuf,
    pub eval: Option<PathBuf>,
    pub init: Option<PathBuf>,
    pub model: Option<Variant>,
    pub out: PathBuf,
    pub device: String,
    pub seed: u64,
    pub batch: usize,
    pub micro_batch: Option<usize>,
    pub base_lr: Option<f64>,
    pub steps: Option<u64>,
    pub warmup_steps: Option<u64>,
    pub decay_steps: Option<Vec<u64>>,
    /// Upstream: total epochs and decay epochs.
    pub epochs: Option<f64>,
    pub decay_epochs: Option<Vec<f64>>,
    pub weight_decay: Option<f64>,
    pub momentum: f64,
    pub mixup_alpha: Option<f64>,
    pub mode: Option<Mode>,
    pub precrop: Option<u32>,
    pub crop: Option<u32>,
    pub flip: bool,
    pub random_crop: bool,
    pub examples_per_class: Option<usize>,
    pub fewshot_seed: u64,
    pub exclude: Option<PathBuf>,
    pub eval_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    pub keep_checkpoints: usize,
    pub keep_head: bool,
    pub precision: Precision,
    pub channels_last: Option<bool>,
    pub threads: Option<usize>,
    pub loader_threads: Option<usize>,
    pub resume: bool,
    /// Stop after this many updates of this invocation (tests, benchmarks); the schedule is
    /// unchanged, so a later `--resume` continues the same run.
    pub max_updates: Option<u64>,
}

impl TrainArgs {
    pub fn new(task: Task, data: PathBuf, out: PathBuf) -> TrainArgs {
        TrainArgs {
            task,
            data,
            eval: None,
            init: None,
            model: None,
            out,
            device: "auto".into(),
            seed: 0,
            batch: 512,
            micro_batch: None,
            base_lr: None,
            steps: None,
            warmup_steps: None,
            decay_steps: None,
            epochs: None,
            decay_epochs: None,
            weight_decay: None,
            momentum: 0.9,
            mixup_alpha: None,
            mode: None,
            precrop: None,
            crop: None,
            flip: true,
            random_crop: true,
            examples_per_class: None,
            fewshot_seed: 0,
            exclude: None,
            eval_every: None,
            checkpoint_every: None,
            keep_checkpoints: 3,
            keep_head: false,
            precision: Precision::F32,
            channels_last: None,
            threads: None,
            loader_threads: None,
            resume: false,
            max_updates: None,
        }
    }
}

/// Everything that determines the trained weights (hashed into `config_hash`), resolved from
/// [`TrainArgs`] and the dataset. Recorded in `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    pub task: Task,
    pub variant: String,
    pub classes: i64,
    pub init: Option<PathBuf>,
    pub head: String,
    pub train_images: usize,
    pub regime: Option<Regime>,
    pub batch: usize,
    pub micro_batch: usize,
    pub batch_split: usize,
    pub schedule: LrSchedule,
    pub momentum: f64,
    pub weight_decay: f64,
    pub mixup_alpha: f64,
    pub loss: LossKind,
    pub precision: Precision,
    pub loader: LoaderConfig,
    pub eval_every: Option<u64>,
    pub checkpoint_every: u64,
}

/// Device-side settings that do not change the math on CPU (recorded, not hashed).
#[derive(Debug, Clone, Serialize)]
pub struct Runtime {
    pub device: String,
    pub torch_threads: usize,
    pub loader_threads: usize,
    pub channels_last: bool,
}

/// One optimizer update in `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: f64,
    pub lr: f64,
    pub loss: f64,
    pub images: usize,
    pub images_per_s: f64,
    /// Fraction of the update's wall time spent waiting for the loader.
    pub data_wait: f64,
    /// blake3 over the fingerprints of the update's loader batches (`bitkit audit diff`).
    pub data: String,
    /// blake3 of the update's sorted sample keys (which samples).
    pub data_keys: String,
    /// blake3 of the keys in order.
    pub data_order: String,
    /// blake3 of the crop boxes, flips and MixUp draws.
    pub data_augment: String,
    pub time_s: f64,
}

/// An evaluation in `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct EvalMetrics {
    pub step: u64,
    pub eval_top1: f64,
    pub eval_top5: f64,
    pub eval_loss: f64,
    pub eval_images: u64,
}

/// How a training invocation ended.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub status: String,
    pub steps_done: u64,
    pub total_steps: u64,
    pub resumed_from: Option<u64>,
    pub final_loss: Option<f64>,
    pub eval: Option<EvalResult>,
    pub weights: String,
    pub checkpoint: Option<PathBuf>,
    pub model: Option<PathBuf>,
    pub images_per_s: f64,
    pub data_wait: f64,
    pub seconds: f64,
}

/// Set by SIGINT/SIGTERM; the loop stops at the next update boundary and saves a checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Asks a running [`Trainer::run`] to stop as if signalled (tests).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// A prepared training run.
pub struct Trainer {
    pub args: TrainArgs,
    pub config: TrainConfig,
    pub runtime: Runtime,
    pub device: Device,
    pub model: Model,
    pub head: HeadLoad,
    loader: Arc<Loader>,
    eval_loader: Option<Arc<Loader>>,
    class_names: Option<Vec<String>>,
}

fn default_micro_batch(device: Device, variant: Variant, crop: u32, batch: usize) -> usize {
    // Activation memory grows with width² and pixels; on CPU small micro-batches keep the
    // working set in cache without costing throughput. On CUDA aim at ~20 GB of activations
    // for float32 (R50x1 at 224 ≈ 100 MB per image in training).
    let budget = match device {
        Device::Cuda(_) => 20e9,
        _ => 2e9,
    };
    let per_image = 100e6
        * (f64::from(crop) / 224.0).powi(2)
        * variant.width_factor().powi(2)
        * (variant.param_count(1000) as f64 / 25.5e6).sqrt().max(1.0)
        / variant.width_factor().max(1.0);
    let fits = (budget / per_image).floor().max(1.0) as usize;
    let mut micro = 1usize;
    while micro * 2 <= fits.min(batch) {
        micro *= 2;
    }
    micro.min(batch).max(1)
}

impl Trainer {
    /// Resolves the recipe against the dataset, builds the model and loads weights.
    pub fn prepare(args: TrainArgs) -> Result<Trainer, TrainError> {
        let device = crate::device::select(&args.device)?;
        let torch_threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        tch::set_num_threads(torch_threads as i32);
        let loader_threads =
            args.loader_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let channels_last = args.channels_last.unwrap_or(device.is_cuda());
        if args.batch == 0 {
            return Err(TrainError::Config("--batch must be at least 1".into()));
        }

        // Resolution: the HyperRule from the median image area (transfer), Inception crop
        // at 224 (upstream), unless overridden.
        let index = bitkit_ingest::dataset::DatasetIndex::open(&args.data)
            .map_err(|e| TrainError::Config(format!("{}: {e}", args.data.display())))?;
        let mode = args.mode.unwrap_or(match args.task {
            Task::Upstream => Mode::Upstream,
            Task::Transfer => hyperrule_mode(median_area((0..index.len()).map(|r| index.size(r)))),
        });
        let mut transform = match (Transform::for_mode(mode, args.crop), args.crop) {
            (Ok(t), _) => t,
            // A crop BiT does not name (e.g. small at 32 for tests): keep the mode's
            // precrop/crop ratio (160/128) unless --precrop says otherwise.
            (Err(_), Some(crop)) if matches!(mode, Mode::Small | Mode::Large) => {
                let mut t = Transform::for_mode(mode, None)?;
                t.precrop = (f64::from(crop) * f64::from(t.precrop) / f64::from(t.crop)).round() as u32;
                t.crop = crop;
                t
            }
            (Err(e), _) => return Err(e.into()),
        };
        if let Some(p) = args.precrop {
            transform.precrop = p;
        }
        if matches!(mode, Mode::Small | Mode::Large) && transform.precrop < transform.crop {
            return Err(TrainError::Config(format!(
                "--precrop {} is smaller than --crop {}",
                transform.precrop, transform.crop
            )));
        }
        transform.flip &= args.flip;
        transform.random_crop &= args.random_crop;
        let class_names = index.classes().map(<[String]>::to_vec);

        // Model and weights.
        let classes_in_data = class_names.as_ref().map(|c| c.len() as i64).unwrap_or_else(|| {
            (0..index.len())
                .flat_map(|r| index.labels(r).iter().copied().chain(index.label(r)))
                .max()
                .map_or(0, |m| m + 1)
        });
        if classes_in_data <= 0 {
            return Err(TrainError::Config(format!("{}: no classes", args.data.display())));
        }
        let (model, head, variant) = match &args.init {
            Some(init) => {
                let file = checkpoint::resolve_weights(init)?;
                let zero_head = args.task == Task::Transfer && !args.keep_head;
                let (model, head) = weights::model_from_file(&file, Some(classes_in_data), zero_head, device)?;
                if let Some(v) = args.model.filter(|v| *v != model.net.variant) {
                    return Err(TrainError::Config(format!(
                        "--model {v} but {} holds a {} model",
                        init.display(),
                        model.net.variant
                    )));
                }
                let v = model.net.variant;
                (model, head, v)
            }
            None => {
                let v = args.model.ok_or_else(|| {
                    TrainError::Config(
                        "give --init WEIGHTS (a BiT .npz or a checkpoint) or --model NAME to start from scratch".into(),
                    )
                })?;
                (Model::new(v, classes_in_data, device, args.seed), HeadLoad::Zeroed, v)
            }
        };

        let micro =
            args.micro_batch.unwrap_or_else(|| default_micro_batch(device, variant, transform.crop, args.batch));
        let micro = micro.clamp(1, args.batch);
        let split = args.batch.div_ceil(micro);

        let mut loader_config = LoaderConfig::new(transform, micro);
        loader_config.sampler =
            SamplerConfig { seed: args.seed, batch_size: micro, rank: 0, world_size: 1, drop_last: false };
        loader_config.output = if device.is_cuda() { OutputKind::U8 } else { OutputKind::F32 };
        loader_config.exclude = args.exclude.clone();
        loader_config.examples_per_class = args.examples_per_class;
        loader_config.fewshot_seed = args.fewshot_seed;
        loader_config.threads = loader_threads;
        loader_config.prefetch = split.clamp(2, 8);
        // MixUp α depends on the training-set size, known once the loader has applied
        // exclusions and few-shot selection: open once to count, then set it.
        let probe = Loader::from_index(index, loader_config.clone())?;
        let n = probe.stats().eligible;
        let regime = (args.task == Task::Transfer).then(|| Regime::for_size(n as u64));
        let mixup_alpha = args.mixup_alpha.unwrap_or(match regime {
            Some(r) => r.mixup_alpha(),
            None => 0.0,
        });
        loader_config.mixup = MixUpConfig { alpha: mixup_alpha, batches_per_update: split as u64 };
        let index = probe.index().clone();
        drop(probe);
        let loader = Arc::new(Loader::from_index(index, loader_config.clone())?);

        let updates_per_epoch = loader.steps_per_epoch() as f64 / split as f64;
        let mut schedule = match args.task {
            Task::Transfer => {
                LrSchedule::hyperrule(regime.unwrap_or(Regime::Small), args.base_lr.unwrap_or(HYPERRULE_BASE_LR))
            }
            Task::Upstream => LrSchedule::upstream(
                args.base_lr.unwrap_or_else(|| upstream_base_lr(args.batch as u64)),
                args.warmup_steps.unwrap_or(5000),
                args.decay_epochs.as_deref().unwrap_or(&[30.0, 60.0, 80.0]),
                args.epochs.unwrap_or(90.0),
                updates_per_epoch,
            ),
        };
        if let Some(w) = args.warmup_steps {
            schedule.warmup = w;
        }
        if let Some(d) = &args.decay_steps {
            schedule.decays = d.clone();
        }
        if let Some(total) = args.steps {
            if args.decay_steps.is_none() && args.task == Task::Transfer {
                // Keep the HyperRule's shape: warm-up and decays at the same fractions.
                let [w, d1, d2, d3, t] = regime.unwrap_or(Regime::Small).supports();
                let scale = |x: u64| (x as f64 * total as f64 / t as f64).round() as u64;
                if args.warmup_steps.is_none() {
                    schedule.warmup = scale(w);
                }
                schedule.decays = vec![scale(d1), scale(d2), scale(d3)];
            }
            schedule.total = total;
        }
        let weight_decay = args.weight_decay.unwrap_or(match args.task {
            Task::Transfer => 0.0,
            Task::Upstream => 1e-4,
        });

        let eval_loader = match &args.eval {
            Some(path) => {
                let t = Transform::for_mode(Mode::Test, Some(transform.crop))?;
                let mut c = LoaderConfig::new(t, micro);
                c.sampler.seed = args.seed;
                c.output = loader_config.output;
                c.threads = loader_threads;
                Some(Arc::new(Loader::open(path, c)?))
            }
            None => None,
        };

        let config = TrainConfig {
            task: args.task,
            variant: variant.name.to_owned(),
            classes: classes_in_data,
            init: args.init.clone(),
            head: format!("{head:?}"),
            train_images: n,
            regime,
            batch: args.batch,
            micro_batch: micro,
            batch_split: split,
            schedule,
            momentum: args.momentum,
            weight_decay,
            mixup_alpha,
            loss: match args.task {
                Task::Transfer => LossKind::Softmax,
                Task::Upstream => LossKind::Sigmoid,
            },
            precision: args.precision,
            loader: loader_config,
            eval_every: args.eval_every,
            checkpoint_every: args.checkpoint_every.unwrap_or(500),
        };
        let runtime = Runtime { device: crate::device::describe(device), torch_threads, loader_threads, channels_last };
        Ok(Trainer { args, config, runtime, device, model, head, loader, eval_loader, class_names })
    }

    pub fn loader(&self) -> &Arc<Loader> {
        &self.loader
    }

    /// blake3 of the configuration (JSON) plus the starting weights.
    pub fn config_hash(&self, initial_weights: &str) -> String {
        let json = serde_json::to_string(&self.config).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(json.as_bytes());
        h.update(initial_weights.as_bytes());
        h.finalize().to_hex().to_string()
    }

    /// Trains until the schedule ends, `max_updates` is reached or a signal arrives.
    pub fn run(self) -> Result<TrainSummary, TrainError> {
        let started = Instant::now();
        let out = self.args.out.clone();
        std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
        install_signal_handlers();
        STOP.store(false, Ordering::SeqCst);

        let init_hash = self.model.weight_hash().to_hex().to_string();
        let config_hash = self.config_hash(&init_hash);
        let params = self.model.named_parameters();
        let mut sgd = Sgd::new(params, self.config.momentum, self.config.weight_decay);

        // Resume from the newest complete checkpoint.
        let mut start_step = 0u64;
        let mut resumed_from = None;
        let metrics_path = out.join("metrics.jsonl");
        let mut history = crate::metrics::History::default();
        if self.args.resume {
            if let Some((_, dir)) = checkpoint::list(&out)?.pop() {
                let ck = checkpoint::load(&dir)?;
                if ck.state.config_hash != config_hash {
                    return Err(TrainError::Checkpoint {
                        path: dir,
                        reason:
                            "was written by a different configuration or starting weights: resume with the same command"
                                .into(),
                    });
                }
                tch::no_grad(|| -> Result<(), TrainError> {
                    for (name, mut var) in self.model.vs.variables() {
                        let t = ck.params.iter().find(|(n, _)| *n == name).map(|(_, t)| t).ok_or_else(|| {
                            TrainError::Checkpoint { path: dir.clone(), reason: format!("no parameter {name}") }
                        })?;
                        var.f_copy_(&t.to_device(self.device))?;
                    }
                    Ok(())
                })?;
                sgd.load_buffers(&ck.momentum)
                    .map_err(|reason| TrainError::Checkpoint { path: dir.clone(), reason })?;
                start_step = ck.state.step;
                resumed_from = Some(start_step);
                history = crate::metrics::History::read(&metrics_path, start_step)?;
            }
        }
        history.rewrite(&metrics_path)?;
        let mut metrics_file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&metrics_path)
            .map_err(|e| TrainError::io(&metrics_path, e))?;

        let split = self.config.batch_split as u64;
        let crop = i64::from(self.config.loader.transform.crop);
        let mut feeder = DeviceFeeder::new(self.device, self.runtime.channels_last, self.config.precision);
        let mut batches = self.loader.iter(start_step * split, None);
        let steps_per_epoch = self.loader.steps_per_epoch().max(1) as f64;
        let mut step = start_step;
        let mut status = "completed";
        let (mut images_total, mut wait_total) = (0usize, 0f64);
        let mut last_loss = None;
        let mut last_checkpoint = None;
        let loop_started = Instant::now();
        let checkpoint_every = self.config.checkpoint_every.max(1);

        while let Some(lr) = self.config.schedule.lr(step) {
            if self.args.max_updates.is_some_and(|m| step >= start_step + m) {
                status = "paused";
                break;
            }
            if STOP.load(Ordering::SeqCst) {
                status = "interrupted";
                break;
            }
            let t0 = Instant::now();
            let mut wait = 0f64;
            let mut loss_sum = 0f64;
            let mut images = 0usize;
            let mut digest = crate::digest::UpdateDigest::default();
            for _ in 0..split {
                let w0 = Instant::now();
                let batch = batches.next().ok_or_else(|| TrainError::Config("the loader stopped early".into()))??;
                wait += w0.elapsed().as_secs_f64();
                digest.add(&batch);
                let x = feeder.images(&batch, crop);
                let logits = self.model.net.forward(&x);
                let loss = batch_loss(&logits, &batch, self.config.loss, &feeder);
                (&loss / split as f64).backward();
                loss_sum += loss.double_value(&[]) * batch.len() as f64;
                images += batch.len();
                self.loader.recycle(batch);
            }
            sgd.step(lr);
            step += 1;
            let dt = t0.elapsed().as_secs_f64();
            let digests = digest.finish();
            let m = StepMetrics {
                step: step - 1,
                epoch: ((step - 1) * split) as f64 / steps_per_epoch,
                lr,
                loss: loss_sum / images.max(1) as f64,
                images,
                images_per_s: images as f64 / dt.max(1e-9),
                data_wait: wait / dt.max(1e-9),
                data: digests.data,
                data_keys: digests.keys,
                data_order: digests.order,
                data_augment: digests.augment,
                time_s: started.elapsed().as_secs_f64(),
            };
            images_total += images;
            wait_total += wait;
            last_loss = Some(m.loss);
            tracing::info!(step = m.step, lr, loss = m.loss, images_per_s = m.images_per_s, "update");
            history.push(&mut metrics_file, &metrics_path, crate::metrics::Record::Step(m))?;

            if self.config.eval_every.is_some_and(|e| e > 0 && step.is_multiple_of(e)) {
                self.eval_into(&mut feeder, step, &mut history, &mut metrics_file, &metrics_path)?;
            }
            if step.is_multiple_of(checkpoint_every) {
                let saved = self.checkpoint(step, split, &config_hash, &sgd, &mut history, &mut metrics_file)?;
                last_checkpoint = Some(saved);
                crate::metrics::write_plots(&out, &history)?;
            }
        }
        drop(batches);

        // Always leave a checkpoint at the stop point, so --resume continues from here.
        if last_checkpoint.as_ref().is_none_or(|p: &PathBuf| !p.ends_with(format!("step-{step:07}")))
            && step > start_step
        {
            let saved = self.checkpoint(step, split, &config_hash, &sgd, &mut history, &mut metrics_file)?;
            last_checkpoint = Some(saved);
        }
        let mut model_path = None;
        let mut eval = None;
        if status == "completed" {
            let path = out.join("model.safetensors");
            weights::save_safetensors(&self.model.named_parameters(), &path)?;
            let meta = serde_json::json!({
                "variant": self.config.variant,
                "classes": self.config.classes,
                "step": step,
                "weights": self.model.weight_hash().to_hex().to_string(),
                "class_names": self.class_names,
            });
            crate::metrics::write_json_atomic(&out.join("model.json"), &meta)?;
            model_path = Some(path);
            if self.eval_loader.is_some() {
                eval = self.eval_into(&mut feeder, step, &mut history, &mut metrics_file, &metrics_path)?;
            }
        }
        crate::metrics::write_plots(&out, &history)?;
        let elapsed = loop_started.elapsed().as_secs_f64();
        Ok(TrainSummary {
            status: status.to_owned(),
            steps_done: step,
            total_steps: self.config.schedule.total,
            resumed_from,
            final_loss: last_loss,
            eval,
            weights: self.model.weight_hash().to_hex().to_string(),
            checkpoint: last_checkpoint,
            model: model_path,
            images_per_s: images_total as f64 / elapsed.max(1e-9),
            data_wait: wait_total / elapsed.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Saves a checkpoint, prunes old ones and records its weight hash in `metrics.jsonl`.
    fn checkpoint(
        &self,
        step: u64,
        split: u64,
        config_hash: &str,
        sgd: &Sgd,
        history: &mut crate::metrics::History,
        metrics_file: &mut std::fs::File,
    ) -> Result<PathBuf, TrainError> {
        let weights = self.model.weight_hash().to_hex().to_string();
        let state = CheckpointState {
            step,
            loader_step: step * split,
            variant: self.config.variant.clone(),
            classes: self.config.classes,
            weights: weights.clone(),
            config_hash: config_hash.to_owned(),
            seed: self.args.seed,
        };
        let dir = checkpoint::save(&self.args.out, &state, &self.model.named_parameters(), &sgd.buffers())?;
        checkpoint::prune(&self.args.out, self.args.keep_checkpoints)?;
        let record = crate::metrics::Record::Checkpoint(crate::metrics::CheckpointRecord { step, weights });
        history.push(metrics_file, &self.args.out.join("metrics.jsonl"), record)?;
        Ok(dir)
    }

    fn eval_into(
        &self,
        feeder: &mut DeviceFeeder,
        step: u64,
        history: &mut crate::metrics::History,
        file: &mut std::fs::File,
        path: &Path,
    ) -> Result<Option<EvalResult>, TrainError> {
        let Some(loader) = &self.eval_loader else { return Ok(None) };
        let r = evaluate(&self.model.net, loader, feeder, self.config.loss, self.class_names.as_deref())?;
        let m = EvalMetrics { step, eval_top1: r.top1, eval_top5: r.top5, eval_loss: r.loss, eval_images: r.images };
        tracing::info!(step, top1 = r.top1, top5 = r.top5, loss = r.loss, "eval");
        history.push(file, path, crate::metrics::Record::Eval(m))?;
        Ok(Some(r))
    }
}
