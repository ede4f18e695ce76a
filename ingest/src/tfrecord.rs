//! TFRecord framing: the record stream TensorFlow's `TFRecordWriter` writes and TFDS shards use
//! (FORMATS.md §3; TensorFlow `core/lib/io/record_reader.cc`, `record_writer.cc`).
//!
//! A stream is a plain concatenation of records, with no file header and no index. One record,
//! all integers little-endian:
//!
//! ```text
//!  byte 0          8           12                  12 + length        16 + length
//!       +----------+-----------+-------------------+------------------+
//!       | length   | length    | data              | data             |
//!       | u64      | crc  u32  | `length` bytes    | crc  u32         |
//!       +----------+-----------+-------------------+------------------+
//!       |<------ header (12) ->|                   |<-- footer (4) -->|
//!
//!  length crc = masked CRC32C of bytes 0..8      data crc = masked CRC32C of data
//!  masked(c)  = ((c >> 15) | (c << 17)) + 0xa282ead8   (wrapping)
//! ```
//!
//! TensorFlow masks stored CRCs because the CRC of a byte string that itself contains CRCs is
//! weak; [`mask_crc`] and [`unmask_crc`] convert.
//!
//! Invariants the reader keeps:
//! - The length is trusted only after its CRC matched, and is checked against
//!   [`ReaderConfig::max_record_bytes`] before anything is allocated for it, so memory stays
//!   bounded whatever a corrupt header claims.
//! - The data CRC is *not* checked while framing: that is CPU work proportional to the payload,
//!   so the pipeline runs [`check_data_crc`] on its rayon workers and the reader stays a cheap,
//!   ordered stream. The stored CRC travels in [`RawPayload::TfRecord`].
//! - There is no sync marker to resynchronise on, so after a bad length CRC, an oversized length,
//!   a truncation or an I/O error the reader yields one error and then ends.

use crate::source::MappedRegion;
use crate::{RawPayload, RawRecord, ReaderConfig, RecordError, RejectKind, ShardReader};
use bytes::Bytes;
use std::io::{self, Read, Write};

/// Bytes before the data: the u64 length and its u32 masked CRC.
pub const HEADER_BYTES: usize = 12;
/// Bytes after the data: its u32 masked CRC.
pub const FOOTER_BYTES: usize = 4;
/// Bytes one record takes on top of its data.
pub const FRAME_OVERHEAD_BYTES: u64 = 16;

/// Added after the rotation (TensorFlow `crc32c::kMaskDelta`).
const MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a CRC32C the way TensorFlow stores it: rotate right by 15 bits, add `0xa282ead8`.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Inverse of [`mask_crc`].
pub fn unmask_crc(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// Masked CRC32C (Castagnoli) as TensorFlow stores it.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    mask_crc(crc32c::crc32c(data))
}

/// Checks a payload against its stored masked CRC (run on a rayon worker, not the reader).
///
/// The error is [`RejectKind::BadChecksum`] naming both masked values; the caller adds the
/// record's index and offset.
pub fn check_data_crc(data: &[u8], masked_data_crc: u32) -> Result<(), RecordError> {
    let computed = masked_crc32c(data);
    if computed == masked_data_crc {
        return Ok(());
    }
    Err(RecordError::new(
        RejectKind::BadChecksum,
        format!("data CRC {computed:#010x} != stored {masked_data_crc:#010x} (both masked; {} data bytes)", data.len()),
    ))
}

/// Writes one framed record: the inverse of [`TfRecordReader`] (fixtures, tests, tools).
pub fn write_record<W: Write + ?Sized>(out: &mut W, data: &[u8]) -> io::Result<()> {
    let length = u64::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record longer than u64::MAX"))?;
    let mut header = [0u8; HEADER_BYTES];
    let (length_bytes, crc_bytes) = header.split_at_mut(8);
    length_bytes.copy_from_slice(&length.to_le_bytes());
    crc_bytes.copy_from_slice(&masked_crc32c(length_bytes).to_le_bytes());
    out.write_all(&header)?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// A sequential reader of one (already decompressed) TFRecord stream.
///
/// ```
/// use bitkit_ingest::tfrecord::{tfrecord_reader, write_record};
/// use bitkit_ingest::{RawPayload, ReaderConfig};
///
/// let mut shard = Vec::new();
/// write_record(&mut shard, b"abc").unwrap();
/// let mut reader = tfrecord_reader(std::io::Cursor::new(shard), &ReaderConfig::default());
/// let record = reader.next_record().unwrap().unwrap();
/// assert!(matches!(record.payload, RawPayload::TfRecord { ref data, .. } if data.as_ref() == b"abc"));
/// assert!(reader.next_record().is_none());
/// assert_eq!(reader.bytes_read(), 3 + 16);
/// ```
pub fn tfrecord_reader<R: Read + Send + 'static>(stream: R, config: &ReaderConfig) -> Box<dyn ShardReader> {
    Box::new(TfRecordReader::new(stream, config))
}

