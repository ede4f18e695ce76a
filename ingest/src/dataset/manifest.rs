//! `dataset.json` (the manifest) and `rejects.jsonl`.
//!
//! The manifest holds no wall-clock time, host name or absolute path: the same inputs and
//! options give the same bytes (timings go to the run record and stderr). Maps are `BTreeMap`
//! and lists are in input order, so serialization is deterministic.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub const MANIFEST_FILE: &str = "dataset.json";
pub const REJECTS_FILE: &str = "rejects.jsonl";
/// Version of the dataset format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

pub type PartInfo = super::writer::WrittenPart;

/// Counts of one input shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceStats {
    /// Shard name relative to the ingest root (the `source` column).
    pub path: String,
    /// Size of the shard file (or outer-tar member) in bytes.
    pub bytes: u64,
    pub records_read: u64,
    pub written: u64,
    pub rejected: u64,
}

/// One line of `rejects.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectEntry {
    pub source: String,
    /// Record index in the shard; null when the whole shard failed before any record.
    pub index: Option<u64>,
    /// Byte offset in the (decompressed) shard stream, when known.
    pub offset: Option<u64>,
    /// Member name, file name or key, when known.
    pub name: Option<String>,
    pub kind: crate::RejectKind,
    pub reason: String,
}

impl RejectEntry {
    pub fn from_error(source: &str, error: &crate::RecordError) -> Self {
        RejectEntry {
            source: source.to_string(),
            index: error.index,
            offset: error.offset,
            name: error.name.clone(),
            kind: error.kind,
            reason: error.reason.clone(),
        }
    }
}

/// `dataset.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub bitkit_version: String,
    pub rows: u64,
    /// Class names by id; null when the source has integer labels without names.
    pub classes: Option<Vec<String>>,
    pub parts: Vec<PartInfo>,
    pub sources: Vec<SourceStats>,
    pub rejected: u64,
    pub rejects_by_kind: BTreeMap<String, u64>,
    /// The resolved ingest configuration (everything that affects the output bytes).
    pub config: serde_json::Value,
}

impl Manifest {
    /// Completes a dataset directory: writes `rejects.jsonl`, then `dataset.json` last (its
    /// presence marks the dataset complete). Row and reject counts are derived from `parts`
    /// and `rejects`.
    pub fn write_complete(
        dir: &Path,
        classes: Option<Vec<String>>,
        parts: Vec<PartInfo>,
        sources: Vec<SourceStats>,
        rejects: &[RejectEntry],
        config: serde_json::Value,
    ) -> Result<Self> {
        write_atomic(&dir.join(REJECTS_FILE), &rejects_jsonl(rejects))?;
        let mut rejects_by_kind = BTreeMap::new();
        for reject in rejects {
            *rejects_by_kind.entry(reject.kind.as_str().to_string()).or_insert(0) += 1;
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            bitkit_version: env!("CARGO_PKG_VERSION").to_string(),
            rows: parts.iter().map(|p| p.rows).sum(),
            classes,
            parts,
            sources,
            rejected: rejects.len() as u64,
            rejects_by_kind,
            config,
        };
        manifest.write(dir)?;
        Ok(manifest)
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::BadManifest { path: path.clone(), reason: e.to_string() })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(Error::BadManifest {
                path,
                reason: format!("format_version {} (this bitkit reads {FORMAT_VERSION})", manifest.format_version),
            });
        }
        // Parts live in the dataset directory: a name with a directory, `..` or an absolute
        // path would make readers open files elsewhere.
        for part in &manifest.parts {
            let mut components = Path::new(&part.file).components();
            let plain =
                matches!(components.next(), Some(std::path::Component::Normal(_))) && components.next().is_none();
            if !plain || part.file.ends_with('/') {
                return Err(Error::BadManifest {
                    path,
                    reason: format!("part {:?} is not a plain file name in the dataset directory", part.file),
                });
            }
        }
        Ok(manifest)
    }

    /// Writes `dataset.json` atomically (temporary file, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        text.push('\n');
        write_atomic(&dir.join(MANIFEST_FILE), text.as_bytes())
    }
}

/// Serializes rejects as JSON lines.
pub fn rejects_jsonl(rejects: &[RejectEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for reject in rejects {
        serde_json::to_writer(&mut out, reject).expect("a reject entry serializes to memory");
        out.push(b'\n');
    }
    out
}

/// Reads `rejects.jsonl`; a missing file means no rejects.
pub fn read_rejects(dir: &Path) -> Result<Vec<RejectEntry>> {
    let path = dir.join(REJECTS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Read { path, source }),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::BadManifest { path: path.clone(), reason: format!("line {}: {e}", n + 1) })
        })
        .collect()
}

/// Writes `path` under a temporary name in the same directory, fsyncs and renames it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    result.map_err(|source| Error::Write { path: temp.clone(), source })?;
    std::fs::rename(&temp, path).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}
