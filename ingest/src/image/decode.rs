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
//! Region decode: [`Decoder::decode_region_into`] is the training loader's entry point. It
//! takes the crop box a random-resized-crop has already sampled ([`RegionRequest`]), picks the
//! DCT scale from the box's size rather than the image's, and for upright JPEGs asks
//! libjpeg-turbo for just that box plus a margin for the resampling filter
//! (`tj3SetCroppingRegion`): columns outside it skip the IDCT, upsampling and colour
//! conversion, rows below it are not decoded at all, rows above it only entropy-decoded.
//! [`DecodedRegion`] says where the output sits in the scaled image and how to map
//! full-size coordinates into it.
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
use super::turbo::{CropRequest, DctScale, ScaledWindow, TurboDecoded, TurboDecompressor, TurboPixels, PREMATURE_END};
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
    /// A [`RegionRequest`] with a non-finite or non-positive field, or no overlap with the
    /// image.
    #[error("bad decode region: {0}")]
    BadRegion(String),
}

/// What part of an image a caller needs, and how many pixels it must come out with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionRequest {
    /// Region in upright full-size pixel coordinates (continuous: pixel i spans [i, i+1)).
    /// Must be finite with a positive width and height; the part outside the image is
    /// clamped away.
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    /// The region must be at least this many pixels wide/high after DCT scaling (picks the
    /// scale). 0 puts no constraint on that axis.
    pub min_width: u32,
    pub min_height: u32,
}

/// Where [`Decoder::decode_region_into`]'s output sits.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRegion {
    /// The probed header.
    pub info: ImageInfo,
    /// The DCT scale used ([`DctScale::ONE`] for non-JPEG and lossless JPEG).
    pub scale: DctScale,
    /// `out` pixel (0,0) sits at (x0, y0) of the scaled upright image.
    pub x0: u32,
    pub y0: u32,
    /// Scaled upright size / full upright size, per axis (map a full-size coordinate c to out
    /// coordinates with c * scale_x - x0).
    pub scale_x: f64,
    pub scale_y: f64,
}

/// A validated [`RegionRequest`] in upright full-size coordinates: `[left, right)` x
/// `[top, bottom)`, clamped to the image, non-empty.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClampedRegion {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl ClampedRegion {
    fn new(request: &RegionRequest, width: u32, height: u32) -> Result<ClampedRegion, DecodeError> {
        let RegionRequest { left, top, width: w, height: h, .. } = *request;
        if ![left, top, w, h].iter().all(|v| v.is_finite()) {
            return Err(DecodeError::BadRegion(format!("non-finite region at ({left:?}, {top:?}), {w:?} x {h:?}")));
        }
        if w <= 0.0 || h <= 0.0 {
            return Err(DecodeError::BadRegion(format!("empty region at ({left:?}, {top:?}), {w:?} x {h:?}")));
        }
        // left + w may overflow to infinity; min() then clamps it to the image all the same.
        let region = ClampedRegion {
            left: left.max(0.0),
            top: top.max(0.0),
            right: (left + w).min(f64::from(width)),
            bottom: (top + h).min(f64::from(height)),
        };
        if region.right <= region.left || region.bottom <= region.top {
            return Err(DecodeError::BadRegion(format!(
                "region at ({left:?}, {top:?}), {w:?} x {h:?} does not overlap the {width}x{height} image"
            )));
        }
        Ok(region)
    }
}

/// The first of `scales` (smallest first) at which `request`'s box is at least
/// `min_width x min_height` scaled pixels, where a `width x height` upright image scales by
/// `scale.scale(width) / width` per axis; [`DctScale::ONE`] when none is.
fn region_scale(request: &RegionRequest, width: u32, height: u32, scales: &[DctScale]) -> DctScale {
    let covers = |scale: DctScale| {
        let (scale_x, scale_y) = scale_factors(scale, width, height);
        request.width * scale_x >= f64::from(request.min_width)
            && request.height * scale_y >= f64::from(request.min_height)
    };
    scales.iter().copied().find(|&s| covers(s)).unwrap_or(DctScale::ONE)
}

/// Scaled size / full size per axis of a `width x height` image at `scale` (1 for an empty
/// axis, which a probed image never has).
fn scale_factors(scale: DctScale, width: u32, height: u32) -> (f64, f64) {
    let factor = |full: u32| if full == 0 { 1.0 } else { f64::from(scale.scale(full)) / f64::from(full) };
    (factor(width), factor(height))
}

/// The resampling margin, in scaled pixels, kept on every side of the requested box:
/// `ceil(max(scaled box width / min_width, scaled box height / min_height)) + 2`, i.e. the
/// support of an antialiasing filter shrinking the box to the minimum size, plus 2 for
/// bilinear taps and rounding. An axis with a zero minimum adds nothing.
fn region_margin(request: &RegionRequest, scale_x: f64, scale_y: f64) -> f64 {
    let ratio = |scaled: f64, min: u32| if min == 0 { 0.0 } else { scaled / f64::from(min) };
    let widest =
        ratio(request.width * scale_x, request.min_width).max(ratio(request.height * scale_y, request.min_height));
    widest.ceil() + 2.0
}

