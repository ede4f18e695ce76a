//! Header probing: format, width and height of an encoded image without decoding it.
//!
//! Ingest probes every record (hundreds of MB/s across workers), so each format's header is
//! parsed by hand from a fixed, small prefix: no pixel buffer, no allocation on success, and
//! a pixel limit checked from the header alone, so a 100000x100000 bomb costs nothing.
//! Width and height are the header's (what Pillow's `Image.size` reports); EXIF rotation is
//! reported in [`ImageInfo::orientation`], not applied.
//!
//! | format | where the size is | checks |
//! |---|---|---|
//! | JPEG | first SOFn, after walking the marker segments ([`super::jpeg`]) | see `jpeg.rs` |
//! | PNG  | IHDR, which must be the first chunk (PNG spec 11.2.2) | length 13, CRC, 1 <= w,h <= 2^31-1, bit depth / colour type pair, methods |
//! | GIF  | logical screen descriptor at byte 6 (u16 LE w, h) | non-zero |
//! | BMP  | DIB header at byte 14: CORE (12 bytes, u16) or INFO and later (i32; negative height = top-down) | header sizes Pillow reads |
//! | WebP | first chunk: `VP8 ` key-frame header, `VP8L` 14-bit fields, `VP8X` 24-bit canvas | start codes, signature, version |
//! | TIFF | IFD0 tags ImageWidth (0x100), ImageLength (0x101), Orientation (0x112) | SHORT or LONG scalars |

use super::exif::{Orientation, Tiff, TAG_IMAGE_LENGTH, TAG_IMAGE_WIDTH, TAG_ORIENTATION};
use super::jpeg::{parse_jpeg_header, JpegInfo};
use super::sniff::PNG_SIGNATURE;
use super::{sniff_format, ImageFormat};
use crate::record::RejectKind;

/// What a header says about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Stored width, before any EXIF rotation (the `width` column).
    pub width: u32,
    /// Stored height, before any EXIF rotation (the `height` column).
    pub height: u32,
    /// EXIF orientation found in the header: JPEG APP1 `Exif` or TIFF IFD0. Always
    /// `Normal` for formats whose EXIF lives outside the probed header (PNG `eXIf`, WebP
    /// `EXIF`); the decoder reads those itself.
    pub orientation: Orientation,
    /// Frame details of a JPEG; `None` for other formats.
    pub jpeg: Option<JpegInfo>,
}

impl ImageInfo {
    /// `width * height`.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// `(width, height)` once the EXIF orientation is applied, as decoding returns it.
    pub fn oriented_size(&self) -> (u32, u32) {
        self.orientation.oriented_size(self.width, self.height)
    }
}

/// Why a header could not be probed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("empty image (0 bytes)")]
    Empty,
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("bad {format} header: {reason}")]
    BadHeader { format: &'static str, reason: String },
    #[error("{width}x{height} = {pixels} pixels exceeds the limit of {max_pixels}")]
    TooManyPixels { width: u32, height: u32, pixels: u64, max_pixels: u64 },
}

impl ProbeError {
    /// The `rejects.jsonl` class of this error.
    pub fn reject_kind(&self) -> RejectKind {
        match self {
            ProbeError::Empty => RejectKind::EmptyImage,
            ProbeError::NotAnImage(_) => RejectKind::NotAnImage,
            ProbeError::BadHeader { .. } => RejectKind::BadImageHeader,
            ProbeError::TooManyPixels { .. } => RejectKind::TooManyPixels,
        }
    }
}

/// Largest PNG dimension (PNG spec 11.2.2: "zero is an invalid value", maximum 2^31-1).
const PNG_MAX_DIMENSION: u32 = (1 << 31) - 1;

/// How many leading bytes a [`ProbeError::NotAnImage`] message shows.
const MAGIC_PREVIEW_BYTES: usize = 16;

