//! Writing one Parquet part of a dataset.
//!
//! A part is written to `.part-NNNNN.parquet.tmp`, fsynced, hashed (blake3), and renamed to
//! `part-NNNNN.parquet` only when complete: a crash never leaves a file under a final name that
//! is not whole.
//!
//! Speed: writing is the serial stage of ingest, so it does as little as possible.
//! - Row groups are written on a thread of their own ([`PartWriter`]) while the next fills.
//! - Small columns go through parquet's column writers; the `image.bytes` pages are framed by
//!   hand ([`super::image_pages`]) and the images go to the file with `writev` as the views
//!   they arrived as (of a mapped shard, [`crate::source`]): no copy in user space.
//! - The part's blake3 is computed on worker threads as it is written, leaf by leaf of
//!   BLAKE3's tree ([`super::part_hash`]), not by reading the file back after it is closed.
//! - Kernel writeback of each row group is started as soon as it is written
//!   (`sync_file_range`, on a thread of its own), so the final fsync waits for little.
//!
//! Measured on the 4,000-image benchmark (docs/ingest.md): the write thread went from 197 ms
//! of samples (parquet's encoder copying images, hashing, writeback) to ~90 ms (the kernel's
//! copy into the page cache and ext4's bookkeeping).
//!
//! Determinism: row groups are cut by a rule that depends only on the rows written since the
//! part began (image bytes), never on how upstream stages chunked the stream. A resumed run
//! starts a part at the same row as an uninterrupted run, so every part is byte-identical.
//! The file carries the same `ARROW:schema` as an `ArrowWriter` file, so Arrow readers see the
//! exact schema, and parquet's own writer writes the footer and the page index.

use super::image_pages::{frame_image_chunk, FramedChunk, Placeholder};
use super::part_sink::{ClosedSink, PartSink};
use super::schema::{dataset_schema, Row, HUGGINGFACE_METADATA_KEY};
use crate::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Leaf index of `image.bytes` in the dataset schema (after `key`).
const IMAGE_BYTES_LEAF: usize = 1;
/// Image bytes per row group: DESIGN §2 asks ~64-128 MB; HF's viewer rejects > 300 MB.
pub const DEFAULT_ROW_GROUP_BYTES: u64 = 64 << 20;
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
        .set_data_page_size_limit(1 << 20)
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

/// What a finished part looks like in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenPart {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

type FileWriter = SerializedFileWriter<PartSink>;

/// The thread that encodes and writes a part's row groups (see [`PartWriter`]).
struct Flusher {
    /// A rendezvous channel: a row group is handed over only when the flusher is free, so at
    /// most two row groups are in memory (the one being written, the one being filled).
    groups: Sender<Vec<Row>>,
    thread: std::thread::JoinHandle<Result<FileWriter>>,
    sink: PartSink,
}

