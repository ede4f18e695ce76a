//! Typed errors of the trainer.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("unknown model {name:?} (known: {known})")]
    UnknownVariant { name: String, known: String },
    #[error("device {spec:?}: {reason}")]
    Device { spec: String, reason: String },
    #[error("{path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Loader(#[from] bitkit_loader::LoaderError),
    #[error(transparent)]
    Ingest(#[from] bitkit_ingest::Error),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("interrupted")]
    Interrupted,
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> TrainError {
        TrainError::Io { path: path.into(), source }
    }
}
