//! Random access to a dataset: where every image's bytes lie in the part files, and the
//! per-row metadata a training loader needs, all in memory.
//!
//! The training loader reads samples in a fresh random order every epoch, over the whole
//! dataset. Decoding Parquet row groups for that would read ~B row groups per batch;
//! instead, [`DatasetIndex::open`] walks the `image.bytes` column chunk of every row group
//! once and records the file offset and length of each value. A sample is then one
//! `pread` of exactly its encoded bytes (FFCV reads samples the same way from its own
//! format).
//!
//! This relies on the layout `bitkit ingest` writes (DESIGN §2): `image.bytes` is PLAIN,
//! uncompressed, without dictionary, and every part has an offset index (page locations).
//! Page bodies of uncompressed pages are stored verbatim, so a value at byte `k` of a page
//! body lies at `page offset + header length + k`, where the header length is the page's
//! size from the offset index minus the body length. A part that does not follow the layout
//! is refused with the reason, never misread.
//!
//! Opening reads every part once (sequentially, one page in memory at a time). The index
//! costs ~40 bytes per row plus keys: ~1 GB for ImageNet-21k's 14M rows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::serialized_reader::SerializedPageReader;

use super::manifest::Manifest;
use crate::{Error, Result};

/// Where one row's encoded image lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLocation {
    /// Index into [`DatasetIndex::part_paths`].
    pub part: u32,
    /// Byte offset of the first image byte in the part file.
    pub offset: u64,
    /// Length of the encoded image.
    pub len: u32,
}

/// The open part files of a [`DatasetIndex`] (see [`DatasetIndex::open_parts`]).
#[derive(Debug)]
pub struct PartFiles {
    files: Vec<File>,
}

/// Every row of a dataset, in dataset order, without the image bytes.
#[derive(Debug, Clone)]
pub struct DatasetIndex {
    part_paths: Vec<PathBuf>,
    manifest: Manifest,
    key_text: String,
    key_ends: Vec<u64>,
    /// Primary label per row; `None` when the row has none.
    labels: Vec<Option<i64>>,
    /// All labels, flattened; row `i` owns `multi[multi_ends[i-1]..multi_ends[i]]`.
    multi: Vec<i64>,
    multi_ends: Vec<u64>,
    sizes: Vec<(u32, u32)>,
    /// blake3 of each row's encoded bytes (zeros when null).
    content_hashes: Vec<[u8; 32]>,
    /// `None` for a row whose image is null.
    locations: Vec<Option<ImageLocation>>,
}

impl DatasetIndex {
    /// Opens `dir`, checks every part against the manifest (file present, size as recorded)
    /// and indexes it.
    pub fn open(dir: &Path) -> Result<DatasetIndex> {
        let manifest = Manifest::read(dir)?;
        let mut index = DatasetIndex {
            part_paths: Vec::with_capacity(manifest.parts.len()),
            manifest: manifest.clone(),
            key_text: String::new(),
            key_ends: Vec::new(),
            labels: Vec::new(),
            multi: Vec::new(),
            multi_ends: Vec::new(),
            sizes: Vec::new(),
            content_hashes: Vec::new(),
            locations: Vec::new(),
        };
        for (part_number, part) in manifest.parts.iter().enumerate() {
            let path = dir.join(&part.file);
            let bad = |reason: String| Error::BadManifest { path: path.clone(), reason };
            let on_disk = std::fs::metadata(&path)
                .map_err(|e| bad(format!("part listed in {} cannot be read: {e}", super::MANIFEST_FILE)))?
                .len();
            if on_disk != part.bytes {
                return Err(bad(format!(
                    "{on_disk} bytes on disk but the manifest records {} (a changed or half-copied part)",
                    part.bytes
                )));
            }
            let rows_before = index.labels.len();
            let part_id = u32::try_from(part_number).map_err(|_| Error::Config("too many parts".into()))?;
            super::guard_decode(&path, || index.add_part(&path, part_id))?;
            let rows = (index.labels.len() - rows_before) as u64;
            if rows != part.rows {
                return Err(bad(format!("{rows} rows in the file but the manifest records {}", part.rows)));
            }
            index.part_paths.push(path);
        }
        Ok(index)
    }

