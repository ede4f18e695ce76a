//! `bitkit loader fingerprint | bench | inspect` on a dataset ingested by the binary.

use crate::util::TestDir;
use bitkit_fixtures as fx;

/// An ImageFolder of 3 classes x 8 synthetic JPEGs, ingested.
fn dataset(t: &TestDir) -> String {
    let set = fx::synthetic_set(3, 8, 5);
    fx::write_folder(&t.path("folder"), &set).expect("folder");
    t.bitkit(&["ingest", "--format", "folder", "folder", "--out", "ds", "--quiet"]).expect_code(0);
    "ds".to_string()
}

fn lines(run: &crate::util::Run) -> Vec<String> {
    run.stdout().lines().map(str::to_string).collect()
}

#[test]
fn fingerprints_are_thread_independent_and_resume_exactly() {
    let t = TestDir::new();
    let ds = dataset(&t);
    let base = ["loader", "fingerprint", &ds, "--mode", "upstream", "--crop", "48", "--batch", "5", "--seed", "3"];
    let one = lines(&t.bitkit(&[&base[..], &["--steps", "8", "--threads", "1"]].concat()).expect_code(0));
    assert_eq!(one.len(), 8);
    for (i, line) in one.iter().enumerate() {
        let (step, hex) = line.split_once(' ').expect("<step> <hex>");
        assert_eq!(step, i.to_string());
        assert_eq!(hex.len(), 64);
    }
    let four = lines(&t.bitkit(&[&base[..], &["--steps", "8", "--threads", "4"]].concat()).expect_code(0));
    assert_eq!(one, four);
    let resumed = lines(
        &t.bitkit(&[&base[..], &["--steps", "3", "--start-step", "5", "--threads", "2"]].concat()).expect_code(0),
    );
    assert_eq!(resumed, one[5..]);
    let other_seed =
        ["loader", "fingerprint", &ds, "--mode", "upstream", "--crop", "48", "--batch", "5", "--seed", "4"];
    let other = lines(&t.bitkit(&[&other_seed[..], &["--steps", "8"]].concat()).expect_code(0));
    assert!(other.iter().zip(&one).all(|(a, b)| a != b));
}

#[test]
fn bench_prints_images_per_second_and_inspect_writes_a_grid() {
    let t = TestDir::new();
    let ds = dataset(&t);
    let run = t.bitkit(&["loader", "bench", &ds, "--mode", "small", "--batch", "8", "--json"]).expect_code(0);
    let summary = run.json();
    assert_eq!(summary["mode"], "small");
    assert!(summary["images_per_s"].as_f64().expect("number") > 0.0);
    assert_eq!(summary["images"], 48, "two timed epochs of 24");
    let text = t.bitkit(&["loader", "bench", &ds, "--mode", "auto", "--batch", "8", "--output", "u8"]).expect_code(0);
    assert!(text.stdout().contains("images/s"), "{}", text.stdout());

    t.bitkit(&["loader", "inspect", &ds, "--mode", "upstream", "--crop", "64", "--count", "6", "--out", "grid.png"])
        .expect_code(0);
    let grid = image::open(t.path("grid.png")).expect("a PNG");
    assert!(grid.width() >= 3 * 64 && grid.height() >= 2 * 64, "{}x{}", grid.width(), grid.height());
}

#[test]
fn bad_settings_are_usage_or_config_errors_naming_the_problem() {
    let t = TestDir::new();
    let ds = dataset(&t);
    let run = t.bitkit(&["loader", "bench", &ds, "--mode", "medium"]).expect_code(1);
    assert!(run.stderr().contains("unknown mode"), "{}", run.stderr());
    let run = t.bitkit(&["loader", "bench", &ds, "--mode", "large", "--crop", "500"]).expect_code(1);
    assert!(run.stderr().contains("480, 448 or 384"), "{}", run.stderr());
    let run = t.bitkit(&["loader", "bench", "missing-ds", "--mode", "small"]).expect_code(1);
    assert!(run.stderr().contains("missing-ds"), "{}", run.stderr());
    let run = t.bitkit(&[
        "loader",
        "fingerprint",
        &ds,
        "--mode",
        "small",
        "--steps",
        "1",
        "--rank",
        "2",
        "--world-size",
        "2",
    ]);
    assert!(run.expect_code(1).stderr().contains("rank 2 must be below world size 2"));
}
