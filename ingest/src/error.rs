//! Fatal errors of the ingest library (bad configuration, output I/O). A bad *input record*
//! is not an error here but a [`crate::RecordError`], written to `rejects.jsonl`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parquet file {}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("building Arrow batch for {}", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    /// The Parquet or Arrow decoder gave up on damaged bytes (it panicked; the panic was
    /// caught and is reported here instead of taking the process down).
    #[error("{}: corrupt Parquet file ({reason})", path.display())]
    CorruptPart { path: PathBuf, reason: String },
    #[error("{}: line {line}: {reason}", path.display())]
    BadClassList { path: PathBuf, line: usize, reason: String },
    #[error("input {input}: {reason}")]
    BadInput { input: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("{source_name}: {error} (--strict makes the first reject fatal)")]
    StrictReject { source_name: String, error: crate::RecordError },
    #[error("{}: {reason}", path.display())]
    Resume { path: PathBuf, reason: String },
}