    fn add_part(&mut self, path: &Path, part: u32) -> Result<()> {
        let parquet_error = |source| Error::Parquet { path: path.to_path_buf(), source };
        let file = super::open_part(path)?;
        let metadata = ParquetMetaDataReader::new()
            .with_offset_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&file)
            .map_err(parquet_error)?;
        self.add_locations(path, part, &file, &metadata)?;
        self.add_metadata_columns(path, file)
    }

    /// Walks the `image.bytes` pages of every row group, recording each value's position.
    fn add_locations(&mut self, path: &Path, part: u32, file: &File, metadata: &ParquetMetaData) -> Result<()> {
        let layout = |reason: String| Error::BadManifest {
            path: path.to_path_buf(),
            reason: format!("image column not in bitkit's layout ({reason}); re-ingest it with `bitkit ingest`"),
        };
        let schema = metadata.file_metadata().schema_descr();
        let column = (0..schema.num_columns())
            .find(|&c| schema.column(c).path().string() == "image.bytes")
            .ok_or_else(|| layout("no image.bytes column".into()))?;
        let max_def = schema.column(column).max_def_level();
        if metadata.page_index().is_none() {
            return Err(layout("no offset index".into()));
        }
        let reader = Arc::new(file.try_clone().map_err(|source| Error::Read { path: path.to_path_buf(), source })?);
        for (group, row_group) in metadata.row_groups().iter().enumerate() {
            let chunk = row_group.column(column);
            if chunk.compression() != Compression::UNCOMPRESSED {
                return Err(layout(format!("row group {group} is {:?}-compressed", chunk.compression())));
            }
            let locations = metadata
                .page_index_for_row_group(group)
                .page_locations(column)
                .cloned()
                .ok_or_else(|| layout(format!("row group {group} has no page locations")))?;
            let rows = usize::try_from(row_group.num_rows()).map_err(|_| layout("negative row count".into()))?;
            let mut pages = SerializedPageReader::new(reader.clone(), chunk, rows, Some(locations.clone()))
                .map_err(|source| Error::Parquet { path: path.to_path_buf(), source })?;
            let mut page_number = 0;
            let mut group_rows = 0;
            while let Some(page) =
                pages.get_next_page().map_err(|source| Error::Parquet { path: path.to_path_buf(), source })?
            {
                let location = locations
                    .get(page_number)
                    .ok_or_else(|| layout(format!("row group {group}: more pages than page locations")))?;
                let where_ = |what: &str| format!("row group {group}, page {page_number}: {what}");
                let (body, num_values, levels_len, values_encoding, v1) = match &page {
                    Page::DataPage { buf, num_values, encoding, def_level_encoding, .. } => {
                        if max_def > 0 && *def_level_encoding != Encoding::RLE {
                            return Err(layout(where_("definition levels not RLE")));
                        }
                        (buf, *num_values, None, *encoding, true)
                    }
                    Page::DataPageV2 {
                        buf,
                        num_values,
                        encoding,
                        def_levels_byte_len,
                        rep_levels_byte_len,
                        is_compressed,
                        ..
                    } => {
                        if *is_compressed || *rep_levels_byte_len != 0 {
                            return Err(layout(where_("compressed or repeated v2 page")));
                        }
                        (buf, *num_values, Some(*def_levels_byte_len), *encoding, false)
                    }
                    Page::DictionaryPage { .. } => return Err(layout(where_("dictionary page"))),
                };
                if values_encoding != Encoding::PLAIN {
                    return Err(layout(where_(&format!("{values_encoding:?} values"))));
                }
                let header_len = u64::try_from(location.compressed_page_size)
                    .ok()
                    .and_then(|size| size.checked_sub(body.len() as u64))
                    .ok_or_else(|| layout(where_("page larger than its location says")))?;
                let body_offset =
                    u64::try_from(location.offset).map_err(|_| layout(where_("negative offset")))? + header_len;
                let num_values = num_values as usize;
                let (levels, values) = split_levels(body, max_def, levels_len, v1, num_values)
                    .map_err(|reason| layout(where_(&reason)))?;
                let values_offset = body_offset + (body.len() - values.len()) as u64;
                let mut cursor = 0usize;
                for present in levels {
                    if !present {
                        self.locations.push(None);
                        continue;
                    }
                    let len_bytes = values
                        .get(cursor..cursor + 4)
                        .ok_or_else(|| layout(where_("value length past the page end")))?;
                    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
                    let start = cursor + 4;
                    let end = start
                        .checked_add(len as usize)
                        .filter(|&end| end <= values.len())
                        .ok_or_else(|| layout(where_("value past the page end")))?;
                    self.locations.push(Some(ImageLocation { part, offset: values_offset + start as u64, len }));
                    cursor = end;
                }
                group_rows += num_values;
                page_number += 1;
            }
            if group_rows != rows {
                return Err(layout(format!("row group {group}: {group_rows} image values for {rows} rows")));
            }
        }
        Ok(())
    }

    /// Reads the small columns (key, labels, sizes) through Arrow, leaving `image` out.
    fn add_metadata_columns(&mut self, path: &Path, file: File) -> Result<()> {
        let parquet_error = |source| Error::Parquet { path: path.to_path_buf(), source };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?;
        let wanted = ["key", "label", "labels", "width", "height", "content_hash"];
        let roots: Vec<usize> = {
            let schema = builder.parquet_schema();
            let root = schema.root_schema();
            let fields = root.get_fields();
            let found: Vec<usize> =
                wanted.iter().filter_map(|name| fields.iter().position(|f| f.name() == *name)).collect();
            if found.len() != wanted.len() {
                return Err(Error::BadManifest {
                    path: path.to_path_buf(),
                    reason: format!("a part lacks one of the columns {wanted:?}"),
                });
            }
            found
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder.with_projection(mask).with_batch_size(8192).build().map_err(parquet_error)?;
        for batch in reader {
            let batch = batch.map_err(|source| Error::Arrow { path: path.to_path_buf(), source })?;
            let column = |name: &str| {
                batch.column_by_name(name).cloned().ok_or_else(|| Error::BadManifest {
                    path: path.to_path_buf(),
                    reason: format!("column {name} missing from a batch"),
                })
            };
            let (key, label, labels, width, height, hash) = (
                column("key")?,
                column("label")?,
                column("labels")?,
                column("width")?,
                column("height")?,
                column("content_hash")?,
            );
            let typed = |reason: &str| Error::BadManifest { path: path.to_path_buf(), reason: reason.to_string() };
            let key = key.as_string_opt::<i32>().ok_or_else(|| typed("key is not utf8"))?;
            let label = label.as_primitive_opt::<Int64Type>().ok_or_else(|| typed("label is not int64"))?;
            let labels = labels.as_list_opt::<i32>().ok_or_else(|| typed("labels is not a list"))?;
            let width = width.as_primitive_opt::<Int32Type>().ok_or_else(|| typed("width is not int32"))?;
            let height = height.as_primitive_opt::<Int32Type>().ok_or_else(|| typed("height is not int32"))?;
            let hash = hash.as_fixed_size_binary_opt().ok_or_else(|| typed("content_hash is not fixed_size_binary"))?;
            for row in 0..batch.num_rows() {
                if !key.is_null(row) {
                    self.key_text.push_str(key.value(row));
                }
                self.key_ends.push(self.key_text.len() as u64);
                self.labels.push((!label.is_null(row)).then(|| label.value(row)));
                if !labels.is_null(row) {
                    let values = labels.value(row);
                    let values = values.as_primitive_opt::<Int64Type>().ok_or_else(|| typed("labels are not int64"))?;
                    self.multi.extend(values.iter().flatten());
                }
                self.multi_ends.push(self.multi.len() as u64);
                let side = |a: &arrow_array::Int32Array| if a.is_null(row) { 0 } else { a.value(row).max(0) as u32 };
                self.sizes.push((side(width), side(height)));
                let mut content = [0u8; 32];
                if !hash.is_null(row) && hash.value(row).len() == 32 {
                    content.copy_from_slice(hash.value(row));
                }
                self.content_hashes.push(content);
            }
        }
        Ok(())
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn part_paths(&self) -> &[PathBuf] {
        &self.part_paths
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The class names from the manifest, when the dataset has them.
    pub fn classes(&self) -> Option<&[String]> {
        self.manifest.classes.as_deref()
    }

    /// The `key` of row `row` (empty for an out-of-range row).
    pub fn key(&self, row: usize) -> &str {
        let end = self.key_ends.get(row).copied().unwrap_or(0) as usize;
        let start = if row == 0 { 0 } else { self.key_ends.get(row - 1).copied().unwrap_or(0) as usize };
        self.key_text.get(start..end).unwrap_or("")
    }

    /// The primary `label` of row `row`.
    pub fn label(&self, row: usize) -> Option<i64> {
        self.labels.get(row).copied().flatten()
    }

    /// All `labels` of row `row`.
    pub fn labels(&self, row: usize) -> &[i64] {
        let end = self.multi_ends.get(row).copied().unwrap_or(0) as usize;
        let start = if row == 0 { 0 } else { self.multi_ends.get(row - 1).copied().unwrap_or(0) as usize };
        self.multi.get(start..end).unwrap_or(&[])
    }

    /// Stored `(width, height)` of row `row` (before EXIF orientation).
    pub fn size(&self, row: usize) -> (u32, u32) {
        self.sizes.get(row).copied().unwrap_or((0, 0))
    }

    /// The `content_hash` (blake3 of the encoded bytes) of row `row`.
    pub fn content_hash(&self, row: usize) -> [u8; 32] {
        self.content_hashes.get(row).copied().unwrap_or([0; 32])
    }

    /// Where row `row`'s image bytes are; `None` for a null image.
    pub fn location(&self, row: usize) -> Option<ImageLocation> {
        self.locations.get(row).copied().flatten()
    }

    /// The part files, opened for [`DatasetIndex::read_image`].
    pub fn open_parts(&self) -> Result<PartFiles> {
        let files = self.part_paths.iter().map(|p| super::open_part(p)).collect::<Result<_>>()?;
        Ok(PartFiles { files })
    }

    /// Reads row `row`'s encoded image into `buf` (replacing its contents) with one `pread`;
    /// safe from any number of threads. The error names the part file, offset and length.
    pub fn read_image(&self, parts: &PartFiles, row: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let location = self
            .location(row)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the row has no image bytes"))?;
        let (file, path) = parts
            .files
            .get(location.part as usize)
            .zip(self.part_paths.get(location.part as usize))
            .ok_or_else(|| std::io::Error::other(format!("part {} is not open", location.part)))?;
        buf.clear();
        buf.resize(location.len as usize, 0);
        file.read_exact_at(buf, location.offset).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("reading {} bytes at offset {} of {}: {e}", location.len, location.offset, path.display()),
            )
        })
    }

    /// Row number of every key, for exclusion lists.
    pub fn rows_by_key(&self) -> std::collections::HashMap<&str, usize> {
        (0..self.len()).map(|row| (self.key(row), row)).collect()
    }
}

