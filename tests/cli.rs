use crate::util::TestDir;

#[test]
fn help_shows_examples_for_ingest() {
    let t = TestDir::new();
    let run = t.bitkit(&["ingest", "--help"]).expect_code(0);
    let help = run.stdout();
    assert!(help.contains("bitkit ingest --format imagenet-tar winter21_whole.tar --out i21k/"), "{help}");
    assert!(help.contains("--worker-index"), "{help}");
    assert!(help.contains("Exit codes"), "{help}");
}

#[test]
fn usage_errors_exit_2() {
    let t = TestDir::new();
    let run = t.bitkit(&["ingest", "--format", "nope", "x", "--out", "y"]).expect_code(2);
    assert!(run.stderr().contains("nope"));
    t.bitkit(&["ingest", "--format", "tar"]).expect_code(2);
}

#[test]
fn missing_input_is_a_failure_naming_it() {
    let t = TestDir::new();
    let run = t.bitkit(&["ingest", "--format", "tfrecord", "does/not/exist", "--out", "out"]).expect_code(1);
    assert!(run.stderr().contains("does/not/exist"), "{}", run.stderr());
}

#[test]
fn demo_runs_end_to_end() {
    let t = TestDir::new();
    let out = t.path("demo");
    let run = t
        .bitkit(&["demo", "--out", crate::util::s(&out), "--classes", "4", "--per-class", "5", "--json"])
        .expect_code(0);
    let summary = run.json();
    assert_eq!(summary["merge_matches_single_run"], true);
    // 4 x 5 synthetic images + the hostile tar's 6 valid ones + 3 planted CIFAR copies; the
    // hostile tar's 4 bad ones rejected.
    assert_eq!(summary["rows"], 29);
    assert_eq!(summary["rejected"], 4);
    assert_eq!(summary["hashes_verified"], 29);
    assert!(summary["dedup_excluded"].as_u64().expect("count") >= 3);
    assert_eq!(summary["loader_thread_independent"], true);
    assert!(out.join("dataset/dataset.json").exists());
    assert!(out.join("dedup/exclude.txt").exists() && out.join("samples.png").exists());
    // The training step: a model trained, evaluated (top-1 in [0, 1]) and exported.
    let top1 = summary["train_top1"].as_f64().expect("trained");
    assert!((0.0..=1.0).contains(&top1));
    assert!(out.join("train/model.safetensors").exists() && out.join("train/model.npz").exists());
}
