//! NumPy `.npy` arrays and `.npz` archives of them, as float32: the format of the official BiT
//! weight files (`BiT-M-R50x1.npz`, keys like `resnet/block1/unit01/a/standardized_conv2d/kernel`)
//! and of `bitkit model forward --input x.npy --out logits.npy`.
//!
//! An `.npy` file is (NumPy's `numpy/lib/format.py`, "Format Version 1.0" and later):
//!
//! ```text
//! 0           6       7       8                   8+L (L = 2 or 4)         data offset
//! +-----------+-------+-------+-------------------+------------------------+-------------------+
//! | \x93NUMPY | major | minor | header length H   | header, H bytes:       | data:             |
//! |           | u8    | u8    | u16 LE (1.0), or  | Python dict literal,   | product(shape)    |
//! |           |       |       | u32 LE (2.0, 3.0) | ' ' padded, '\n' last  | * itemsize bytes  |
//! +-----------+-------+-------+-------------------+------------------------+-------------------+
//! header: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//! ```
//!
//! NumPy pads the header so the data offset is a multiple of 64; the data is C order unless
//! `fortran_order` is True, and a shape `()` is a scalar of one element. An `.npz` is a zip
//! archive of `<name>.npy` members, stored by `np.savez` and deflated by `np.savez_compressed`.
//!
//! Every file is hostile input. Parsing never panics and returns an [`NpzError`] naming the file,
//! the member and the byte offset or fact that was wrong. Nothing is allocated from a declared
//! size alone: the header length is capped at [`MAX_HEADER_BYTES`] and checked against the bytes
//! available; the data size is computed with checked arithmetic from the header and must equal
//! the bytes available (the file length, or the member size the zip directory declares, which in
//! turn must be plausible for its compressed size); and the array buffer grows only as data
//! actually arrives, so a small zip member that claims a huge array (a zip bomb) fails at its
//! first missing byte having allocated at most [`INITIAL_RESERVE_BYTES`] beyond what it delivered.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zip::result::ZipError;
use zip::write::FileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// The largest `.npy` header read. NumPy writes a few hundred bytes and refuses more than 10 000
/// characters; the cap bounds what a corrupt u32 length field (format 2.0, 3.0) makes us allocate.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// NumPy's `NPY_MAXDIMS`.
pub const MAX_DIMS: usize = 64;
/// The array buffer reserved before any data has arrived; it then at most doubles per step, so a
/// truncated or lying member costs at most twice the bytes it actually delivered, or this much.
pub const INITIAL_RESERVE_BYTES: usize = 64 << 20;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// The data offset is a multiple of this (NumPy's `ARRAY_ALIGN`).
const ARRAY_ALIGN: usize = 64;
/// NumPy leaves room after the dict for the growth axis to reach this many digits.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
/// Data is decoded in chunks of this size: a multiple of every itemsize.
const CHUNK_BYTES: usize = 1 << 20;
/// Deflate emits at most 258 bytes per 2-bit (length, distance) pair, so no stream expands more
/// than 1032:1; the slack covers block headers of tiny members.
const MAX_DEFLATE_RATIO: u64 = 1032;
const DEFLATE_SLACK_BYTES: u64 = 1 << 16;

/// A float32 array in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    /// An array whose shape describes its data: `product(shape) == data.len()`, where the empty
    /// shape `[]` is a scalar with one element.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Array, NpzError> {
        match element_count(&shape) {
            Some(count) if count == data.len() => Ok(Array { shape, data }),
            _ => Err(NpzError::ArrayShape { shape, len: data.len() }),
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// What went wrong, where. `member` is the zip member name (`kernel.npy`), empty for a `.npy` file.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("{op} {}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: read failed at byte {offset}", location(path, member))]
    Read {
        path: PathBuf,
        member: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{}: zip error", location(path, member))]
    Zip {
        path: PathBuf,
        member: String,
        #[source]
        source: ZipError,
    },
    #[error("{}: {reason}", location(path, member))]
    Member { path: PathBuf, member: String, reason: String },
    #[error("{}: member {member} appears twice", path.display())]
    DuplicateMember { path: PathBuf, member: String },
    #[error("{}: bad .npy header at byte {offset}: {reason}", location(path, member))]
    Header { path: PathBuf, member: String, offset: u64, reason: String },
    #[error(
        "{}: unsupported dtype {descr:?} (supported: <f4, <f8, <f2 and big-endian >f4, >f8, >f2)",
        location(path, member)
    )]
    Dtype { path: PathBuf, member: String, descr: String },
    #[error(
        "{}: data is {actual} bytes, header declares {expected} (shape {shape:?}, {descr})",
        location(path, member)
    )]
    DataLength { path: PathBuf, member: String, actual: u64, expected: u64, shape: Vec<usize>, descr: String },
    #[error(
        "{}: data continues past the {expected} bytes the header declares (shape {shape:?}, {descr})",
        location(path, member)
    )]
    TrailingData { path: PathBuf, member: String, expected: u64, shape: Vec<usize>, descr: String },
    #[error("{}: cannot allocate {bytes} bytes for the array", location(path, member))]
    TooLarge { path: PathBuf, member: String, bytes: u64 },
    #[error("{}: shape {shape:?} does not describe {len} elements", location(path, member))]
    InvalidArray { path: PathBuf, member: String, shape: Vec<usize>, len: usize },
    #[error("shape {shape:?} does not describe {len} elements")]
    ArrayShape { shape: Vec<usize>, len: usize },
}