/// Frames TFRecords from a stream; see the module docs for the layout and the error policy.
///
/// The stream should be buffered: the reader asks for 12 header bytes, the payload and 4 footer
/// bytes per record.
pub struct TfRecordReader<R> {
    stream: Stream<R>,
    max_record_bytes: u64,
    next_index: u64,
    bytes_read: u64,
    finished: bool,
}

/// Where the records come from: a stream (payloads are read into buffers of their own) or a
/// mapped shard (payloads are views of the map).
enum Stream<R> {
    Read(R),
    Mapped(MappedRegion),
}

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Read(stream) => stream.read(buf),
            Stream::Mapped(region) => region.read(buf),
        }
    }
}

impl TfRecordReader<io::Empty> {
    /// Frames the records of a mapped shard: payloads (and the images in them) are views of
    /// the map, not copies.
    pub(crate) fn mapped(region: MappedRegion, config: &ReaderConfig) -> Self {
        TfRecordReader {
            stream: Stream::Mapped(region),
            max_record_bytes: config.max_record_bytes,
            next_index: 0,
            bytes_read: 0,
            finished: false,
        }
    }
}

impl<R: Read> TfRecordReader<R> {
    pub fn new(stream: R, config: &ReaderConfig) -> Self {
        TfRecordReader {
            stream: Stream::Read(stream),
            max_record_bytes: config.max_record_bytes,
            next_index: 0,
            bytes_read: 0,
            finished: false,
        }
    }

