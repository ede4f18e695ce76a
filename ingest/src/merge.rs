//! `bitkit ingest merge OUT PART_DIRS...`: joins the datasets written by `--worker-index I
//! --num-workers N` runs into one.
//!
//! Workers take contiguous blocks of the shard list ([`crate::plan::WorkerSplit`]), so their
//! parts concatenated in worker order hold exactly the rows of a single run, in the same order.
//! Part files are hard-linked (copied across file systems), never rewritten: merging 300M
//! images costs seconds. Sources and rejects are concatenated; the manifest's config is the
//! workers' config without the `worker` field, as a single run would record it.

use crate::dataset::manifest::read_rejects;
use crate::dataset::{part_file_name, Manifest, MANIFEST_FILE};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// What `merge --json` prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MergeSummary {
    pub out: String,
    pub workers: usize,
    pub rows: u64,
    pub parts: usize,
    pub rejected: u64,
}

/// Merges worker outputs; `inputs` may be given in any order (they are sorted by worker index).
pub fn merge(out: &Path, inputs: &[PathBuf]) -> Result<MergeSummary> {
    if inputs.is_empty() {
        return Err(Error::Config("merge needs at least one worker output".into()));
    }
    let mut workers = Vec::with_capacity(inputs.len());
    for dir in inputs {
        let manifest = Manifest::read(dir)?;
        let worker = manifest.config.get("worker").cloned().unwrap_or(serde_json::Value::Null);
        let (index, count) =
            match (worker.get("index").and_then(|v| v.as_u64()), worker.get("count").and_then(|v| v.as_u64())) {
                (Some(i), Some(n)) => (i as usize, n as usize),
                _ => {
                    return Err(Error::BadManifest {
                        path: dir.join(MANIFEST_FILE),
                        reason: "not a worker output (ingest ran without --worker-index/--num-workers)".into(),
                    })
                }
            };
        workers.push((index, count, dir.clone(), manifest));
    }
    workers.sort_by_key(|w| w.0);
    let count = workers[0].1;
    let mut reference = workers[0].3.config.clone();
    reference["worker"] = serde_json::Value::Null;
    for (expected, (index, n, dir, manifest)) in workers.iter().enumerate() {
        let mut config = manifest.config.clone();
        config["worker"] = serde_json::Value::Null;
        if *n != count || config != reference || manifest.classes != workers[0].3.classes {
            return Err(Error::BadManifest {
                path: dir.join(MANIFEST_FILE),
                reason: "this worker ran with other options, classes or --num-workers than the others".into(),
            });
        }
        if *index != expected {
            let reason = if *index < expected {
                format!("worker {index} is given twice")
            } else {
                format!("worker {expected} of {count} is missing")
            };
            return Err(Error::Config(reason));
        }
    }
    if workers.len() != count {
        return Err(Error::Config(format!(
            "{} of {count} worker outputs given; merge needs all of them",
            workers.len()
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Write { path: out.to_path_buf(), source })?;
    if out.join(MANIFEST_FILE).exists() {
        return Err(Error::Resume {
            path: out.join(MANIFEST_FILE),
            reason: "the merge output already holds a dataset".into(),
        });
    }

    let mut parts = Vec::new();
    let mut sources = Vec::new();
    let mut rejects = Vec::new();
    for (_, _, dir, manifest) in &workers {
        for part in &manifest.parts {
            let name = part_file_name(parts.len());
            let from = dir.join(&part.file);
            let to = out.join(&name);
            let temp = out.join(format!(".{name}.tmp"));
            let _ = std::fs::remove_file(&temp);
            if std::fs::hard_link(&from, &temp).is_err() {
                std::fs::copy(&from, &temp).map_err(|source| Error::Write { path: temp.clone(), source })?;
            }
            let size = std::fs::metadata(&temp).map_err(|source| Error::Read { path: temp.clone(), source })?.len();
            if size != part.bytes {
                return Err(Error::BadManifest {
                    path: from,
                    reason: format!("{} bytes on disk, the manifest says {}", size, part.bytes),
                });
            }
            std::fs::rename(&temp, &to).map_err(|source| Error::Write { path: to.clone(), source })?;
            let mut part = part.clone();
            part.file = name;
            parts.push(part);
        }
        sources.extend(manifest.sources.iter().cloned());
        rejects.extend(read_rejects(dir)?);
    }
    let classes = workers[0].3.classes.clone();
    let manifest = Manifest::write_complete(out, classes, parts, sources, &rejects, reference)?;
    Ok(MergeSummary {
        out: out.display().to_string(),
        workers: count,
        rows: manifest.rows,
        parts: manifest.parts.len(),
        rejected: manifest.rejected,
    })
}