/// Reads format and dimensions from the header only; rejects more than `max_pixels`.
///
/// ```
/// use bitkit_ingest::image::{probe_image, ImageFormat, ProbeError};
/// let gif = b"GIF89a\x40\x01\xF0\x00\x00\x00\x00";
/// let info = probe_image(gif, 1_000_000).unwrap();
/// assert_eq!((info.format, info.width, info.height), (ImageFormat::Gif, 320, 240));
/// assert!(matches!(probe_image(gif, 1000), Err(ProbeError::TooManyPixels { .. })));
/// ```
pub fn probe_image(bytes: &[u8], max_pixels: u64) -> Result<ImageInfo, ProbeError> {
    if bytes.is_empty() {
        return Err(ProbeError::Empty);
    }
    let Some(format) = sniff_format(bytes) else {
        return Err(ProbeError::NotAnImage(describe_magic(bytes)));
    };
    let parsed = match format {
        ImageFormat::Jpeg => parse_jpeg_header(bytes).map(|h| ImageInfo {
            format,
            width: u32::from(h.width),
            height: u32::from(h.height),
            orientation: h.orientation,
            jpeg: Some(h.info),
        }),
        ImageFormat::Png => probe_png(bytes).map(|(w, h)| plain(format, w, h)),
        ImageFormat::Gif => probe_gif(bytes).map(|(w, h)| plain(format, w, h)),
        ImageFormat::Bmp => probe_bmp(bytes).map(|(w, h)| plain(format, w, h)),
        ImageFormat::Webp => probe_webp(bytes).map(|(w, h)| plain(format, w, h)),
        ImageFormat::Tiff => {
            probe_tiff(bytes).map(|(w, h, orientation)| ImageInfo { orientation, ..plain(format, w, h) })
        }
    };
    let info = parsed.map_err(|reason| ProbeError::BadHeader { format: format.as_str(), reason })?;
    let pixels = info.pixels();
    if pixels > max_pixels {
        return Err(ProbeError::TooManyPixels { width: info.width, height: info.height, pixels, max_pixels });
    }
    Ok(info)
}

fn plain(format: ImageFormat, width: u32, height: u32) -> ImageInfo {
    ImageInfo { format, width, height, orientation: Orientation::Normal, jpeg: None }
}

/// "N bytes starting 3c 21 44 ..." for a record that is not an image: the hex shows at a
/// glance whether it is HTML, an error page, a gzip stream or zeros.
fn describe_magic(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(MAGIC_PREVIEW_BYTES)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    format!("unrecognised magic bytes; {} bytes starting {}", bytes.len(), hex.join(" "))
}

fn cut_off(what: &str, need: usize, have: usize) -> String {
    format!("{what} cut off: need {need} bytes, have {have}")
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// ```text
/// 0: signature (8) | 8: length u32 BE = 13 | 12: "IHDR" | 16: width u32 | 20: height u32
/// 24: bit depth | 25: colour type | 26: compression | 27: filter | 28: interlace | 29: CRC u32 of bytes 12..29
/// ```
fn probe_png(bytes: &[u8]) -> Result<(u32, u32), String> {
    const IHDR_END: usize = 33;
    if bytes.len() < IHDR_END {
        return Err(cut_off("IHDR chunk", IHDR_END, bytes.len()));
    }
    debug_assert!(bytes.starts_with(&PNG_SIGNATURE), "sniffed as PNG");
    let chunk_type = &bytes[12..16];
    if chunk_type != b"IHDR" {
        return Err(format!("first chunk at byte 8 is {:?}, not IHDR", String::from_utf8_lossy(chunk_type)));
    }
    let length = be32(bytes, 8);
    if length != 13 {
        return Err(format!("IHDR length {length} at byte 8, expected 13"));
    }
    let (width, height) = (be32(bytes, 16), be32(bytes, 20));
    if width == 0 || height == 0 || width > PNG_MAX_DIMENSION || height > PNG_MAX_DIMENSION {
        return Err(format!("{width}x{height} image (each side must be 1..=2^31-1)"));
    }
    let [depth, colour, compression, filter, interlace] = [bytes[24], bytes[25], bytes[26], bytes[27], bytes[28]];
    let depth_ok = match colour {
        0 => matches!(depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(depth, 8 | 16),
        _ => return Err(format!("colour type {colour} at byte 25 (valid: 0, 2, 3, 4, 6)")),
    };
    if !depth_ok {
        return Err(format!("bit depth {depth} is invalid for colour type {colour}"));
    }
    if compression != 0 || filter != 0 || interlace > 1 {
        return Err(format!(
            "compression/filter/interlace methods {compression}/{filter}/{interlace} (valid: 0/0/0-1)"
        ));
    }
    let stored = be32(bytes, 29);
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    if crc.sum() != stored {
        return Err(format!("IHDR CRC {:#010x} != stored {stored:#010x} at byte 29", crc.sum()));
    }
    Ok((width, height))
}

/// `GIF8?a` then the logical screen descriptor: width u16 LE at 6, height at 8. Pillow's
/// `size` is the logical screen, whatever the frames' own rectangles are.
fn probe_gif(bytes: &[u8]) -> Result<(u32, u32), String> {
    if bytes.len() < 10 {
        return Err(cut_off("logical screen descriptor", 10, bytes.len()));
    }
    let (width, height) = (le16(bytes, 6), le16(bytes, 8));
    if width == 0 || height == 0 {
        return Err(format!("{width}x{height} logical screen"));
    }
    Ok((u32::from(width), u32::from(height)))
}

/// 14-byte BITMAPFILEHEADER, then the DIB header whose first u32 is its own size.
/// CORE (12): u16 width at 18, height at 20. INFO (40) and its extensions: i32 width at 18,
/// height at 22, negative height meaning rows stored top-down.
fn probe_bmp(bytes: &[u8]) -> Result<(u32, u32), String> {
    if bytes.len() < 18 {
        return Err(cut_off("DIB header size", 18, bytes.len()));
    }
    let header_size = le32(bytes, 14);
    let (width, height) = match header_size {
        12 => {
            if bytes.len() < 22 {
                return Err(cut_off("BITMAPCOREHEADER", 22, bytes.len()));
            }
            (i64::from(le16(bytes, 18)), i64::from(le16(bytes, 20)))
        }
        // The sizes Pillow's BmpImagePlugin reads: INFO, V2, V3, OS/2 2.x, V4, V5.
        40 | 52 | 56 | 64 | 108 | 124 => {
            if bytes.len() < 26 {
                return Err(cut_off("BITMAPINFOHEADER", 26, bytes.len()));
            }
            let width = i64::from(le32(bytes, 18) as i32);
            let height = i64::from(le32(bytes, 22) as i32);
            (width, height.abs())
        }
        other => return Err(format!("unsupported DIB header size {other} at byte 14")),
    };
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!("{width}x{height} image")),
    }
}