    /// The next record, an error after which the reader ends, or `None` at the end.
    pub fn read_record(&mut self) -> Option<Result<RawRecord, RecordError>> {
        if self.finished {
            return None;
        }
        let index = self.next_index;
        let offset = self.bytes_read;
        match self.frame_record(offset) {
            Ok(Some((data, masked_data_crc))) => {
                self.next_index += 1;
                Some(Ok(RawRecord { index, offset, payload: RawPayload::TfRecord { data, masked_data_crc } }))
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error.at(index, offset)))
            }
        }
    }

    /// Bytes consumed from the stream so far (partial reads of a truncated record included).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads one record starting at `offset`: `Ok(None)` on a clean end exactly at a record
    /// boundary; errors come without index/offset, which [`Self::read_record`] adds.
    fn frame_record(&mut self, offset: u64) -> Result<Option<(Bytes, u32)>, RecordError> {
        let mut header = [0u8; HEADER_BYTES];
        let found = self.fill(&mut header, "header", offset)?;
        if found == 0 {
            return Ok(None);
        }
        if found < HEADER_BYTES {
            return Err(truncated("header", HEADER_BYTES, found, offset));
        }
        let [l0, l1, l2, l3, l4, l5, l6, l7, c0, c1, c2, c3] = header;
        let length_bytes = [l0, l1, l2, l3, l4, l5, l6, l7];
        let stored_length_crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let computed_length_crc = masked_crc32c(&length_bytes);
        let length = u64::from_le_bytes(length_bytes);
        if computed_length_crc != stored_length_crc {
            return Err(RecordError::new(
                RejectKind::BadChecksum,
                format!(
                    "length CRC {computed_length_crc:#010x} != stored {stored_length_crc:#010x} \
                     (both masked); the length field ({length}) can't be trusted, so the rest \
                     of the shard is skipped"
                ),
            ));
        }
        if length > self.max_record_bytes {
            return Err(RecordError::new(
                RejectKind::BadLength,
                format!(
                    "record length {length} bytes exceeds max_record_bytes {}; the rest of the \
                     shard is skipped",
                    self.max_record_bytes
                ),
            ));
        }
        let len = usize::try_from(length).map_err(|_| {
            RecordError::new(RejectKind::BadLength, format!("record length {length} bytes does not fit in memory"))
        })?;

        let data_offset = offset.saturating_add(to_u64(HEADER_BYTES));
        let data = match &mut self.stream {
            Stream::Mapped(region) => {
                let data = region.view(len).map_err(|error| {
                    RecordError::new(
                        RejectKind::ShardUnreadable,
                        format!("mapping the data at byte {data_offset} failed: {error}"),
                    )
                })?;
                self.bytes_read = self.bytes_read.saturating_add(to_u64(data.len()));
                data
            }
            Stream::Read(_) => {
                let mut data = vec![0u8; len];
                let found = self.fill(&mut data, "data", data_offset)?;
                data.truncate(found);
                Bytes::from(data)
            }
        };
        if data.len() < len {
            return Err(truncated("data", len, data.len(), data_offset));
        }

        let footer_offset = data_offset.saturating_add(length);
        let mut footer = [0u8; FOOTER_BYTES];
        let found = self.fill(&mut footer, "data CRC", footer_offset)?;
        if found < FOOTER_BYTES {
            return Err(truncated("data CRC", FOOTER_BYTES, found, footer_offset));
        }
        Ok(Some((data, u32::from_le_bytes(footer))))
    }

    /// `read_exact` that reports how many bytes it got before a clean end of stream (so a
    /// truncation can say "found N") and counts every byte it consumed.
    fn fill(&mut self, buf: &mut [u8], what: &str, start: u64) -> Result<usize, RecordError> {
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            match self.stream.read(rest) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.bytes_read = self.bytes_read.saturating_add(to_u64(n));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // A decompressor reports a cut-off stream as UnexpectedEof: that is a
                    // truncation; anything else means the shard itself can't be read further.
                    let kind = if error.kind() == io::ErrorKind::UnexpectedEof {
                        RejectKind::Truncated
                    } else {
                        RejectKind::ShardUnreadable
                    };
                    return Err(RecordError::new(
                        kind,
                        format!(
                            "reading the {what} ({} bytes at byte {start}) failed after {filled} bytes: {error}",
                            buf.len()
                        ),
                    ));
                }
            }
        }
        Ok(filled)
    }
}

impl<R: Read + Send> ShardReader for TfRecordReader<R> {
    fn next_record(&mut self) -> Option<Result<RawRecord, RecordError>> {
        self.read_record()
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

impl<R: Read> Iterator for TfRecordReader<R> {
    type Item = Result<RawRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_record()
    }
}

impl<R: Read> std::iter::FusedIterator for TfRecordReader<R> {}

fn truncated(what: &str, expected: usize, found: usize, start: u64) -> RecordError {
    RecordError::new(
        RejectKind::Truncated,
        format!("stream ends inside the {what}: expected {expected} bytes at byte {start}, found {found}"),
    )
}

/// Lossless: `usize` is at most 64 bits on every target Rust supports.
fn to_u64(n: usize) -> u64 {
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex digit"))
            .collect()
    }

    fn stream_of(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in payloads {
            write_record(&mut out, payload).expect("writing to a Vec");
        }
        out
    }

    fn reader(bytes: Vec<u8>) -> TfRecordReader<Cursor<Vec<u8>>> {
        TfRecordReader::new(Cursor::new(bytes), &ReaderConfig::default())
    }

    fn data_of(record: &RawRecord) -> (&[u8], u32) {
        match &record.payload {
            RawPayload::TfRecord { data, masked_data_crc } => (data, *masked_data_crc),
            other => panic!("not a TFRecord payload: {other:?}"),
        }
    }

    /// Drains a reader, checking the "nothing after an error" contract on the way.
    fn drain<R: Read>(reader: &mut TfRecordReader<R>) -> Vec<Result<RawRecord, RecordError>> {
        let mut items = Vec::new();
        while let Some(item) = reader.read_record() {
            let is_error = item.is_err();
            items.push(item);
            if is_error {
                assert!(reader.read_record().is_none(), "a record after an error");
                break;
            }
        }
        assert!(reader.read_record().is_none(), "not fused");
        items
    }