/// The scaled-pixel window `[floor(start * scale - margin), ceil(end * scale + margin))`
/// along one axis, clamped to `0..scaled`. Float-to-int `as` saturates (NaN to 0), and the
/// clamping keeps both ends in `0..=scaled`.
fn window_span(start: f64, end: f64, scale: f64, margin: f64, scaled: u32) -> (u32, u32) {
    let low = (start * scale - margin).floor().clamp(0.0, f64::from(scaled)) as u32;
    let high = (end * scale + margin).ceil().clamp(0.0, f64::from(scaled)) as u32;
    (low, high.max(low))
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
        self.release_scratch();
        result.map(|()| info)
    }

    /// Decodes the part of an image that `request` needs, at the smallest DCT scale that
    /// keeps the requested box at least `min_width x min_height` pixels, into `out` (buffer
    /// reused). Returns where `out` sits in the scaled upright image.
    ///
    /// The scale is the first of [`DctScale::FAST_DOWNSCALES`] (1/8, 1/4, 1/2, 1) that
    /// covers the minimum: libjpeg-turbo's 3/8, 5/8, 3/4 and 7/8 IDCTs are plain C, and
    /// decode slower than 1/2 (3/8) or even than 1/1 (5/8-7/8).
    ///
    /// The output holds the requested box (clamped to the image) plus a margin of
    /// `ceil(max(box_w / min_width, box_h / min_height)) + 2` scaled pixels on every side
    /// (box size in scaled pixels), clamped to the image; upright JPEGs are decoded only
    /// there, its left edge moved down to the scaled iMCU boundary. JPEGs with an EXIF
    /// orientation, lossless JPEGs and other formats are decoded whole (at the chosen scale
    /// for JPEG, orientation applied), with `x0 = y0 = 0`.
    ///
    /// Pixels equal the same window of a full decode at the same scale, except, for 4:2:0
    /// JPEGs at scale 1 and 4:2:2 JPEGs at 1/4 and up, in the first and last decoded column
    /// when those are not the image's own edges (libjpeg's fancy upsampling; see `turbo.rs`).
    /// The margin keeps those columns out of the requested box.
    ///
    /// Errors: [`DecodeError::BadRegion`] for a non-finite box, a non-positive width or
    /// height, or one that misses the image; otherwise as
    /// [`Decoder::decode_rgb_into`]. On error `out` holds unspecified pixels.
    pub fn decode_region_into(
        &mut self,
        bytes: &[u8],
        max_pixels: u64,
        request: &RegionRequest,
        out: &mut RgbImage,
    ) -> Result<DecodedRegion, DecodeError> {
        self.decode_region_from(bytes, max_pixels, request, &DctScale::FAST_DOWNSCALES, out)
    }

    /// [`Decoder::decode_region_into`] for a caller that probed the header already (to plan
    /// the region on the upright size): `info` must be `probe_image(bytes, max_pixels)`, so
    /// the header is not parsed twice.
    pub fn decode_probed_region_into(
        &mut self,
        bytes: &[u8],
        info: ImageInfo,
        max_pixels: u64,
        request: &RegionRequest,
        out: &mut RgbImage,
    ) -> Result<DecodedRegion, DecodeError> {
        self.decode_region_with(bytes, info, max_pixels, request, &DctScale::FAST_DOWNSCALES, out)
    }

    /// [`Decoder::decode_region_into`] choosing from `scales` (smallest first).
    fn decode_region_from(
        &mut self,
        bytes: &[u8],
        max_pixels: u64,
        request: &RegionRequest,
        scales: &[DctScale],
        out: &mut RgbImage,
    ) -> Result<DecodedRegion, DecodeError> {
        let info = probe_image(bytes, max_pixels)?;
        self.decode_region_with(bytes, info, max_pixels, request, scales, out)
    }

    fn decode_region_with(
        &mut self,
        bytes: &[u8],
        info: ImageInfo,
        max_pixels: u64,
        request: &RegionRequest,
        scales: &[DctScale],
        out: &mut RgbImage,
    ) -> Result<DecodedRegion, DecodeError> {
        let result = self.decode_region(bytes, &info, max_pixels, request, scales, out);
        self.release_scratch();
        let (scale, x0, y0, scale_x, scale_y) = result?;
        Ok(DecodedRegion { info, scale, x0, y0, scale_x, scale_y })
    }

    /// [`Decoder::decode_region_from`] after the probe: `(scale, x0, y0, scale_x, scale_y)`.
    fn decode_region(
        &mut self,
        bytes: &[u8],
        info: &ImageInfo,
        max_pixels: u64,
        request: &RegionRequest,
        scales: &[DctScale],
        out: &mut RgbImage,
    ) -> Result<(DctScale, u32, u32, f64, f64), DecodeError> {
        let (width, height) = info.oriented_size();
        let region = ClampedRegion::new(request, width, height)?;
        let jpeg = match info.jpeg {
            Some(jpeg) if info.format == ImageFormat::Jpeg && !jpeg.lossless => jpeg,
            _ => {
                // Not DCT-scalable: decode whole at full size, so the mapping is the identity.
                // (Not out.width / width: the `image` crate also applies PNG / WebP EXIF
                // orientations, which the probe does not report, so `out` may be the
                // transpose of the probed size.)
                if info.format == ImageFormat::Jpeg {
                    self.decode_jpeg_at(bytes, info, DctScale::ONE, None, out)?;
                } else {
                    decode_with_image_crate(bytes, info, max_pixels, out, &mut self.orient)?;
                }
                return Ok((DctScale::ONE, 0, 0, 1.0, 1.0));
            }
        };
        let scale = region_scale(request, width, height, scales);
        if info.orientation != Orientation::Normal {
            // The crop would have to be mapped back through the orientation, and
            // apply_orientation needs the whole image anyway: decode it whole.
            let decoded = self.decode_jpeg_at(bytes, info, scale, None, out)?;
            return Ok((decoded.scale, 0, 0, out_factor(out.width, width), out_factor(out.height, height)));
        }
        let (scale_x, scale_y) = scale_factors(scale, width, height);
        let margin = region_margin(request, scale_x, scale_y);
        let (left, right) = window_span(region.left, region.right, scale_x, margin, scale.scale(width));
        let (top, bottom) = window_span(region.top, region.bottom, scale_y, margin, scale.scale(height));
        let crop = CropRequest {
            window: ScaledWindow { x: left, y: top, width: right - left, height: bottom - top },
            mcu_width: jpeg.mcu_size().0,
        };
        let decoded = self.decode_jpeg_at(bytes, info, scale, Some(crop), out)?;
        // `decoded.scale` is `scale` unless libjpeg found the frame lossless after all (then
        // it decoded the whole image unscaled, at x = y = 0).
        let (scale_x, scale_y) = scale_factors(decoded.scale, width, height);
        Ok((decoded.scale, decoded.x, decoded.y, scale_x, scale_y))
    }

    /// Drops scratch buffers that one huge image grew past [`RETAINED_SCRATCH_BYTES`].
    fn release_scratch(&mut self) {
        for scratch in [&mut self.cmyk, &mut self.orient] {
            if scratch.capacity() > RETAINED_SCRATCH_BYTES {
                *scratch = Vec::new();
            }
        }
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
        self.decode_jpeg_at(bytes, info, scale, None, out).map(|_| ())
    }

    /// Decodes a JPEG at `scale` into `out`, upright. With `crop` (honoured only for
    /// [`Orientation::Normal`], where stored and upright coordinates agree), only about that
    /// window of the scaled image; the result says which window was decoded.
    fn decode_jpeg_at(
        &mut self,
        bytes: &[u8],
        info: &ImageInfo,
        scale: DctScale,
        crop: Option<CropRequest>,
        out: &mut RgbImage,
    ) -> Result<TurboDecoded, DecodeError> {
        let crop = crop.filter(|_| info.orientation == Orientation::Normal);
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
        let decoded = self.turbo.decompress_window(bytes, scale, crop, pixels, target).map_err(codec)?;
        if (decoded.jpeg_width, decoded.jpeg_height) != (info.width, info.height) {
            return Err(DecodeError::SizeMismatch {
                format: "jpeg",
                header_width: info.width,
                header_height: info.height,
                width: decoded.jpeg_width,
                height: decoded.jpeg_height,
            });
        }
        if let Some(warning) = &decoded.warning {
            if warning.starts_with(PREMATURE_END) {
                return Err(DecodeError::Truncated { format: "jpeg", reason: warning.clone() });
            }
            tracing::debug!(%warning, "libjpeg warning; image accepted as Pillow accepts it");
        }
        if four_components {
            cmyk_to_rgb(&self.cmyk, &mut out.pixels);
        }
        out.width = decoded.width;
        out.height = decoded.height;
        apply_orientation(out, info.orientation, &mut self.orient);
        Ok(decoded)
    }
}