/// `RIFF` size `WEBP`, then the first chunk's FourCC at 12 and payload at 20.
fn probe_webp(bytes: &[u8]) -> Result<(u32, u32), String> {
    if bytes.len() < 20 {
        return Err(cut_off("first chunk header", 20, bytes.len()));
    }
    let fourcc = &bytes[12..16];
    let (width, height) = match fourcc {
        // Lossy: 3-byte frame tag, start code 9D 01 2A, then 14-bit width and height
        // (the top 2 bits are an upscaling hint that does not change the size; RFC 6386 9.1).
        b"VP8 " => {
            if bytes.len() < 30 {
                return Err(cut_off("VP8 frame header", 30, bytes.len()));
            }
            if bytes[20] & 1 != 0 {
                return Err("VP8 frame at byte 20 is not a key frame".into());
            }
            if bytes[23..26] != [0x9D, 0x01, 0x2A] {
                return Err(format!("VP8 start code {:02x?} at byte 23, expected 9d 01 2a", &bytes[23..26]));
            }
            (u32::from(le16(bytes, 26) & 0x3FFF), u32::from(le16(bytes, 28) & 0x3FFF))
        }
        // Lossless: signature 0x2F, then 14 bits width-1, 14 bits height-1, 1 bit alpha,
        // 3 bits version (must be 0).
        b"VP8L" => {
            if bytes.len() < 25 {
                return Err(cut_off("VP8L header", 25, bytes.len()));
            }
            if bytes[20] != 0x2F {
                return Err(format!("VP8L signature {:#04x} at byte 20, expected 0x2f", bytes[20]));
            }
            let bits = le32(bytes, 21);
            if bits >> 29 != 0 {
                return Err(format!("VP8L version {} (only 0 exists)", bits >> 29));
            }
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        // Extended: flags (4 bytes), then canvas width-1 and height-1 as 24-bit LE.
        b"VP8X" => {
            if bytes.len() < 30 {
                return Err(cut_off("VP8X header", 30, bytes.len()));
            }
            let u24 = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], 0]);
            (u24(24) + 1, u24(27) + 1)
        }
        other => {
            return Err(format!(
                "first chunk {:?} at byte 12 is none of VP8, VP8L, VP8X",
                String::from_utf8_lossy(other)
            ))
        }
    };
    if width == 0 || height == 0 {
        return Err(format!("{width}x{height} image"));
    }
    Ok((width, height))
}