fn location(path: &Path, member: &str) -> String {
    if member.is_empty() {
        path.display().to_string()
    } else {
        format!("{}: member {member}", path.display())
    }
}

/// Reads every array of an `.npz`, in archive order, keyed by member name without `.npy`.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Array)>, NpzError> {
    let io_error = |op| move |source| NpzError::Io { path: path.to_owned(), op, source };
    let file = File::open(path).map_err(io_error("opening"))?;
    let file_bytes = file.metadata().map_err(io_error("reading metadata of"))?.len();
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|source| NpzError::Zip {
        path: path.to_owned(),
        member: String::new(),
        source,
    })?;
    let mut seen = HashSet::new();
    let mut arrays = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let (member, declared_bytes) = check_member(&mut archive, index, path, file_bytes)?;
        let name = match member.strip_suffix(".npy") {
            Some(name) => name.to_owned(),
            None => {
                let reason = "not a .npy member".to_owned();
                return Err(NpzError::Member { path: path.to_owned(), member, reason });
            }
        };
        if !seen.insert(name.clone()) {
            return Err(NpzError::DuplicateMember { path: path.to_owned(), member });
        }
        let zip_error = |source| NpzError::Zip { path: path.to_owned(), member: member.clone(), source };
        // Not `by_index`: in zip 0.6 it unwraps an "invalid password" that an unencrypted entry
        // with a WinZip AES extra field produces. With a password supplied it is a value, and the
        // password is ignored for unencrypted entries.
        let mut reader = match archive.by_index_decrypt(index, b"").map_err(zip_error)? {
            Ok(reader) => reader,
            Err(zip::result::InvalidPassword) => {
                let reason = "encrypted members are not supported".to_owned();
                return Err(NpzError::Member { path: path.to_owned(), member, reason });
            }
        };
        let array = read_array(&mut reader, declared_bytes, path, &member)?;
        arrays.push((name, array));
    }
    Ok(arrays)
}

/// Checks what the zip directory says about member `index` before any of it is decompressed, and
/// returns its name and declared size.
fn check_member<R: Read + io::Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    path: &Path,
    file_bytes: u64,
) -> Result<(String, u64), NpzError> {
    // `by_index_raw` only locates the data, building no decryptor or decompressor.
    let entry = archive.by_index_raw(index).map_err(|source| NpzError::Zip {
        path: path.to_owned(),
        member: format!("#{index}"),
        source,
    })?;
    let member = entry.name().to_owned();
    let (declared, compressed) = (entry.size(), entry.compressed_size());
    let reason = match entry.compression() {
        _ if compressed > file_bytes => {
            Some(format!("compressed size {compressed} exceeds the {file_bytes}-byte archive"))
        }
        CompressionMethod::Stored if compressed != declared => {
            Some(format!("stored member is {compressed} bytes in the archive but declares {declared}"))
        }
        CompressionMethod::Deflated
            if declared > compressed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(DEFLATE_SLACK_BYTES) =>
        {
            Some(format!("{compressed} deflated bytes cannot expand to the declared {declared}"))
        }
        CompressionMethod::Stored | CompressionMethod::Deflated => None,
        other => Some(format!("unsupported compression {other}")),
    };
    match reason {
        Some(reason) => Err(NpzError::Member { path: path.to_owned(), member, reason }),
        None => Ok((member, declared)),
    }
}

