//! The `image.bytes` column chunk of a row group, framed by hand: Parquet data pages (v1,
//! PLAIN values, RLE definition levels, uncompressed) whose values are the images themselves.
//!
//! The column is PLAIN and uncompressed by the dataset format (DESIGN §2), so a page is a
//! Thrift header, the definition levels (one RLE run: every image is present) and, per image,
//! its 4-byte length and its bytes. Framing it here lets the images go to the file as the
//! views they arrive as ([`super::part_sink`]); parquet's column writer would copy each into a
//! page buffer first. The pages are cut as parquet cuts them (at the data page size limit),
//! and the chunk is registered with parquet's writer (metadata, offset index) through
//! `append_column`, so the footer is parquet's own.

use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::reader::{ChunkReader, Length};
use parquet::schema::types::ColumnDescPtr;
use std::io::Read;

/// Parquet's default cap on rows per data page.
const MAX_ROWS_PER_PAGE: usize = 20_000;

/// A framed column chunk: its bytes as segments in file order (frame bytes, then images), and
/// what parquet's writer needs to register it, with offsets relative to the chunk's start.
pub(crate) struct FramedChunk {
    pub segments: Vec<Bytes>,
    pub close: ColumnCloseResult,
}

/// Frames `images` (every one present) as the data pages of one column chunk of `column`,
/// cutting a page once its body reaches `page_bytes`.
pub(crate) fn frame_image_chunk(column: ColumnDescPtr, images: Vec<Bytes>, page_bytes: usize) -> Result<FramedChunk> {
    if column.max_rep_level() != 0 {
        return Err(ParquetError::General(format!("{} is repeated; image pages are not", column.path())));
    }
    let max_def = column.max_def_level();
    let rows = images.len();
    let image_bytes: u64 = images.iter().map(|image| image.len() as u64).sum();
    let mut segments = Vec::with_capacity(2 * rows + 8);
    let mut locations = Vec::new();
    let mut offset = 0i64;
    let mut first_row = 0usize;
    let mut images = images.into_iter().peekable();
    while images.peek().is_some() {
        let mut page: Vec<Bytes> = Vec::new();
        let mut values_len = 0usize;
        while let Some(image) = images.next_if(|_| values_len < page_bytes && page.len() < MAX_ROWS_PER_PAGE) {
            values_len = values_len.saturating_add(4 + image.len());
            page.push(image);
        }
        let levels = rle_run(page.len(), max_def);
        let body_len = 4 + levels.len() + values_len;
        let header = page_header(i32_of(body_len, "page")?, i32_of(page.len(), "values of a page")?);
        // One frame buffer per page: header, levels, then every value's length; the segments
        // are views of it, interleaved with the images.
        let mut frame = Vec::with_capacity(header.len() + 4 + levels.len() + 4 * page.len());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&u32_of(levels.len(), "levels")?.to_le_bytes());
        frame.extend_from_slice(&levels);
        let lead = frame.len();
        for image in &page {
            frame.extend_from_slice(&u32_of(image.len(), "an image")?.to_le_bytes());
        }
        let frame = Bytes::from(frame);
        segments.push(frame.slice(..lead));
        for (i, image) in page.iter().enumerate() {
            segments.push(frame.slice(lead + 4 * i..lead + 4 * i + 4));
            segments.push(image.clone());
        }
        let page_len = header.len() + body_len;
        locations.push(PageLocation {
            offset,
            compressed_page_size: i32_of(page_len, "page")?,
            first_row_index: first_row as i64,
        });
        offset += page_len as i64;
        first_row += page.len();
    }
    let metadata = ColumnChunkMetaData::builder(column)
        .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
        .set_compression(Compression::UNCOMPRESSED)
        .set_num_values(rows as i64)
        .set_total_compressed_size(offset)
        .set_total_uncompressed_size(offset)
        .set_data_page_offset(0)
        .set_unencoded_byte_array_data_bytes(Some(image_bytes as i64))
        .build()?;
    let close = ColumnCloseResult {
        bytes_written: offset as u64,
        rows_written: rows as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: Some(OffsetIndexMetaData { page_locations: locations, unencoded_byte_array_data_bytes: None }),
    };
    Ok(FramedChunk { segments, close })
}

