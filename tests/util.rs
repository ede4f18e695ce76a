//! Running the real `bitkit` binary in a fresh temporary directory (ripgrep's `TestCommand`).

use bitkit_ingest::dataset::{DatasetReader, DatasetRow, Manifest, RejectEntry};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        TestDir { dir: tempfile::Builder::new().prefix("bitkit-e2e-").tempdir().expect("temp dir") }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// `bitkit ARGS...` run in this directory.
    pub fn bitkit(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_bitkit"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("bitkit runs");
        Run { output }
    }
}

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The `--json` summary (the last line of stdout).
    pub fn json(&self) -> serde_json::Value {
        let stdout = self.stdout();
        let line = stdout.lines().last().unwrap_or_else(|| panic!("no stdout; stderr: {}", self.stderr()));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    /// Asserts the exit code, showing stderr when it differs.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code(), code, "exit code; stderr:\n{}\nstdout:\n{}", self.stderr(), self.stdout());
        self
    }
}

pub fn rows(dataset: &Path) -> Vec<DatasetRow> {
    let reader = DatasetReader::open(dataset).expect("dataset opens");
    reader.rows().collect::<Result<Vec<_>, _>>().expect("rows read")
}

pub fn manifest(dataset: &Path) -> Manifest {
    Manifest::read(dataset).expect("manifest reads")
}

pub fn rejects(dataset: &Path) -> Vec<RejectEntry> {
    bitkit_ingest::dataset::manifest::read_rejects(dataset).expect("rejects read")
}

/// Every file of a directory (name → bytes), for byte-identity checks; the run record
/// (`run.json`: times, command line) is left out.
pub fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("dir lists") {
        let entry = entry.expect("entry");
        if entry.path().is_file() && entry.file_name() != "run.json" {
            out.insert(entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).expect("reads"));
        }
    }
    out
}

pub fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// `bitkit train` options for a tiny CPU run (tiny model, 32 px, batches of 8 in 2 micro-batches).
#[cfg(feature = "train")]
#[rustfmt::skip]
pub const TINY_TRAIN: [&str; 14] = [
    "--model", "tiny", "--device", "cpu", "--batch", "8", "--micro-batch", "4", "--crop", "32",
    "--base-lr", "0.05", "--threads", "2",
];
