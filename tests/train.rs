//! `bitkit model` and `bitkit train` end to end: parameter counts, a run directory with its
//! record, metrics, plots and checkpoints, export to BiT .npz and forward, evaluation, and
//! SIGTERM + `--resume` ending with the weights of an uninterrupted run.

use crate::util::{TestDir, TINY_TRAIN};
use bitkit_fixtures as fx;
use bitkit_train::npz::{read_npy, write_npy, Array};

/// A CIFAR-10-format training set and test set of generated pictures, ingested.
fn datasets(t: &TestDir) -> (String, String) {
    for (name, file, n, seed) in [("train", "data_batch_1.bin", 60, 1), ("test", "test_batch.bin", 30, 2)] {
        std::fs::create_dir_all(t.path(&format!("{name}-raw"))).expect("mkdir");
        fx::write_cifar(&t.path(&format!("{name}-raw/{file}")), fx::CifarVariant::Cifar10, n, seed).expect("cifar");
        t.bitkit(&["ingest", "--format", "cifar", &format!("{name}-raw/{file}"), "--out", name, "--quiet"])
            .expect_code(0);
    }
    ("train".into(), "test".into())
}

#[test]
fn model_info_counts_match_the_spec_for_every_variant() {
    let t = TestDir::new();
    for (model, m1000, m21843) in [
        ("r50x1", 25.55, 68.26),
        ("r50x3", 217.32, 345.40),
        ("r101x1", 44.54, 87.25),
        ("r101x3", 387.93, 516.02),
        ("r152x2", 236.34, 321.73),
        ("r152x4", 936.53, 1107.3),
    ] {
        for (classes, millions) in [("1000", m1000), ("21843", m21843)] {
            let info =
                t.bitkit(&["model", "info", "--model", model, "--classes", classes, "--json"]).expect_code(0).json();
            let params = info["params"].as_f64().expect("params") / 1e6;
            let tolerance = if millions > 1000.0 { 0.05 } else { 0.005 };
            assert!((params - millions).abs() <= tolerance, "{model}/{classes}: {params}M vs {millions}M");
        }
    }
    let table = t.bitkit(&["model", "info", "--model", "r50x1"]).expect_code(0).stdout();
    assert!(table.contains("block4/unit03") && table.contains("25549352"), "{table}");
    t.bitkit(&["model", "info", "--model", "r18"]).expect_code(1);
}