/// Definition levels of `n` present values: one RLE run of `max_def` (RLE/bit-packing hybrid:
/// a ULEB128 header `n << 1`, then the value in ceil(bit width / 8) little-endian bytes).
fn rle_run(n: usize, max_def: i16) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    if max_def == 0 {
        return out;
    }
    uleb128((n as u64) << 1, &mut out);
    let bit_width = 16 - (max_def as u16).leading_zeros() as usize;
    out.extend_from_slice(&(max_def as u16).to_le_bytes()[..bit_width.div_ceil(8)]);
    out
}

/// A `PageHeader` in Thrift's compact protocol: type DATA_PAGE, both sizes `body_len` (no
/// compression), and a `DataPageHeader` (values, PLAIN values, RLE levels), no CRC, no
/// statistics.
fn page_header(body_len: i32, num_values: i32) -> Vec<u8> {
    const I32: u8 = 5;
    const STRUCT: u8 = 12;
    const DATA_PAGE: i32 = 0;
    const PLAIN: i32 = 0;
    const RLE: i32 = 3;
    fn field(out: &mut Vec<u8>, delta: u8, kind: u8) {
        out.push(delta << 4 | kind);
    }
    let mut out = Vec::with_capacity(24);
    field(&mut out, 1, I32);
    zigzag_i32(DATA_PAGE, &mut out);
    field(&mut out, 1, I32);
    zigzag_i32(body_len, &mut out);
    field(&mut out, 1, I32);
    zigzag_i32(body_len, &mut out);
    // Field 5, data_page_header (field 4, the CRC, is absent).
    field(&mut out, 2, STRUCT);
    for value in [num_values, PLAIN, RLE, RLE] {
        field(&mut out, 1, I32);
        zigzag_i32(value, &mut out);
    }
    out.push(0); // end of DataPageHeader
    out.push(0); // end of PageHeader
    out
}

fn zigzag_i32(value: i32, out: &mut Vec<u8>) {
    uleb128(u64::from(((value << 1) ^ (value >> 31)) as u32), out);
}

fn uleb128(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn i32_of(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| ParquetError::General(format!("{what} of {n} bytes is too large for a Parquet page")))
}

fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| ParquetError::General(format!("{what} of {n} bytes is too large for a Parquet value")))
}

/// Stands for a column chunk already in the file: parquet's `append_column` copies this many
/// zero bytes, which [`super::part_sink::PartSink::swallow`] drops.
pub(crate) struct Placeholder {
    pub len: u64,
}

impl Length for Placeholder {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Placeholder {
    type T = std::io::Take<std::io::Repeat>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(std::io::repeat(0).take(self.len.saturating_sub(start)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let available = usize::try_from(self.len.saturating_sub(start)).unwrap_or(usize::MAX);
        Ok(Bytes::from(vec![0; length.min(available)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thrift_and_level_encodings_match_hand_computed_bytes() {
        // type 0, sizes 300 (zigzag 600 = 0xd8 0x04), data page header {7, 0, 3, 3}.
        assert_eq!(
            page_header(300, 7),
            vec![
                0x15, 0x00, 0x15, 0xd8, 0x04, 0x15, 0xd8, 0x04, 0x2c, 0x15, 0x0e, 0x15, 0x00, 0x15, 0x06, 0x15, 0x06,
                0x00, 0x00
            ]
        );
        // 200 values of level 2: header 400 = 0x90 0x03, value 2 in one byte.
        assert_eq!(rle_run(200, 2), vec![0x90, 0x03, 0x02]);
        assert_eq!(rle_run(3, 1), vec![0x06, 0x01]);
        assert!(rle_run(3, 0).is_empty());
    }
}
