//! The one decode path of bitkit: encoded bytes in, upright RGB8 pixels out.
//!
//! Ingest (`--max-side`), dedup and the training loader all decode through here, so they
//! see the same pixels, and those pixels match what Pillow (and therefore Hugging Face
//! `datasets`) produces for the same file:
//!
//! - JPEG: libjpeg-turbo 3 (vendored, SIMD), the same library Pillow bundles, with the same
//!   defaults (accurate integer IDCT, fancy upsampling). Grayscale is replicated to RGB.
//!   4-component JPEGs are decoded to CMYK and converted with Pillow's formula, which
//!   assumes Adobe's inverted storage for every 4-component JPEG (`JpegImagePlugin`:
//!   `rawmode = "CMYK;I"  # assume adobe conventions`, then `Convert.c: cmyk2rgb`).
//!   Like Pillow, a JPEG must reach its EOI marker: a file without one is
//!   [`DecodeError::Truncated`] (libjpeg-turbo alone would pad it with gray and only warn),
//!   while libjpeg warnings about corrupt but complete data are accepted, as Pillow
//!   ignores them.
//! - Other formats: the `image` crate. Alpha is dropped and 16-bit samples keep their high
//!   byte, as Pillow's `convert("RGB")` does for RGB(A); GIF gives its first frame.
//! - EXIF orientation is applied ([`super::exif`]), as `ImageOps.exif_transpose`.
//! - The pixel limit is checked from the header ([`probe_image`]) before any pixel buffer
//!   exists.
//!
//! Scaled decode: libjpeg-turbo can run the IDCT at N/8 scale, which skips most of the
//! IDCT and colour-conversion work (1.3x faster at 1/2, 1.6-1.8x at 1/8, PERF.md section 3).
//! [`Decoder::decode_rgb_scaled`] picks the smallest factor whose output still covers the
//! size the caller needs.
//!
//! Reuse: a [`Decoder`] owns a TurboJPEG handle and scratch buffers; keep one per worker
//! thread (rayon `map_init`, or the thread-local one behind [`decode_rgb`]).
//!
//! Checked against Pillow 13.0 (bundling libjpeg-turbo 3.2): baseline 4:2:0 and 4:4:4,
//! progressive, grayscale, Adobe CMYK and YCCK JPEGs, their 1/2 and 1/8 `draft` decodes,
//! all eight EXIF orientations, and PNG/GIF/BMP/WebP/TIFF decode to identical bytes.

use std::cell::RefCell;
use std::io::Cursor;

use super::exif::{apply_orientation, Orientation};
use super::jpeg::has_eoi_after_scan;
use super::turbo::{DctScale, TurboDecompressor, TurboPixels, PREMATURE_END};
use super::{probe_image, ImageFormat, ImageInfo, ProbeError};
use crate::record::RejectKind;

/// Decoded pixels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// Interleaved RGB8, row-major, `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

