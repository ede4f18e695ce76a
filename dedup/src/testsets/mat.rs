//! A reader of MATLAB MAT v5 files (FORMATS.md §5 "MAT v5"), enough for Flowers-102's
//! `setid.mat` and `imagelabels.mat`: numeric arrays, compressed (`miCOMPRESSED`) or not, little-
//! or big-endian.
//!
//! ```text
//! [header 128 B: text 116 | subsys offset 8 | version u16 0x0100 | endian "IM" (LE) / "MI" (BE)]
//! [element]...   element = tag (type u32, nbytes u32) + data padded to 8 B
//!                          | small tag (nbytes << 16 | type, u32) + <= 4 data bytes in the same 8 B
//!   miMATRIX (14)     = flags (miUINT32: class | flags, nzmax) + dims (miINT32) + name (miINT8) + real part
//!   miCOMPRESSED (15) = zlib stream of one (or more) elements; not padded
//! ```
//!
//! Numeric arrays of every class (double, single, int8..uint64) are read, whatever type the
//! real part is stored as (MATLAB and scipy store a double array as e.g. `miUINT8` when the
//! values fit), and widened to `f64`, column-major as stored. Cell, struct, object, char and
//! sparse arrays are skipped (listed by name, without data): the test-set files hold none.
//!
//! Hostile input: every length and count is checked against the bytes present before use (so
//! allocation is bounded by the input), decompressed bytes and values widened to
//! f64 share one budget of [`MAX_DECOMPRESSED_BYTES`] per file, `miCOMPRESSED` may not nest, and every failure is a [`MatError`] with the byte
//! offset (in the file, or in the decompressed stream of the element that starts at a given
//! file offset).

use flate2::read::ZlibDecoder;
use std::io::Read;

/// Largest decompressed `miCOMPRESSED` element: far above Flowers-102's files (~70 KB), far
/// below memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// Bytes of the MAT v5 header.
pub const HEADER_BYTES: usize = 128;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

/// Array classes (low byte of the array flags) that hold plain numbers.
const CLASS_DOUBLE: u8 = 6;
const CLASS_UINT64: u8 = 15;
/// The complex bit of the array flags.
const FLAG_COMPLEX: u32 = 0x800;

/// Why a MAT file could not be read: the byte offset and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {reason}")]
pub struct MatError {
    /// Offset in the file; inside a compressed element, the reason names the inner offset.
    pub offset: u64,
    pub reason: String,
}

impl MatError {
    fn new(offset: u64, reason: impl Into<String>) -> Self {
        MatError { offset, reason: reason.into() }
    }
}

/// Byte order of the file's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

/// One array of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    pub name: String,
    /// The MATLAB class code (6 = double, 9 = uint8, 1 = cell, ...).
    pub class: u8,
    /// Dimensions, e.g. `[1, 6149]`.
    pub dims: Vec<u64>,
    /// Real part widened to f64, column-major; `None` for classes that are not numeric.
    pub values: Option<Vec<f64>>,
}

/// A parsed MAT v5 file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    pub endian: Endian,
    /// The header's descriptive text, trimmed.
    pub text: String,
    pub arrays: Vec<MatArray>,
}

impl MatFile {
    /// The array named `name`, if any (the first, should a file repeat a name).
    pub fn array(&self, name: &str) -> Option<&MatArray> {
        self.arrays.iter().find(|array| array.name == name)
    }

    /// The numeric values of `name`, if it is a numeric array.
    pub fn values(&self, name: &str) -> Option<&[f64]> {
        self.array(name).and_then(|array| array.values.as_deref())
    }
}

