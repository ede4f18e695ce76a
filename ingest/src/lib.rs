//! bitkit-ingest: image shards in, the bitkit Parquet dataset out.
//!
//! - [`record`]: [`record::RawRecord`] (what a shard reader frames), [`record::SourceRecord`]
//!   (what the writer stores) and [`record::RecordError`] (a reject, with location).
//! - Shard readers, one per format: [`tar`] (ImageNet-21k per-synset tars, flat tars),
//!   [`webdataset`], [`tfrecord`] + [`example`] (TFRecord framing and `tf.train.Example`),
//!   [`folder`] (ImageFolder trees), [`cifar`] (CIFAR-10/100 binary batches). [`formats`]
//!   dispatches on [`formats::Format`].
//! - [`image`]: magic-byte sniffing, header probing (no decode), the shared decode path and
//!   the optional `--max-side` re-encode.
//! - [`dataset`]: the dataset format of DESIGN §2: schema, Parquet writer, manifest, reader.
//! - [`plan`]: inputs → ordered shard list, worker split, class list.
//! - [`pipeline`]: the streaming, resumable, deterministic ingest driver; [`merge`] joins the
//!   outputs of `--worker-index` runs.

pub mod cifar;
pub mod classes;
pub mod compression;
pub mod dataset;
pub mod error;
pub mod example;
pub mod folder;
pub mod formats;
pub mod image;
pub mod merge;
pub mod pipeline;
pub mod plan;
pub mod record;
pub mod source;
pub mod tar;
pub mod tfrecord;
pub mod webdataset;

pub use error::{Error, Result};
pub use record::{RawLabel, RawPayload, RawRecord, RecordError, RejectKind, ShardReader, SourceRecord};

/// Settings every shard reader honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReaderConfig {
    /// Largest record (tar member, TFRecord payload, image file) read into memory; larger ones
    /// are rejected without being buffered, so memory stays bounded whatever a header claims.
    pub max_record_bytes: u64,
    /// Read uncompressed shards through memory maps (see [`source`]); off: `read` them.
    /// Does not change the output.
    #[serde(default = "mmap_default")]
    pub mmap: bool,
}

fn mmap_default() -> bool {
    true
}

/// 256 MiB: far above any real image (ImageNet-21k's largest JPEG is ~15 MB), far below memory.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 256 << 20;

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig { max_record_bytes: DEFAULT_MAX_RECORD_BYTES, mmap: true }
    }
}
