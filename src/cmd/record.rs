//! `run.json`: the run record every writing command leaves beside its output (one schema,
//! `bitkit.run/1`): version and git revision, the command line and resolved configuration,
//! host facts, every input and output with its size and blake3, counts, start and end times,
//! and the exit status. Written at the start (status "running") and rewritten at the end, so a
//! killed run is visible as such.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One file the command read or wrote. Paths are as given on the command line (relative to
/// the record's `cwd`) or absolute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    pub role: String,
    pub size: u64,
    /// None only for inputs too large to re-read for the record (ingest shards beyond
    /// [`MAX_HASHED_INPUT_BYTES`] in total): their size is still recorded.
    pub blake3: Option<String>,
}

/// Inputs of an ingest are hashed for its record only up to this total (re-reading
/// ImageNet-21k's 1.3 TB for a record would double the job).
pub const MAX_HASHED_INPUT_BYTES: u64 = 16 << 30;

impl FileRecord {
    /// Hashes `path`: a file's blake3, or for a directory the blake3 of its tree (every file's
    /// relative path, size and blake3, in sorted order). For a dataset directory pass its
    /// `dataset.json` instead, which holds the blake3 of every part.
    pub fn of(path: &Path, role: &str) -> anyhow::Result<FileRecord> {
        let (size, blake3) = hash_path(path)?;
        Ok(FileRecord { path: path.to_owned(), role: role.to_owned(), size, blake3: Some(blake3) })
    }

    /// A file whose blake3 is already known (a dataset part, from its manifest).
    pub fn known(path: &Path, role: &str, size: u64, blake3: &str) -> FileRecord {
        FileRecord { path: path.to_owned(), role: role.to_owned(), size, blake3: Some(blake3.to_owned()) }
    }
}

/// (total bytes, blake3) of a file or a directory tree.
pub fn hash_path(path: &Path) -> anyhow::Result<(u64, String)> {
    hash_path_limited(path, u64::MAX)
}

/// As [`hash_path`], but only regular files and directories (symbolic links are not followed,
/// devices and pipes are refused) and reading at most `limit` + 1 bytes in all: a record that
/// names `/dev/zero` or `/` costs no more than the size it recorded. Past the limit the hash
/// is of the bytes read, so it cannot match.
pub fn hash_path_limited(path: &Path, limit: u64) -> anyhow::Result<(u64, String)> {
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        return Ok((meta.len(), hash_file(path, limit.saturating_add(1))?));
    }
    anyhow::ensure!(meta.is_dir(), "{} is not a regular file or directory", path.display());
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.sort();
    let mut tree = blake3::Hasher::new();
    let mut total = 0u64;
    for rel in files {
        if total > limit {
            break;
        }
        let full = path.join(&rel);
        let size = std::fs::symlink_metadata(&full).with_context(|| format!("reading {}", full.display()))?.len();
        total = total.saturating_add(size);
        let name = rel.to_string_lossy();
        tree.update(&(name.len() as u64).to_le_bytes());
        tree.update(name.as_bytes());
        tree.update(&size.to_le_bytes());
        tree.update(hash_file(&full, limit.saturating_add(1))?.as_bytes());
    }
    Ok((total, tree.finalize().to_hex().to_string()))
}

fn hash_file(path: &Path, max_bytes: u64) -> anyhow::Result<String> {
    use std::io::Read;
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    hasher
        .update_reader(std::io::BufReader::with_capacity(1 << 20, file).take(max_bytes))
        .with_context(|| format!("hashing {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Regular files under `dir` (symbolic links and special files are skipped, not followed).
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        }
    }
    Ok(())
}

/// Total bytes under a path (a file's size, or a tree's).
pub fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut files = Vec::new();
    if collect_files(path, path, &mut files).is_err() {
        return 0;
    }
    files.iter().filter_map(|f| std::fs::symlink_metadata(path.join(f)).ok()).map(|m| m.len()).sum()
}

/// Records inputs, hashing them when their total is at most [`MAX_HASHED_INPUT_BYTES`].
pub fn input_records(paths: &[PathBuf], role: &str) -> anyhow::Result<Vec<FileRecord>> {
    let total: u64 = paths.iter().map(|p| size_of(p)).sum();
    paths
        .iter()
        .map(|p| {
            if total <= MAX_HASHED_INPUT_BYTES {
                FileRecord::of(p, role)
            } else {
                Ok(FileRecord { path: p.clone(), role: role.to_owned(), size: size_of(p), blake3: None })
            }
        })
        .collect()
}

pub struct RunRecord {
    path: PathBuf,
    value: Value,
}