/// Parses a whole MAT v5 file.
pub fn parse_mat(bytes: &[u8]) -> Result<MatFile, MatError> {
    if bytes.len() < HEADER_BYTES {
        return Err(MatError::new(
            0,
            format!("file is {} bytes, shorter than the {HEADER_BYTES}-byte MAT v5 header", bytes.len()),
        ));
    }
    if bytes[..4].contains(&0) {
        return Err(MatError::new(0, "not a MAT v5 file: the header text starts with a zero byte (MAT v4?)"));
    }
    let endian = match &bytes[126..128] {
        b"IM" => Endian::Little,
        b"MI" => Endian::Big,
        other => {
            return Err(MatError::new(
                126,
                format!("endian indicator is {other:02x?}, not \"IM\" or \"MI\": not a MAT v5 file"),
            ))
        }
    };
    let text = String::from_utf8_lossy(&bytes[..116]).trim_end_matches(['\0', ' ']).trim().to_owned();
    let version = read_u16(&bytes[124..126], endian);
    if version != 0x0100 {
        let hint = if text.contains("7.3") { " (MAT v7.3 is HDF5; save with -v7 or scipy.io.savemat)" } else { "" };
        return Err(MatError::new(124, format!("version 0x{version:04x}, not 0x0100{hint}")));
    }
    let mut arrays = Vec::new();
    // One budget for the whole file, for decompressed bytes and widened values together: a
    // file of many near-cap compressed elements, or of int8 data widened 8x to f64, stays
    // within it.
    let mut budget = MAX_DECOMPRESSED_BYTES;
    parse_elements(&bytes[HEADER_BYTES..], HEADER_BYTES as u64, endian, None, &mut arrays, &mut budget)?;
    Ok(MatFile { endian, text, arrays })
}

/// `Some(element_offset)` while parsing the decompressed data of the element at that offset.
type InCompressed = Option<u64>;

fn error_at(base: u64, at: usize, inside: InCompressed, reason: impl Into<String>) -> MatError {
    let offset = base + at as u64;
    match inside {
        None => MatError::new(offset, reason),
        Some(element) => {
            MatError::new(element, format!("in the compressed element, decompressed byte {offset}: {}", reason.into()))
        }
    }
}

fn read_u16(bytes: &[u8], endian: Endian) -> u16 {
    let pair = [bytes[0], bytes[1]];
    match endian {
        Endian::Little => u16::from_le_bytes(pair),
        Endian::Big => u16::from_be_bytes(pair),
    }
}

fn read_u32(bytes: &[u8], endian: Endian) -> u32 {
    let quad = [bytes[0], bytes[1], bytes[2], bytes[3]];
    match endian {
        Endian::Little => u32::from_le_bytes(quad),
        Endian::Big => u32::from_be_bytes(quad),
    }
}

/// One element's tag, located in its buffer.
struct Element<'a> {
    data_type: u32,
    data: &'a [u8],
    /// Offset (in the buffer) of the element's tag.
    start: usize,
    /// Offset (in the buffer) of `data`: 4 or 8 bytes after `start`.
    data_start: usize,
    /// Offset of the next element.
    next: usize,
}

/// Reads the element tag at `at` of `buffer` (`base` = offset of `buffer` for messages).
fn element<'a>(
    buffer: &'a [u8],
    at: usize,
    base: u64,
    endian: Endian,
    inside: InCompressed,
) -> Result<Element<'a>, MatError> {
    let Some(tag) = buffer.get(at..at.saturating_add(8)).filter(|tag| tag.len() == 8) else {
        return Err(error_at(
            base,
            at,
            inside,
            format!("element tag cut short: {} of 8 bytes present", buffer.len().saturating_sub(at)),
        ));
    };
    let first = read_u32(&tag[..4], endian);
    if first >> 16 != 0 {
        // Small data element: type in the low 16 bits, byte count in the high 16, data inline.
        let data_type = first & 0xffff;
        let count = (first >> 16) as usize;
        if count > 4 {
            return Err(error_at(base, at, inside, format!("small element declares {count} bytes, more than 4")));
        }
        return Ok(Element { data_type, data: &tag[4..4 + count], start: at, data_start: at + 4, next: at + 8 });
    }
    let data_type = first;
    let count = read_u32(&tag[4..], endian) as usize;
    let data_start = at + 8;
    let present = buffer.len() - data_start;
    if count > present {
        return Err(error_at(
            base,
            at,
            inside,
            format!("element (type {data_type}) declares {count} bytes, only {present} present"),
        ));
    }
    let data = &buffer[data_start..data_start + count];
    // Compressed elements are not padded; the others are padded to 8 bytes (the padding may be
    // missing after the last element of a buffer).
    let next = if data_type == MI_COMPRESSED {
        data_start + count
    } else {
        (data_start + count).div_ceil(8).saturating_mul(8).min(buffer.len())
    };
    Ok(Element { data_type, data, start: at, data_start, next })
}