/// Reads one `.npy` file.
pub fn read_npy(path: &Path) -> Result<Array, NpzError> {
    let io_error = |op| move |source| NpzError::Io { path: path.to_owned(), op, source };
    let file = File::open(path).map_err(io_error("opening"))?;
    let file_bytes = file.metadata().map_err(io_error("reading metadata of"))?.len();
    read_array(&mut BufReader::new(file), file_bytes, path, "")
}

/// Parses `.npy` bytes; `path` and `member` only name the source in errors.
pub fn parse_npy(bytes: &[u8], path: &Path, member: &str) -> Result<Array, NpzError> {
    let mut reader = bytes;
    read_array(&mut reader, bytes.len() as u64, path, member)
}

/// The supported dtypes: little- or big-endian IEEE floats of 2, 4 or 8 bytes.
#[derive(Debug, Clone, Copy)]
struct Dtype {
    itemsize: usize,
    big_endian: bool,
}

impl Dtype {
    /// `'=f4'` (native) and `'|f4'` (not applicable) say nothing about the writer's byte order,
    /// so only explicit `<` and `>` are accepted; NumPy itself never writes the others for floats.
    fn from_descr(descr: &str) -> Option<Dtype> {
        let (big_endian, kind) = match descr.as_bytes() {
            [b'<', kind @ ..] => (false, kind),
            [b'>', kind @ ..] => (true, kind),
            _ => return None,
        };
        let itemsize = match kind {
            b"f2" => 2,
            b"f4" => 4,
            b"f8" => 8,
            _ => return None,
        };
        Some(Dtype { itemsize, big_endian })
    }

    /// Appends the floats in `bytes` (a multiple of `itemsize` long) to `out`.
    fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        let be = self.big_endian;
        match self.itemsize {
            2 => out.extend(bytes.chunks_exact(2).map(|b| {
                let bits = if be { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) };
                half::f16::from_bits(bits).to_f32()
            })),
            4 => out.extend(bytes.chunks_exact(4).map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if be {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })),
            _ => out.extend(bytes.chunks_exact(8).map(|b| {
                let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                (if be { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) }) as f32
            })),
        }
    }
}

/// The three keys of an `.npy` header dict.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Names the file and member being read, for errors.
#[derive(Clone, Copy)]
struct Source<'a> {
    path: &'a Path,
    member: &'a str,
}

impl<'a> Source<'a> {
    fn header_error(self, offset: u64, reason: String) -> NpzError {
        NpzError::Header { path: self.path.to_owned(), member: self.member.to_owned(), offset, reason }
    }

    fn read_error(self, offset: u64) -> impl FnOnce(io::Error) -> NpzError + 'a {
        move |source| NpzError::Read { path: self.path.to_owned(), member: self.member.to_owned(), offset, source }
    }
}

/// Reads the magic, version, length and header dict; returns the header, the offset of its text
/// and the offset of the data.
/// `total_bytes` bounds the header length before anything is allocated for it.
fn read_header<R: Read>(reader: &mut R, total_bytes: u64, source: Source) -> Result<(Header, u64, u64), NpzError> {
    let mut preamble = [0u8; 12];
    let got = read_full(reader, &mut preamble[..8]).map_err(source.read_error(0))?;
    let magic_bytes = got.min(MAGIC.len());
    if preamble[..magic_bytes] != MAGIC[..magic_bytes] {
        let reason = format!("not a .npy file (magic {:02x?})", &preamble[..magic_bytes]);
        return Err(source.header_error(0, reason));
    }
    if got < 8 {
        return Err(source.header_error(got as u64, format!("file ends after {got} bytes, inside the magic")));
    }
    let length_bytes = match (preamble[6], preamble[7]) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (major, minor) => {
            return Err(source.header_error(6, format!("unsupported format version {major}.{minor}")));
        }
    };
    let preamble_bytes = 8 + length_bytes;
    let got = read_full(reader, &mut preamble[8..preamble_bytes]).map_err(source.read_error(8))?;
    if got < length_bytes {
        return Err(source.header_error(8 + got as u64, "file ends inside the header length".to_owned()));
    }
    let header_bytes = if length_bytes == 2 {
        u64::from(u16::from_le_bytes([preamble[8], preamble[9]]))
    } else {
        u64::from(u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]))
    };
    if header_bytes > MAX_HEADER_BYTES as u64 {
        return Err(source.header_error(8, format!("header length {header_bytes} exceeds {MAX_HEADER_BYTES}")));
    }
    let data_offset = preamble_bytes as u64 + header_bytes;
    if data_offset > total_bytes {
        let reason = format!("header length {header_bytes} runs past the end ({total_bytes} bytes)");
        return Err(source.header_error(8, reason));
    }
    let mut text = vec![0u8; header_bytes as usize]; // at most MAX_HEADER_BYTES
    let got = read_full(reader, &mut text).map_err(source.read_error(preamble_bytes as u64))?;
    if got < text.len() {
        let reason = format!("data ends inside the {header_bytes}-byte header");
        return Err(source.header_error((preamble_bytes + got) as u64, reason));
    }
    let header =
        parse_header(&text).map_err(|(at, reason)| source.header_error((preamble_bytes + at) as u64, reason))?;
    Ok((header, preamble_bytes as u64, data_offset))
}

