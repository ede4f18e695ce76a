//! `run.json`: the run record every writing command leaves beside its output (one schema,
//! `bitkit.run/1`): version and git revision, the command line and resolved configuration,
//! host facts, every input and output with its size and blake3, counts, start and end times,
//! and the exit status. Written at the start (status "running") and rewritten at the end, so a
//! killed run is visible as such.

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One file the command read or wrote.
#[derive(Debug, Clone, Serialize)]
pub struct FileRecord {
    pub path: PathBuf,
    pub role: String,
    pub size: u64,
    pub blake3: String,
}

impl FileRecord {
    /// Hashes `path` (a file; for a dataset directory pass its `dataset.json`, which holds the
    /// blake3 of every part).
    pub fn of(path: &Path, role: &str) -> anyhow::Result<FileRecord> {
        let mut hasher = blake3::Hasher::new();
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        hasher
            .update_reader(std::io::BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("hashing {}", path.display()))?;
        let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        Ok(FileRecord {
            path: path.to_owned(),
            role: role.to_owned(),
            size,
            blake3: hasher.finalize().to_hex().to_string(),
        })
    }
}

pub struct RunRecord {
    path: PathBuf,
    value: Value,
}

impl RunRecord {
    /// Starts a record at `dir/run.json`.
    pub fn start(dir: &Path, command: &str, config: Value, inputs: Vec<FileRecord>) -> anyhow::Result<RunRecord> {
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
        let record = RunRecord { path: dir.join("run.json"), value };
        record.write()?;
        Ok(record)
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
        let tmp = self.path.with_extension("json.tmp");
        let mut bytes = serde_json::to_vec_pretty(&self.value)?;
        bytes.push(b'\n');
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))
    }
}

fn host() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned())
    });
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_owned());
    json!({
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