/// Parses the top-level elements of `buffer` into `arrays`.
fn parse_elements(
    buffer: &[u8],
    base: u64,
    endian: Endian,
    inside: InCompressed,
    arrays: &mut Vec<MatArray>,
    budget: &mut u64,
) -> Result<(), MatError> {
    let mut at = 0;
    while at < buffer.len() {
        let element = element(buffer, at, base, endian, inside)?;
        match element.data_type {
            MI_MATRIX => {
                if let Some(array) = parse_matrix(&element, buffer, base, endian, inside, budget)? {
                    arrays.push(array);
                }
            }
            MI_COMPRESSED => {
                let element_offset = base + element.start as u64;
                if inside.is_some() {
                    return Err(error_at(base, at, inside, "miCOMPRESSED element nested in another"));
                }
                let inflated = inflate(element.data, element_offset, *budget)?;
                *budget -= inflated.len() as u64;
                parse_elements(&inflated, 0, endian, Some(element_offset), arrays, budget)?;
            }
            // Other top-level elements (e.g. a subsystem blob) hold no arrays we need.
            _ => {}
        }
        at = element.next;
    }
    Ok(())
}

/// Inflates the zlib stream of the `miCOMPRESSED` element at `offset`, capped.
fn inflate(data: &[u8], offset: u64, budget: u64) -> Result<Vec<u8>, MatError> {
    let mut inflated = Vec::new();
    let read = ZlibDecoder::new(data).take(budget.min(MAX_DECOMPRESSED_BYTES) + 1).read_to_end(&mut inflated);
    if let Err(error) = read {
        return Err(MatError::new(offset, format!("compressed element: zlib stream is damaged: {error}")));
    }
    if inflated.len() as u64 > budget.min(MAX_DECOMPRESSED_BYTES) {
        return Err(MatError::new(
            offset,
            format!("compressed data inflates to more than {MAX_DECOMPRESSED_BYTES} bytes (the file's budget)"),
        ));
    }
    Ok(inflated)
}

/// Parses the subelements of one `miMATRIX`; `None` for an empty matrix element.
fn parse_matrix(
    matrix: &Element<'_>,
    buffer: &[u8],
    base: u64,
    endian: Endian,
    inside: InCompressed,
    budget: &mut u64,
) -> Result<Option<MatArray>, MatError> {
    if matrix.data.is_empty() {
        // An empty miMATRIX (nbytes 0) is valid: MATLAB writes it for empty cell contents.
        return Ok(None);
    }
    // Subelement offsets are relative to `buffer`; `inner` ends where the matrix data ends
    // (`data_start + len <= buffer.len()` was checked when the tag was read).
    let inner = &buffer[..matrix.data_start + matrix.data.len()];
    let mut at = matrix.data_start;
    let next = |expected: &str, at: &mut usize| sub_element(inner, at, expected, base, endian, inside);

    let flags = next("array flags", &mut at)?;
    if flags.data_type != MI_UINT32 || flags.data.len() != 8 {
        return Err(error_at(
            base,
            flags.start,
            inside,
            format!("array flags are type {} with {} bytes, not miUINT32 with 8", flags.data_type, flags.data.len()),
        ));
    }
    let flag_word = read_u32(&flags.data[..4], endian);
    let class = (flag_word & 0xff) as u8;

    let dims_element = next("dimensions", &mut at)?;
    if dims_element.data_type != MI_INT32 || dims_element.data.len() < 8 || !dims_element.data.len().is_multiple_of(4) {
        return Err(error_at(
            base,
            dims_element.start,
            inside,
            format!(
                "dimensions are type {} with {} bytes, not miINT32 with at least 2 values",
                dims_element.data_type,
                dims_element.data.len()
            ),
        ));
    }
    let mut dims = Vec::with_capacity(dims_element.data.len() / 4);
    for chunk in dims_element.data.chunks_exact(4) {
        let dim = read_u32(chunk, endian) as i32;
        let Ok(dim) = u64::try_from(dim) else {
            return Err(error_at(base, dims_element.start, inside, format!("negative dimension {dim}")));
        };
        dims.push(dim);
    }

    let name_element = next("name", &mut at)?;
    if name_element.data_type != MI_INT8 && name_element.data_type != MI_UTF8 && name_element.data_type != MI_UINT8 {
        return Err(error_at(
            base,
            name_element.start,
            inside,
            format!("array name is type {}, not miINT8", name_element.data_type),
        ));
    }
    let name = String::from_utf8_lossy(name_element.data).trim_end_matches('\0').to_owned();

    if !(CLASS_DOUBLE..=CLASS_UINT64).contains(&class) {
        return Ok(Some(MatArray { name, class, dims, values: None }));
    }
    let expected = dims.iter().try_fold(1u64, |product, &dim| product.checked_mul(dim));
    let Some(expected) = expected else {
        return Err(error_at(base, dims_element.start, inside, format!("dimensions {dims:?} overflow")));
    };
    let real = next("real part", &mut at)?;
    let values = numbers(&real, base, endian, inside, budget)?;
    if values.len() as u64 != expected {
        return Err(error_at(
            base,
            real.start,
            inside,
            format!(
                "array {name} has dimensions {dims:?} ({expected} values) but its real part holds {}",
                values.len()
            ),
        ));
    }
    if flag_word & FLAG_COMPLEX != 0 {
        // The imaginary part follows; it must be there, but only the real part is kept.
        let imaginary = next("imaginary part", &mut at)?;
        numbers(&imaginary, base, endian, inside, budget)?;
    }
    Ok(Some(MatArray { name, class, dims, values: Some(values) }))
}

