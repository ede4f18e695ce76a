//! Writing one Parquet part of a dataset.
//!
//! A part is written to `.part-NNNNN.parquet.tmp`, fsynced, hashed (blake3), and renamed to
//! `part-NNNNN.parquet` only when complete: a crash never leaves a file under a final name that
//! is not whole.
//!
//! Speed: the writer thread is the serial stage of ingest, so it does as little as possible.
//! Kernel writeback of each row group is started as soon as it is written (`sync_file_range`
//! on Linux), so the final fsync waits for little; the part's blake3 is computed after close on all
//! cores, while the fsync runs (measured: the in-line hash and fsync took
//! a third of the wall time of an ingest).
//!
//! Determinism: rows are buffered and handed to the Arrow writer in batches, and row groups are
//! closed, by rules that depend only on the rows written since the part began (counts and image
//! bytes), never on how upstream stages chunked the stream. A resumed run starts a part at the
//! same row as an uninterrupted run, so every part is byte-identical.

use super::schema::{dataset_schema, image_fields, Row, HUGGINGFACE_METADATA_KEY};
use crate::{Error, Result};
use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows handed to the Arrow writer at once (or fewer, see [`DEFAULT_BATCH_BYTES`]).
pub const DEFAULT_BATCH_ROWS: usize = 1024;
/// Image bytes handed to the Arrow writer at once: small enough for the allocator to recycle
/// (a 16 MiB batch was a fresh mapping, zero-filled by the kernel, every time).
pub const DEFAULT_BATCH_BYTES: u64 = 2 << 20;
/// Image bytes per row group: DESIGN §2 asks ~64-128 MB; HF's viewer rejects > 300 MB.
pub const DEFAULT_ROW_GROUP_BYTES: u64 = 128 << 20;
/// Image bytes per part file: DESIGN §2 asks ~0.5-1 GB.
pub const DEFAULT_PART_BYTES: u64 = 1 << 30;
/// zstd level of the metadata columns: they are small; level 3 is zstd's default.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Layout settings of the parts; they change the bytes, so they are part of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriterSettings {
    pub row_group_bytes: u64,
    pub part_bytes: u64,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings { row_group_bytes: DEFAULT_ROW_GROUP_BYTES, part_bytes: DEFAULT_PART_BYTES }
    }
}

/// Parquet writer properties of every part: image bytes raw (JPEG/PNG are entropy coded
/// already), no dictionary and no statistics on them (min/max of JPEG bytes are useless);
/// zstd on the small columns.
pub fn writer_properties(class_names: Option<&[String]>, with_original_hash: bool) -> WriterProperties {
    let image_bytes = ColumnPath::new(vec!["image".into(), "bytes".into()]);
    let content_hash = ColumnPath::new(vec!["content_hash".into()]);
    let original_hash = ColumnPath::new(vec!["original_hash".into()]);
    let key = ColumnPath::new(vec!["key".into()]);
    let zstd = Compression::ZSTD(ZstdLevel::try_new(DEFAULT_ZSTD_LEVEL).expect("3 is a valid zstd level"));
    let mut builder = WriterProperties::builder()
        .set_compression(zstd)
        // Bounded pages for big values, and a small batch so the page-size check runs often.
        .set_data_page_size_limit(1 << 20)
        .set_write_batch_size(64)
        .set_max_row_group_row_count(None)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            HUGGINGFACE_METADATA_KEY.to_string(),
            super::schema::huggingface_features_json(class_names, with_original_hash),
        )]))
        .set_column_compression(image_bytes.clone(), Compression::UNCOMPRESSED)
        .set_column_dictionary_enabled(image_bytes.clone(), false)
        .set_column_encoding(image_bytes.clone(), Encoding::PLAIN)
        .set_column_statistics_enabled(image_bytes, EnabledStatistics::None)
        .set_column_dictionary_enabled(key, false);
    for hash in [content_hash, original_hash] {
        builder = builder
            .set_column_compression(hash.clone(), Compression::UNCOMPRESSED)
            .set_column_dictionary_enabled(hash.clone(), false)
            .set_column_statistics_enabled(hash, EnabledStatistics::None);
    }
    builder.build()
}