/// Reads one `.npy` from `reader`, which holds exactly `total_bytes` bytes (the file length, or
/// the size the zip directory declares for the member, both checked against the header).
fn read_array<R: Read>(reader: &mut R, total_bytes: u64, path: &Path, member: &str) -> Result<Array, NpzError> {
    let source = Source { path, member };
    let (Header { descr, fortran_order, shape }, header_offset, data_offset) =
        read_header(reader, total_bytes, source)?;
    let Some(dtype) = Dtype::from_descr(&descr) else {
        return Err(NpzError::Dtype { path: path.to_owned(), member: member.to_owned(), descr });
    };
    let sizes = element_count(&shape).and_then(|n| Some((n, (n as u64).checked_mul(dtype.itemsize as u64)?)));
    let Some((count, data_bytes)) = sizes else {
        return Err(source.header_error(header_offset, format!("shape {shape:?} of {descr} overflows")));
    };
    let length_error = |actual: u64| NpzError::DataLength {
        path: path.to_owned(),
        member: member.to_owned(),
        actual,
        expected: data_bytes,
        shape: shape.clone(),
        descr: descr.clone(),
    };
    if total_bytes - data_offset != data_bytes {
        return Err(length_error(total_bytes - data_offset));
    }

    // For a file or a slice the bytes are really there, but a zip member's declared size can lie:
    // grow the buffer only as data arrives, never beyond `count`.
    let too_large = || NpzError::TooLarge { path: path.to_owned(), member: member.to_owned(), bytes: data_bytes };
    let mut data: Vec<f32> = Vec::new();
    data.try_reserve_exact(count.min(INITIAL_RESERVE_BYTES / 4)).map_err(|_| too_large())?;
    let mut chunk = vec![0u8; usize::try_from(data_bytes).map_or(CHUNK_BYTES, |bytes| bytes.min(CHUNK_BYTES))];
    let mut done = 0u64;
    while done < data_bytes {
        let want = usize::try_from(data_bytes - done).map_or(chunk.len(), |left| left.min(chunk.len()));
        let got = read_full(reader, &mut chunk[..want]).map_err(source.read_error(data_offset + done))?;
        if got < want {
            return Err(length_error(done + got as u64));
        }
        let items = want / dtype.itemsize;
        if data.capacity() - data.len() < items {
            let grow = data.len().max(items).min(count - data.len());
            data.try_reserve_exact(grow).map_err(|_| too_large())?;
        }
        dtype.decode(&chunk[..want], &mut data);
        done += want as u64;
    }
    // One more byte: it must not exist, and asking for it makes `zip` verify the member's CRC.
    if read_full(reader, &mut [0u8; 1]).map_err(source.read_error(total_bytes))? != 0 {
        let (path, member) = (path.to_owned(), member.to_owned());
        return Err(NpzError::TrailingData { path, member, expected: data_bytes, shape, descr });
    }
    if fortran_order {
        data = fortran_to_c(&shape, &data);
    }
    Ok(Array { shape, data })
}

