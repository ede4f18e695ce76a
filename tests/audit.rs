//! `bitkit audit` on a real chain: ingest → dedup → train, each leaving `run.json`; verify
//! catches a changed byte, diff names the first step and cause, lineage reaches the shards
//! and the dedup run, replay reproduces every output.

use crate::util::{TestDir, TINY_TRAIN};
use bitkit_fixtures as fx;
use bitkit_fixtures::testsets::{write_cifar10_test, Layout};

/// A CIFAR-format training set, ingested, deduplicated against a generated CIFAR-10 test set.
fn chain(t: &TestDir) {
    std::fs::create_dir_all(t.path("raw")).expect("mkdir");
    fx::write_cifar(&t.path("raw/data_batch_1.bin"), fx::CifarVariant::Cifar10, 48, 3).expect("cifar");
    t.bitkit(&["ingest", "--format", "cifar", "raw", "--out", "ds", "--quiet"]).expect_code(0);
    write_cifar10_test(&t.path("data"), 20, 9, Layout::Archive).expect("test set");
    t.bitkit(&["dedup", "ds", "--against", "cifar10-test", "--data-dir", "data", "--out", "dd"]).expect_code(0);
}

fn train(t: &TestDir, out: &str, extra: &[&str]) -> crate::util::Run {
    let base = [
        &["train", "transfer", "--data", "ds", "--exclude", "dd/exclude.txt", "--steps", "4"][..],
        &["--checkpoint-every", "2", "--out", out][..],
        &TINY_TRAIN[..],
    ]
    .concat();
    t.bitkit(&[&base[..], extra].concat())
}

#[test]
fn every_command_records_its_run_and_verify_catches_a_changed_byte() {
    let t = TestDir::new();
    chain(&t);
    train(&t, "run", &[]).expect_code(0);
    for dir in ["ds", "dd", "run"] {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(t.path(&format!("{dir}/run.json"))).expect("run.json"))
                .expect("json");
        assert_eq!(rec["schema"], "bitkit.run/1", "{dir}");
        assert_eq!(rec["status"], "completed", "{dir}");
        assert!(rec["git_revision"].is_string() && rec["host"]["cores"].is_number());
        assert!(!rec["outputs"].as_array().expect("outputs").is_empty(), "{dir}");
        let run = t.bitkit(&["audit", "verify", dir]).expect_code(0);
        assert!(run.stdout().contains("0 mismatches"), "{}", run.stdout());
    }
    // The ingest record hashes the input shard; the dataset check covers the parts.
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(t.path("ds/run.json")).expect("r")).expect("j");
    assert_eq!(rec["inputs"][0]["role"], "shard");
    assert!(rec["inputs"][0]["blake3"].is_string());

    // One flipped byte in the trained model, and a deleted dedup output.
    let model = t.path("run/model.safetensors");
    let mut bytes = std::fs::read(&model).expect("model");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&model, bytes).expect("write");
    let run = t.bitkit(&["audit", "verify", "run"]);
    assert_eq!(run.code(), 1);
    assert!(run.stdout().contains("CHANGED run/model.safetensors"), "{}", run.stdout());
    std::fs::remove_file(t.path("dd/report.html")).expect("rm");
    let run = t.bitkit(&["audit", "verify", "dd", "--json"]);
    assert_eq!(run.code(), 1);
    assert_eq!(run.json()["mismatches"], 1);
    // A damaged dataset part, caught by the manifest check.
    let part = t.path("ds/part-00000.parquet");
    let mut bytes = std::fs::read(&part).expect("part");
    bytes[100] ^= 0x40;
    std::fs::write(&part, bytes).expect("write");
    let run = t.bitkit(&["audit", "verify", "ds"]);
    assert_eq!(run.code(), 1);
    assert!(run.stdout().contains("CHANGED ds/part-00000.parquet"), "{}", run.stdout());
}

#[test]
fn diff_names_the_first_step_and_cause() {
    let t = TestDir::new();
    chain(&t);
    train(&t, "a", &[]).expect_code(0);
    train(&t, "b", &["--loader-threads", "1"]).expect_code(0);
    let same = t.bitkit(&["audit", "diff", "a", "b"]).expect_code(0);
    assert!(same.stdout().starts_with("identical over 4 updates"), "{}", same.stdout());

    let cases: [(&str, &[&str], u64, &str); 3] = [
        ("seed", &["--seed", "1"], 0, "different data"),
        ("momentum", &["--momentum", "0.8"], 2, "different numerics"),
        ("mixup", &["--mixup-alpha", "0.2"], 0, "different augmentation"),
    ];
    for (name, extra, step, cause) in cases {
        train(&t, name, extra).expect_code(0);
        let run = t.bitkit(&["audit", "diff", "a", name, "--json"]);
        assert_eq!(run.code(), 1, "{name}");
        let d = run.json();
        assert_eq!(d["first_difference"]["step"], step, "{name}: {d}");
        assert!(d["first_difference"]["cause"].as_str().expect("cause").starts_with(cause), "{name}: {d}");
    }
}

#[test]
fn lineage_reaches_the_shards_and_replay_reproduces_the_run() {
    let t = TestDir::new();
    chain(&t);
    train(&t, "run", &[]).expect_code(0);
    let text = t.bitkit(&["audit", "lineage", "run/checkpoints/step-0000004"]).expect_code(0).stdout();
    assert!(text.contains("step 4"), "{text}");
    assert!(text.contains("dedup of") && text.contains("cifar10-test"), "{text}");
    assert!(text.contains("shard data_batch_1.bin") && text.contains("blake3"), "{text}");
    assert!(text.contains("ingested by:") && text.contains("--format cifar"), "{text}");
    let json = t.bitkit(&["audit", "lineage", "run", "--json"]).expect_code(0).json();
    assert_eq!(json["loader_seed"], 0);
    assert_eq!(json["loader_step"], 8);

    let replay = t.bitkit(&["audit", "replay", "run", "--into", "again", "--json"]).expect_code(0).json();
    assert_eq!(replay["differing"], 0);
    assert!(replay["files"].as_u64().expect("n") >= 6);
    for (dir, into) in [("ds", "ds-again"), ("dd", "dd-again")] {
        let run = t.bitkit(&["audit", "replay", dir, "--into", into]).expect_code(0);
        assert!(run.stdout().contains("outputs identical") && !run.stdout().contains("DIFFERENT"), "{}", run.stdout());
    }
}