/// The subelement at `*at` of a matrix whose data ends at `inner.len()`; advances `*at`.
fn sub_element<'a>(
    inner: &'a [u8],
    at: &mut usize,
    expected: &str,
    base: u64,
    endian: Endian,
    inside: InCompressed,
) -> Result<Element<'a>, MatError> {
    if *at >= inner.len() {
        return Err(error_at(base, *at, inside, format!("array ends before its {expected}")));
    }
    let sub = element(inner, *at, base, endian, inside)?;
    *at = sub.next;
    Ok(sub)
}

/// The numbers of a numeric element, widened to f64.
fn numbers(
    element: &Element<'_>,
    base: u64,
    endian: Endian,
    inside: InCompressed,
    budget: &mut u64,
) -> Result<Vec<f64>, MatError> {
    let width = match element.data_type {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => {
            return Err(error_at(base, element.start, inside, format!("numeric data of unsupported type {other}")))
        }
    };
    if !element.data.len().is_multiple_of(width) {
        return Err(error_at(
            base,
            element.start,
            inside,
            format!("{} bytes of type {} is not a whole number of values", element.data.len(), element.data_type),
        ));
    }
    // Widened to f64: 8 bytes per value, charged to the file's budget before allocating.
    let widened = (element.data.len() / width) as u64 * 8;
    if widened > *budget {
        return Err(error_at(
            base,
            element.start,
            inside,
            format!("{widened} bytes of values exceed the file's budget of {MAX_DECOMPRESSED_BYTES} bytes"),
        ));
    }
    *budget -= widened;
    let eight = |chunk: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        bytes
    };
    let values = element.data.chunks_exact(width).map(|chunk| match (element.data_type, endian) {
        (MI_INT8, _) => f64::from(chunk[0] as i8),
        (MI_UINT8, _) => f64::from(chunk[0]),
        (MI_INT16, _) => f64::from(read_u16(chunk, endian) as i16),
        (MI_UINT16, _) => f64::from(read_u16(chunk, endian)),
        (MI_INT32, _) => f64::from(read_u32(chunk, endian) as i32),
        (MI_UINT32, _) => f64::from(read_u32(chunk, endian)),
        (MI_SINGLE, _) => f64::from(f32::from_bits(read_u32(chunk, endian))),
        (MI_DOUBLE, Endian::Little) => f64::from_le_bytes(eight(chunk)),
        (MI_DOUBLE, Endian::Big) => f64::from_be_bytes(eight(chunk)),
        // Ids and labels are far below 2^53: the widening is exact where it matters.
        (MI_INT64, Endian::Little) => i64::from_le_bytes(eight(chunk)) as f64,
        (MI_INT64, Endian::Big) => i64::from_be_bytes(eight(chunk)) as f64,
        (_, Endian::Little) => u64::from_le_bytes(eight(chunk)) as f64,
        (_, Endian::Big) => u64::from_be_bytes(eight(chunk)) as f64,
    });
    Ok(values.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitkit_fixtures::testsets::{mat_file, MatOptions, MatStorage, MatVariable};

    fn variables() -> Vec<MatVariable> {
        vec![
            MatVariable::row("trnid", vec![1.0, 2.0, 3.0], MatStorage::Double),
            MatVariable::row("valid", vec![4.0], MatStorage::Uint8),
            MatVariable::row("tstid", vec![300.0, 5.0, 70000.0, 6.0], MatStorage::Int32),
            MatVariable::row("x", vec![-1.5, 2.25], MatStorage::Single),
        ]
    }

    fn every_option() -> Vec<MatOptions> {
        let mut options = Vec::new();
        for compressed in [false, true] {
            for big_endian in [false, true] {
                options.push(MatOptions { compressed, big_endian });
            }
        }
        options
    }

    #[test]
    fn reads_every_variant() {
        for options in every_option() {
            let bytes = mat_file(&variables(), options);
            let file = parse_mat(&bytes).unwrap_or_else(|error| panic!("{options:?}: {error}"));
            assert_eq!(file.endian, if options.big_endian { Endian::Big } else { Endian::Little });
            assert_eq!(file.values("trnid"), Some([1.0, 2.0, 3.0].as_slice()), "{options:?}");
            assert_eq!(file.values("valid"), Some([4.0].as_slice()));
            assert_eq!(file.values("tstid"), Some([300.0, 5.0, 70000.0, 6.0].as_slice()));
            assert_eq!(file.values("x"), Some([-1.5, 2.25].as_slice()));
            let tstid = file.array("tstid").expect("tstid");
            assert_eq!((tstid.class, tstid.dims.as_slice()), (6, [1, 4].as_slice()));
            assert!(file.text.starts_with("MATLAB 5.0 MAT-file"), "{}", file.text);
            assert_eq!(file.array("missing"), None);
        }
    }

    #[test]
    fn every_storage_type_widens() {
        let storages = [
            MatStorage::Double,
            MatStorage::Single,
            MatStorage::Int8,
            MatStorage::Uint8,
            MatStorage::Int16,
            MatStorage::Uint16,
            MatStorage::Int32,
            MatStorage::Uint32,
            MatStorage::Int64,
            MatStorage::Uint64,
        ];
        for storage in storages {
            for options in every_option() {
                let values = vec![1.0, 0.0, 100.0, 7.0, 3.0];
                let bytes = mat_file(&[MatVariable::row("v", values.clone(), storage)], options);
                let file = parse_mat(&bytes).unwrap_or_else(|error| panic!("{storage:?} {options:?}: {error}"));
                assert_eq!(file.values("v"), Some(values.as_slice()), "{storage:?} {options:?}");
            }
        }
    }

    #[test]
    fn truncation_at_every_offset_is_an_error_never_a_panic() {
        for options in every_option() {
            let bytes = mat_file(&variables(), options);
            let full = parse_mat(&bytes).expect("full file");
            for cut in 0..bytes.len() {
                match parse_mat(&bytes[..cut]) {
                    Err(error) => assert!(error.offset <= bytes.len() as u64, "{error}"),
                    // A cut between elements (or in the last padding) leaves a valid file holding
                    // the arrays before the cut.
                    Ok(file) => assert!(full.arrays.starts_with(&file.arrays), "cut {cut} {options:?}"),
                }
            }
        }
    }

    #[test]
    fn byte_flips_never_panic() {
        for options in every_option() {
            let bytes = mat_file(&variables(), options);
            for at in 0..bytes.len() {
                for value in [0x00, 0xff, 0x7f, 0x10] {
                    let mut damaged = bytes.clone();
                    damaged[at] = value;
                    let _ = parse_mat(&damaged);
                }
            }
        }
    }

    #[test]
    fn not_mat_files_are_refused_with_offsets() {
        assert_eq!(parse_mat(b"short").map_err(|e| e.offset), Err(0));
        let mut bytes = mat_file(&variables(), MatOptions::default());
        bytes[126..128].copy_from_slice(b"XX");
        let error = parse_mat(&bytes).expect_err("bad endian");
        assert_eq!(error.offset, 126);
        let mut bytes = mat_file(&variables(), MatOptions::default());
        bytes[124] = 0x00;
        bytes[125] = 0x02;
        assert_eq!(parse_mat(&bytes).map_err(|e| e.offset), Err(124));
        let v4 = vec![0u8; 200];
        assert!(parse_mat(&v4).expect_err("v4").reason.contains("MAT v4"));
    }

    #[test]
    fn huge_declared_lengths_are_refused() {
        let mut bytes = mat_file(&variables(), MatOptions::default());
        // The first element's byte count, just after the header.
        bytes[132..136].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = parse_mat(&bytes).expect_err("huge");
        assert_eq!(error.offset, 128);
        assert!(error.reason.contains("declares"), "{error}");
    }

    #[test]
    fn damaged_zlib_names_the_element() {
        let mut bytes = mat_file(&variables(), MatOptions { compressed: true, big_endian: false });
        for byte in &mut bytes[140..150] {
            *byte ^= 0x5a;
        }
        let error = parse_mat(&bytes).expect_err("damaged");
        assert_eq!(error.offset, 128, "{error}");
    }

    #[test]
    fn zlib_bombs_are_capped() {
        use flate2::write::ZlibEncoder;
        use std::io::Write;
        // A miMATRIX tag claiming 300 MiB followed by zeros, compressed: inflating stops at the cap.
        let mut encoder = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let mut tag = Vec::new();
        tag.extend_from_slice(&MI_MATRIX.to_le_bytes());
        tag.extend_from_slice(&(300u32 << 20).to_le_bytes());
        encoder.write_all(&tag).expect("vec");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..300 {
            encoder.write_all(&zeros).expect("vec");
        }
        let compressed = encoder.finish().expect("vec");
        let mut bytes = mat_file(&[], MatOptions::default());
        bytes.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
        bytes.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&compressed);
        let error = parse_mat(&bytes).expect_err("bomb");
        assert!(error.reason.contains("more than"), "{error}");
    }

    #[test]
    fn small_form_containers_at_the_end_never_panic() {
        for data_type in [MI_MATRIX, MI_COMPRESSED] {
            for count in 1..=4u32 {
                let mut bytes = mat_file(&[], MatOptions::default());
                bytes.extend_from_slice(&((count << 16) | data_type).to_le_bytes());
                bytes.extend_from_slice(&[0xff; 4]);
                assert!(parse_mat(&bytes).is_err(), "type {data_type} count {count}");
            }
        }
    }

    #[test]
    fn random_bodies_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let header = mat_file(&[], MatOptions::default());
        for _ in 0..2000 {
            let mut bytes = header.clone();
            let len = rng.random_range(0..200);
            // Mostly small numbers, so tags often look plausible.
            bytes.extend((0..len).map(|_| if rng.random_bool(0.7) { rng.random_range(0..20u8) } else { rng.random() }));
            let _ = parse_mat(&bytes);
        }
    }

    #[test]
    fn non_numeric_arrays_are_listed_without_values() {
        let mut bytes = mat_file(&[MatVariable::row("a", vec![1.0], MatStorage::Double)], MatOptions::default());
        // Change the class byte of the array flags (first subelement's data) to char (4).
        bytes[128 + 8 + 8] = 4;
        let file = parse_mat(&bytes).expect("parse");
        assert_eq!(file.array("a").map(|a| (a.class, a.values.is_none())), Some((4, true)));
        assert_eq!(file.values("a"), None);
    }
}