/// Splits a data page body into "value present" flags and the PLAIN values that follow.
fn split_levels(
    body: &[u8],
    max_def: i16,
    v2_levels_len: Option<u32>,
    v1: bool,
    num_values: usize,
) -> std::result::Result<(Vec<bool>, &[u8]), String> {
    if max_def == 0 {
        return Ok((vec![true; num_values], body));
    }
    let (encoded, values) = if v1 {
        let len = body.get(..4).ok_or("page too short for its level length")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let end = 4usize.checked_add(len).filter(|&e| e <= body.len()).ok_or("levels past the page end")?;
        (&body[4..end], &body[end..])
    } else {
        let len = v2_levels_len.unwrap_or(0) as usize;
        if len > body.len() {
            return Err("levels past the page end".into());
        }
        body.split_at(len)
    };
    let bit_width = 16 - (max_def as u16).leading_zeros();
    let levels = decode_rle_hybrid(encoded, bit_width, num_values)?;
    Ok((levels.into_iter().map(|level| level == max_def as u32).collect(), values))
}

/// Parquet's RLE / bit-packed hybrid encoding of `count` levels of `bit_width` bits.
fn decode_rle_hybrid(mut data: &[u8], bit_width: u32, count: usize) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(count);
    let value_bytes = bit_width.div_ceil(8) as usize;
    let mask = if bit_width >= 32 { u32::MAX } else { (1u32 << bit_width) - 1 };
    while out.len() < count {
        let (header, used) = read_uleb128(data).ok_or("truncated level run header")?;
        data = &data[used..];
        if header & 1 == 0 {
            let run = usize::try_from(header >> 1).map_err(|_| "level run too long")?;
            let bytes = data.get(..value_bytes).ok_or("truncated level run value")?;
            let mut value = 0u32;
            for (i, b) in bytes.iter().enumerate() {
                value |= u32::from(*b) << (8 * i);
            }
            data = &data[value_bytes..];
            let take = run.min(count - out.len());
            out.extend(std::iter::repeat_n(value & mask, take));
        } else {
            let groups = usize::try_from(header >> 1).map_err(|_| "bit-packed run too long")?;
            let bytes_len = groups.checked_mul(bit_width as usize).ok_or("bit-packed run too long")?;
            let bytes = data.get(..bytes_len).ok_or("truncated bit-packed levels")?;
            data = &data[bytes_len..];
            let total = groups * 8;
            for i in 0..total.min(count - out.len()) {
                let bit = i * bit_width as usize;
                let mut value = 0u32;
                for b in 0..bit_width as usize {
                    let position = bit + b;
                    if bytes[position / 8] >> (position % 8) & 1 == 1 {
                        value |= 1 << b;
                    }
                }
                out.push(value);
            }
        }
    }
    Ok(out)
}

fn read_uleb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_hybrid_decodes_runs_and_bit_packing() {
        // Run of 5 twos (header 5<<1 = 10, one value byte).
        assert_eq!(decode_rle_hybrid(&[10, 2], 2, 5).expect("ok"), vec![2; 5]);
        // One bit-packed group of 8 values, width 2: values 0,1,2,3,0,1,2,3 -> bytes 0b11100100 x2.
        assert_eq!(decode_rle_hybrid(&[3, 0b1110_0100, 0b1110_0100], 2, 8).expect("ok"), vec![0, 1, 2, 3, 0, 1, 2, 3]);
        // Bit-packed padding past `count` is ignored.
        assert_eq!(decode_rle_hybrid(&[3, 0b1110_0100, 0], 2, 3).expect("ok"), vec![0, 1, 2]);
        assert!(decode_rle_hybrid(&[10], 2, 5).is_err());
        assert!(decode_rle_hybrid(&[3, 1], 2, 8).is_err());
        assert!(decode_rle_hybrid(&[], 2, 1).is_err());
        assert!(decode_rle_hybrid(&[0xFF; 11], 2, 1).is_err());
    }
}
