//! The unit that flows from a shard reader to the dataset writer.
//!
//! A [`ShardReader`] walks one shard sequentially (no seeking inside the stream) and yields
//! [`RawRecord`]s: the framing is checked, the payload is not yet interpreted. The pipeline then
//! turns each raw record into a [`SourceRecord`] on a rayon worker ([`crate::formats::decode_raw`]),
//! so expensive per-record work (CRC of a TFRecord payload, protobuf parsing, probing,
//! hashing) runs in parallel while the reader stays a cheap, ordered, bounded stream.
//!
//! Problems are values: a reader yields `Err(RecordError)` for a record it cannot frame and
//! either goes on (the damage is local) or ends the stream (it lost its place).

use bytes::Bytes;
use std::fmt;

/// Labels as a reader finds them, before they are mapped to class ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawLabel {
    /// A class name (WordNet id or folder name), mapped through the class list.
    ClassName(String),
    /// Integer class ids as stored in the source (before `--label-offset`).
    Ids(Vec<i64>),
    /// A label that still has to be parsed from a side file (WebDataset `.cls`, `.json`,
    /// `.txt`): extension (lowercase, without dot) and its bytes.
    SideFile { extension: String, bytes: Vec<u8> },
    /// The source has no label for this record.
    Missing,
}

/// What a reader hands over for one record; interpreted later by the format's decoder.
#[derive(Debug, Clone)]
pub enum RawPayload {
    /// An image with its key, member path and label already known (tar-like formats, CIFAR).
    Image { key: String, path: Option<String>, bytes: Bytes, label: RawLabel },
    /// A TFRecord payload (a serialized `tf.train.Example`) whose data CRC has not been
    /// checked yet; `masked_data_crc` is the stored (masked) CRC32C of `data`.
    TfRecord { data: Bytes, masked_data_crc: u32 },
}

/// One framed record of a shard.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Record index inside the shard (0-based; counts every record the reader framed,
    /// rejected ones included). Stored as `source_index`.
    pub index: u64,
    /// Byte offset of the record's start in the (decompressed) shard stream.
    pub offset: u64,
    pub payload: RawPayload,
}

/// A record ready for probing and writing: key, bytes and labels resolved to class ids.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub index: u64,
    pub offset: u64,
    pub key: String,
    /// File or member name in the source (`image.path`); TFRecord: `image/filename`.
    pub path: Option<String>,
    /// The encoded image: a view of the reader's buffer (a TFRecord payload's image is not
    /// copied out of the record).
    pub bytes: Bytes,
    /// Class ids, first = primary. Empty when the source has no label.
    pub labels: Vec<i64>,
}

/// Why one record (or a whole shard, when `index` is `None`) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Record index inside the shard, when the reader got that far.
    pub index: Option<u64>,
    /// Byte offset inside the shard stream, when known.
    pub offset: Option<u64>,
    /// Member name / file name / key, when known.
    pub name: Option<String>,
    pub kind: RejectKind,
    /// Human-readable reason, naming what was expected and what was found.
    pub reason: String,
}

/// Machine-readable reject classes (the `kind` field of `rejects.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// The shard could not be opened or read at all.
    ShardUnreadable,
    /// The container ended in the middle of a record (tar, TFRecord, CIFAR).
    Truncated,
    /// A length/size field is inconsistent or exceeds the configured limit.
    BadLength,
    /// A stored checksum does not match (TFRecord length or data CRC, tar header checksum).
    BadChecksum,
    /// The record's structure cannot be parsed (protobuf, JSON label, tar header).
    Malformed,
    /// A required field is missing (image key of an Example, image member of a sample).
    MissingField,
    /// The label is missing, unparsable or not in the class list.
    BadLabel,
    /// The image bytes are empty.
    EmptyImage,
    /// The bytes are not an image format bitkit recognises.
    NotAnImage,
    /// The image header cannot be parsed or declares impossible dimensions.
    BadImageHeader,
    /// The image declares more pixels than `--max-pixels` (decompression-bomb guard).
    TooManyPixels,
    /// Re-encoding (`--max-side`) failed to decode or encode the image.
    ReencodeFailed,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::ShardUnreadable => "shard_unreadable",
            RejectKind::Truncated => "truncated",
            RejectKind::BadLength => "bad_length",
            RejectKind::BadChecksum => "bad_checksum",
            RejectKind::Malformed => "malformed",
            RejectKind::MissingField => "missing_field",
            RejectKind::BadLabel => "bad_label",
            RejectKind::EmptyImage => "empty_image",
            RejectKind::NotAnImage => "not_an_image",
            RejectKind::BadImageHeader => "bad_image_header",
            RejectKind::TooManyPixels => "too_many_pixels",
            RejectKind::ReencodeFailed => "reencode_failed",
        }
    }
}

impl RecordError {
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        RecordError { index: None, offset: None, name: None, kind, reason: reason.into() }
    }
    pub fn at(mut self, index: u64, offset: u64) -> Self {
        self.index = Some(index);
        self.offset = Some(offset);
        self
    }
    pub fn with_index(mut self, index: u64) -> Self {
        self.index = Some(index);
        self
    }
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(index) = self.index {
            write!(f, "record {index}")?;
        } else {
            write!(f, "shard")?;
        }
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        write!(f, ": {}: {}", self.kind.as_str(), self.reason)
    }
}

impl std::error::Error for RecordError {}

/// A sequential reader of one shard.
///
/// Implementations never panic and never allocate more than `max_record_bytes` (plus a
/// constant) for one record, whatever the input declares. After yielding an error they lost
/// their place at, they return `None`.
pub trait ShardReader: Send {
    fn next_record(&mut self) -> Option<Result<RawRecord, RecordError>>;

    /// Bytes consumed from the underlying (decompressed) stream so far: progress reporting.
    fn bytes_read(&self) -> u64;
}