/// `product(shape)`, `None` on overflow; the scalar shape `[]` has one element.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |count, &dim| count.checked_mul(dim))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n).min(buf.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reorders data with axis 0 fastest (Fortran) into last axis fastest (C).
/// `data.len()` is `product(shape)`, so the strides cannot overflow.
fn fortran_to_c(shape: &[usize], data: &[f32]) -> Vec<f32> {
    if shape.len() < 2 || data.is_empty() {
        return data.to_vec();
    }
    let mut strides = Vec::with_capacity(shape.len());
    let mut stride = 1;
    for &dim in shape {
        strides.push(stride);
        stride *= dim;
    }
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        out.push(data[offset]);
        // Odometer over the C-order index, last axis fastest, tracking the Fortran offset.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            offset -= strides[axis] * shape[axis];
            index[axis] = 0;
        }
    }
    out
}

/// Parses the header dict; an error is (byte offset in `text`, reason).
fn parse_header(text: &[u8]) -> Result<Header, (usize, String)> {
    let mut parser = Parser { text, pos: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    parser.skip_space();
    parser.expect(b'{')?;
    loop {
        parser.skip_space();
        if parser.eat(b'}') {
            break;
        }
        let key_at = parser.pos;
        let key = parser.string()?;
        parser.skip_space();
        parser.expect(b':')?;
        parser.skip_space();
        let duplicate = match key {
            b"descr" => {
                if parser.peek() == Some(b'[') {
                    return Err((parser.pos, "structured dtypes are not supported".to_owned()));
                }
                descr.replace(String::from_utf8_lossy(parser.string()?).into_owned()).is_some()
            }
            b"fortran_order" => fortran_order.replace(parser.bool()?).is_some(),
            b"shape" => shape.replace(parser.shape()?).is_some(),
            other => {
                return Err((key_at, format!("unexpected key {:?}", String::from_utf8_lossy(other))));
            }
        };
        if duplicate {
            return Err((key_at, format!("key {:?} appears twice", String::from_utf8_lossy(key))));
        }
        parser.skip_space();
        if parser.eat(b'}') {
            break;
        }
        if !parser.eat(b',') {
            let key = String::from_utf8_lossy(key);
            return Err((
                parser.pos,
                format!("expected ',' or '}}' after the {key:?} value, found {}", parser.found()),
            ));
        }
    }
    let dict_end = parser.pos;
    parser.skip_space();
    if parser.pos < text.len() {
        return Err((parser.pos, "unexpected bytes after the header dict".to_owned()));
    }
    let missing = |key: &str| (dict_end, format!("header has no {key:?} key"));
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// A cursor over the Python literal subset NumPy writes: `'str'`, `True`/`False`, `(1, 2,)`.
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), (usize, String)> {
        if self.eat(byte) {
            return Ok(());
        }
        Err((self.pos, format!("expected {:?}, found {}", char::from(byte), self.found())))
    }

    /// The next byte, for error messages.
    fn found(&self) -> String {
        self.peek().map_or("the end".to_owned(), |b| format!("{:?}", char::from(b)))
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// A quoted string without escapes (no dtype or key needs them).
    fn string(&mut self) -> Result<&'a [u8], (usize, String)> {
        let start = self.pos;
        let quote = match self.peek() {
            Some(quote @ (b'\'' | b'"')) => quote,
            _ => return Err((start, "expected a quoted string".to_owned())),
        };
        let rest = &self.text[start + 1..];
        match rest.iter().position(|&b| b == quote || b == b'\\') {
            Some(end) if rest[end] == quote => {
                self.pos = start + end + 2;
                Ok(&rest[..end])
            }
            Some(end) => Err((start + 1 + end, "escapes in strings are not supported".to_owned())),
            None => Err((start, "unterminated string".to_owned())),
        }
    }

    fn bool(&mut self) -> Result<bool, (usize, String)> {
        let rest = &self.text[self.pos..];
        let (value, len) = if rest.starts_with(b"True") {
            (true, 4)
        } else if rest.starts_with(b"False") {
            (false, 5)
        } else {
            return Err((self.pos, "fortran_order must be True or False".to_owned()));
        };
        self.pos += len;
        Ok(value)
    }

    /// A tuple of non-negative ints; `(5)` is an int in Python, not a tuple, so it is refused.
    fn shape(&mut self) -> Result<Vec<usize>, (usize, String)> {
        let start = self.pos;
        self.expect(b'(')?;
        let mut shape = Vec::new();
        let mut trailing_comma = false;
        loop {
            self.skip_space();
            if self.eat(b')') {
                break;
            }
            if shape.len() == MAX_DIMS {
                return Err((self.pos, format!("shape has more than {MAX_DIMS} dimensions")));
            }
            shape.push(self.dimension()?);
            self.skip_space();
            trailing_comma = self.eat(b',');
            if !trailing_comma {
                self.expect(b')')?;
                break;
            }
        }
        if shape.len() == 1 && !trailing_comma {
            return Err((start, "shape (n) is not a tuple; a 1-D shape is written (n,)".to_owned()));
        }
        Ok(shape)
    }

    /// A decimal int; Python 2 wrote longs as `3L`.
    fn dimension(&mut self) -> Result<usize, (usize, String)> {
        let start = self.pos;
        let mut value = 0usize;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(usize::from(digit - b'0')))
                .ok_or((start, "shape dimension overflows".to_owned()))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err((start, "expected a non-negative integer dimension".to_owned()));
        }
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        Ok(value)
    }
}