/// Why an image could not be decoded (or, for `--max-side`, re-encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header was rejected before decoding: empty, not an image, bad header, too many
    /// pixels.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The codec failed on the image data.
    #[error("decoding {format}: {reason}")]
    Codec { format: &'static str, reason: String },
    /// The data ends before the image does.
    #[error("truncated {format}: {reason}")]
    Truncated { format: &'static str, reason: String },
    /// The codec read a different size than the header probe (a header bitkit and the
    /// codec parse differently; never trusted either way).
    #[error("{format} header says {header_width}x{header_height} but the decoder read {width}x{height}")]
    SizeMismatch { format: &'static str, header_width: u32, header_height: u32, width: u32, height: u32 },
    /// The libjpeg-turbo handle could not be created (out of memory).
    #[error("creating a libjpeg-turbo handle: {0}")]
    Init(String),
    /// Resizing for `--max-side` failed.
    #[error("resizing {from_width}x{from_height} to {to_width}x{to_height}: {reason}")]
    Resize { from_width: u32, from_height: u32, to_width: u32, to_height: u32, reason: String },
    /// JPEG encoding for `--max-side` failed.
    #[error("encoding {width}x{height} JPEG: {reason}")]
    Encode { width: u32, height: u32, reason: String },
    /// A `--max-side` setting outside its range.
    #[error("invalid re-encode setting: {0}")]
    BadConfig(String),
}

impl DecodeError {
    /// The `rejects.jsonl` class of this error: the probe's class for header problems,
    /// `ReencodeFailed` for anything found while decoding or encoding pixels.
    pub fn reject_kind(&self) -> RejectKind {
        match self {
            DecodeError::Probe(probe) => probe.reject_kind(),
            _ => RejectKind::ReencodeFailed,
        }
    }
}

/// Scratch buffers above this size are released after use instead of kept for the next
/// image, so one huge image does not pin hundreds of MB per thread for the rest of a run.
const RETAINED_SCRATCH_BYTES: usize = 64 << 20;

/// Per-thread decoding state: a libjpeg-turbo handle and scratch buffers. Reuse it; a
/// decode allocates nothing beyond the output in steady state.
#[derive(Debug)]
pub struct Decoder {
    turbo: TurboDecompressor,
    /// CMYK samples of a 4-component JPEG before conversion.
    cmyk: Vec<u8>,
    /// Target of the transposing EXIF orientations.
    orient: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Result<Decoder, DecodeError> {
        let turbo = TurboDecompressor::new().map_err(DecodeError::Init)?;
        Ok(Decoder { turbo, cmyk: Vec::new(), orient: Vec::new() })
    }

    /// Full-size decode to upright RGB8 (EXIF orientation applied).
    pub fn decode_rgb(&mut self, bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
        let mut out = RgbImage::default();
        self.decode_rgb_into(bytes, max_pixels, u32::MAX, u32::MAX, &mut out)?;
        Ok(out)
    }

    /// Decodes a JPEG at the smallest DCT scale (1/8, 1/4, 3/8, 1/2, 5/8, 3/4, 7/8, 1) whose
    /// upright output is still at least `min_width x min_height`; other formats at full size.
    /// The pixel limit applies to the full-size header.
    pub fn decode_rgb_scaled(
        &mut self,
        bytes: &[u8],
        max_pixels: u64,
        min_width: u32,
        min_height: u32,
    ) -> Result<RgbImage, DecodeError> {
        let mut out = RgbImage::default();
        self.decode_rgb_into(bytes, max_pixels, min_width, min_height, &mut out)?;
        Ok(out)
    }

    /// [`Decoder::decode_rgb_scaled`] into a caller-owned image whose buffer is reused.
    /// Returns the probed header (stored size, orientation, JPEG details). On error `out`
    /// holds unspecified pixels.
    pub fn decode_rgb_into(
        &mut self,
        bytes: &[u8],
        max_pixels: u64,
        min_width: u32,
        min_height: u32,
        out: &mut RgbImage,
    ) -> Result<ImageInfo, DecodeError> {
        let info = probe_image(bytes, max_pixels)?;
        let result = match info.format {
            ImageFormat::Jpeg => self.decode_jpeg(bytes, &info, min_width, min_height, out),
            _ => decode_with_image_crate(bytes, &info, max_pixels, out, &mut self.orient),
        };
        for scratch in [&mut self.cmyk, &mut self.orient] {
            if scratch.capacity() > RETAINED_SCRATCH_BYTES {
                *scratch = Vec::new();
            }
        }
        result.map(|()| info)
    }

    fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        info: &ImageInfo,
        min_width: u32,
        min_height: u32,
        out: &mut RgbImage,
    ) -> Result<(), DecodeError> {
        // The caller's minimum is for the upright image; the IDCT scales the stored one.
        let (min_stored_width, min_stored_height) =
            if info.orientation.swaps_dimensions() { (min_height, min_width) } else { (min_width, min_height) };
        let scale = DctScale::covering(info.width, info.height, min_stored_width, min_stored_height);
        if !has_eoi_after_scan(bytes) {
            return Err(DecodeError::Truncated {
                format: "jpeg",
                reason: format!("no EOI marker after the scan data in {} bytes", bytes.len()),
            });
        }
        let four_components = info.jpeg.is_some_and(|j| j.components == 4);
        let codec = |reason: String| DecodeError::Codec { format: "jpeg", reason };
        let (pixels, target) =
            if four_components { (TurboPixels::Cmyk, &mut self.cmyk) } else { (TurboPixels::Rgb, &mut out.pixels) };
        let decoded = self.turbo.decompress(bytes, scale, pixels, target).map_err(codec)?;
        if (decoded.jpeg_width, decoded.jpeg_height) != (info.width, info.height) {
            return Err(DecodeError::SizeMismatch {
                format: "jpeg",
                header_width: info.width,
                header_height: info.height,
                width: decoded.jpeg_width,
                height: decoded.jpeg_height,
            });
        }
        if let Some(warning) = decoded.warning {
            if warning.starts_with(PREMATURE_END) {
                return Err(DecodeError::Truncated { format: "jpeg", reason: warning });
            }
            tracing::debug!(%warning, "libjpeg warning; image accepted as Pillow accepts it");
        }
        if four_components {
            cmyk_to_rgb(&self.cmyk, &mut out.pixels);
        }
        out.width = decoded.width;
        out.height = decoded.height;
        apply_orientation(out, info.orientation, &mut self.orient);
        Ok(())
    }
}

/// Pillow's conversion of a 4-component JPEG: the stored samples are taken as inverted
/// (Adobe) CMYK, un-inverted (`CMYK;I` unpacker), then `cmyk2rgb` computes
/// `R = (255 - K) - C * (255 - K) / 255` with its `MULDIV255` rounding. In stored terms that
/// is about `R = stored_C * stored_K / 255`.
fn cmyk_to_rgb(cmyk: &[u8], rgb: &mut Vec<u8>) {
    #[inline]
    fn muldiv255(a: u32, b: u32) -> u32 {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    }
    rgb.clear();
    rgb.reserve(cmyk.len() / 4 * 3);
    for pixel in cmyk.chunks_exact(4) {
        let nk = u32::from(pixel[3]); // 255 - K, with K = 255 - stored
        for &stored in &pixel[..3] {
            let ink = 255 - u32::from(stored);
            // nk - muldiv255(ink, nk) lies in 0..=nk, so the cast cannot truncate.
            rgb.push((nk - muldiv255(ink, nk)) as u8);
        }
    }
}

/// PNG, GIF, BMP, WebP, TIFF through the `image` crate, with the size re-checked against
/// the decoder's own header and an allocation limit as a second guard.
fn decode_with_image_crate(
    bytes: &[u8],
    info: &ImageInfo,
    max_pixels: u64,
    out: &mut RgbImage,
    scratch: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    use image::ImageDecoder as _;

    let format_name = info.format.as_str();
    let codec = |e: image::ImageError| DecodeError::Codec { format: format_name, reason: e.to_string() };
    let format = match info.format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    // Room for the decoded image at 16 bytes per pixel (RGBA f32, the widest `image`
    // produces) plus codec state; the probe already bounded the pixel count.
    limits.max_alloc = Some(info.pixels().saturating_mul(16).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(codec)?;
    let (width, height) = decoder.dimensions();
    if (width, height) != (info.width, info.height) {
        return Err(DecodeError::SizeMismatch {
            format: format_name,
            header_width: info.width,
            header_height: info.height,
            width,
            height,
        });
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ProbeError::TooManyPixels {
            width,
            height,
            pixels: u64::from(width) * u64::from(height),
            max_pixels,
        }
        .into());
    }
    // Broken EXIF never makes an image unusable: fall back to upright.
    let orientation =
        decoder.orientation().ok().and_then(|o| Orientation::from_exif(u32::from(o.to_exif()))).unwrap_or_default();
    let decoded = image::DynamicImage::from_decoder(decoder).map_err(codec)?;
    out.width = width;
    out.height = height;
    out.pixels = to_rgb8_like_pillow(decoded);
    apply_orientation(out, orientation, scratch);
    Ok(())
}

/// RGB8 samples as Pillow's `convert("RGB")` gives them: alpha dropped (not composited),
/// gray replicated, 16-bit samples reduced to their high byte (Pillow's `RGB;16B` and
/// `RGBA;16B` unpackers). 16-bit grayscale also keeps its high byte, where Pillow's `I;16`
/// to `RGB` conversion clips instead (a long-standing Pillow quirk not worth copying).
fn to_rgb8_like_pillow(image: image::DynamicImage) -> Vec<u8> {
    use image::DynamicImage as D;
    let high = |v: u16| (v >> 8) as u8;
    match image {
        D::ImageRgb8(rgb) => rgb.into_raw(),
        D::ImageRgba8(rgba) => rgba.pixels().flat_map(|p| [p[0], p[1], p[2]]).collect(),
        D::ImageLuma8(gray) => gray.pixels().flat_map(|p| [p[0]; 3]).collect(),
        D::ImageLumaA8(gray) => gray.pixels().flat_map(|p| [p[0]; 3]).collect(),
        D::ImageRgb16(rgb) => rgb.pixels().flat_map(|p| [high(p[0]), high(p[1]), high(p[2])]).collect(),
        D::ImageRgba16(rgba) => rgba.pixels().flat_map(|p| [high(p[0]), high(p[1]), high(p[2])]).collect(),
        D::ImageLuma16(gray) => gray.pixels().flat_map(|p| [high(p[0]); 3]).collect(),
        D::ImageLumaA16(gray) => gray.pixels().flat_map(|p| [high(p[0]); 3]).collect(),
        other => other.into_rgb8().into_raw(),
    }
}

thread_local! {
    /// The decoder behind the free functions, created on first use in each thread.
    static THREAD_DECODER: RefCell<Option<Decoder>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's [`Decoder`].
pub(crate) fn with_thread_decoder<T>(f: impl FnOnce(&mut Decoder) -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    THREAD_DECODER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let decoder = match &mut *slot {
                Some(decoder) => decoder,
                empty @ None => empty.insert(Decoder::new()?),
            };
            f(decoder)
        }
        // Only reachable if `f` itself decoded through this function; a fresh decoder is
        // slower but correct.
        Err(_) => f(&mut Decoder::new()?),
    })
}