/// Writes one part file; see the module docs for the atomicity and determinism rules.
///
/// Row groups are encoded and written on a thread of their own while the next one fills:
/// written on the ingest's writer thread, each 64 MiB row group stalled the readers for its
/// encoding, write and hash (the pipeline ran on about one of two cores).
pub struct PartWriter {
    final_path: PathBuf,
    temp_path: PathBuf,
    flusher: Option<Flusher>,
    /// Rows of the row group in progress (up to `row_group_bytes` of images).
    pending: Vec<Row>,
    pending_bytes: u64,
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
        let parquet_error = |source| Error::Parquet { path: temp_path.clone(), source };
        let schema = dataset_schema(class_names, with_original_hash);
        let mut props = writer_properties(class_names, with_original_hash);
        let descriptor = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&schema)
            .map_err(parquet_error)?;
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let write_error = |source| Error::Write { path: temp_path.clone(), source };
        let file = File::create(&temp_path).map_err(write_error)?;
        let sink = PartSink::new(file).map_err(write_error)?;
        let writer = SerializedFileWriter::new(sink.clone(), descriptor.root_schema_ptr(), Arc::new(props))
            .map_err(parquet_error)?;
        let (groups, received) = crossbeam_channel::bounded::<Vec<Row>>(0);
        let path = temp_path.clone();
        let image_sink = sink.clone();
        let thread = std::thread::Builder::new()
            .name("bitkit-part-writer".into())
            .spawn(move || flush_row_groups(writer, image_sink, received, &path, with_original_hash))
            .map_err(write_error)?;
        Ok(PartWriter {
            final_path,
            temp_path,
            flusher: Some(Flusher { groups, thread, sink }),
            pending: Vec::new(),
            pending_bytes: 0,
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
        if self.pending_bytes >= self.settings.row_group_bytes {
            self.hand_over_row_group()?;
        }
        Ok(())
    }

    /// Gives the pending rows to the flusher as one row group; waits while it writes the
    /// previous one.
    fn hand_over_row_group(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let sent = match &self.flusher {
            Some(flusher) => flusher.groups.send(rows).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The flusher stopped: its error says why.
        match self.join_flusher() {
            Err(error) => Err(error),
            Ok(_) => Err(Error::Write {
                path: self.temp_path.clone(),
                source: std::io::Error::other("the part's writer thread stopped early"),
            }),
        }
    }

    /// Closes the hand-over channel and waits for the flusher to write what it holds.
    fn join_flusher(&mut self) -> Result<FileWriter> {
        let Some(Flusher { groups, thread, sink: _ }) = self.flusher.take() else {
            return Err(Error::Write {
                path: self.temp_path.clone(),
                source: std::io::Error::other("the part's writer thread is gone"),
            });
        };
        drop(groups);
        thread.join().unwrap_or_else(|_| {
            Err(Error::Write {
                path: self.temp_path.clone(),
                source: std::io::Error::other("the part's writer thread panicked"),
            })
        })
    }

    /// Writes the footer, fsyncs, renames to the final name; returns the manifest entry.
    pub fn finish(mut self) -> Result<WrittenPart> {
        self.hand_over_row_group()?;
        let sink = match &self.flusher {
            Some(flusher) => flusher.sink.clone(),
            None => return Err(Error::Write { path: self.temp_path.clone(), source: closed_part() }),
        };
        let mut writer = self.join_flusher()?;
        let temp_path = self.temp_path.clone();
        let write_error = |source| Error::Write { path: temp_path.clone(), source };
        let parquet_error = |source| Error::Parquet { path: temp_path.clone(), source };
        writer.finish().map_err(parquet_error)?;
        let parquet_bytes = writer.bytes_written() as u64;
        drop(writer);
        let ClosedSink { file, bytes, blake3 } = sink.close().map_err(write_error)?;
        if bytes != parquet_bytes {
            return Err(write_error(std::io::Error::other(format!(
                "the part has {bytes} bytes but its Parquet writer counted {parquet_bytes}"
            ))));
        }
        file.sync_all().map_err(write_error)?;
        drop(file);
        std::fs::rename(&temp_path, &self.final_path)
            .map_err(|source| Error::Write { path: self.final_path.clone(), source })?;
        let file = self.final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(WrittenPart { file, rows: self.rows, bytes, blake3: blake3.to_hex().to_string() })
    }

    /// Drops the temporary file (an abandoned part).
    pub fn abandon(mut self) {
        self.pending.clear();
        let _ = self.join_flusher();
        let _ = std::fs::remove_file(&self.temp_path);
    }
}

/// The flusher thread: writes each row group it is handed, column by column; returns the file
/// writer when the channel closes (or the first error).
fn flush_row_groups(
    mut writer: FileWriter,
    sink: PartSink,
    groups: Receiver<Vec<Row>>,
    path: &Path,
    with_original_hash: bool,
) -> Result<FileWriter> {
    let parquet_error = |source| Error::Parquet { path: path.to_path_buf(), source };
    let image_column = writer.schema_descr().column(IMAGE_BYTES_LEAF);
    if image_column.path().string() != "image.bytes" {
        return Err(parquet_error(parquet::errors::ParquetError::General(format!(
            "leaf {IMAGE_BYTES_LEAF} of the schema is {}, not image.bytes",
            image_column.path()
        ))));
    }
    let page_bytes = writer.properties().data_page_size_limit();
    for rows in groups.iter() {
        let mut group = writer.next_row_group().map_err(parquet_error)?;
        write_columns(&mut group, &sink, &image_column, page_bytes, rows, with_original_hash).map_err(parquet_error)?;
        group.close().map_err(parquet_error)?;
        sink.start_writeback().map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
    }
    Ok(writer)
}

fn closed_part() -> std::io::Error {
    std::io::Error::other("the part's writer thread is gone")
}

/// Definition levels of the dataset's leaves (DESIGN §2 types, every field nullable):
/// top-level values 1 = present, 0 = null; `image.*` 2 = present, 1 = null field of a present
/// struct; `labels.list.item` 3 = an item, 0 = a null list (an empty label list is stored as
/// null), with repetition level 0 for a list's first item and 1 for the others.
const PRESENT: i16 = 1;
const IMAGE_FIELD_PRESENT: i16 = 2;
const IMAGE_FIELD_NULL: i16 = 1;
const LIST_ITEM: i16 = 3;
const LIST_NULL: i16 = 0;

/// Writes every leaf column of `rows`, in schema order.
fn write_columns(
    group: &mut SerializedRowGroupWriter<'_, PartSink>,
    sink: &PartSink,
    image_column: &ColumnDescPtr,
    page_bytes: usize,
    rows: Vec<Row>,
    with_original_hash: bool,
) -> parquet::errors::Result<()> {
    let n = rows.len();
    let all_present = vec![PRESENT; n];
    let mut keys = Vec::with_capacity(n);
    let mut images = Vec::with_capacity(n);
    let mut paths = Vec::with_capacity(n);
    let mut path_levels = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut label_levels = Vec::with_capacity(n);
    let mut items = Vec::with_capacity(n);
    let mut item_def = Vec::with_capacity(n);
    let mut item_rep = Vec::with_capacity(n);
    let mut widths = Vec::with_capacity(n);
    let mut heights = Vec::with_capacity(n);
    let mut formats = Vec::with_capacity(n);
    let mut content_hashes = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut source_indices = Vec::with_capacity(n);
    let mut original_hashes = Vec::with_capacity(if with_original_hash { n } else { 0 });
    for row in rows {
        let Row {
            key,
            image_bytes,
            image_path,
            labels: ids,
            width,
            height,
            format,
            content_hash,
            source,
            source_index,
            original_hash,
        } = row;
        keys.push(ByteArray::from(key.into_bytes()));
        images.push(image_bytes);
        match image_path {
            Some(path) => {
                paths.push(ByteArray::from(path.into_bytes()));
                path_levels.push(IMAGE_FIELD_PRESENT);
            }
            None => path_levels.push(IMAGE_FIELD_NULL),
        }
        match ids.first() {
            Some(&first) => {
                labels.push(first);
                label_levels.push(PRESENT);
            }
            None => label_levels.push(0),
        }
        if ids.is_empty() {
            item_def.push(LIST_NULL);
            item_rep.push(0);
        }
        for (i, id) in ids.into_iter().enumerate() {
            items.push(id);
            item_def.push(LIST_ITEM);
            item_rep.push(i16::from(i > 0));
        }
        widths.push(width);
        heights.push(height);
        formats.push(ByteArray::from(bytes::Bytes::from_static(format.as_bytes())));
        content_hashes.push(FixedLenByteArray::from(content_hash.to_vec()));
        sources.push(ByteArray::from(source.as_bytes().to_vec()));
        source_indices.push(source_index);
        if let Some(hash) = original_hash {
            original_hashes.push(FixedLenByteArray::from(hash.to_vec()));
        }
    }

    macro_rules! column {
        ($kind:ty, $values:expr, $def:expr, $rep:expr) => {{
            let Some(mut column) = group.next_column()? else {
                return Err(parquet::errors::ParquetError::General(
                    "the schema has fewer leaves than the dataset writes".into(),
                ));
            };
            column.typed::<$kind>().write_batch($values, $def, $rep)?;
            column.close()?;
        }};
    }
    column!(ByteArrayType, &keys, Some(&all_present), None);
    // The images: framed here and written beside the Parquet writer (see `part_sink`), then
    // registered with it through a placeholder of the same length.
    let FramedChunk { segments, close } = frame_image_chunk(image_column.clone(), images, page_bytes)?;
    let len = close.bytes_written;
    sink.write_segments(segments)?;
    sink.swallow(len)?;
    group.append_column(&Placeholder { len }, close)?;
    column!(ByteArrayType, &paths, Some(&path_levels), None);
    column!(Int64Type, &labels, Some(&label_levels), None);
    column!(Int64Type, &items, Some(&item_def), Some(&item_rep));
    column!(Int32Type, &widths, Some(&all_present), None);
    column!(Int32Type, &heights, Some(&all_present), None);
    column!(ByteArrayType, &formats, Some(&all_present), None);
    column!(FixedLenByteArrayType, &content_hashes, Some(&all_present), None);
    column!(ByteArrayType, &sources, Some(&all_present), None);
    column!(Int64Type, &source_indices, Some(&all_present), None);
    if with_original_hash {
        column!(FixedLenByteArrayType, &original_hashes, Some(&all_present), None);
    }
    if group.next_column()?.is_some() {
        return Err(parquet::errors::ParquetError::General(
            "the schema has more leaves than the dataset writes".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::reader::DatasetReader;
    use crate::dataset::{Manifest, PartInfo};

    fn row(i: usize, labels: Vec<i64>, path: Option<&str>, original: bool) -> Row {
        let image_bytes: Vec<u8> = (0..(i * 7919) % 5000).map(|b| (b * 31 + i) as u8).collect();
        Row {
            key: format!("k/{i}"),
            content_hash: *blake3::hash(&image_bytes).as_bytes(),
            image_bytes: image_bytes.into(),
            image_path: path.map(str::to_string),
            labels,
            width: i as i32,
            height: 2 * i as i32,
            format: "jpeg",
            source: Arc::from("shard.tar"),
            source_index: i as i64,
            original_hash: original.then_some([i as u8; 32]),
        }
    }

    fn round_trip(rows: Vec<Row>, original: bool, row_group_bytes: u64) -> Vec<crate::dataset::DatasetRow> {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = WriterSettings { row_group_bytes, part_bytes: u64::MAX };
        let mut writer =
            PartWriter::create(dir.path(), "part-00000.parquet", None, original, settings).expect("create");
        for row in rows {
            writer.write_row(row).expect("write");
        }
        let part: PartInfo = writer.finish().expect("finish");
        assert!(!dir.path().join(".part-00000.parquet.tmp").exists());
        let bytes = std::fs::read(dir.path().join("part-00000.parquet")).expect("read");
        assert_eq!(part.blake3, blake3::hash(&bytes).to_hex().to_string());
        assert_eq!(part.bytes, bytes.len() as u64);
        let manifest = Manifest {
            format_version: crate::dataset::manifest::FORMAT_VERSION,
            bitkit_version: "test".into(),
            rows: part.rows,
            classes: None,
            parts: vec![part],
            sources: Vec::new(),
            rejected: 0,
            rejects_by_kind: Default::default(),
            config: serde_json::Value::Null,
        };
        manifest.write(dir.path()).expect("manifest");
        let reader = DatasetReader::open(dir.path()).expect("open");
        reader.rows().collect::<Result<Vec<_>>>().expect("rows")
    }

    #[test]
    fn nulls_multi_labels_and_row_groups_round_trip() {
        let make = || {
            (0..300)
                .map(|i| match i % 4 {
                    0 => row(i, vec![i as i64], Some("a.jpg"), true),
                    1 => row(i, vec![], None, true),
                    2 => row(i, vec![3, 1, 4, 1, 5], Some(""), true),
                    _ => row(i, vec![-7], None, true),
                })
                .collect::<Vec<_>>()
        };
        // One row group, and many small ones: the same rows come back.
        for row_group_bytes in [u64::MAX, 10_000] {
            let back = round_trip(make(), true, row_group_bytes);
            assert_eq!(back.len(), 300);
            for (got, want) in back.iter().zip(make()) {
                assert_eq!(got.key, want.key);
                assert_eq!(got.image_bytes, want.image_bytes);
                assert_eq!(got.image_path, want.image_path);
                assert_eq!(got.labels, want.labels);
                assert_eq!(got.label, want.labels.first().copied());
                assert_eq!((got.width, got.height), (want.width, want.height));
                assert_eq!(got.content_hash, want.content_hash);
                assert_eq!(got.source_index, want.source_index);
                assert_eq!(got.original_hash, want.original_hash);
            }
        }
    }

    #[test]
    fn big_images_keep_pages_bounded_and_parts_identical_across_runs() {
        let big = |i: usize| {
            let mut r = row(i, vec![1], None, false);
            r.image_bytes = vec![i as u8; 3 << 20].into();
            r
        };
        let a = round_trip((0..5).map(big).collect(), false, 8 << 20);
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(|r| r.image_bytes.len() == 3 << 20));
    }

    #[test]
    fn a_row_with_the_wrong_hash_columns_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writer = PartWriter::create(dir.path(), "part-00000.parquet", None, false, WriterSettings::default())
            .expect("create");
        assert!(writer.write_row(row(1, vec![1], None, true)).is_err());
        writer.abandon();
        assert!(!dir.path().join(".part-00000.parquet.tmp").exists());
    }
}
