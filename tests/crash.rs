//! Crash harness: SIGKILL `ingest`, `dedup` and `train` at seeded random moments, check that
//! nothing half-written looks complete, re-run the same command, and require the final
//! outputs to be byte-identical to an uninterrupted run. `BITKIT_CRASH_POINTS` kill points per
//! command (3 by default, for CI; 20 or more for the full run).

use crate::util::{files, TestDir};
use bitkit_fixtures as fx;
use bitkit_fixtures::testsets::{write_cifar10_test, Layout};
use rand::{Rng, SeedableRng};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn points() -> usize {
    std::env::var("BITKIT_CRASH_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// Runs `bitkit ARGS` to completion; returns how long it took.
fn complete(t: &TestDir, args: &[&str]) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_bitkit"))
        .args(args)
        .current_dir(t.path(""))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("bitkit runs");
    assert!(status.success() || status.code() == Some(3), "{args:?} failed: {status}");
    started.elapsed()
}

/// Starts `bitkit ARGS` and SIGKILLs it after `after`; true when it was killed (not finished).
fn kill_after(t: &TestDir, args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitkit"))
        .args(args)
        .current_dir(t.path(""))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

/// The harness: a reference run, then `points()` kill/re-run cycles at seeded moments,
/// `check_visible` after each kill, `compare` after each completed re-run.
fn harness(
    t: &TestDir,
    seed: u64,
    reference: &[&str],
    crashed: &[&str],
    check_visible: &dyn Fn(&TestDir),
    compare: &dyn Fn(&TestDir),
    reset: &dyn Fn(&TestDir),
) {
    // Kill moments are fractions of the shortest complete run seen so far: the first run can
    // be much slower than later ones on a loaded machine (cold caches, other jobs).
    let mut duration = complete(t, reference);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut killed = 0;
    let cycle = |fractions: [f64; 2], duration: &mut Duration, killed: &mut usize| {
        reset(t);
        // Two kills in a row at random moments, then a run to the end.
        for fraction in fractions {
            let at = Duration::from_secs_f64(duration.as_secs_f64() * fraction);
            *killed += usize::from(kill_after(t, crashed, at));
            check_visible(t);
        }
        *duration = (*duration).min(complete(t, crashed));
        compare(t);
    };
    for _ in 0..points() {
        let fractions = [rng.random_range(0.02..1.0), rng.random_range(0.02..1.0)];
        cycle(fractions, &mut duration, &mut killed);
    }
    // However the timing went, at least one run is killed early.
    for _ in 0..5 {
        if killed > 0 {
            break;
        }
        cycle([0.05, 0.3], &mut duration, &mut killed);
    }
    assert!(killed > 0, "no run was killed before it finished (reference took {duration:?})");
}

#[test]
fn ingest_killed_at_random_moments_resumes_to_identical_bytes() {
    let t = TestDir::new();
    fx::write_imagenet_tars(&t.path("in"), &fx::synthetic_set(12, 20, 4)).expect("fixtures");
    let args = |out: &'static str| -> Vec<&'static str> {
        vec![
            "ingest",
            "--format",
            "imagenet-tar",
            "in",
            "--out",
            out,
            "--part-mb",
            "1",
            "--row-group-mb",
            "1",
            "--quiet",
        ]
    };
    harness(
        &t,
        1,
        &args("reference"),
        &args("crashed"),
        &|t| {
            // A manifest means complete: every part it names is whole.
            if t.path("crashed/dataset.json").exists() {
                let run = t.bitkit(&["audit", "verify", "crashed"]);
                assert_eq!(run.code(), 0, "a visible manifest over a broken dataset: {}", run.stdout());
            }
        },
        &|t| assert_eq!(files(&t.path("crashed")), files(&t.path("reference"))),
        &|t| {
            let _ = std::fs::remove_dir_all(t.path("crashed"));
        },
    );
}

#[test]
fn dedup_killed_at_random_moments_reruns_to_identical_outputs() {
    let t = TestDir::new();
    fx::write_imagenet_tars(&t.path("in"), &fx::synthetic_set(6, 20, 5)).expect("fixtures");
    t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--quiet"]).expect_code(0);
    write_cifar10_test(&t.path("data"), 40, 2, Layout::Archive).expect("cifar");
    let args = |out: &'static str, cache: &'static str| -> Vec<&'static str> {
        vec!["dedup", "ds", "--against", "cifar10-test", "--data-dir", "data", "--out", out, "--cache", cache]
    };
    let outputs = ["pairs.parquet", "exclude.txt", "errors.jsonl", "report.html"];
    harness(
        &t,
        2,
        &args("reference", "reference.cache"),
        &args("crashed", "crashed.cache"),
        &|t| {
            // summary.json is written last: when it exists, every output is whole.
            if t.path("crashed/summary.json").exists() {
                for o in outputs {
                    assert!(t.path(&format!("crashed/{o}")).is_file(), "{o} missing beside summary.json");
                }
            }
        },
        &|t| {
            for o in outputs {
                let read = |d: &str| std::fs::read(t.path(&format!("{d}/{o}"))).expect("output");
                assert!(read("crashed") == read("reference"), "{o} differs after kills");
            }
        },
        &|t| {
            let _ = std::fs::remove_dir_all(t.path("crashed"));
            let _ = std::fs::remove_file(t.path("crashed.cache"));
        },
    );
}

#[test]
fn train_killed_at_random_moments_resumes_to_identical_weights() {
    let t = TestDir::new();
    std::fs::create_dir_all(t.path("raw")).expect("mkdir");
    fx::write_cifar(&t.path("raw/data_batch_1.bin"), fx::CifarVariant::Cifar10, 48, 3).expect("cifar");
    t.bitkit(&["ingest", "--format", "cifar", "raw", "--out", "ds", "--quiet"]).expect_code(0);
    let args = |out: &'static str| -> Vec<&'static str> {
        let mut a = vec!["train", "transfer", "--data", "ds", "--out", out, "--steps", "12", "--checkpoint-every", "2"];
        a.extend_from_slice(&crate::util::TINY_TRAIN);
        a.push("--resume");
        a
    };
    harness(
        &t,
        3,
        &args("reference"),
        &args("crashed"),
        &|t| {
            // Every checkpoint directory that exists is whole and loads.
            for entry in std::fs::read_dir(t.path("crashed/checkpoints")).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("step-") && !name.ends_with(".tmp") {
                    for f in ["model.safetensors", "momentum.safetensors", "state.json"] {
                        assert!(entry.path().join(f).is_file(), "{name}/{f} missing");
                    }
                    let file = entry.path().join("model.safetensors");
                    bitkit_train::weights::read_safetensors(&file).expect("a visible checkpoint loads");
                }
            }
        },
        &|t| {
            let read = |d: &str| std::fs::read(t.path(&format!("{d}/model.safetensors"))).expect("model");
            assert!(read("crashed") == read("reference"), "weights differ after kills");
        },
        &|t| {
            let _ = std::fs::remove_dir_all(t.path("crashed"));
        },
    );
}