#[test]
fn a_transfer_run_writes_its_record_and_exports_to_bit_npz() {
    let t = TestDir::new();
    let (train, test) = datasets(&t);
    let args = [
        &["train", "transfer", "--data", &train, "--eval", &test, "--out", "run", "--steps", "4"][..],
        &TINY_TRAIN[..],
    ];
    let summary = t.bitkit(&[&args.concat()[..], &["--json"]].concat()).expect_code(0).json();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["steps_done"], 4);
    assert_eq!(summary["eval"]["images"], 30);

    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path("run/run.json")).expect("run.json")).expect("json");
    assert_eq!(record["schema"], "bitkit.run/1");
    assert_eq!(record["status"], "completed");
    assert_eq!(record["command"], "train transfer");
    assert_eq!(record["config"]["train"]["schedule"]["total"], 4);
    assert!(record["argv"].as_array().expect("argv").iter().any(|a| a == "--steps"));
    let roles: Vec<&str> =
        record["inputs"].as_array().expect("inputs").iter().map(|i| i["role"].as_str().expect("role")).collect();
    assert_eq!(roles, ["train-dataset", "eval-dataset"]);
    for output in record["outputs"].as_array().expect("outputs") {
        let path = std::path::Path::new(output["path"].as_str().expect("path"));
        let path = if path.is_absolute() { path.to_owned() } else { t.path(&path.display().to_string()) };
        let bytes = std::fs::read(&path).expect("an output exists");
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            output["blake3"].as_str().expect("hash"),
            "{}",
            path.display()
        );
    }
    let metrics = std::fs::read_to_string(t.path("run/metrics.jsonl")).expect("metrics");
    let steps: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    let updates: Vec<&serde_json::Value> = steps.iter().filter(|v| v.get("loss").is_some()).collect();
    assert_eq!(updates.len(), 4);
    for (i, u) in updates.iter().enumerate() {
        assert_eq!(u["step"], i);
        for key in ["lr", "loss", "images_per_s", "data_wait"] {
            assert!(u[key].is_number(), "{key} in {u}");
        }
    }
    assert_eq!(updates[0]["lr"], 0.0, "BiT's first update runs at lr 0");
    assert!(steps.iter().any(|v| v.get("eval_top1").is_some()));
    for png in ["loss.png", "lr.png", "accuracy.png"] {
        image::open(t.path(&format!("run/{png}"))).expect("a PNG plot");
    }

    // Export to the BiT layout; the .npz and the run give the same logits.
    t.bitkit(&["model", "export", "--init", "run", "--out", "exported.npz"]).expect_code(0);
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|i| ((i * 37 % 255) as f32) / 127.5 - 1.0).collect();
    write_npy(&t.path("x.npy"), &Array::new(vec![2, 3, 32, 32], x).expect("array")).expect("x.npy");
    t.bitkit(&["model", "forward", "--init", "exported.npz", "--input", "x.npy", "--out", "a.npy"]).expect_code(0);
    t.bitkit(&["model", "forward", "--init", "run", "--input", "x.npy", "--out", "b.npy", "--model", "tiny"])
        .expect_code(0);
    let a = read_npy(&t.path("a.npy")).expect("logits");
    assert_eq!(a.shape, vec![2, 10]);
    assert_eq!(a, read_npy(&t.path("b.npy")).expect("logits"));
    // big_transfer's own loader (bit_pytorch `load_from`, in PyTorch) reads the export and
    // gives the same logits, when the test environment has torch (scripts/test provides it).
    if let Some(python) = std::env::var_os("BITKIT_PYTHON") {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/peer_bit_torch.py");
        let out = std::process::Command::new(python)
            .args([script, "--check-npz", "exported.npz", "--input", "x.npy", "--logits", "a.npy"])
            .current_dir(t.path(""))
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let check: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(check["block_units"], serde_json::json!([1, 1, 1, 1]));
        let (diff, scale) = (check["max_abs_diff"].as_f64().expect("diff"), check["scale"].as_f64().expect("scale"));
        assert!(diff <= 1e-4 * scale.max(1.0), "big_transfer's loader gives other logits: {check}");
    }
    let wrong = t.bitkit(&[
        "model",
        "forward",
        "--init",
        "exported.npz",
        "--input",
        "x.npy",
        "--out",
        "c.npy",
        "--model",
        "r50x1",
    ]);
    assert_eq!(wrong.code(), 1);
    assert!(wrong.stderr().contains("tiny"), "{}", wrong.stderr());

    // Evaluation of the run's model.
    let eval = t
        .bitkit(&["train", "eval", "--init", "run", "--data", &test, "--crop", "32", "--device", "cpu", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(eval["result"]["images"], 30);
    assert_eq!(eval["result"]["per_class"].as_array().expect("per class").len(), 10);
    assert_eq!(eval["result"]["top1"], summary["eval"]["top1"]);
    let text = t
        .bitkit(&["train", "eval", "--init", "run", "--data", &test, "--crop", "32", "--device", "cpu"])
        .expect_code(0);
    assert!(text.stdout().contains("top-1") && text.stdout().contains("confusions"), "{}", text.stdout());
}

/// SIGTERM stops at an update boundary with a checkpoint; `--resume` finishes the run with
/// the weights of an uninterrupted one.
#[test]
fn sigterm_then_resume_matches_an_uninterrupted_run() {
    let t = TestDir::new();
    let (train, _) = datasets(&t);
    let base =
        [&["train", "transfer", "--data", &train, "--steps", "40", "--checkpoint-every", "1000"][..], &TINY_TRAIN[..]]
            .concat();
    t.bitkit(&[&base[..], &["--out", "straight"]].concat()).expect_code(0);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bitkit"))
        .args([&base[..], &["--out", "killed"]].concat())
        .current_dir(t.path(""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let metrics = t.path("killed/metrics.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path("killed/run.json")).expect("run.json")).expect("json");
    assert_eq!(record["status"], "interrupted");
    let stopped = record["counts"]["steps_done"].as_u64().expect("steps");
    assert!((3..40).contains(&stopped), "stopped at {stopped}");
    assert!(t.path(&format!("killed/checkpoints/step-{stopped:07}/state.json")).is_file());

    let resumed = t.bitkit(&[&base[..], &["--out", "killed", "--resume", "--json"]].concat()).expect_code(0).json();
    assert_eq!(resumed["resumed_from"], stopped);
    assert_eq!(resumed["status"], "completed");
    assert_eq!(
        std::fs::read(t.path("straight/model.safetensors")).expect("a"),
        std::fs::read(t.path("killed/model.safetensors")).expect("b")
    );
}

/// Upstream pre-training: sigmoid cross-entropy on multi-hot labels, lr 0.03 x batch / 256
/// after the warm-up, weight decay on, Inception crop.
#[test]
fn an_upstream_run_trains_with_the_upstream_recipe() {
    let t = TestDir::new();
    let (train, _) = datasets(&t);
    let args = [
        &["train", "upstream", "--data", &train, "--out", "up", "--steps", "3", "--warmup-steps", "1"][..],
        &["--json"][..],
        &TINY_TRAIN[..],
    ]
    .concat();
    // TINY_TRAIN's --base-lr would override the recipe's: drop it for this run.
    let args: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| **a != "--base-lr" && (*i == 0 || args[i - 1] != "--base-lr"))
        .map(|(_, a)| *a)
        .collect();
    let summary = t.bitkit(&args).expect_code(0).json();
    assert_eq!(summary["status"], "completed");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path("up/run.json")).expect("run.json")).expect("json");
    let c = &record["config"]["train"];
    assert_eq!(c["loss"], "sigmoid");
    assert_eq!(c["weight_decay"], 1e-4);
    assert_eq!(c["loader"]["transform"]["mode"], "upstream");
    let base = 0.03 * 8.0 / 256.0;
    assert!((c["schedule"]["base_lr"].as_f64().expect("lr") - base).abs() < 1e-15);
    let metrics = std::fs::read_to_string(t.path("up/metrics.jsonl")).expect("metrics");
    let lrs: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["lr"].as_f64())
        .collect();
    assert_eq!(lrs, vec![0.0, base, base]);
}
