//! `bitkit audit verify` on a hostile `run.json`: the record of a real `bitkit ingest`, damaged
//! by truncation, byte flips, wrong types, huge numbers and paths pointing elsewhere. Verify
//! must exit 0 (the damage changed nothing it checks) or 1 with an error naming `run.json` or
//! the mismatching files; never a panic (exit 101), a signal or a hang (each run has a time
//! limit).
//!
//! Each case runs the binary, so the random cases are few (16, seeded; proptest is not a
//! dependency of this package) beside a table of targeted ones.

use crate::util::{s, TestDir};
use bitkit_fixtures as fx;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a verify of this tiny dataset may take.
const TIME_LIMIT: Duration = Duration::from_secs(30);

/// How a run of `bitkit` ended.
#[derive(Debug)]
struct Ended {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

/// `bitkit ARGS...` in `dir`, killed after `limit`.
fn bitkit(dir: &Path, args: &[&str], limit: Duration) -> Ended {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitkit"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bitkit starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ended {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}

/// A directory holding `ds/`, ingested from 8 CIFAR records, with its `run.json`.
fn ingested() -> (TestDir, Vec<u8>) {
    let t = TestDir::new();
    std::fs::create_dir_all(t.path("raw")).expect("mkdir");
    fx::write_cifar(&t.path("raw/data_batch_1.bin"), fx::CifarVariant::Cifar10, 8, 3).expect("cifar");
    t.bitkit(&["ingest", "--format", "cifar", "raw", "--out", "ds", "--quiet"]).expect_code(0);
    let record = std::fs::read(t.path("ds/run.json")).expect("run.json");
    (t, record)
}

/// Verifies `ds` with `record` as its run.json (`--json` output when `json`) and checks what
/// holds for any record; returns how it ended.
fn verify(t: &TestDir, record: &[u8], what: &str, json: bool) -> Ended {
    std::fs::write(t.path("ds/run.json"), record).expect("write run.json");
    let args: &[&str] = if json { &["audit", "verify", "ds", "--json"] } else { &["audit", "verify", "ds"] };
    let ended = bitkit(t.dir.path(), args, TIME_LIMIT);
    let context = || format!("{what}\nrun.json: {}\n{ended:#?}", String::from_utf8_lossy(record));
    assert!(!ended.timed_out, "verify hung: {}", context());
    assert_eq!(ended.signal, None, "killed by a signal: {}", context());
    assert!(!ended.stderr.contains("panicked"), "panic: {}", context());
    match ended.code {
        Some(0) => {
            assert!(ended.stdout.contains("0 mismatches") || ended.stdout.contains("\"mismatches\":0"), "{}", context())
        }
        Some(1) => {
            assert!(ended.stderr.starts_with("error: "), "{}", context());
            let named = ended.stderr.contains("ds/run.json");
            let listed =
                ["CHANGED ", "MISSING ", "\"changed\"", "\"missing\""].iter().any(|w| ended.stdout.contains(w));
            assert!(
                named || (listed && ended.stderr.contains("do not match the record")),
                "exit 1 names neither run.json nor a mismatch: {}",
                context()
            );
        }
        _ => panic!("exit code not 0 or 1: {}", context()),
    }
    ended
}

/// Values a record field is set to: wrong types, huge and negative numbers, and paths that
/// point outside, at nothing or at a directory.
fn hostile_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(u64::MAX),
        serde_json::from_str("18446744073709551616").expect("2^64"),
        json!(1e308),
        json!("x"),
        json!([]),
        json!({}),
        json!("../../../../../../../../etc/passwd"),
        json!("/nonexistent/run/model.safetensors"),
        json!("raw"),
        json!(""),
    ]
}

/// Where a value goes: JSON pointers into the ingest record.
const POINTERS: [&str; 14] = [
    "/schema",
    "/status",
    "/cwd",
    "/inputs",
    "/outputs",
    "/inputs/0",
    "/inputs/0/path",
    "/inputs/0/size",
    "/inputs/0/blake3",
    "/outputs/0",
    "/outputs/2/path",
    "/outputs/2/size",
    "/outputs/2/blake3",
    "/outputs/1/role",
];

fn set(record: &[u8], pointer: &str, value: Value) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(record).expect("json");
    *json.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer} in the record")) = value;
    serde_json::to_vec_pretty(&json).expect("json")
}