    #[test]
    fn crc32c_check_values() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c::crc32c(b"Hello world!"), 0x7B98_E751);
        assert_eq!(masked_crc32c(b""), MASK_DELTA);
        for crc in [0, 1, 0xE306_9283, u32::MAX, 0x8000_0000] {
            assert_eq!(unmask_crc(mask_crc(crc)), crc);
            // FORMATS.md's formula, verbatim.
            #[allow(clippy::manual_rotate)]
            let spec = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
            assert_eq!(mask_crc(crc), spec);
        }
    }

    #[test]
    fn write_record_matches_reference_bytes() {
        assert_eq!(stream_of(&[b""]), hex("00000000 00000000 29039807 d8ea82a2"));
        assert_eq!(stream_of(&[b"abc"]), hex("03000000 00000000 b099490e 616263 6e57f121"));
    }

    #[test]
    fn reads_reference_records() {
        let bytes = hex("00000000 00000000 29039807 d8ea82a2  03000000 00000000 b099490e 616263 6e57f121");
        let mut reader = reader(bytes);
        let records: Vec<RawRecord> = drain(&mut reader).into_iter().map(|r| r.expect("valid record")).collect();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].index, records[0].offset), (0, 0));
        assert_eq!((records[1].index, records[1].offset), (1, 16));
        assert_eq!(data_of(&records[0]), (&b""[..], 0xa282_ead8));
        assert_eq!(data_of(&records[1]), (&b"abc"[..], 0x21f1_576e));
        for record in &records {
            let (data, crc) = data_of(record);
            check_data_crc(data, crc).expect("reference CRCs match");
        }
        assert_eq!(reader.bytes_read(), 35);
    }

    #[test]
    fn empty_stream_is_a_clean_end() {
        let mut reader = reader(Vec::new());
        assert!(drain(&mut reader).is_empty());
        assert_eq!(reader.bytes_read(), 0);
    }

    #[test]
    fn data_crc_is_left_to_check_data_crc() {
        let mut bytes = stream_of(&[b"abc"]);
        bytes[HEADER_BYTES + 1] ^= 0x01; // "abc" -> "acc"
        let mut reader = reader(bytes);
        let items = drain(&mut reader);
        let record = items[0].as_ref().expect("the reader does not check the data CRC");
        let (data, crc) = data_of(record);
        assert_eq!(data, b"acc");
        let error = check_data_crc(data, crc).expect_err("payload was changed");
        assert_eq!(error.kind, RejectKind::BadChecksum);
        let computed = masked_crc32c(b"acc");
        assert_eq!(error.reason, format!("data CRC {computed:#010x} != stored 0x21f1576e (both masked; 3 data bytes)"));
        assert_eq!((error.index, error.offset), (None, None), "the caller fills the location");
    }

    #[test]
    fn bad_length_crc_is_an_error_then_the_end() {
        let mut bytes = stream_of(&[b"abc", b"de", b"f"]);
        let second = 19;
        bytes[second + 9] ^= 0x40; // the stored length CRC of record 1
        let mut reader = reader(bytes);
        let items = drain(&mut reader);
        assert_eq!(items.len(), 2);
        let error = items[1].as_ref().expect_err("bad length CRC");
        assert_eq!(error.kind, RejectKind::BadChecksum);
        assert_eq!((error.index, error.offset), (Some(1), Some(19)));
        let computed = masked_crc32c(&2u64.to_le_bytes());
        assert_eq!(
            error.reason,
            format!(
                "length CRC {computed:#010x} != stored {:#010x} (both masked); the length field (2) \
                 can't be trusted, so the rest of the shard is skipped",
                computed ^ 0x4000
            )
        );
    }

    #[test]
    fn length_over_the_limit_is_rejected_without_allocating() {
        // u64::MAX with a valid CRC: allocating it would abort the process.
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&masked_crc32c(&u64::MAX.to_le_bytes()).to_le_bytes());
        bytes.extend_from_slice(b"some data that is not read");
        let mut reader = reader(bytes);
        let items = drain(&mut reader);
        let error = items[0].as_ref().expect_err("huge length");
        assert_eq!(error.kind, RejectKind::BadLength);
        assert_eq!((error.index, error.offset), (Some(0), Some(0)));
        assert!(error
            .reason
            .starts_with("record length 18446744073709551615 bytes exceeds max_record_bytes 268435456"));
        assert_eq!(reader.bytes_read(), 12, "only the header was consumed");
    }

    #[test]
    fn length_equal_to_the_limit_is_accepted() {
        let config = ReaderConfig { max_record_bytes: 3, ..Default::default() };
        let items: Vec<_> = TfRecordReader::new(Cursor::new(stream_of(&[b"abc", b"abcd"])), &config).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        let error = items[1].as_ref().expect_err("4 > 3");
        assert_eq!(error.kind, RejectKind::BadLength);
        assert_eq!((error.index, error.offset), (Some(1), Some(19)));
    }

    #[test]
    fn tfrecord_truncated_at_every_offset_is_an_error_or_a_clean_end() {
        let bytes = stream_of(&[b"abc", b"", b"hello"]);
        let boundaries = [0usize, 19, 35, 56];
        assert_eq!(bytes.len(), 56);
        for cut in 0..=bytes.len() {
            let mut reader = reader(bytes[..cut].to_vec());
            let items = drain(&mut reader);
            assert_eq!(reader.bytes_read(), cut as u64, "cut at {cut}");
            let whole = boundaries.iter().filter(|&&b| b > 0 && b <= cut).count();
            for (index, item) in items.iter().take(whole).enumerate() {
                let record = item.as_ref().expect("complete records before the cut");
                assert_eq!((record.index, record.offset), (index as u64, boundaries[index] as u64));
            }
            if boundaries.contains(&cut) {
                assert_eq!(items.len(), whole, "clean end at {cut}");
                continue;
            }
            assert_eq!(items.len(), whole + 1, "cut at {cut}");
            let error = items[whole].as_ref().expect_err("truncated record");
            assert_eq!(error.kind, RejectKind::Truncated, "cut at {cut}: {error}");
            assert_eq!((error.index, error.offset), (Some(whole as u64), Some(boundaries[whole] as u64)));
            let start = boundaries[whole];
            let (what, part_start, expected) = match cut - start {
                0..HEADER_BYTES => ("header", start, HEADER_BYTES),
                within => {
                    let len = [3usize, 0, 5][whole];
                    if within < HEADER_BYTES + len {
                        ("data", start + HEADER_BYTES, len)
                    } else {
                        ("data CRC", start + HEADER_BYTES + len, FOOTER_BYTES)
                    }
                }
            };
            assert_eq!(
                error.reason,
                format!(
                    "stream ends inside the {what}: expected {expected} bytes at byte {part_start}, found {}",
                    cut - part_start
                ),
                "cut at {cut}"
            );
        }
    }

    /// Returns one byte per call and `Interrupted` every other call.
    struct Trickle {
        bytes: Vec<u8>,
        position: usize,
        interrupt: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            match (self.bytes.get(self.position), buf.first_mut()) {
                (Some(&byte), Some(slot)) => {
                    *slot = byte;
                    self.position += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn short_reads_and_interrupts_are_retried() {
        let bytes = stream_of(&[b"abc", b"", b"hello world"]);
        let total = bytes.len() as u64;
        let mut reader =
            TfRecordReader::new(Trickle { bytes, position: 0, interrupt: false }, &ReaderConfig::default());
        let payloads: Vec<Vec<u8>> =
            drain(&mut reader).into_iter().map(|r| data_of(&r.expect("valid")).0.to_vec()).collect();
        assert_eq!(payloads, vec![b"abc".to_vec(), Vec::new(), b"hello world".to_vec()]);
        assert_eq!(reader.bytes_read(), total);
    }

    /// Yields `bytes`, then fails with `kind`.
    struct Failing {
        bytes: Cursor<Vec<u8>>,
        kind: io::ErrorKind,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.bytes.read(buf)? {
                0 => Err(io::Error::new(self.kind, "boom")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn io_errors_end_the_shard() {
        let mut bytes = stream_of(&[b"abc", b"hello"]);
        bytes.truncate(19 + 14);
        for (kind, reject) in [
            (io::ErrorKind::InvalidData, RejectKind::ShardUnreadable),
            (io::ErrorKind::UnexpectedEof, RejectKind::Truncated),
        ] {
            let mut reader =
                TfRecordReader::new(Failing { bytes: Cursor::new(bytes.clone()), kind }, &ReaderConfig::default());
            let items = drain(&mut reader);
            assert_eq!(items.len(), 2);
            let error = items[1].as_ref().expect_err("I/O error");
            assert_eq!(error.kind, reject);
            assert_eq!((error.index, error.offset), (Some(1), Some(19)));
            assert_eq!(error.reason, "reading the data (5 bytes at byte 31) failed after 2 bytes: boom");
            assert_eq!(reader.bytes_read(), 33);
        }
    }

    #[test]
    fn boxed_reader_reports_progress() {
        let bytes = stream_of(&[b"abc", b"de"]);
        let mut reader = tfrecord_reader(Cursor::new(bytes), &ReaderConfig::default());
        assert_eq!(reader.bytes_read(), 0);
        assert!(matches!(reader.next_record(), Some(Ok(_))));
        assert_eq!(reader.bytes_read(), 19);
        assert!(matches!(reader.next_record(), Some(Ok(_))));
        assert!(reader.next_record().is_none());
        assert_eq!(reader.bytes_read(), 37);
    }

    /// The stream of `payloads` with bytes flipped, then cut.
    fn damaged_stream(payloads: &[Vec<u8>], flips: &[(prop::sample::Index, u8)], cut: prop::sample::Index) -> Vec<u8> {
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut bytes = stream_of(&refs);
        for (position, mask) in flips {
            let i = position.index(bytes.len());
            bytes[i] ^= mask;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes
    }

    proptest! {
        #[test]
        fn write_then_read_round_trips(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let bytes = stream_of(&refs);
            let total = bytes.len() as u64;
            let mut reader = reader(bytes);
            let records = drain(&mut reader);
            prop_assert_eq!(records.len(), payloads.len());
            let mut offset = 0u64;
            for (index, (record, payload)) in records.iter().zip(&payloads).enumerate() {
                let record = record.as_ref().expect("valid stream");
                prop_assert_eq!((record.index, record.offset), (index as u64, offset));
                let (data, crc) = data_of(record);
                prop_assert_eq!(data, payload.as_slice());
                prop_assert!(check_data_crc(data, crc).is_ok());
                offset += payload.len() as u64 + FRAME_OVERHEAD_BYTES;
            }
            prop_assert_eq!(reader.bytes_read(), total);
        }

        /// A mapped shard (payloads as views of the map) reads exactly as the same bytes
        /// streamed, damage included.
        #[test]
        fn mapped_and_streamed_shards_read_the_same(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..6),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..3),
            cut in any::<prop::sample::Index>(),
            max_record_bytes in 0u64..64,
        ) {
            let bytes = damaged_stream(&payloads, &flips, cut);
            let mut file = tempfile::tempfile().expect("temp file");
            std::io::Write::write_all(&mut file, &bytes).expect("write");
            let region = MappedRegion::new(file, 0, bytes.len() as u64).expect("map");
            let config = ReaderConfig { max_record_bytes, ..Default::default() };
            let mut streamed = TfRecordReader::new(Cursor::new(bytes), &config);
            let mut mapped = TfRecordReader::mapped(region, &config);
            loop {
                let (a, b) = (streamed.read_record(), mapped.read_record());
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                prop_assert_eq!(streamed.bytes_read(), mapped.bytes_read());
                if a.is_none() {
                    break;
                }
            }
        }

        #[test]
        fn mutated_streams_never_panic(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..6),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            cut in any::<prop::sample::Index>(),
            max_record_bytes in 0u64..64,
        ) {
            let bytes = damaged_stream(&payloads, &flips, cut);
            let total = bytes.len() as u64;
            let config = ReaderConfig { max_record_bytes, ..Default::default() };
            let mut reader = TfRecordReader::new(Cursor::new(bytes), &config);
            let items = drain(&mut reader);
            prop_assert!(items.len() <= payloads.len() + 1);
            prop_assert!(reader.bytes_read() <= total);
            for (index, item) in items.iter().enumerate() {
                match item {
                    Ok(record) => {
                        prop_assert_eq!(record.index, index as u64);
                        prop_assert!(data_of(record).0.len() as u64 <= max_record_bytes);
                        prop_assert!(record.offset + FRAME_OVERHEAD_BYTES <= total);
                    }
                    Err(error) => {
                        prop_assert_eq!(error.index, Some(index as u64));
                        prop_assert!(error.offset.is_some_and(|offset| offset < total));
                    }
                }
            }
        }
    }
}