/// `decoded / full` for one axis of a whole-image decode (1 for an empty axis).
fn out_factor(decoded: u32, full: u32) -> f64 {
    if full == 0 {
        1.0
    } else {
        f64::from(decoded) / f64::from(full)
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

    // ---- Region decode -------------------------------------------------------------------

    fn request(left: f64, top: f64, width: f64, height: f64, min_width: u32, min_height: u32) -> RegionRequest {
        RegionRequest { left, top, width, height, min_width, min_height }
    }

    /// The whole upright image at `scale`, through the existing path.
    fn full_at(bytes: &[u8], scale: DctScale) -> RgbImage {
        let mut decoder = Decoder::new().expect("decoder");
        let info = probe_image(bytes, LIMIT).expect("probes");
        let mut out = RgbImage::default();
        decoder.decode_jpeg_at(bytes, &info, scale, None, &mut out).expect("decodes");
        out
    }

    /// The scale the contract asks for, computed independently of `region_scale`.
    fn expected_scale(request: &RegionRequest, width: u32, height: u32, scales: &[DctScale]) -> DctScale {
        for &scale in scales {
            let scale_x = f64::from(scale.scale(width)) / f64::from(width);
            let scale_y = f64::from(scale.scale(height)) / f64::from(height);
            if request.width * scale_x >= f64::from(request.min_width)
                && request.height * scale_y >= f64::from(request.min_height)
            {
                return scale;
            }
        }
        DctScale::ONE
    }

    /// Checks the output geometry against the contract: the mapping factors, and (for a
    /// cropped decode) the window = the clamped box plus the margin, clamped to the image,
    /// exactly except for the left edge, which may sit up to one scaled iMCU further left.
    /// Returns whether the decode was cropped.
    fn check_geometry(request: &RegionRequest, region: &DecodedRegion, out: &RgbImage, scales: &[DctScale]) -> bool {
        let (width, height) = region.info.oriented_size();
        let (scaled_width, scaled_height) = (region.scale.scale(width), region.scale.scale(height));
        let what = format!("{request:?} -> {region:?}, out {}x{}", out.width, out.height);
        assert_eq!(out.pixels.len(), out.width as usize * out.height as usize * 3, "{what}");
        assert!(out.width > 0 && out.height > 0, "{what}");
        assert_eq!(region.scale_x, f64::from(scaled_width) / f64::from(width), "{what}");
        assert_eq!(region.scale_y, f64::from(scaled_height) / f64::from(height), "{what}");
        assert!(region.x0 + out.width <= scaled_width && region.y0 + out.height <= scaled_height, "{what}");
        let cropped = (region.x0, region.y0, out.width, out.height) != (0, 0, scaled_width, scaled_height);
        let croppable = region.info.format == ImageFormat::Jpeg
            && region.info.orientation == Orientation::Normal
            && region.info.jpeg.is_some_and(|j| !j.lossless);
        if !croppable {
            assert!(!cropped, "{what}");
            return false;
        }
        assert_eq!(region.scale, expected_scale(request, width, height, scales), "{what}");
        let ratio = |scaled: f64, min: u32| if min == 0 { 0.0 } else { scaled / f64::from(min) };
        let margin = ratio(request.width * region.scale_x, request.min_width)
            .max(ratio(request.height * region.scale_y, request.min_height))
            .ceil()
            + 2.0;
        let (left, top) = (request.left.max(0.0), request.top.max(0.0));
        let right = (request.left + request.width).min(f64::from(width));
        let bottom = (request.top + request.height).min(f64::from(height));
        let want_left = (left * region.scale_x - margin).floor().max(0.0);
        let want_top = (top * region.scale_y - margin).floor().max(0.0);
        let want_right = (right * region.scale_x + margin).ceil().min(f64::from(scaled_width));
        let want_bottom = (bottom * region.scale_y + margin).ceil().min(f64::from(scaled_height));
        let imcu = f64::from(region.scale.scale(region.info.jpeg.map_or(8, |j| j.mcu_size().0)));
        let x0 = f64::from(region.x0);
        assert!(x0 <= want_left && want_left - x0 < imcu && x0 % imcu == 0.0, "{what}: left {want_left}");
        assert_eq!(f64::from(region.y0), want_top, "{what}");
        assert_eq!(x0 + f64::from(out.width), want_right, "{what}");
        assert_eq!(f64::from(region.y0 + out.height), want_bottom, "{what}");
        cropped
    }

    /// Pixels of `out` that differ from the same place of `full`, as `(column, row)`.
    fn differing_pixels(out: &RgbImage, region: &DecodedRegion, full: &RgbImage) -> Vec<(u32, u32)> {
        let mut differ = Vec::new();
        for row in 0..out.height {
            for col in 0..out.width {
                let i = ((row * out.width + col) * 3) as usize;
                let j = (((row + region.y0) * full.width + col + region.x0) * 3) as usize;
                if out.pixels[i..i + 3] != full.pixels[j..j + 3] {
                    differ.push((col, row));
                }
            }
        }
        differ
    }

    /// Random-resized-crop-like boxes (torchvision: area 8-100%, aspect 3/4-4/3) with output
    /// sizes from 16 to 400, plus boxes hugging each edge and the whole image.
    fn rrc_requests(width: u32, height: u32, count: usize) -> Vec<RegionRequest> {
        let mut state = 0x9E37_79B9_u32;
        let mut uniform = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f64::from(state >> 8) / f64::from(1u32 << 24)
        };
        let (w, h) = (f64::from(width), f64::from(height));
        let mut requests = Vec::new();
        while requests.len() < count {
            let area = w * h * (0.08 + 0.92 * uniform());
            let aspect = ((3.0f64 / 4.0).ln() + uniform() * ((4.0f64 / 3.0).ln() - (3.0f64 / 4.0).ln())).exp();
            let (box_w, box_h) = ((area * aspect).sqrt(), (area / aspect).sqrt());
            if box_w > w || box_h > h {
                continue;
            }
            let size = [16, 32, 64, 100, 128, 160, 224, 400][requests.len() % 8];
            requests.push(request(uniform() * (w - box_w), uniform() * (h - box_h), box_w, box_h, size, size));
        }
        requests.extend([
            request(0.0, 0.0, w, h, width, height),
            request(0.0, 0.0, w, h, 0, 0),
            request(0.0, 0.0, w / 3.0, h / 2.0, 20, 20),
            request(w * 0.7, h * 0.6, w * 0.3, h * 0.4, 60, 50),
            request(w * 0.45, 0.0, 1.0, h, 1, 1),
            request(0.0, h * 0.45, w, 1.5, 224, 224),
        ]);
        requests
    }

    /// Whether libjpeg-turbo's fancy horizontal chroma upsampling runs for this file at this
    /// scale (the only source of differences; see `turbo.rs`).
    fn fancy_horizontal(bytes: &[u8], scale: DctScale) -> bool {
        let info = probe_image(bytes, LIMIT).expect("probes");
        match info.jpeg.map(|j| j.sampling_factors) {
            Some([0x21, 0x11, 0x11, _]) => scale != DctScale::DOWNSCALES[0],
            Some([0x22, 0x11, 0x11, _]) => scale == DctScale::ONE,
            _ => false,
        }
    }

    /// The region output is the same window of the full decode at the same scale, byte for
    /// byte, except for the documented fancy-upsampling edge columns (4:2:0 at 1/1, 4:2:2),
    /// which the margin keeps outside the requested box.
    #[test]
    fn region_decode_equals_the_window_of_a_full_decode() {
        use turbojpeg::Subsamp;
        let noisy = super::super::turbo::tests::noisy_jpeg;
        let images = [
            ("4:2:0", testdata::jpeg(333, 257, JpegKind::Baseline420)),
            ("4:4:4", testdata::jpeg(333, 257, JpegKind::Baseline444)),
            ("progressive", testdata::jpeg(333, 257, JpegKind::Progressive)),
            ("gray", testdata::jpeg(333, 257, JpegKind::Gray)),
            ("ycck", testdata::jpeg(333, 257, JpegKind::Cmyk)),
            ("cmyk", testdata::jpeg(333, 257, JpegKind::CmykNoTransform)),
            ("noisy 4:2:0", noisy(333, 257, Subsamp::Sub2x2, false, false)),
            ("noisy 4:2:2", noisy(333, 257, Subsamp::Sub2x1, false, false)),
            ("noisy 4:4:4 progressive", noisy(333, 257, Subsamp::None, true, false)),
            ("noisy 4:1:1 arithmetic", noisy(333, 257, Subsamp::Sub4x1, false, true)),
            ("noisy 4:2:0 500x375", noisy(500, 375, Subsamp::Sub2x2, false, false)),
        ];
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        let mut scales_seen = std::collections::BTreeSet::new();
        let (mut edge_differences, mut cropped) = (0, 0);
        for (name, bytes) in &images {
            let info = probe_image(bytes, LIMIT).expect("probes");
            let mut fulls: std::collections::HashMap<(u8, u8), RgbImage> = Default::default();
            // Half the requests choose from all eight scales, to check cropping at each.
            for (i, request) in rrc_requests(info.width, info.height, 60).into_iter().enumerate() {
                let scales: &[DctScale] = if i % 2 == 0 { &DctScale::DOWNSCALES } else { &DctScale::FAST_DOWNSCALES };
                let region = decoder
                    .decode_region_from(bytes, LIMIT, &request, scales, &mut out)
                    .unwrap_or_else(|e| panic!("{name} {request:?}: {e}"));
                if check_geometry(&request, &region, &out, scales) {
                    cropped += 1;
                }
                scales_seen.insert((region.scale.num, region.scale.denom));
                let full =
                    fulls.entry((region.scale.num, region.scale.denom)).or_insert_with(|| full_at(bytes, region.scale));
                let fancy = fancy_horizontal(bytes, region.scale);
                // The requested box, in out columns.
                let box_left = (request.left * region.scale_x).floor() - f64::from(region.x0);
                let box_right = ((request.left + request.width) * region.scale_x).ceil() - f64::from(region.x0);
                for (col, row) in differing_pixels(&out, &region, full) {
                    let left_edge = col == 0 && region.x0 > 0;
                    let right_edge = col + 1 == out.width && region.x0 + out.width < full.width;
                    assert!(
                        fancy && (left_edge || right_edge),
                        "{name} {request:?} {region:?}: pixel ({col}, {row}) differs"
                    );
                    assert!(f64::from(col) < box_left || f64::from(col) >= box_right, "{name}: inside the box");
                    edge_differences += 1;
                }
            }
        }
        assert_eq!(scales_seen.len(), 8, "every scale exercised: {scales_seen:?}");
        assert!(cropped > images.len() * 50, "most decodes cropped: {cropped}");
        assert!(edge_differences > 0, "the documented difference shows on noisy 4:2:0 / 4:2:2");
    }

    /// A worked example: 500x375 4:2:0, a 224x224 box at (100, 50) needed at 112 px.
    #[test]
    fn region_geometry_worked_example() {
        let bytes = testdata::jpeg(500, 375, JpegKind::Baseline420);
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        let region = decoder
            .decode_region_into(&bytes, LIMIT, &request(100.0, 50.0, 224.0, 224.0, 112, 112), &mut out)
            .expect("ok");
        // 1/2 is the smallest scale keeping 224 px >= 112 (3/8 gives 84). Scaled 250x188.
        assert_eq!(region.scale, DctScale { num: 1, denom: 2 });
        assert_eq!((region.scale_x, region.scale_y), (0.5, 188.0 / 375.0));
        // margin = ceil(max(112 / 112, 112.3 / 112)) + 2 = 4.
        // x: floor(50 - 4) = 46, aligned down to the 8-px scaled iMCU = 40; right ceil(162 + 4).
        // y: floor(25.07 - 4) = 21; bottom ceil(137.37 + 4) = 142.
        assert_eq!((region.x0, region.y0, out.width, out.height), (40, 21, 126, 121));
        assert_eq!((region.info.width, region.info.height), (500, 375));
    }

    /// Full-size coordinates map to out coordinates with `c * scale - x0`: the red/blue seam
    /// of a halves image (at x = 32 of 64) lands where the mapping says.
    #[test]
    fn region_mapping_finds_the_seam() {
        let bytes = testdata::jpeg_halves(64, 32);
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        for (req, want_scale) in [
            (request(20.0, 4.0, 24.0, 20.0, 12, 10), DctScale { num: 1, denom: 2 }),
            (request(24.0, 0.0, 30.0, 32.0, 3, 3), DctScale { num: 1, denom: 8 }),
            (request(30.0, 10.0, 10.0, 10.0, 10, 10), DctScale::ONE),
        ] {
            let region = decoder.decode_region_into(&bytes, LIMIT, &req, &mut out).expect("decodes");
            assert_eq!(region.scale, want_scale);
            let seam = 32.0 * region.scale_x - f64::from(region.x0);
            let at = |x: f64| {
                let i = ((out.height / 2 * out.width) as usize + x as usize) * 3;
                [out.pixels[i], out.pixels[i + 1], out.pixels[i + 2]]
            };
            let (red, blue) = (at(seam - 1.0), at(seam));
            assert!(red[0] > 200 && red[2] < 60, "{req:?} {region:?}: left of the seam {red:?}");
            assert!(blue[2] > 200 && blue[0] < 60, "{req:?} {region:?}: right of the seam {blue:?}");
        }
    }

    /// A box covering the whole image at full size is an uncropped decode, identical to
    /// `decode_rgb`.
    #[test]
    fn region_covering_the_whole_image_is_the_full_decode() {
        for kind in [JpegKind::Baseline420, JpegKind::Progressive, JpegKind::Cmyk] {
            let bytes = testdata::jpeg(333, 257, kind);
            let mut out = RgbImage::default();
            let mut decoder = Decoder::new().expect("decoder");
            for req in [request(0.0, 0.0, 333.0, 257.0, 333, 257), request(-10.0, -10.0, 353.0, 277.0, 353, 277)] {
                let region = decoder.decode_region_into(&bytes, LIMIT, &req, &mut out).expect("decodes");
                assert_eq!(
                    (region.scale, region.x0, region.y0, region.scale_x, region.scale_y),
                    (DctScale::ONE, 0, 0, 1.0, 1.0)
                );
                assert_eq!(out, decode_rgb(&bytes, LIMIT).expect("decodes"), "{kind:?}");
            }
        }
    }

    /// EXIF-oriented JPEGs are decoded whole at the chosen scale (chosen for the upright
    /// image), orientation applied; x0 = y0 = 0.
    #[test]
    fn oriented_jpeg_falls_back_to_a_whole_scaled_decode() {
        let plain = testdata::jpeg(333, 257, JpegKind::Baseline420);
        for orientation in 2..=8u16 {
            let bytes = testdata::with_exif_orientation(&plain, orientation);
            let info = probe_image(&bytes, LIMIT).expect("probes");
            let (width, height) = info.oriented_size();
            // A third of the image needed at 20 px: 1/4 (1/8 gives 11-14 px).
            let req = request(10.0, 20.0, f64::from(width) / 3.0, f64::from(height) / 3.0, 20, 20);
            let mut out = RgbImage::default();
            let region =
                Decoder::new().expect("decoder").decode_region_into(&bytes, LIMIT, &req, &mut out).expect("ok");
            assert_eq!(region.scale, DctScale { num: 1, denom: 4 }, "orientation {orientation}");
            assert!(!check_geometry(&req, &region, &out, &DctScale::FAST_DOWNSCALES), "orientation {orientation}");
            assert_eq!((region.x0, region.y0), (0, 0));
            assert_eq!((out.width, out.height), (region.scale.scale(width), region.scale.scale(height)));
            assert_eq!(out, full_at(&bytes, region.scale), "orientation {orientation}");
        }
    }

    /// Non-JPEG formats and lossless JPEG: whole, full size, scale 1.
    #[test]
    fn unscalable_images_fall_back_to_a_whole_decode() {
        let mut compressor = turbojpeg::Compressor::new().expect("tj3Init");
        compressor.set_lossless(true).expect("lossless");
        let pixels: Vec<u8> = (0..40 * 24 * 3).map(|i| (i % 251) as u8).collect();
        let lossless = compressor
            .compress_to_vec(turbojpeg::Image {
                pixels: &pixels[..],
                width: 40,
                pitch: 120,
                height: 24,
                format: turbojpeg::PixelFormat::RGB,
            })
            .expect("compresses");
        let mut images: Vec<(String, Vec<u8>)> = vec![("lossless jpeg".into(), lossless)];
        images.extend(testdata::every_format(40, 24).into_iter().skip(1).map(|(f, b)| (f.as_str().to_string(), b)));
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        for (name, bytes) in images {
            let req = request(5.0, 5.0, 20.0, 10.0, 5, 2);
            let region =
                decoder.decode_region_into(&bytes, LIMIT, &req, &mut out).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (region.scale, region.x0, region.y0, region.scale_x, region.scale_y),
                (DctScale::ONE, 0, 0, 1.0, 1.0)
            );
            assert_eq!(out, decode_rgb(&bytes, LIMIT).expect("decodes"), "{name}");
        }
    }

    /// Boxes that are not finite, not positive or miss the image are `BadRegion`; boxes
    /// partly outside are clamped.
    #[test]
    fn bad_regions_are_typed_errors() {
        let bytes = testdata::jpeg(64, 48, JpegKind::Baseline420);
        let png = testdata::png_rgb(64, 48);
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        for req in [
            request(f64::NAN, 0.0, 10.0, 10.0, 8, 8),
            request(0.0, 0.0, f64::NAN, 10.0, 8, 8),
            request(0.0, 0.0, f64::INFINITY, 10.0, 8, 8),
            request(f64::NEG_INFINITY, 0.0, 10.0, 10.0, 8, 8),
            request(0.0, 0.0, -10.0, 10.0, 8, 8),
            request(0.0, 0.0, 10.0, 0.0, 8, 8),
            request(0.0, 0.0, -0.0, 10.0, 8, 8),
            request(64.0, 0.0, 10.0, 10.0, 8, 8),
            request(0.0, 48.0, 10.0, 10.0, 8, 8),
            request(-20.0, 0.0, 20.0, 10.0, 8, 8),
            request(1e300, 1e300, 1e300, 1e300, 8, 8),
            request(-1e300, 0.0, 1e300, 10.0, 8, 8),
        ] {
            for image in [&bytes, &png] {
                match decoder.decode_region_into(image, LIMIT, &req, &mut out) {
                    Err(DecodeError::BadRegion(_)) => {}
                    other => panic!("{req:?}: {other:?}"),
                }
            }
        }
        // Clamped: partly outside, huge, tiny.
        for req in [
            request(-20.0, -20.0, 40.0, 40.0, 8, 8),
            request(60.0, 40.0, 1e300, 1e300, 8, 8),
            request(-1e300, -1e300, f64::MAX, f64::MAX, u32::MAX, u32::MAX),
            request(10.0, 10.0, 1e-9, 1e-9, 0, 0),
            request(0.0, 0.0, 1e-300, 1e-300, 1, 1),
            request(63.999, 47.999, 1.0, 1.0, 1, 1),
        ] {
            let region =
                decoder.decode_region_into(&bytes, LIMIT, &req, &mut out).unwrap_or_else(|e| panic!("{req:?}: {e}"));
            check_geometry(&req, &region, &out, &DctScale::FAST_DOWNSCALES);
        }
    }

    #[test]
    fn region_decode_keeps_the_jpeg_acceptance_rules() {
        let bytes = testdata::jpeg(64, 64, JpegKind::Baseline444);
        let req = request(8.0, 8.0, 20.0, 20.0, 10, 10);
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        assert!(matches!(
            decoder.decode_region_into(&bytes[..bytes.len() * 2 / 3], LIMIT, &req, &mut out),
            Err(DecodeError::Truncated { format: "jpeg", .. })
        ));
        let closed = [&bytes[..bytes.len() * 2 / 3], b"\xFF\xD9"].concat();
        assert!(decoder.decode_region_into(&closed, LIMIT, &req, &mut out).is_ok());
        assert!(matches!(
            decoder.decode_region_into(&bytes, 100, &req, &mut out),
            Err(DecodeError::Probe(ProbeError::TooManyPixels { .. }))
        ));
        let header_only = testdata::jpeg_header_only(64, 64);
        assert!(decoder.decode_region_into(&header_only, LIMIT, &req, &mut out).is_err());
    }

    /// The cropping region is per handle: the next plain decode of another image is unchanged.
    #[test]
    fn region_decode_does_not_change_later_decodes() {
        let big = testdata::jpeg(500, 375, JpegKind::Baseline420);
        let small = testdata::jpeg(40, 30, JpegKind::Progressive);
        let want_small = decode_rgb(&small, LIMIT).expect("decodes");
        let want_big = decode_rgb_scaled(&big, LIMIT, 100, 75).expect("decodes");
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        decoder.decode_region_into(&big, LIMIT, &request(300.0, 200.0, 150.0, 150.0, 64, 64), &mut out).expect("ok");
        assert_eq!(decoder.decode_rgb(&small, LIMIT), Ok(want_small));
        decoder.decode_region_into(&big, LIMIT, &request(100.0, 100.0, 50.0, 50.0, 50, 50), &mut out).expect("ok");
        assert_eq!(decoder.decode_rgb_scaled(&big, LIMIT, 100, 75), Ok(want_big));
    }

    /// Scratch measurement, not a timed test: `cargo test --release -p bitkit-ingest --lib
    /// region_decode_speed -- --ignored --nocapture`. RRC boxes (area 8-100%, aspect 3/4-4/3)
    /// of 500x375 JPEGs needed at 224 px: full decode vs whole-image scaled vs region.
    #[test]
    #[ignore = "timing; run by hand in release"]
    #[allow(clippy::print_stderr)]
    fn region_decode_speed() {
        use std::time::Instant;
        let images = [
            ("gradient 4:2:0 q95", testdata::jpeg(500, 375, JpegKind::Baseline420)),
            ("gradient 4:4:4 q95", testdata::jpeg(500, 375, JpegKind::Baseline444)),
            (
                "noisy 4:2:0 q95",
                super::super::turbo::tests::noisy_jpeg(500, 375, turbojpeg::Subsamp::Sub2x2, false, false),
            ),
        ];
        let mut decoder = Decoder::new().expect("decoder");
        let mut out = RgbImage::default();
        for (name, bytes) in &images {
            let mut rates = Vec::new();
            for scale in DctScale::DOWNSCALES {
                let start = Instant::now();
                for _ in 0..300 {
                    let mut pixels = std::mem::take(&mut out.pixels);
                    decoder
                        .turbo
                        .decompress_window(bytes, scale, None, TurboPixels::Rgb, &mut pixels)
                        .expect("decodes");
                    out.pixels = pixels;
                }
                rates.push(format!("{scale} {:.0}/s", 300.0 / start.elapsed().as_secs_f64()));
            }
            eprintln!("whole image, {name}: {}", rates.join(", "));
        }
        let modes = ["full 1/1", "whole, fast scale", "region, 8 scales", "region, fast scales"];
        for size in [224, 128] {
            let requests: Vec<RegionRequest> = rrc_requests(500, 375, 400)
                .into_iter()
                .take(400)
                .map(|r| RegionRequest { min_width: size, min_height: size, ..r })
                .collect();
            for (name, bytes) in &images {
                let info = probe_image(bytes, LIMIT).expect("probes");
                let mut best = [f64::MAX; 4];
                for _ in 0..3 {
                    for (mode, best) in best.iter_mut().enumerate() {
                        let start = Instant::now();
                        for r in &requests {
                            match mode {
                                0 => decoder.decode_rgb_into(bytes, LIMIT, u32::MAX, u32::MAX, &mut out).map(|_| ()),
                                1 => {
                                    let scale = region_scale(r, 500, 375, &DctScale::FAST_DOWNSCALES);
                                    decoder.decode_jpeg_at(bytes, &info, scale, None, &mut out).map(|_| ())
                                }
                                2 => decoder
                                    .decode_region_from(bytes, LIMIT, r, &DctScale::DOWNSCALES, &mut out)
                                    .map(|_| ()),
                                _ => decoder.decode_region_into(bytes, LIMIT, r, &mut out).map(|_| ()),
                            }
                            .expect("decodes");
                        }
                        *best = best.min(start.elapsed().as_secs_f64());
                    }
                }
                let n = requests.len() as f64;
                let rates: Vec<String> =
                    modes.iter().zip(best).map(|(mode, secs)| format!("{mode} {:.0}/s", n / secs)).collect();
                eprintln!("RRC{size} {name} ({} B): {}", bytes.len(), rates.join(", "));
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

    /// Images the region proptest decodes, made once.
    fn region_samples() -> &'static [Vec<u8>] {
        static SAMPLES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        SAMPLES.get_or_init(|| {
            vec![
                testdata::jpeg(333, 257, JpegKind::Baseline420),
                testdata::jpeg(97, 61, JpegKind::Gray),
                testdata::with_exif_orientation(&testdata::jpeg(120, 80, JpegKind::Baseline444), 6),
                testdata::jpeg(50, 40, JpegKind::Cmyk),
                testdata::png_rgb(37, 23),
            ]
        })
    }

    fn any_coordinate() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => -50.0..400.0f64,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => Just(1e300),
            1 => Just(-1e300),
            1 => Just(f64::MAX),
            1 => Just(f64::MIN_POSITIVE),
            1 => any::<f64>(),
        ]
    }

    fn any_minimum() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 0u32..500, 1 => Just(0), 1 => Just(u32::MAX), 1 => any::<u32>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any request: no panic; an error only for an invalid box, and then `BadRegion`;
        /// otherwise an output that holds the clamped box plus its margin.
        #[test]
        fn any_region_request_is_safe(
            which in 0usize..5,
            left in any_coordinate(),
            top in any_coordinate(),
            width in any_coordinate(),
            height in any_coordinate(),
            min_width in any_minimum(),
            min_height in any_minimum(),
            all_scales in any::<bool>(),
        ) {
            let bytes = &region_samples()[which];
            let info = probe_image(bytes, LIMIT).expect("probes");
            let (w, h) = info.oriented_size();
            let req = request(left, top, width, height, min_width, min_height);
            let valid = [left, top, width, height].iter().all(|v| v.is_finite())
                && width > 0.0
                && height > 0.0
                && (left + width).min(f64::from(w)) > left.max(0.0)
                && (top + height).min(f64::from(h)) > top.max(0.0);
            let mut out = RgbImage::default();
            let scales: &[DctScale] = if all_scales { &DctScale::DOWNSCALES } else { &DctScale::FAST_DOWNSCALES };
            match Decoder::new().expect("decoder").decode_region_from(bytes, LIMIT, &req, scales, &mut out) {
                Ok(region) => {
                    prop_assert!(valid, "{:?} accepted", req);
                    check_geometry(&req, &region, &out, scales);
                }
                Err(DecodeError::BadRegion(_)) => prop_assert!(!valid, "{:?} refused", req),
                Err(other) => prop_assert!(false, "{:?}: {}", req, other),
            }
        }
    }
}
