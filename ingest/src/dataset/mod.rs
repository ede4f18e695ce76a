//! The bitkit dataset format, version 1 (DESIGN §2): the contract between stages.
//!
//! ```text
//! DATASET/
//!   dataset.json            manifest: classes, parts (rows, bytes, blake3), sources, config
//!   part-00000.parquet ...  rows in input order; `image.bytes` stored raw
//!   rejects.jsonl           one JSON object per rejected record: source, index, offset, reason
//! ```
//! - [`schema`]: the Arrow schema (exact types Hugging Face `datasets` recognises) and the
//!   `huggingface` features metadata.
//! - [`writer`]: [`writer::PartWriter`], one Parquet part written column by column under a
//!   temporary name, fsynced and hashed, renamed when complete.
//! - [`manifest`]: `dataset.json` and `rejects.jsonl`.
//! - [`reader`]: reading rows back in order (every other stage reads datasets through it).
//! - [`index`]: random access for the training loader: every image's file offset and the
//!   per-row metadata, in memory.

mod image_pages;
pub mod index;
pub mod manifest;
mod part_hash;
mod part_sink;
pub mod reader;
pub mod schema;
pub mod writer;

pub use index::{DatasetIndex, ImageLocation, PartFiles};
pub use manifest::{Manifest, PartInfo, RejectEntry, SourceStats, MANIFEST_FILE, REJECTS_FILE};
pub use reader::{DatasetReader, DatasetRow};
pub use schema::{dataset_schema, Row};
pub use writer::{PartWriter, WriterSettings};

/// File name of part `n`.
pub fn part_file_name(n: usize) -> String {
    format!("part-{n:05}.parquet")
}

/// Opens a part file for reading, refusing anything that is not a regular file (a FIFO named
/// as a part would block `open` forever).
pub(crate) fn open_part(path: &std::path::Path) -> crate::Result<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        return Err(crate::Error::BadManifest {
            path: path.to_path_buf(),
            reason: "a part must be a regular file".into(),
        });
    }
    std::fs::File::open(path).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })
}

/// Runs Parquet/Arrow decoding that may panic on damaged bytes (arrow-rs asserts on some
/// corrupt metadata and pages) and turns a panic into [`crate::Error::CorruptPart`].
pub(crate) fn guard_decode<T>(path: &std::path::Path, f: impl FnOnce() -> crate::Result<T>) -> crate::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the decoder panicked".into());
            Err(crate::Error::CorruptPart { path: path.to_path_buf(), reason })
        }
    }
}
