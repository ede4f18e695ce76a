//! The trainer on generated, learnable datasets: HyperRule choices, few-shot transfer that
//! learns, exact resume, MixUp semantics.

mod common;

use bitkit_loader::{Images, Loader, LoaderConfig, MixUpConfig, Mode, Transform};
use bitkit_train::data::{batch_loss, DeviceFeeder, LossKind, Precision};
use bitkit_train::schedule::Regime;
use bitkit_train::tch::{self, Device, Kind, Tensor};
use bitkit_train::trainer::{Task, TrainArgs, Trainer};
use bitkit_train::Variant;
use std::path::Path;
use std::sync::Arc;

fn tiny_args(data: &Path, out: &Path) -> TrainArgs {
    let mut a = TrainArgs::new(Task::Transfer, data.to_owned(), out.to_owned());
    a.model = Variant::by_name("tiny");
    a.device = "cpu".into();
    a.threads = Some(2);
    a.loader_threads = Some(2);
    a
}

#[test]
fn hyperrule_choices_follow_the_dataset() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = common::cifar_dataset(dir.path(), "train", 120, 1);
    let t = Trainer::prepare(tiny_args(&data, &dir.path().join("run"))).expect("prepare");
    let c = &t.config;
    // 32x32 images: area < 96² → 160 → 128; 120 images → the small regime: 500 steps,
    // warm-up 100, decays after 200/300/400, no MixUp, lr 0.003, no weight decay.
    assert_eq!((c.loader.transform.precrop, c.loader.transform.crop), (160, 128));
    assert_eq!(c.loader.transform.mode, Mode::Small);
    assert_eq!(c.regime, Some(Regime::Small));
    assert_eq!(c.train_images, 120);
    assert_eq!(c.mixup_alpha, 0.0);
    assert_eq!((c.schedule.warmup, c.schedule.decays.clone(), c.schedule.total), (100, vec![200, 300, 400], 500));
    assert_eq!(c.schedule.base_lr, 0.003);
    assert_eq!(c.weight_decay, 0.0);
    assert_eq!(c.momentum, 0.9);
    assert_eq!(c.batch, 512);
    assert!(c.micro_batch * c.batch_split >= 512);
    assert_eq!(c.loss, LossKind::Softmax);

    // Few-shot: the rules see k · classes images.
    let mut a = tiny_args(&data, &dir.path().join("run2"));
    a.examples_per_class = Some(3);
    a.fewshot_seed = 4;
    let t = Trainer::prepare(a).expect("prepare");
    assert_eq!(t.config.train_images, 30);

    // Upstream: Inception crop 224, sigmoid loss, lr 0.03·B/256, weight decay 1e-4, 5000
    // warm-up steps, decays after epochs 30/60/80 of 90.
    let mut a = tiny_args(&data, &dir.path().join("run3"));
    a.task = Task::Upstream;
    a.batch = 40;
    a.micro_batch = Some(20);
    let t = Trainer::prepare(a).expect("prepare");
    let c = &t.config;
    assert_eq!((c.loader.transform.mode, c.loader.transform.crop), (Mode::Upstream, 224));
    assert_eq!(c.loss, LossKind::Sigmoid);
    assert!((c.schedule.base_lr - 0.03 * 40.0 / 256.0).abs() < 1e-15);
    assert_eq!(c.weight_decay, 1e-4);
    assert_eq!(c.schedule.warmup, 5000);
    // 120 images, micro 20 → 6 loader batches = 3 updates per epoch.
    assert_eq!((c.schedule.decays.clone(), c.schedule.total), (vec![90, 180, 240], 270));
    assert_eq!(c.mixup_alpha, 0.0);
}

/// BiT's PyTorch MixUp: images mixed as λ·x + (1−λ)·x[perm], loss
/// λ·CE(logits, y) + (1−λ)·CE(logits, y[perm]) with integer labels.
#[test]
fn mixup_mixes_images_and_the_loss_not_the_labels() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = common::cifar_dataset(dir.path(), "train", 40, 2);
    let mut config = LoaderConfig::new(Transform::for_mode(Mode::Test, Some(32)).expect("t"), 8);
    config.mixup = MixUpConfig { alpha: 0.4, batches_per_update: 2 };
    let loader = Arc::new(Loader::open(&data, config).expect("loader"));
    let batch = loader.batch(0).expect("batch");
    let m = batch.mixup.clone().expect("mixup on");
    assert!(m.lambda > 0.0 && m.lambda < 1.0);
    let lambda = f64::from(m.lambda);
    let mut feeder = DeviceFeeder::new(Device::Cpu, false, Precision::F32);
    let x = feeder.images(&batch, 32);
    let Images::F32(raw) = &batch.images else { panic!("f32 output") };
    let got = Vec::<f32>::try_from(x.flatten(0, -1)).expect("vec");
    let per = 3 * 32 * 32;
    for i in 0..batch.len() {
        let j = m.partner[i] as usize;
        for k in (0..per).step_by(97) {
            let want = lambda * f64::from(raw[i * per + k]) + (1.0 - lambda) * f64::from(raw[j * per + k]);
            assert!((f64::from(got[i * per + k]) - want).abs() < 1e-5);
        }
    }
    tch::manual_seed(5);
    let logits = Tensor::randn([batch.len() as i64, 10], (Kind::Float, Device::Cpu));
    let loss = batch_loss(&logits, &batch, LossKind::Softmax, &feeder).double_value(&[]);
    let l = Vec::<f32>::try_from(logits.flatten(0, -1)).expect("vec");
    let ce = |i: usize, y: i64| {
        let row = &l[i * 10..(i + 1) * 10];
        let max = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        lse - row[y as usize] as f64
    };
    let n = batch.len() as f64;
    let ce_y: f64 = (0..batch.len()).map(|i| ce(i, batch.labels[i])).sum::<f64>() / n;
    let ce_perm: f64 = (0..batch.len()).map(|i| ce(i, batch.labels[m.partner[i] as usize])).sum::<f64>() / n;
    let want = lambda * ce_y + (1.0 - lambda) * ce_perm;
    assert!((loss - want).abs() < 1e-5, "loss {loss}, λ·CE(y) + (1-λ)·CE(y[perm]) = {want}");
    // Micro-batches of one update share λ; the next update draws another.
    assert_eq!(loader.batch(1).expect("b").mixup.expect("m").lambda, m.lambda);
    assert_ne!(loader.batch(2).expect("b").mixup.expect("m").lambda, m.lambda);
}