/// The files of a dataset directory as outputs: the manifest, the rejects list and every part
/// (the parts' blake3 taken from the manifest, which the writer computed from the bytes).
pub fn dataset_outputs(dir: &Path) -> anyhow::Result<Vec<FileRecord>> {
    let manifest = bitkit_ingest::dataset::Manifest::read(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut out = vec![FileRecord::of(&dir.join("dataset.json"), "manifest")?];
    if dir.join("rejects.jsonl").is_file() {
        out.push(FileRecord::of(&dir.join("rejects.jsonl"), "rejects")?);
    }
    for part in &manifest.parts {
        out.push(FileRecord::known(&dir.join(&part.file), "part", part.bytes, &part.blake3));
    }
    Ok(out)
}

/// Run records are small (a dataset's record lists its shards and parts): anything larger is
/// refused rather than read.
const MAX_RECORD_BYTES: u64 = 256 << 20;

/// Reads a run record.
pub fn read(path: &Path) -> anyhow::Result<Value> {
    use std::io::Read;
    let file = if path.is_dir() { path.join("run.json") } else { path.to_owned() };
    let meta = std::fs::symlink_metadata(&file).with_context(|| format!("reading {}", file.display()))?;
    anyhow::ensure!(meta.is_file(), "{} is not a regular file", file.display());
    let mut bytes = Vec::new();
    std::fs::File::open(&file)
        .and_then(|f| f.take(MAX_RECORD_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", file.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_RECORD_BYTES,
        "{}: larger than {MAX_RECORD_BYTES} bytes: not a run record",
        file.display()
    );
    let value: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a run record", file.display()))?;
    anyhow::ensure!(
        value["schema"] == "bitkit.run/1",
        "{}: not a bitkit run record (schema {})",
        file.display(),
        value["schema"]
    );
    Ok(value)
}

impl RunRecord {
    /// Starts a record at `dir/run.json` and writes it (status "running"), so a killed run is
    /// visible as such.
    pub fn start(dir: &Path, command: &str, config: Value, inputs: Vec<FileRecord>) -> anyhow::Result<RunRecord> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let record = RunRecord::begin(dir, command, config, inputs);
        record.write()?;
        Ok(record)
    }

    /// Starts a record in memory only: written by [`RunRecord::finish`] (ingest, whose output
    /// directory may hold the complete dataset of an earlier run until this one succeeds).
    pub fn begin(dir: &Path, command: &str, config: Value, inputs: Vec<FileRecord>) -> RunRecord {
        let value = json!({
            "schema": "bitkit.run/1",
            "bitkit_version": env!("CARGO_PKG_VERSION"),
            "git_revision": option_env!("BITKIT_GIT_REV").unwrap_or("unknown"),
            "command": command,
            "argv": std::env::args().collect::<Vec<_>>(),
            "cwd": std::env::current_dir().ok(),
            "config": config,
            "host": host(),
            "inputs": inputs,
            "outputs": [],
            "counts": {},
            "started": rfc3339(SystemTime::now()),
            "ended": null,
            "status": "running",
            "exit_code": null,
        });
        RunRecord { path: dir.join("run.json"), value }
    }

    /// Ends a record whose command failed.
    pub fn fail(self, error: &anyhow::Error) -> anyhow::Result<()> {
        let mut record = self;
        record.set("error", json!(format!("{error:#}")));
        record.finish("failed", 1, Vec::new(), json!({}))
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.value[key] = value;
    }

    /// Ends the record: outputs hashed now, status and exit code.
    pub fn finish(
        mut self,
        status: &str,
        exit_code: u8,
        outputs: Vec<FileRecord>,
        counts: Value,
    ) -> anyhow::Result<()> {
        self.value["outputs"] = serde_json::to_value(outputs)?;
        self.value["counts"] = counts;
        self.value["ended"] = json!(rfc3339(SystemTime::now()));
        self.value["status"] = json!(status);
        self.value["exit_code"] = json!(exit_code);
        self.write()
    }

    fn write(&self) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut bytes = serde_json::to_vec_pretty(&self.value)?;
        bytes.push(b'\n');
        Ok(bitkit_ingest::dataset::manifest::write_atomic(&self.path, &bytes)?)
    }
}

fn host() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned())
    });
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_owned());
    // GPUs as the NVIDIA driver lists them (no CUDA initialisation needed).
    let gpus: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("information")).ok())
        .filter_map(|info| info.lines().find(|l| l.starts_with("Model:")).map(|l| l[6..].trim().to_owned()))
        .collect();
    json!({
        "gpus": gpus,
        "hostname": hostname,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// UTC time as `2026-11-27T17:20:05Z` (civil-from-days, Howard Hinnant's algorithm).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_791_605);
        assert_eq!(rfc3339(t), "2026-11-27T15:00:05Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
