//! Run checkpoints: `RUN/checkpoints/step-NNNNNNN/` holding `model.safetensors`,
//! `momentum.safetensors` and `state.json` (the step, the loader position, the weight hash and
//! the hash of the configuration that produced it). A checkpoint is written into a temporary
//! directory and renamed into place when complete, so a directory named `step-*` is always a
//! whole checkpoint; an interrupted write leaves only a `.tmp` directory, removed next time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::TrainError;
use crate::weights::{read_safetensors, save_safetensors};

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    /// Optimizer updates done; training resumes at this update.
    pub step: u64,
    /// Loader batches consumed (micro-batches): the loader resumes here.
    pub loader_step: u64,
    pub variant: String,
    pub classes: i64,
    /// blake3 of the parameters ([`crate::weights::Model::weight_hash`]).
    pub weights: String,
    /// blake3 of the training configuration that determines the result.
    pub config_hash: String,
    /// The loader's seed: with `loader_step` it is the whole random state (every crop, flip,
    /// order and MixUp draw is a pure function of them; nothing else draws random numbers).
    pub seed: u64,
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

pub fn checkpoint_dir(run: &Path, step: u64) -> PathBuf {
    checkpoints_dir(run).join(format!("step-{step:07}"))
}

/// Writes a checkpoint atomically and returns its directory.
pub fn save(
    run: &Path,
    state: &CheckpointState,
    params: &[(String, Tensor)],
    momentum: &[(String, Tensor)],
) -> Result<PathBuf, TrainError> {
    let dir = checkpoint_dir(run, state.step);
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    save_safetensors(params, &tmp.join("model.safetensors"))?;
    save_safetensors(momentum, &tmp.join("momentum.safetensors"))?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::write(tmp.join("state.json"), json).map_err(|e| TrainError::io(tmp.join("state.json"), e))?;
    for name in ["model.safetensors", "momentum.safetensors", "state.json"] {
        let f = std::fs::File::open(tmp.join(name)).map_err(|e| TrainError::io(tmp.join(name), e))?;
        f.sync_all().map_err(|e| TrainError::io(tmp.join(name), e))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
    Ok(dir)
}

/// Complete checkpoints of a run, oldest first.
pub fn list(run: &Path) -> Result<Vec<(u64, PathBuf)>, TrainError> {
    let dir = checkpoints_dir(run);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if entry.path().join("state.json").is_file() {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes all but the newest `keep` checkpoints (and stale temporary directories).
pub fn prune(run: &Path, keep: usize) -> Result<(), TrainError> {
    let all = list(run)?;
    for (_, path) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        std::fs::remove_dir_all(path).map_err(|e| TrainError::io(path, e))?;
    }
    Ok(())
}

/// A loaded checkpoint.
pub struct Loaded {
    pub dir: PathBuf,
    pub state: CheckpointState,
    pub params: Vec<(String, Tensor)>,
    pub momentum: Vec<(String, Tensor)>,
}

pub fn read_state(dir: &Path) -> Result<CheckpointState, TrainError> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint { path, reason: e.to_string() })
}

pub fn load(dir: &Path) -> Result<Loaded, TrainError> {
    let state = read_state(dir)?;
    let params = read_safetensors(&dir.join("model.safetensors"))?.tensors.into_iter().collect();
    let momentum = read_safetensors(&dir.join("momentum.safetensors"))?.tensors.into_iter().collect();
    Ok(Loaded { dir: dir.to_owned(), state, params, momentum })
}

/// The weights file a `--init PATH` names: a .npz/.safetensors file as is, a checkpoint
/// directory's `model.safetensors`, or a run directory's final model (else its newest
/// checkpoint).
pub fn resolve_weights(path: &Path) -> Result<PathBuf, TrainError> {
    if path.is_file() {
        return Ok(path.to_owned());
    }
    if path.join("model.safetensors").is_file() {
        return Ok(path.join("model.safetensors"));
    }
    if let Some((_, dir)) = list(path)?.pop() {
        return Ok(dir.join("model.safetensors"));
    }
    Err(TrainError::Weights {
        path: path.to_owned(),
        reason: "not a weights file (.npz, .safetensors), a checkpoint or a run directory with one".into(),
    })
}