fn small_run(data: &Path, out: &Path) -> TrainArgs {
    let mut a = tiny_args(data, out);
    a.batch = 16;
    a.micro_batch = Some(8);
    a.steps = Some(6);
    a.base_lr = Some(0.05);
    a.mixup_alpha = Some(0.2);
    a.precrop = Some(36);
    a.crop = Some(32);
    a.mode = Some(Mode::Small);
    a.checkpoint_every = Some(2);
    a
}

/// Stopping after 3 updates and resuming gives the bytes of an uninterrupted run: weights,
/// momentum (through the next updates), losses, batch fingerprints.
#[test]
fn a_resumed_run_matches_an_uninterrupted_one_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = common::cifar_dataset(dir.path(), "train", 40, 3);
    let straight = Trainer::prepare(small_run(&data, &dir.path().join("a"))).expect("prep").run().expect("run");
    assert_eq!((straight.status.as_str(), straight.steps_done), ("completed", 6));

    let mut first = small_run(&data, &dir.path().join("b"));
    first.max_updates = Some(3);
    let paused = Trainer::prepare(first).expect("prep").run().expect("run");
    assert_eq!((paused.status.as_str(), paused.steps_done), ("paused", 3));
    let mut second = small_run(&data, &dir.path().join("b"));
    second.resume = true;
    let resumed = Trainer::prepare(second).expect("prep").run().expect("run");
    assert_eq!(resumed.resumed_from, Some(3));
    assert_eq!(resumed.steps_done, 6);
    assert_eq!(resumed.weights, straight.weights);
    let read = |p: &Path| std::fs::read(p).expect("read");
    assert_eq!(read(&dir.path().join("a/model.safetensors")), read(&dir.path().join("b/model.safetensors")));
    let lines = |p: &Path| -> Vec<(u64, f64, String)> {
        std::fs::read_to_string(p)
            .expect("metrics")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("loss").is_some())
            .map(|v| (v["step"].as_u64().expect("step"), v["loss"].as_f64().expect("loss"), v["data"].to_string()))
            .collect()
    };
    assert_eq!(lines(&dir.path().join("a/metrics.jsonl")), lines(&dir.path().join("b/metrics.jsonl")));
    assert_eq!(lines(&dir.path().join("a/metrics.jsonl")).len(), 6);
    for png in ["loss.png", "lr.png"] {
        assert!(dir.path().join("b").join(png).is_file(), "{png}");
    }
    // A changed configuration refuses to resume from these checkpoints.
    let mut other = small_run(&data, &dir.path().join("b"));
    other.resume = true;
    other.base_lr = Some(0.07);
    other.steps = Some(8);
    let err = Trainer::prepare(other).expect("prep").run().expect_err("refused").to_string();
    assert!(err.contains("different configuration"), "{err}");
}

/// Few-shot transfer of the tiny model (10 classes, 10 examples each) reaches well above
/// chance (10%) on a separate test set, in seconds on two cores.
#[test]
fn few_shot_transfer_learns_the_generated_classes() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().expect("tmp");
    let train = common::cifar_dataset(dir.path(), "train", 500, 7);
    let test = common::cifar_dataset(dir.path(), "test", 200, 8);
    let mut a = tiny_args(&train, &dir.path().join("run"));
    a.eval = Some(test);
    a.examples_per_class = Some(10);
    a.fewshot_seed = 1;
    a.batch = 50;
    a.micro_batch = Some(50);
    a.steps = Some(60);
    a.base_lr = Some(0.1);
    a.precrop = Some(36);
    a.crop = Some(32);
    a.mode = Some(Mode::Small);
    a.checkpoint_every = Some(1000);
    let summary = Trainer::prepare(a).expect("prepare").run().expect("train");
    let eval = summary.eval.expect("evaluated");
    assert_eq!(eval.images, 200);
    assert!(eval.top1 >= 0.6, "few-shot top-1 {:.3} (chance 0.1)", eval.top1);
    assert!(started.elapsed().as_secs() < 120, "took {:?}", started.elapsed());
}
