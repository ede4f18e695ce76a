//! The dedup stage's typed errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    /// A setting out of range.
    #[error("{0}")]
    Config(String),
    /// A test set's files were not found: names what was expected and where it looked.
    #[error("test set {name}: {expected} not found (looked in {})", looked_in.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    MissingTestSet { name: String, expected: String, looked_in: Vec<PathBuf> },
    /// A test set file exists but cannot be read as what it should be.
    #[error("test set {name}: {}: {reason}", path.display())]
    BadTestSet { name: String, path: PathBuf, reason: String },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The upstream dataset could not be read.
    #[error(transparent)]
    Dataset(#[from] bitkit_ingest::Error),
    /// A hash cache file is damaged.
    #[error("hash cache {}: {reason}", path.display())]
    BadCache { path: PathBuf, reason: String },
    /// Writing the pairs file failed.
    #[error("writing {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}