/// A `Write` that counts what passes through it.
struct CountingWriter<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Asks the kernel to start writing back what has been written so far, without waiting.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; offset 0 / nbytes 0 = the whole file; the call only
    // schedules I/O and has no memory-safety preconditions.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) {}

/// blake3 of a file, read in blocks and hashed on all cores (no memory map: a mapped part would
/// count towards the process's resident memory).
fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut block = vec![0u8; HASH_BLOCK_BYTES];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update_rayon(&block[..n]);
    }
}

/// Large enough for blake3's multi-threaded hashing to pay off, small next to a row group.
const HASH_BLOCK_BYTES: usize = 4 << 20;

/// What a finished part looks like in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenPart {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// Writes one part file; see the module docs for the atomicity and determinism rules.
pub struct PartWriter {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: ArrowWriter<CountingWriter<BufWriter<File>>>,
    schema: Arc<arrow_schema::Schema>,
    pending: Vec<Row>,
    pending_bytes: u64,
    row_group_bytes: u64,
    settings: WriterSettings,
    with_original_hash: bool,
    rows: u64,
    image_bytes: u64,
}

impl PartWriter {
    /// Starts `dir/file_name` (written as a hidden temporary until [`PartWriter::finish`]).
    pub fn create(
        dir: &Path,
        file_name: &str,
        class_names: Option<&[String]>,
        with_original_hash: bool,
        settings: WriterSettings,
    ) -> Result<Self> {
        let final_path = dir.join(file_name);
        let temp_path = dir.join(format!(".{file_name}.tmp"));
        let file = File::create(&temp_path).map_err(|source| Error::Write { path: temp_path.clone(), source })?;
        let sink = CountingWriter { inner: BufWriter::with_capacity(1 << 20, file), bytes: 0 };
        let schema = Arc::new(dataset_schema(class_names, with_original_hash));
        let props = writer_properties(class_names, with_original_hash);
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props))
            .map_err(|source| Error::Parquet { path: temp_path.clone(), source })?;
        Ok(PartWriter {
            final_path,
            temp_path,
            writer,
            schema,
            pending: Vec::with_capacity(DEFAULT_BATCH_ROWS),
            pending_bytes: 0,
            row_group_bytes: 0,
            settings,
            with_original_hash,
            rows: 0,
            image_bytes: 0,
        })
    }

    /// Image bytes written to this part so far (the part-size rule counts these).
    pub fn image_bytes(&self) -> u64 {
        self.image_bytes
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the part has reached its target size (checked by the caller after each row).
    pub fn is_full(&self) -> bool {
        self.image_bytes >= self.settings.part_bytes
    }

    pub fn write_row(&mut self, row: Row) -> Result<()> {
        if row.original_hash.is_some() != self.with_original_hash {
            return Err(Error::Config(format!(
                "row {} has original_hash={} but the part was opened with original_hash={}",
                row.key,
                row.original_hash.is_some(),
                self.with_original_hash
            )));
        }
        let size = row.image_bytes.len() as u64;
        self.pending_bytes += size;
        self.image_bytes += size;
        self.rows += 1;
        self.pending.push(row);
        if self.pending.len() >= DEFAULT_BATCH_ROWS || self.pending_bytes >= DEFAULT_BATCH_BYTES {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = rows_to_batch(&self.pending, self.schema.clone(), self.with_original_hash)
            .map_err(|source| Error::Arrow { path: self.temp_path.clone(), source })?;
        self.writer.write(&batch).map_err(|source| Error::Parquet { path: self.temp_path.clone(), source })?;
        self.row_group_bytes += self.pending_bytes;
        self.pending.clear();
        self.pending_bytes = 0;
        if self.row_group_bytes >= self.settings.row_group_bytes {
            self.writer.flush().map_err(|source| Error::Parquet { path: self.temp_path.clone(), source })?;
            self.row_group_bytes = 0;
            start_writeback(self.writer.inner().inner.get_ref());
        }
        Ok(())
    }

    /// Writes the footer, fsyncs, renames to the final name; returns the manifest entry.
    pub fn finish(mut self) -> Result<WrittenPart> {
        self.write_pending()?;
        let temp_path = self.temp_path.clone();
        let sink = self.writer.into_inner().map_err(|source| Error::Parquet { path: temp_path.clone(), source })?;
        let CountingWriter { inner, bytes } = sink;
        let file = inner.into_inner().map_err(|e| Error::Write { path: temp_path.clone(), source: e.into_error() })?;
        let (synced, hashed) = std::thread::scope(|scope| {
            let sync = scope.spawn(|| file.sync_all());
            let hashed = hash_file(&temp_path);
            (sync.join().unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked"))), hashed)
        });
        synced.map_err(|source| Error::Write { path: temp_path.clone(), source })?;
        let hash = hashed.map_err(|source| Error::Read { path: temp_path.clone(), source })?;
        drop(file);
        std::fs::rename(&temp_path, &self.final_path)
            .map_err(|source| Error::Write { path: self.final_path.clone(), source })?;
        let file = self.final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(WrittenPart { file, rows: self.rows, bytes, blake3: hash.to_hex().to_string() })
    }

    /// Drops the temporary file (an abandoned part).
    pub fn abandon(self) {
        let temp = self.temp_path.clone();
        drop(self);
        let _ = std::fs::remove_file(temp);
    }
}

fn rows_to_batch(
    rows: &[Row],
    schema: Arc<arrow_schema::Schema>,
    with_original_hash: bool,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let image_total: usize = rows.iter().map(|r| r.image_bytes.len()).sum();
    let mut key = StringBuilder::with_capacity(n, n * 32);
    let mut bytes = BinaryBuilder::with_capacity(n, image_total);
    let mut path = StringBuilder::with_capacity(n, n * 32);
    let mut label = Int64Builder::with_capacity(n);
    let mut labels = ListBuilder::with_capacity(Int64Builder::with_capacity(n), n);
    let mut width = Int32Builder::with_capacity(n);
    let mut height = Int32Builder::with_capacity(n);
    let mut format = StringBuilder::with_capacity(n, n * 4);
    let mut content_hash = FixedSizeBinaryBuilder::with_capacity(n, 32);
    let mut source = StringBuilder::with_capacity(n, n * 16);
    let mut source_index = Int64Builder::with_capacity(n);
    let mut original_hash = FixedSizeBinaryBuilder::with_capacity(if with_original_hash { n } else { 0 }, 32);
    for row in rows {
        key.append_value(&row.key);
        bytes.append_value(&row.image_bytes);
        path.append_option(row.image_path.as_deref());
        label.append_option(row.labels.first().copied());
        if row.labels.is_empty() {
            labels.append_null();
        } else {
            labels.values().append_slice(&row.labels);
            labels.append(true);
        }
        width.append_value(row.width);
        height.append_value(row.height);
        format.append_value(row.format);
        content_hash.append_value(row.content_hash)?;
        source.append_value(&*row.source);
        source_index.append_value(row.source_index);
        if let Some(hash) = row.original_hash {
            original_hash.append_value(hash)?;
        }
    }
    let image = StructArray::try_new(
        image_fields(),
        vec![Arc::new(bytes.finish()) as ArrayRef, Arc::new(path.finish()) as ArrayRef],
        None::<NullBuffer>,
    )?;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(image),
        Arc::new(label.finish()),
        Arc::new(labels.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(format.finish()),
        Arc::new(content_hash.finish()),
        Arc::new(source.finish()),
        Arc::new(source_index.finish()),
    ];
    if with_original_hash {
        columns.push(Arc::new(original_hash.finish()));
    }
    RecordBatch::try_new(schema, columns)
}