fn probe_tiff(bytes: &[u8]) -> Result<(u32, u32, Orientation), String> {
    let tiff = Tiff::parse(bytes)?;
    let [width, height, orientation] = tiff.ifd0_scalars([TAG_IMAGE_WIDTH, TAG_IMAGE_LENGTH, TAG_ORIENTATION])?;
    let (Some(width), Some(height)) = (width, height) else {
        return Err("IFD0 lacks ImageWidth or ImageLength".into());
    };
    if width == 0 || height == 0 {
        return Err(format!("{width}x{height} image"));
    }
    Ok((width, height, orientation.and_then(Orientation::from_exif).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testdata;

    const LIMIT: u64 = 1 << 30;

    #[test]
    fn every_format_is_probed_with_its_size() {
        for (format, bytes) in testdata::every_format(37, 23) {
            let info = probe_image(&bytes, LIMIT).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!((info.format, info.width, info.height), (format, 37, 23));
            assert_eq!(info.jpeg.is_some(), format == ImageFormat::Jpeg);
        }
    }

    #[test]
    fn png_named_jpeg_is_png() {
        // ImageNet's n02105855_2933.JPEG is a PNG: only the bytes count.
        let png = testdata::png_rgb(5, 4);
        assert_eq!(probe_image(&png, LIMIT).map(|i| i.format), Ok(ImageFormat::Png));
    }

    #[test]
    fn jpeg_frame_details_are_reported() {
        let progressive = testdata::jpeg(40, 30, testdata::JpegKind::Progressive);
        let info = probe_image(&progressive, LIMIT).expect("valid");
        let jpeg = info.jpeg.expect("jpeg");
        assert!(jpeg.progressive);
        assert_eq!((jpeg.components, jpeg.sof_marker), (3, 0xC2));
        let gray = probe_image(&testdata::jpeg(40, 30, testdata::JpegKind::Gray), LIMIT).expect("valid");
        assert_eq!(gray.jpeg.map(|j| j.components), Some(1));
        let cmyk = probe_image(&testdata::jpeg(40, 30, testdata::JpegKind::Cmyk), LIMIT).expect("valid");
        assert_eq!(cmyk.jpeg.map(|j| j.components), Some(4));
    }

    #[test]
    fn exif_orientation_is_reported_but_size_is_the_headers() {
        let bytes = testdata::with_exif_orientation(&testdata::jpeg(40, 30, testdata::JpegKind::Baseline420), 6);
        let info = probe_image(&bytes, LIMIT).expect("valid");
        assert_eq!((info.width, info.height), (40, 30));
        assert_eq!(info.orientation, Orientation::Rotate90);
        assert_eq!(info.oriented_size(), (30, 40));
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(probe_image(b"", LIMIT), Err(ProbeError::Empty));
        assert_eq!(
            probe_image(b"<!DOCTYPE html><html>", LIMIT),
            Err(ProbeError::NotAnImage(
                "unrecognised magic bytes; 21 bytes starting 3c 21 44 4f 43 54 59 50 45 20 68 74 6d 6c 3e 3c".into()
            ))
        );
        assert_eq!(
            probe_image(&[0], LIMIT),
            Err(ProbeError::NotAnImage("unrecognised magic bytes; 1 bytes starting 00".into()))
        );
        assert_eq!(probe_image(b"", LIMIT).map_err(|e| e.reject_kind()), Err(RejectKind::EmptyImage));
    }

    #[test]
    fn huge_png_is_rejected_from_the_header() {
        let bomb = testdata::png_header_only(100_000, 100_000);
        assert_eq!(
            probe_image(&bomb, LIMIT),
            Err(ProbeError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                pixels: 10_000_000_000,
                max_pixels: LIMIT
            })
        );
        assert_eq!(probe_image(&bomb, LIMIT).map_err(|e| e.reject_kind()), Err(RejectKind::TooManyPixels));
        // Exactly at the limit passes.
        assert!(probe_image(&testdata::png_header_only(1000, 1000), 1_000_000).is_ok());
        assert!(probe_image(&testdata::png_header_only(1000, 1001), 1_000_000).is_err());
    }

    #[test]
    fn huge_headers_of_every_format_are_rejected() {
        let gif = b"GIF89a\xFF\xFF\xFF\xFF\0\0\0".to_vec();
        let mut vp8x = b"RIFF\0\0\0\0WEBPVP8X\x0A\0\0\0\0\0\0\0".to_vec();
        vp8x.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        let jpeg = testdata::jpeg_header_only(65535, 65535);
        let bmp = testdata::bmp_header_only(40, 100_000, -100_000);
        for bytes in [gif, vp8x, jpeg, bmp] {
            assert!(matches!(probe_image(&bytes, 1 << 28), Err(ProbeError::TooManyPixels { .. })), "{bytes:02x?}");
        }
    }

    #[test]
    fn bmp_negative_height_is_top_down() {
        let info = probe_image(&testdata::bmp_header_only(40, 7, -5), LIMIT).expect("valid");
        assert_eq!((info.width, info.height), (7, 5));
        let core = probe_image(&testdata::bmp_header_only(12, 7, 5), LIMIT).expect("valid");
        assert_eq!((core.width, core.height), (7, 5));
        assert_eq!(
            probe_image(&testdata::bmp_header_only(40, -7, 5), LIMIT),
            Err(ProbeError::BadHeader { format: "bmp", reason: "-7x5 image".into() })
        );
        // i32::MIN rows, top-down: 2^31 rows, caught by the pixel limit.
        assert!(matches!(
            probe_image(&testdata::bmp_header_only(40, 7, i32::MIN), LIMIT),
            Err(ProbeError::TooManyPixels { width: 7, height: 2_147_483_648, .. })
        ));
        assert_eq!(
            probe_image(&testdata::bmp_header_only(41, 7, 5), LIMIT),
            Err(ProbeError::BadHeader { format: "bmp", reason: "unsupported DIB header size 41 at byte 14".into() })
        );
    }

    #[test]
    fn bad_png_headers_name_the_problem() {
        let good = testdata::png_rgb(3, 2);
        let mut bad_crc = good.clone();
        bad_crc[29] ^= 1;
        let mut zero_width = testdata::png_header_only(0, 5);
        zero_width.truncate(33);
        let mut first_chunk_not_ihdr = good.clone();
        first_chunk_not_ihdr[12..16].copy_from_slice(b"gAMA");
        let mut bad_depth = good.clone();
        bad_depth[24] = 3;
        let cases = [
            (bad_crc, "IHDR CRC"),
            (zero_width, "0x5 image (each side must be 1..=2^31-1)"),
            (first_chunk_not_ihdr, "first chunk at byte 8 is \"gAMA\", not IHDR"),
            (bad_depth, "bit depth 3 is invalid for colour type 2"),
        ];
        for (bytes, expected) in cases {
            match probe_image(&bytes, LIMIT) {
                Err(ProbeError::BadHeader { format: "png", reason }) => {
                    assert!(reason.starts_with(expected), "{reason:?} does not start with {expected:?}")
                }
                other => panic!("expected a PNG header error for {expected:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn webp_and_tiff_header_errors() {
        let mut not_key_frame = testdata::webp_vp8_header(10, 10);
        not_key_frame[20] |= 1;
        assert_eq!(
            probe_image(&not_key_frame, LIMIT),
            Err(ProbeError::BadHeader { format: "webp", reason: "VP8 frame at byte 20 is not a key frame".into() })
        );
        assert_eq!(
            probe_image(&testdata::webp_vp8_header(300, 200), LIMIT).map(|i| (i.width, i.height)),
            Ok((300, 200))
        );
        let mut unknown = testdata::webp_vp8_header(10, 10);
        unknown[12..16].copy_from_slice(b"ALPH");
        assert_eq!(
            probe_image(&unknown, LIMIT),
            Err(ProbeError::BadHeader {
                format: "webp",
                reason: "first chunk \"ALPH\" at byte 12 is none of VP8, VP8L, VP8X".into()
            })
        );
        assert_eq!(
            probe_image(b"II*\0\x08\0\0\0\0\0", LIMIT),
            Err(ProbeError::BadHeader { format: "tiff", reason: "IFD0 lacks ImageWidth or ImageLength".into() })
        );
    }

    /// Every prefix of a valid header is an error (never a panic, never a wrong size) until
    /// the header is complete; prefixes shorter than the magic are not images at all.
    #[test]
    fn truncated_headers_at_every_offset() {
        for (format, bytes) in testdata::every_format(37, 23) {
            let full = probe_image(&bytes, LIMIT).expect("valid");
            let mut header_complete = false;
            for cut in 0..bytes.len() {
                match probe_image(&bytes[..cut], LIMIT) {
                    Ok(info) => {
                        assert_eq!(info, full, "{format:?} cut at {cut}");
                        header_complete = true;
                    }
                    Err(ProbeError::Empty) => assert_eq!(cut, 0),
                    Err(ProbeError::NotAnImage(_)) => assert!(cut < 12, "{format:?} cut at {cut}"),
                    Err(ProbeError::BadHeader { format: name, .. }) => {
                        assert_eq!(name, format.as_str());
                        assert!(!header_complete, "{format:?}: error after a successful prefix at {cut}");
                    }
                    Err(other) => panic!("{format:?} cut at {cut}: {other}"),
                }
            }
        }
    }
}