/// The `.npy` encoding NumPy's `np.save` writes for a float32 C-order array: format 1.0 (2.0 if
/// the header exceeds 64 KiB), `'<f4'`, data at a multiple of 64 bytes. The bytes are only valid
/// if the array's shape describes its data, as [`Array::new`] ensures.
pub fn encode_npy(array: &Array) -> Vec<u8> {
    let header = encode_header(&array.shape);
    let mut out = Vec::with_capacity(header.len().saturating_add(array.data.len().saturating_mul(4)));
    write_npy_to(&mut out, &header, array).expect("writing to a Vec<u8> cannot fail");
    out
}

/// Magic, version, length and the padded dict, byte for byte as NumPy's `_write_array_header`.
fn encode_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|dim| dim.to_string()).collect();
    let shape_text = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    if let Some(first) = dims.first() {
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(first.len())));
    }
    let text_bytes = dict.len() + 1; // the final '\n'
    let padding = |length_bytes: usize| ARRAY_ALIGN - (8 + length_bytes + text_bytes) % ARRAY_ALIGN;
    // NumPy falls back to format 2.0 only when the padded header overflows 1.0's u16 length.
    let (version, length_bytes) = if text_bytes + padding(2) <= usize::from(u16::MAX) { (1u8, 2) } else { (2u8, 4) };
    let padding = padding(length_bytes);
    let header_bytes = text_bytes + padding;
    let mut out = Vec::with_capacity(8 + length_bytes + header_bytes);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_bytes as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_bytes as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + padding, b' ');
    out.push(b'\n');
    out
}

/// Writes `header` then the data as little-endian float32, a chunk at a time.
fn write_npy_to<W: Write>(writer: &mut W, header: &[u8], array: &Array) -> io::Result<()> {
    writer.write_all(header)?;
    let mut chunk = Vec::with_capacity(CHUNK_BYTES.min(array.data.len() * 4));
    for values in array.data.chunks(CHUNK_BYTES / 4) {
        chunk.clear();
        chunk.extend(values.iter().flat_map(|value| value.to_le_bytes()));
        writer.write_all(&chunk)?;
    }
    Ok(())
}

fn check_array(array: &Array, path: &Path, member: &str) -> Result<(), NpzError> {
    if element_count(&array.shape) == Some(array.data.len()) {
        return Ok(());
    }
    let (shape, len) = (array.shape.clone(), array.data.len());
    Err(NpzError::InvalidArray { path: path.to_owned(), member: member.to_owned(), shape, len })
}

/// Writes one `.npy` file (see [`encode_npy`]) to `path` directly; the caller makes it atomic.
pub fn write_npy(path: &Path, array: &Array) -> Result<(), NpzError> {
    check_array(array, path, "")?;
    let io_error = |op| move |source| NpzError::Io { path: path.to_owned(), op, source };
    let mut writer = BufWriter::new(File::create(path).map_err(io_error("creating"))?);
    write_npy_to(&mut writer, &encode_header(&array.shape), array).map_err(io_error("writing"))?;
    writer.into_inner().map_err(|e| io_error("writing")(e.into_error()))?;
    Ok(())
}