#[test]
fn random_damage_to_run_json() {
    let (t, record) = ingested();
    let values = hostile_values();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    for case in 0..16 {
        let (what, bytes) = match case % 4 {
            0 => {
                let cut = rng.random_range(0..record.len());
                (format!("cut at {cut}"), record[..cut].to_vec())
            }
            1 => {
                let mut bytes = record.clone();
                let flips: Vec<(usize, u8)> =
                    (0..rng.random_range(1..6)).map(|_| (rng.random_range(0..bytes.len()), rng.random())).collect();
                for &(at, mask) in &flips {
                    bytes[at] ^= mask.max(1);
                }
                (format!("flips {flips:?}"), bytes)
            }
            2 => {
                let pointer = POINTERS[rng.random_range(0..POINTERS.len())];
                let value = values[rng.random_range(0..values.len())].clone();
                (format!("{pointer} = {value}"), set(&record, pointer, value))
            }
            _ => {
                // A random run of bytes replaced by random ASCII (numbers and names change).
                let mut bytes = record.clone();
                let at = rng.random_range(0..bytes.len());
                let len = rng.random_range(1..16).min(bytes.len() - at);
                for byte in &mut bytes[at..at + len] {
                    *byte = rng.random_range(b' '..=b'~');
                }
                (format!("ascii at {at}..{}", at + len), bytes)
            }
        };
        verify(&t, &bytes, &what, case % 8 >= 4);
    }
}

/// Damage with a known outcome: exit 1, and the error or the listing says what is wrong.
#[test]
fn targeted_damage_to_run_json() {
    let (t, record) = ingested();
    let root = s(t.dir.path()).to_owned();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "ds/run.json: not a run record"),
        ("null", b"null".to_vec(), "ds/run.json: not a bitkit run record"),
        ("not UTF-8", vec![0xff, 0xfe, b'{'], "ds/run.json: not a run record"),
        ("deep nesting", vec![b'['; 200_000], "ds/run.json: not a run record: recursion limit"),
        ("other schema", set(&record, "/schema", json!("bitkit.run/2")), "not a bitkit run record"),
        ("outputs not a list", set(&record, "/outputs", json!({})), "ds/run.json: bad outputs"),
        ("size 2^64", set(&record, "/outputs/2/size", json!(1.8446744073709552e19)), "ds/run.json: bad outputs"),
        ("negative size", set(&record, "/inputs/0/size", json!(-1)), "ds/run.json: bad inputs"),
        ("hash a number", set(&record, "/outputs/0/blake3", json!(12)), "ds/run.json: bad outputs"),
        ("size u64::MAX", set(&record, "/outputs/2/size", json!(u64::MAX)), "CHANGED ds/part-00000.parquet"),
        ("running", set(&record, "/status", json!("running")), "the run never finished"),
        ("cwd elsewhere", set(&record, "/cwd", json!("/nonexistent")), "MISSING raw/data_batch_1.bin"),
        (
            "output outside",
            set(&record, "/outputs/0/path", json!("../../../../../../../../etc/passwd")),
            "CHANGED ../../../../../../../../etc/passwd",
        ),
        ("output a directory", set(&record, "/outputs/0/path", json!(root)), "CHANGED /"),
    ];
    for (what, bytes, words) in cases {
        let ended = verify(&t, &bytes, what, false);
        assert_eq!(ended.code, Some(1), "{what}: {ended:#?}");
        let text = format!("{}{}", ended.stdout, ended.stderr);
        assert!(text.contains(words), "{what}: {words:?} not in {ended:#?}");
    }
    // The record restored, verify passes again: the damage above was the cause.
    let ended = verify(&t, &record, "restored", true);
    assert_eq!(ended.code, Some(0), "{ended:#?}");
}

/// A recorded path naming an endless file (or `/`, the whole file system): verify must refuse to
/// hash it, not read forever.
#[test]
fn a_record_naming_an_endless_file_does_not_hang() {
    let (t, record) = ingested();
    for path in ["/dev/zero", "/"] {
        let bytes = set(&record, "/outputs/0/path", json!(path));
        let ended = verify(&t, &bytes, path, false);
        assert_eq!(ended.code, Some(1), "{path}: {ended:#?}");
    }
}

/// A run.json that is not a regular file (a directory, a link to a device) must be an error,
/// not silently skipped: today verify checks only the dataset parts and exits 0.
#[test]
fn a_run_json_that_is_not_a_file_is_an_error() {
    let (t, _) = ingested();
    let record = t.path("ds/run.json");
    std::fs::remove_file(&record).expect("rm");
    std::fs::create_dir(&record).expect("mkdir");
    let ended = bitkit(t.dir.path(), &["audit", "verify", "ds"], TIME_LIMIT);
    assert_eq!(ended.code, Some(1), "run.json a directory: {ended:#?}");
    assert!(ended.stderr.contains("ds/run.json"), "{ended:#?}");
    std::fs::remove_dir(&record).expect("rmdir");
    std::os::unix::fs::symlink("/dev/zero", &record).expect("symlink");
    let ended = bitkit(t.dir.path(), &["audit", "verify", "ds"], TIME_LIMIT);
    assert_eq!(ended.code, Some(1), "run.json -> /dev/zero: {ended:#?}");
}
