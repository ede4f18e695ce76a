//! Whole-stream compression detected by magic bytes, not by file name: gzip (`1f 8b`, TF's
//! `GZIP` option, `.tar.gz` WebDataset shards) and zlib (TF's `ZLIB` option, `78 01|5e|9c|da`).

use std::io::{self, BufRead, BufReader, Read};

/// Buffer of the stream reader: large sequential reads keep syscalls off the profile.
pub const STREAM_BUFFER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zlib,
}

/// Looks at the first bytes of a stream.
pub fn sniff_compression(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        // zlib: CMF 0x78 (deflate, 32K window) and a header checksum that is a multiple of 31.
        [0x78, flg, ..] if (0x78u16 * 256 + u16::from(*flg)).is_multiple_of(31) => Compression::Zlib,
        _ => Compression::None,
    }
}

/// Wraps `reader` in a decompressor when its first bytes say it is compressed.
/// `allow_zlib` is off for tar-like formats, whose first byte is a file name (`x...`).
pub fn open_stream<R: Read + Send + 'static>(
    reader: R,
    allow_zlib: bool,
) -> io::Result<(Box<dyn Read + Send>, Compression)> {
    let mut buffered = BufReader::with_capacity(STREAM_BUFFER_BYTES, reader);
    let head = buffered.fill_buf()?;
    let compression = match sniff_compression(head) {
        Compression::Zlib if !allow_zlib => Compression::None,
        c => c,
    };
    let stream: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => {
            Box::new(BufReader::with_capacity(STREAM_BUFFER_BYTES, flate2::bufread::MultiGzDecoder::new(buffered)))
        }
        Compression::Zlib => {
            Box::new(BufReader::with_capacity(STREAM_BUFFER_BYTES, flate2::bufread::ZlibDecoder::new(buffered)))
        }
    };
    Ok((stream, compression))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_stream_is_detected_and_decompressed() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"hello tfrecord").expect("in-memory write");
        let gz = encoder.finish().expect("in-memory finish");
        let (mut stream, compression) = open_stream(io::Cursor::new(gz), true).expect("open");
        let mut out = String::new();
        stream.read_to_string(&mut out).expect("read");
        assert_eq!(compression, Compression::Gzip);
        assert_eq!(out, "hello tfrecord");
    }

    #[test]
    fn zlib_only_when_allowed() {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"abc").expect("in-memory write");
        let z = encoder.finish().expect("in-memory finish");
        assert_eq!(sniff_compression(&z), Compression::Zlib);
        let (_, c) = open_stream(io::Cursor::new(z.clone()), false).expect("open");
        assert_eq!(c, Compression::None);
        let (mut s, c) = open_stream(io::Cursor::new(z), true).expect("open");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read");
        assert_eq!((c, out.as_slice()), (Compression::Zlib, &b"abc"[..]));
    }

    #[test]
    fn plain_bytes_pass_through() {
        assert_eq!(sniff_compression(b"\x10\0\0\0"), Compression::None);
        assert_eq!(sniff_compression(b""), Compression::None);
    }
}
