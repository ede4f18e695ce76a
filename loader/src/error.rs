//! The loader's typed errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// A setting out of range or inconsistent with the dataset.
    #[error("{0}")]
    Config(String),
    /// The dataset could not be opened or indexed.
    #[error(transparent)]
    Dataset(#[from] bitkit_ingest::Error),
    /// An exclusion list could not be read.
    #[error("reading exclusion list {}: {source}", path.display())]
    Exclude { path: PathBuf, source: std::io::Error },
    /// Every sample of the order failed to decode: nothing to replace a bad one with.
    #[error("no decodable image left to replace {key}: {reason}")]
    NoValidSample { key: String, reason: String },
    /// A PNG grid could not be written.
    #[error("writing {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}
