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

pub mod index;
pub mod manifest;
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