/// Writes an `.npz` as `np.savez` does: members `<name>.npy`, stored uncompressed, in the given
/// order, with the zip format's fixed 1980-01-01 timestamp so equal arrays give equal bytes.
/// Writes `path` directly; the caller makes it atomic.
pub fn write_npz(path: &Path, arrays: &[(&str, &Array)]) -> Result<(), NpzError> {
    let mut seen = HashSet::new();
    for (name, array) in arrays {
        let member = format!("{name}.npy");
        check_array(array, path, &member)?;
        if member.len() > usize::from(u16::MAX) {
            let reason = "name is longer than a zip entry name can be".to_owned();
            return Err(NpzError::Member { path: path.to_owned(), member, reason });
        }
        if !seen.insert(*name) {
            return Err(NpzError::DuplicateMember { path: path.to_owned(), member });
        }
    }
    let io_error = |op| move |source| NpzError::Io { path: path.to_owned(), op, source };
    let file = File::create(path).map_err(io_error("creating"))?;
    let mut zip = ZipWriter::new(BufWriter::new(file));
    for (name, array) in arrays {
        let member = format!("{name}.npy");
        let zip_error = |source| NpzError::Zip { path: path.to_owned(), member: member.clone(), source };
        let header = encode_header(&array.shape);
        let member_bytes = (header.len() as u64).saturating_add((array.data.len() as u64).saturating_mul(4));
        // Zip64 sizes only where the 32-bit fields cannot hold them, as Python's zipfile does.
        let options = FileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(member_bytes >= u64::from(u32::MAX));
        zip.start_file(member.as_str(), options).map_err(zip_error)?;
        write_npy_to(&mut zip, &header, array).map_err(io_error("writing"))?;
    }
    let zip_error = |source| NpzError::Zip { path: path.to_owned(), member: String::new(), source };
    let writer = zip.finish().map_err(zip_error)?;
    writer.into_inner().map_err(|e| io_error("writing")(e.into_error()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hands out one byte per call, with an `Interrupted` before each, then fails at `fail_at`.
    struct Trickle<'a> {
        bytes: &'a [u8],
        pos: usize,
        interrupt: bool,
        fail_at: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.pos == self.fail_at {
                return Err(io::Error::other("disk on fire"));
            }
            let Some((&byte, _)) = self.bytes[self.pos..].split_first() else { return Ok(0) };
            buf[0] = byte;
            self.pos += 1;
            Ok(1)
        }
    }

    #[test]
    fn short_and_interrupted_reads_are_retried_and_failures_located() {
        let array = Array::new(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("6 elements");
        let bytes = encode_npy(&array);
        let (path, len) = (Path::new("t.npz"), bytes.len() as u64);
        let mut reader = Trickle { bytes: &bytes, pos: 0, interrupt: false, fail_at: usize::MAX };
        assert_eq!(read_array(&mut reader, len, path, "t.npy").expect("trickled"), array);
        let mut reader = Trickle { bytes: &bytes, pos: 0, interrupt: false, fail_at: 130 };
        let err = read_array(&mut reader, len, path, "t.npy").expect_err("fails at 130");
        assert!(matches!(err, NpzError::Read { offset: 128, .. }), "{err}");
        assert_eq!(err.to_string(), "t.npz: member t.npy: read failed at byte 128");
    }

    #[test]
    fn long_headers_fall_back_to_version_2_like_numpy() {
        let header = encode_header(&[1; 30_000]);
        assert_eq!(header[6..8], [2, 0]);
        assert_eq!(header.len() % ARRAY_ALIGN, 0);
        let length = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        assert_eq!(length as usize, header.len() - 12);
        assert_eq!(encode_header(&[1; 64])[6..8], [1, 0]);
    }

    proptest! {
        #[test]
        fn fortran_to_c_matches_the_index_formula(shape in prop::collection::vec(0usize..5, 0..5)) {
            let count: usize = shape.iter().product();
            let fortran: Vec<f32> = (0..count).map(|i| i as f32).collect();
            let c_order = fortran_to_c(&shape, &fortran);
            for (c_offset, &value) in c_order.iter().enumerate() {
                // Unravel the C offset, then ravel the index in Fortran order.
                let (mut rest, mut f_offset, mut stride) = (c_offset, 0, 1);
                let mut index = vec![0; shape.len()];
                for axis in (0..shape.len()).rev() {
                    index[axis] = rest % shape[axis];
                    rest /= shape[axis];
                }
                for (axis, &i) in index.iter().enumerate() {
                    f_offset += i * stride;
                    stride *= shape[axis];
                }
                prop_assert_eq!(value, f_offset as f32);
            }
            prop_assert_eq!(c_order.len(), count);
        }
    }
}