/// Decodes any supported image to upright RGB8 with this thread's [`Decoder`].
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    with_thread_decoder(|decoder| decoder.decode_rgb(bytes, max_pixels))
}

/// [`Decoder::decode_rgb_scaled`] with this thread's [`Decoder`].
pub fn decode_rgb_scaled(
    bytes: &[u8],
    max_pixels: u64,
    min_width: u32,
    min_height: u32,
) -> Result<RgbImage, DecodeError> {
    with_thread_decoder(|decoder| decoder.decode_rgb_scaled(bytes, max_pixels, min_width, min_height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testdata::{self, JpegKind};
    use proptest::prelude::*;

    const LIMIT: u64 = 1 << 28;

    /// Mean RGB of an image.
    fn mean(image: &RgbImage) -> [f64; 3] {
        let mut sum = [0f64; 3];
        for pixel in image.pixels.chunks_exact(3) {
            for c in 0..3 {
                sum[c] += f64::from(pixel[c]);
            }
        }
        let n = (image.pixels.len() / 3) as f64;
        sum.map(|s| s / n)
    }

    fn assert_near(got: [f64; 3], want: [u8; 3], tolerance: f64, what: &str) {
        for c in 0..3 {
            assert!((got[c] - f64::from(want[c])).abs() <= tolerance, "{what}: mean {got:?}, want {want:?}");
        }
    }

    #[test]
    fn every_format_decodes_to_rgb_of_the_header_size() {
        for (format, bytes) in testdata::every_format(37, 23) {
            let image = decode_rgb(&bytes, LIMIT).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!((image.width, image.height, image.pixels.len()), (37, 23, 37 * 23 * 3), "{format:?}");
        }
    }

    #[test]
    fn solid_colours_survive_every_format() {
        let red = [220, 20, 30];
        for (format, bytes) in testdata::every_format_solid(24, 16, red) {
            let image = decode_rgb(&bytes, LIMIT).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_near(mean(&image), red, 3.0, format.as_str());
        }
    }

    #[test]
    fn jpeg_variants_decode_to_plausible_rgb() {
        let red = [230, 25, 20];
        for kind in [
            JpegKind::Baseline420,
            JpegKind::Baseline444,
            JpegKind::Progressive,
            JpegKind::Cmyk,
            JpegKind::CmykNoTransform,
        ] {
            let bytes = testdata::jpeg_solid(48, 32, kind, red);
            let image = decode_rgb(&bytes, LIMIT).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!((image.width, image.height), (48, 32), "{kind:?}");
            assert_near(mean(&image), red, 4.0, &format!("{kind:?}"));
        }
        // Grayscale: replicated, so every pixel has R == G == B.
        let gray = decode_rgb(&testdata::jpeg_solid(48, 32, JpegKind::Gray, [90, 90, 90]), LIMIT).expect("gray");
        assert!(gray.pixels.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_near(mean(&gray), [90, 90, 90], 2.0, "gray");
    }

    #[test]
    fn cmyk_conversion_matches_pillow_formula() {
        // Stored (inverted) C=255, M=0, Y=0, K=255 is pure red: no cyan ink, full magenta
        // and yellow, no black.
        let mut rgb = Vec::new();
        cmyk_to_rgb(&[255, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255, 128, 128, 128, 128], &mut rgb);
        // Pillow: nk = stored K; R = nk - MULDIV255(255 - stored C, nk).
        assert_eq!(rgb, [255, 0, 0, 0, 0, 0, 255, 255, 255, 64, 64, 64]);
    }

    #[test]
    fn exif_orientation_6_swaps_dims_and_rotates_clockwise() {
        // Left half red, right half blue; rotated 90 degrees clockwise: top red, bottom blue.
        let bytes = testdata::with_exif_orientation(&testdata::jpeg_halves(64, 32), 6);
        let image = decode_rgb(&bytes, LIMIT).expect("decodes");
        assert_eq!((image.width, image.height), (32, 64));
        let at = |x: usize, y: usize| {
            let i = (y * image.width as usize + x) * 3;
            [image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]]
        };
        assert!(at(16, 8)[0] > 200 && at(16, 8)[2] < 60, "top is red: {:?}", at(16, 8));
        assert!(at(16, 56)[2] > 200 && at(16, 56)[0] < 60, "bottom is blue: {:?}", at(16, 56));
        // The stored size is still the header's.
        let info = probe_image(&bytes, LIMIT).expect("probes");
        assert_eq!((info.width, info.height), (64, 32));
    }

    #[test]
    fn scaled_decode_picks_the_smallest_covering_factor() {
        let bytes = testdata::jpeg(800, 600, JpegKind::Baseline420);
        let cases = [
            ((100, 75), (100, 75)),
            ((101, 75), (200, 150)),
            ((224, 224), (300, 225)),
            ((0, 0), (100, 75)),
            ((801, 1), (800, 600)),
        ];
        for ((min_w, min_h), want) in cases {
            let image = decode_rgb_scaled(&bytes, LIMIT, min_w, min_h).expect("decodes");
            assert_eq!((image.width, image.height), want, "min {min_w}x{min_h}");
            assert_eq!(image.pixels.len(), want.0 as usize * want.1 as usize * 3);
        }
        // The minimum is for the upright image: orientation 6 stores 800x600, shows 600x800.
        let rotated = testdata::with_exif_orientation(&bytes, 6);
        let image = decode_rgb_scaled(&rotated, LIMIT, 150, 101).expect("decodes");
        assert_eq!((image.width, image.height), (150, 200));
        // Non-JPEG: always full size.
        let png = testdata::png_rgb(80, 60);
        assert_eq!(decode_rgb_scaled(&png, LIMIT, 1, 1).map(|i| (i.width, i.height)), Ok((80, 60)));
    }

    #[test]
    fn scaled_decode_of_a_solid_image_keeps_its_colour() {
        let bytes = testdata::jpeg_solid(256, 128, JpegKind::Baseline444, [10, 200, 40]);
        let image = decode_rgb_scaled(&bytes, LIMIT, 30, 10).expect("decodes");
        assert_eq!((image.width, image.height), (32, 16));
        assert_near(mean(&image), [10, 200, 40], 3.0, "1/8 scale");
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let bytes = testdata::jpeg(64, 64, JpegKind::Baseline420);
        assert_eq!(
            decode_rgb(&bytes, 4095),
            Err(DecodeError::Probe(ProbeError::TooManyPixels {
                width: 64,
                height: 64,
                pixels: 4096,
                max_pixels: 4095
            }))
        );
        let bomb = testdata::png_header_only(100_000, 100_000);
        assert!(matches!(decode_rgb(&bomb, LIMIT), Err(DecodeError::Probe(ProbeError::TooManyPixels { .. }))));
    }

    #[test]
    fn truncated_jpeg_is_an_error() {
        let bytes = testdata::jpeg(64, 64, JpegKind::Baseline444);
        let cut = &bytes[..bytes.len() * 2 / 3];
        match decode_rgb(cut, LIMIT) {
            Err(DecodeError::Truncated { format: "jpeg", .. }) => {}
            other => panic!("expected Truncated, got {other:?}"),
        }
        assert_eq!(decode_rgb(cut, LIMIT).map_err(|e| e.reject_kind()), Err(RejectKind::ReencodeFailed));
    }

    /// Pillow's rules, checked against Pillow 13: no EOI is "image file is truncated";
    /// trailing bytes, junk before a marker and corrupt scan data that still reach EOI decode.
    #[test]
    fn jpeg_acceptance_follows_pillow() {
        let bytes = testdata::jpeg(64, 48, JpegKind::Baseline444);
        let full = decode_rgb(&bytes, LIMIT).expect("decodes");
        assert_eq!(
            decode_rgb(&bytes[..bytes.len() - 2], LIMIT),
            Err(DecodeError::Truncated {
                format: "jpeg",
                reason: format!("no EOI marker after the scan data in {} bytes", bytes.len() - 2)
            })
        );
        assert_eq!(decode_rgb(&[&bytes[..], b"\0\0trailer"].concat(), LIMIT), Ok(full.clone()));
        let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).expect("has SOS");
        let junk = [&bytes[..sos], b"\x12\x34", &bytes[sos..]].concat();
        assert_eq!(decode_rgb(&junk, LIMIT), Ok(full));
        // Cut mid-scan but closed with EOI: libjpeg warns "premature end of data segment",
        // Pillow decodes it, and so do we.
        let closed = [&bytes[..bytes.len() * 2 / 3], b"\xFF\xD9"].concat();
        assert_eq!(decode_rgb(&closed, LIMIT).map(|i| (i.width, i.height)), Ok((64, 48)));
    }

    /// Workers build one `Decoder` each and may move it into their thread (rayon `map_init`).
    #[test]
    fn decoders_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Decoder>();
        assert_send::<crate::image::Reencoder>();
        let mut decoder = Decoder::new().expect("decoder");
        let bytes = testdata::jpeg(16, 16, JpegKind::Baseline420);
        let here = decoder.decode_rgb(&bytes, LIMIT).expect("decodes");
        let there = std::thread::spawn(move || decoder.decode_rgb(&bytes, LIMIT)).join().expect("joins");
        assert_eq!(there, Ok(here));
    }

    #[test]
    fn reused_decoder_gives_identical_results() {
        let mut decoder = Decoder::new().expect("decoder");
        let a = testdata::jpeg(40, 30, JpegKind::Progressive);
        let b = testdata::jpeg_solid(20, 10, JpegKind::Cmyk, [0, 0, 255]);
        let first = decoder.decode_rgb(&a, LIMIT).expect("a");
        let mut out = RgbImage::default();
        decoder.decode_rgb_into(&b, LIMIT, u32::MAX, u32::MAX, &mut out).expect("b");
        assert_eq!((out.width, out.height), (20, 10));
        assert_eq!(decoder.decode_rgb(&a, LIMIT), Ok(first));
    }

    #[test]
    fn sixteen_bit_and_alpha_png_become_rgb8() {
        let rgba16 = testdata::png_rgba16_solid(9, 7, [0xABCD, 0x1234, 0xFF00, 0x0000]);
        let image = decode_rgb(&rgba16, LIMIT).expect("decodes");
        assert_eq!((image.width, image.height), (9, 7));
        assert_eq!(&image.pixels[..3], &[0xAB, 0x12, 0xFF]);
        let palette = testdata::png_palette_with_transparency(6, 5);
        let image = decode_rgb(&palette, LIMIT).expect("decodes");
        assert_eq!(&image.pixels[..6], &[255, 0, 0, 0, 255, 0]);
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in
            [&b""[..], b"\xFF\xD8\xFF", b"\x89PNG\r\n\x1A\n", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\0", b"junk"]
        {
            assert!(decode_rgb(bytes, LIMIT).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn corrupted_scan_data_never_panics() {
        let bytes = testdata::jpeg(32, 32, JpegKind::Progressive);
        for (format, valid) in testdata::every_format(13, 11).into_iter().chain([(ImageFormat::Jpeg, bytes)]) {
            for step in [1usize, 7, 31] {
                let mut bad = valid.clone();
                for i in (valid.len() / 3..valid.len()).step_by(step) {
                    bad[i] ^= 0x5A;
                }
                // Any outcome but a panic is acceptable; a success must have the header size.
                if let Ok(image) = decode_rgb(&bad, LIMIT) {
                    assert_eq!(image.pixels.len(), image.width as usize * image.height as usize * 3, "{format:?}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = probe_image(&bytes, LIMIT);
            let _ = decode_rgb(&bytes, LIMIT);
        }

        #[test]
        fn mutated_valid_images_never_panic(
            which in 0usize..7,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut samples: Vec<Vec<u8>> = testdata::every_format(9, 7).into_iter().map(|(_, b)| b).collect();
            samples.push(testdata::jpeg(16, 8, JpegKind::Progressive));
            let mut bytes = samples[which % samples.len()].clone();
            // Mutations concentrate on the header, where the parsers branch.
            let header = bytes.len().min(64);
            for (at, value) in edits {
                let i = at.index(header);
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Ok(info) = probe_image(&bytes, LIMIT) {
                prop_assert!(info.width > 0 && info.height > 0);
            }
            if let Ok(image) = decode_rgb(&bytes, LIMIT) {
                prop_assert_eq!(image.pixels.len(), image.width as usize * image.height as usize * 3);
            }
        }
    }
}
