//! Image format from magic bytes, never from a file name.
//!
//! ImageNet ships a PNG named `.JPEG` (and CMYK files named `.JPEG`), web scrapes mislabel
//! freely, so the `format` column is what the first bytes say. Sniffing looks at no more than
//! the first 12 bytes and allocates nothing; it runs on every record at ingest.
//!
//! | format | magic                                   | source |
//! |--------|-----------------------------------------|--------|
//! | jpeg   | `FF D8 FF`                              | ITU T.81 B.2 (SOI followed by a marker) |
//! | png    | `89 50 4E 47 0D 0A 1A 0A`               | PNG spec 5.2 |
//! | gif    | `GIF87a` / `GIF89a`                     | GIF89a spec 17 |
//! | bmp    | `BM`                                    | BITMAPFILEHEADER.bfType |
//! | webp   | `RIFF` (4 bytes size) `WEBP`            | RFC 9649 2.5 |
//! | tiff   | `II*\0` (little endian) / `MM\0*` (big) | TIFF 6.0 section 2 |

/// An image container bitkit recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    Bmp,
    Webp,
    Tiff,
}

impl ImageFormat {
    /// The `format` column value: `jpeg`, `png`, `gif`, `bmp`, `webp`, `tiff`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Webp => "webp",
            ImageFormat::Tiff => "tiff",
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PNG signature (PNG spec 5.2): the CR LF / LF bytes catch text-mode transfer damage.
pub(crate) const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// The format named by the magic bytes at the start of `bytes`, or `None`.
///
/// ```
/// use bitkit_ingest::image::{sniff_format, ImageFormat};
/// assert_eq!(sniff_format(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"), Some(ImageFormat::Jpeg));
/// assert_eq!(sniff_format(b"GIF89a\x01\x00\x01\x00"), Some(ImageFormat::Gif));
/// assert_eq!(sniff_format(b"<html>"), None);
/// ```
pub fn sniff_format(bytes: &[u8]) -> Option<ImageFormat> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some(ImageFormat::Jpeg),
        _ if bytes.starts_with(&PNG_SIGNATURE) => Some(ImageFormat::Png),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageFormat::Gif),
        [b'B', b'M', ..] => Some(ImageFormat::Bmp),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(ImageFormat::Webp),
        [b'I', b'I', 0x2A, 0x00, ..] | [b'M', b'M', 0x00, 0x2A, ..] => Some(ImageFormat::Tiff),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_magic_is_recognised() {
        let cases: [(&[u8], ImageFormat); 8] = [
            (b"\xFF\xD8\xFF\xDB", ImageFormat::Jpeg),
            (b"\x89PNG\r\n\x1A\n\0\0\0\x0DIHDR", ImageFormat::Png),
            (b"GIF87a", ImageFormat::Gif),
            (b"GIF89a", ImageFormat::Gif),
            (b"BM\x36\0\0\0", ImageFormat::Bmp),
            (b"RIFF\x24\0\0\0WEBPVP8 ", ImageFormat::Webp),
            (b"II*\0\x08\0\0\0", ImageFormat::Tiff),
            (b"MM\0*\0\0\0\x08", ImageFormat::Tiff),
        ];
        for (bytes, format) in cases {
            assert_eq!(sniff_format(bytes), Some(format), "{bytes:?}");
        }
    }

    #[test]
    fn near_misses_are_not_images() {
        let cases: [&[u8]; 10] = [
            b"",
            b"\xFF",
            b"\xFF\xD8",          // SOI without a following marker
            b"\xFF\xD8\x00",      // SOI followed by data
            b"\x89PNG\r\n\x1A",   // PNG signature cut short
            b"\x89PNG\n\n\x1A\n", // CR LF mangled into LF LF by a text-mode copy
            b"GIF88a",
            b"RIFF\0\0\0\0WAVE",
            b"II+\0", // BigTIFF is not supported
            b"<!DOCTYPE html>",
        ];
        for bytes in cases {
            assert_eq!(sniff_format(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn format_names_match_the_format_column() {
        let names: Vec<&str> = [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::Gif,
            ImageFormat::Bmp,
            ImageFormat::Webp,
            ImageFormat::Tiff,
        ]
        .iter()
        .map(|f| f.as_str())
        .collect();
        assert_eq!(names, ["jpeg", "png", "gif", "bmp", "webp", "tiff"]);
        assert_eq!(ImageFormat::Webp.to_string(), "webp");
    }
}
