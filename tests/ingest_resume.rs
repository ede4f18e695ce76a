//! Crash safety, resume and bounded memory.

use crate::util::{files, rows, s, TestDir};
use bitkit_fixtures as fx;
use std::process::{Command, Stdio};
use std::time::Duration;

const LAYOUT: [&str; 5] = ["--row-group-mb", "1", "--part-mb", "1", "--quiet"];

fn ingest_args<'a>(input: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut args = vec!["ingest", "--format", "imagenet-tar", input, "--out", out];
    args.extend(LAYOUT);
    args
}

/// A set big enough for several parts of 1 MiB.
fn big_set(t: &TestDir) {
    let config =
        fx::SyntheticSetConfig { num_classes: 5, per_class: 40, seed: 21, min_side: 120, max_side: 200, quality: 95 };
    fx::write_imagenet_tars(&t.path("in"), &fx::synthetic_set_with(&config)).expect("fixtures");
}

#[test]
fn abort_after_a_part_then_rerun_is_byte_identical() {
    let t = TestDir::new();
    big_set(&t);
    t.bitkit(&ingest_args("in", "reference")).expect_code(0);
    let reference = files(&t.path("reference"));
    assert!(reference.len() >= 5, "several parts: {:?}", reference.keys());
    for after in [1, 2] {
        let out = format!("crashed{after}");
        // Fault injection: abort() right after the N-th part is committed (mid-shard).
        let status = Command::new(env!("CARGO_BIN_EXE_bitkit"))
            .args(ingest_args("in", &out))
            .current_dir(t.dir.path())
            .env("BITKIT_FAULT_ABORT_AFTER_PARTS", after.to_string())
            .stderr(Stdio::null())
            .status()
            .expect("runs");
        assert!(!status.success());
        assert!(!t.path(&out).join("dataset.json").exists(), "an interrupted run never looks complete");
        let run = t.bitkit(&[&ingest_args("in", &out)[..], &["--json"]].concat()).expect_code(0);
        assert_eq!(run.json()["resumed"], true);
        assert_eq!(files(&t.path(&out)), reference, "resumed after {after} parts");
    }
}

#[test]
fn sigkill_at_many_moments_then_rerun_is_byte_identical() {
    let t = TestDir::new();
    big_set(&t);
    t.bitkit(&ingest_args("in", "reference")).expect_code(0);
    let reference = files(&t.path("reference"));
    for (n, delay_ms) in [0u64, 3, 10, 25, 60, 120].into_iter().enumerate() {
        let out = format!("killed{n}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bitkit"))
            .args(ingest_args("in", &out))
            .current_dir(t.dir.path())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Nothing half-written under a final name: either the manifest is absent, or whole.
        if t.path(&out).join("dataset.json").exists() {
            assert_eq!(files(&t.path(&out)), reference);
        }
        t.bitkit(&ingest_args("in", &out)).expect_code(0);
        assert_eq!(files(&t.path(&out)), reference, "killed after {delay_ms} ms");
    }
}

#[test]
fn a_resume_with_other_options_is_refused() {
    let t = TestDir::new();
    big_set(&t);
    let status = Command::new(env!("CARGO_BIN_EXE_bitkit"))
        .args(ingest_args("in", "ds"))
        .current_dir(t.dir.path())
        .env("BITKIT_FAULT_ABORT_AFTER_PARTS", "1")
        .stderr(Stdio::null())
        .status()
        .expect("runs");
    assert!(!status.success());
    let run = t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--part-mb", "2"]).expect_code(1);
    assert!(run.stderr().contains("interrupted ingest of other inputs or options"), "{}", run.stderr());
}

#[test]
fn memory_stays_bounded_on_a_shard_far_larger_than_the_bound() {
    let t = TestDir::new();
    // One inner tar of ~400 MB: 100 members of 4 MiB (a real JPEG padded after its EOI;
    // decoders ignore trailing bytes, the probe reads the header only).
    let jpeg = fx::synthetic_jpeg(64, 48, 1, 1, 90);
    let mut padded = jpeg.clone();
    padded.resize(4 << 20, 0);
    let path = t.path("n00000001.tar");
    {
        let file = std::fs::File::create(&path).expect("create");
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
        for i in 0..100 {
            let mut header = tar::Header::new_gnu();
            header.set_size(padded.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, format!("n00000001_{i}.JPEG"), padded.as_slice()).expect("append");
        }
        builder.into_inner().expect("finish");
    }
    let run = t
        .bitkit(&[
            "ingest",
            "--format",
            "imagenet-tar",
            s(&path),
            "--out",
            "ds",
            "--row-group-mb",
            "16",
            "--part-mb",
            "64",
            "--json",
        ])
        .expect_code(0);
    let summary = run.json();
    assert_eq!(summary["records_written"], 100);
    let peak = summary["peak_rss_bytes"].as_u64().expect("Linux reports VmHWM");
    let baseline = summary["baseline_rss_bytes"].as_u64().expect("Linux reports VmRSS");
    // The documented bound for these settings: (6R + 3) x 2 MiB chunks with R = 1 reader, two
    // 16 MiB row groups (one being written, one filling), one 4 MiB record, and the reader's
    // 16 MiB map window: < 200 MiB above what the binary and its libraries (libtorch with the
    // trainer) hold at start, for a 400 MiB shard.
    assert!(
        peak - baseline < 200 << 20,
        "peak RSS {} MiB above a baseline of {} MiB",
        (peak - baseline) >> 20,
        baseline >> 20
    );
    assert_eq!(rows(&t.path("ds")).len(), 100);
}

#[test]
fn a_run_killed_after_its_manifest_is_cleaned_up_by_the_rerun() {
    let t = TestDir::new();
    fx::write_imagenet_tars(&t.path("in"), &fx::synthetic_set(2, 2, 22)).expect("fixtures");
    t.bitkit(&ingest_args("in", "ds")).expect_code(0);
    let reference = files(&t.path("ds"));
    // What a kill between the manifest's rename and the state's removal leaves behind.
    std::fs::write(t.path("ds/.ingest-state.json"), b"{}").expect("write");
    std::fs::write(t.path("ds/.part-00007.parquet.tmp"), b"partial").expect("write");
    let run = t.bitkit(&[&ingest_args("in", "ds")[..], &["--json"]].concat()).expect_code(0);
    assert_eq!(run.json()["already_complete"], true);
    assert_eq!(files(&t.path("ds")), reference);
}
