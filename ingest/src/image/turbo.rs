//! A minimal safe wrapper over libjpeg-turbo's TurboJPEG 3 decompressor.
//!
//! Why not `turbojpeg::Decompressor`: its `decompress` turns every non-zero return into an
//! error, but TurboJPEG returns -1 for *warnings* too (a fully decoded image with, say,
//! "extraneous bytes before marker"), and libjpeg-based readers such as Pillow accept those
//! images. Telling a warning from a fatal error needs `tj3GetErrorCode`, which the crate
//! does not expose. This wrapper also reads the header once per decode instead of twice.
//!
//! Safety: `tj3Decompress8` writes `output_height` rows of `output_width * pixel_size` bytes
//! at `pitch` into the destination. [`TurboDecompressor::decompress_window`] reads the header,
//! computes the scaled size exactly as libjpeg does (`TJSCALED`: ceil(dim * num / denom);
//! scaling is disabled for lossless JPEG, by libjpeg and here alike) and sizes the buffer to
//! it before the call; the library re-reads the same header from the same bytes.
//!
//! Partial decode (`tj3SetCroppingRegion`, libjpeg-turbo 3.1.0 as vendored by
//! `turbojpeg-sys` 1.2.0; paths under `libjpeg-turbo/src/`):
//! - The region is in *scaled* pixels and is validated against the header read by
//!   `tj3DecompressHeader` and the scaling factor set before it (`turbojpeg.c:2010-2056`):
//!   x, y, w, h >= 0; lossless and unknown-subsampling JPEGs are refused; `x` must be a
//!   multiple of `TJSCALED(tjMCUWidth[subsamp])` (`turbojpeg.c:2038`, table at
//!   `turbojpeg.h:224`); w = 0 / h = 0 mean "to the right / bottom edge"; `x + w` and `y + h`
//!   must fit the scaled image. `y` and `h` need no alignment. All zeros is `TJUNCROPPED`.
//!   The region is a handle setting: it persists until set again, so every decode here sets
//!   it (to `TJUNCROPPED` for whole-image decodes).
//! - `tj3Decompress8` (`turbojpeg-mp.c:206-225`) calls `jpeg_crop_scanline` unless the region
//!   spans the full width. That aligns `x` down to libjpeg's own iMCU width,
//!   `_min_DCT_scaled_size * max_h_samp_factor` (just `_min_DCT_scaled_size` for a
//!   single-component single-scan image, `jdapistd.c:228-231`), and TurboJPEG fails with
//!   "Unexplained mismatch" *before reading any scanline* if that moved `x` or changed `w`.
//!   So `x` is aligned to the least common multiple of both units here, which neither
//!   changes. Then `output_width` is `w`.
//! - Rows: with a region set, exactly `h` rows are written (`croppedHeight`,
//!   `turbojpeg-mp.c:227-228`): `jpeg_skip_scanlines(y)`, `h` rows read into rows `0..h` of
//!   the destination, then the rest skipped (`turbojpeg-mp.c:245-272`).
//!
//! So a cropped decode writes exactly `h` rows of `w * pixel_size` bytes, and the buffer is
//! sized to that.
//!
//! Exactness (`doc/libjpeg.txt`, "Decompressing partial scanlines"): a cropped decode equals
//! the same window of a full decode at the same scale, except that the "fancy" h2v1 / h2v2
//! chroma upsampling treats the window's left and right edges as image edges, so the first
//! and last decoded column can differ (by up to ~60 levels on noisy chroma; rows are always
//! exact). When that upsampler runs:
//! - 4:2:0 (h2v2): at 1/1 only. Below 1/1, when both sampling ratios divide evenly,
//!   libjpeg-turbo gives chroma a doubled IDCT size so the IDCT itself upsamples
//!   (`jdmaster.c:289-300`), and no upsampler runs.
//! - 4:2:2 (h2v1): at every scale but 1/8 (the vertical ratio stops the IDCT trick; at 1/8
//!   `jdsample.c:457` turns fancy upsampling off).
//! - 4:4:4, 4:4:0 (vertical only), 4:1:1 (replication), gray, CMYK: never; exact.
//!
//! The tests pin this table.

use std::ffi::{c_int, CStr};

use turbojpeg::raw;

/// A DCT scaling factor `num / denom`, as listed by `tj3GetScalingFactors` (reduced
/// fractions: TurboJPEG rejects `2/8`, accepts `1/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DctScale {
    pub num: u8,
    pub denom: u8,
}

impl DctScale {
    pub const ONE: DctScale = DctScale { num: 1, denom: 1 };

    /// The downscaling factors libjpeg-turbo implements in the IDCT, smallest first.
    pub const DOWNSCALES: [DctScale; 8] = [
        DctScale { num: 1, denom: 8 },
        DctScale { num: 1, denom: 4 },
        DctScale { num: 3, denom: 8 },
        DctScale { num: 1, denom: 2 },
        DctScale { num: 5, denom: 8 },
        DctScale { num: 3, denom: 4 },
        DctScale { num: 7, denom: 8 },
        DctScale::ONE,
    ];

    /// The downscales with fast IDCTs, smallest first: libjpeg-turbo has SIMD (or, at 1/8,
    /// DC-only) inverse DCTs for 1x1, 2x2, 4x4 and 8x8 output blocks only
    /// (`jddctmgr.c:111-186`; the 3x3, 5x5, 6x6, 7x7 ones and the 10x10-14x14 ones that
    /// upsample 4:2:0 chroma at 5/8-7/8 are plain C). Measured here (500x375, q95, one
    /// thread): 4:2:0 whole-image decodes at 1/8 4,650/s, 1/4 4,320, 3/8 3,190, 1/2 4,370,
    /// 5/8 1,790, 3/4 1,420, 7/8 1,060, 1/1 2,760 images/s; so 5/8-7/8 are *slower* than
    /// 1/1, and 3/8 slower than 1/2.
    pub const FAST_DOWNSCALES: [DctScale; 4] =
        [DctScale { num: 1, denom: 8 }, DctScale { num: 1, denom: 4 }, DctScale { num: 1, denom: 2 }, DctScale::ONE];

    /// The size of a `dimension`-pixel side at this scale: `ceil(dimension * num / denom)`,
    /// libjpeg's `jdiv_round_up` and TurboJPEG's `TJSCALED`.
    pub fn scale(self, dimension: u32) -> u32 {
        let scaled = (u64::from(dimension) * u64::from(self.num)).div_ceil(u64::from(self.denom));
        // num <= denom, so the result never exceeds `dimension`.
        u32::try_from(scaled).unwrap_or(dimension)
    }

    /// The smallest factor whose output of a `width x height` image is at least
    /// `min_width x min_height`; [`DctScale::ONE`] when even full size does not cover it.
    pub fn covering(width: u32, height: u32, min_width: u32, min_height: u32) -> DctScale {
        DctScale::DOWNSCALES
            .into_iter()
            .find(|s| s.scale(width) >= min_width && s.scale(height) >= min_height)
            .unwrap_or(DctScale::ONE)
    }
}

impl std::fmt::Display for DctScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.denom)
    }
}

/// Pixel layouts bitkit asks libjpeg-turbo for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TurboPixels {
    /// From grayscale (replicated), YCbCr or RGB JPEGs.
    Rgb,
    /// From CMYK or YCCK JPEGs: the stored (for Adobe files, inverted) ink values.
    Cmyk,
}

impl TurboPixels {
    fn code(self) -> c_int {
        match self {
            TurboPixels::Rgb => raw::TJPF_TJPF_RGB,
            TurboPixels::Cmyk => raw::TJPF_TJPF_CMYK,
        }
    }

    pub(crate) fn bytes_per_pixel(self) -> usize {
        match self {
            TurboPixels::Rgb => 3,
            TurboPixels::Cmyk => 4,
        }
    }
}

/// A successful decode: what was decoded and the first libjpeg warning, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurboDecoded {
    /// The stored size from the header.
    pub jpeg_width: u32,
    pub jpeg_height: u32,
    /// The scale used: the one asked for, or [`DctScale::ONE`] for lossless JPEG.
    pub scale: DctScale,
    /// The decoded window of the scaled image: pixel (0, 0) of the output is pixel `(x, y)`
    /// of the scaled image, and the output is `width x height`. `(0, 0)` and the whole
    /// scaled size for an uncropped decode.
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// libjpeg reports only its first warning (jerror.c `emit_message`).
    pub warning: Option<String>,
}

/// A window of a scaled image in scaled pixels: columns `x..x + width`, rows `y..y + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScaledWindow {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// A partial decode request for [`TurboDecompressor::decompress_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CropRequest {
    /// The part of the scaled image wanted; clamped to the image, and widened to the left
    /// to the scaled iMCU boundary.
    pub window: ScaledWindow,
    /// The frame's iMCU width at full size, `8 * max H` ([`super::JpegInfo::mcu_size`]).
    /// Only an alignment hint: a wrong value makes the decode fail, never unsafe.
    pub mcu_width: u32,
}

/// `tjMCUWidth` (`turbojpeg.h`), indexed by `TJSAMP`: 4:4:4, 4:2:2, 4:2:0, gray, 4:4:0,
/// 4:1:1, 4:4:1. (The bindgen `static` for it names a symbol the library does not export.)
const TJ_MCU_WIDTH: [u32; 7] = [8, 16, 16, 8, 8, 32, 8];

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Progressive scans allowed per image. Real encoders emit about 10; thousands of tiny
/// scans are a known CPU-exhaustion trick (libjpeg-turbo's "TwoIssueswiththeJPEGStandard"
/// report); 500 is the limit libjpeg-turbo's own tools use.
const SCAN_LIMIT: c_int = 500;

/// One TurboJPEG decompression handle. Not `Sync`; keep one per thread.
#[derive(Debug)]
pub(crate) struct TurboDecompressor {
    handle: raw::tjhandle,
}

// SAFETY: a TurboJPEG handle holds no thread-affine state; it may move between threads as
// long as it is not used concurrently, which `&mut self` on every method guarantees.
// (`turbojpeg::Decompressor` makes the same promise.)
unsafe impl Send for TurboDecompressor {}

impl TurboDecompressor {
    pub(crate) fn new() -> Result<TurboDecompressor, String> {
        // SAFETY: plain constructor; a null result is handled below.
        let handle = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if handle.is_null() {
            // SAFETY: with a null handle, tj3GetErrorStr returns the thread's global message.
            return Err(unsafe { message(handle) });
        }
        let mut decompressor = TurboDecompressor { handle };
        decompressor.set(raw::TJPARAM_TJPARAM_SCANLIMIT, SCAN_LIMIT)?;
        Ok(decompressor)
    }

    fn set(&mut self, param: raw::TJPARAM, value: c_int) -> Result<(), String> {
        // SAFETY: valid handle, integer arguments.
        if unsafe { raw::tj3Set(self.handle, param as c_int, value) } != 0 {
            return Err(self.error().1);
        }
        Ok(())
    }

    fn get(&mut self, param: raw::TJPARAM) -> c_int {
        // SAFETY: valid handle.
        unsafe { raw::tj3Get(self.handle, param as c_int) }
    }

    /// `(is_warning, message)` for the last failed call. A warning flag with a message that
    /// is not one of libjpeg's warnings means a fatal error followed a warning (TurboJPEG
    /// keeps the flag set), so only known warning texts count as warnings.
    fn error(&mut self) -> (bool, String) {
        // SAFETY: valid handle; the code must be read before the message, which clears it.
        let code = unsafe { raw::tj3GetErrorCode(self.handle) };
        // SAFETY: valid handle.
        let text = unsafe { message(self.handle) };
        let is_warning = code == raw::TJERR_TJERR_WARNING as c_int && is_libjpeg_warning(&text);
        (is_warning, text)
    }

    fn check(&mut self, status: c_int) -> Result<Option<String>, String> {
        if status == 0 {
            return Ok(None);
        }
        match self.error() {
            (true, warning) => Ok(Some(warning)),
            (false, fatal) => Err(fatal),
        }
    }

    /// Decodes `jpeg` at `scale` (ignored for lossless JPEG) into `out`, which is resized to
    /// exactly `width * height * pixels.bytes_per_pixel()` bytes of the decoded window.
    ///
    /// With `crop`, only about `crop.window` of the scaled image is decoded: libjpeg-turbo
    /// then runs the IDCT, upsampling and colour conversion only for the window's iMCU
    /// columns and its rows (rows above it are still entropy decoded). The decoded window is
    /// the requested one clamped to the image, with its left edge moved down to the scaled
    /// iMCU boundary. Images that cannot be cropped (lossless, subsampling TurboJPEG does
    /// not classify) and windows that are empty once clamped (the header disagrees with the
    /// caller's) are decoded whole; the result says which window came out.
    pub(crate) fn decompress_window(
        &mut self,
        jpeg: &[u8],
        scale: DctScale,
        crop: Option<CropRequest>,
        pixels: TurboPixels,
        out: &mut Vec<u8>,
    ) -> Result<TurboDecoded, String> {
        let size = raw::size_t::try_from(jpeg.len()).map_err(|_| format!("{} bytes is too large", jpeg.len()))?;
        // SAFETY: valid handle; the pointer and length describe `jpeg`, which outlives the call.
        let status = unsafe { raw::tj3DecompressHeader(self.handle, jpeg.as_ptr(), size) };
        self.check(status)?;
        let jpeg_width =
            u32::try_from(self.get(raw::TJPARAM_TJPARAM_JPEGWIDTH)).map_err(|_| "negative width".to_string())?;
        let jpeg_height =
            u32::try_from(self.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT)).map_err(|_| "negative height".to_string())?;
        let lossless = self.get(raw::TJPARAM_TJPARAM_LOSSLESS) == 1;
        let scale = if lossless { DctScale::ONE } else { scale };
        let factor = raw::tjscalingfactor { num: c_int::from(scale.num), denom: c_int::from(scale.denom) };
        // SAFETY: valid handle; unsupported factors are reported as an error, not UB.
        if unsafe { raw::tj3SetScalingFactor(self.handle, factor) } != 0 {
            return Err(self.error().1);
        }
        let (scaled_width, scaled_height) = (scale.scale(jpeg_width), scale.scale(jpeg_height));
        let whole = ScaledWindow { x: 0, y: 0, width: scaled_width, height: scaled_height };
        let window = match crop {
            Some(crop) if !lossless => self.crop_window(crop, scale, whole),
            _ => None,
        };
        let window = match window {
            Some(window) => {
                let region = raw::tjregion {
                    x: c_int::try_from(window.x).map_err(|_| "crop x overflows".to_string())?,
                    y: c_int::try_from(window.y).map_err(|_| "crop y overflows".to_string())?,
                    w: c_int::try_from(window.width).map_err(|_| "crop width overflows".to_string())?,
                    h: c_int::try_from(window.height).map_err(|_| "crop height overflows".to_string())?,
                };
                // SAFETY: valid handle, header read and scaling factor set just above, as
                // tj3SetCroppingRegion requires; an invalid region is an error, not UB.
                if unsafe { raw::tj3SetCroppingRegion(self.handle, region) } == 0 {
                    window
                } else {
                    // Not expected (crop_window follows tj3SetCroppingRegion's rules); a
                    // whole decode is slower but still right.
                    let (_, why) = self.error();
                    tracing::debug!(%why, ?window, "cropping region refused; decoding the whole image");
                    self.uncrop()?;
                    whole
                }
            }
            None => {
                self.uncrop()?;
                whole
            }
        };
        let pitch = (window.width as usize)
            .checked_mul(pixels.bytes_per_pixel())
            .ok_or_else(|| format!("{}-pixel rows overflow", window.width))?;
        let len = pitch
            .checked_mul(window.height as usize)
            .ok_or_else(|| format!("{}x{} overflows", window.width, window.height))?;
        let pitch_c = c_int::try_from(pitch).map_err(|_| format!("{}-pixel rows are too wide", window.width))?;
        if len == 0 {
            return Err(format!("{jpeg_width}x{jpeg_height} image"));
        }
        out.clear();
        out.resize(len, 0);
        // SAFETY: valid handle; `out` holds `window.height` rows of `pitch` bytes. Uncropped
        // (`TJUNCROPPED`), libjpeg writes `output_height` rows of `output_width` pixels: the
        // scaled size of this header at this factor (module docs). Cropped, it writes exactly
        // `croppingRegion.h == window.height` rows of `output_width` pixels, and
        // `output_width == croppingRegion.w == window.width`: either the region spans the full
        // width, or jpeg_crop_scanline sets `output_width` to the width it returns, and
        // tj3Decompress8 fails before reading any scanline if that is not `croppingRegion.w`
        // (turbojpeg-mp.c:206-228; module docs).
        let status =
            unsafe { raw::tj3Decompress8(self.handle, jpeg.as_ptr(), size, out.as_mut_ptr(), pitch_c, pixels.code()) };
        let warning = self.check(status)?;
        Ok(TurboDecoded {
            jpeg_width,
            jpeg_height,
            scale,
            x: window.x,
            y: window.y,
            width: window.width,
            height: window.height,
            warning,
        })
    }

    /// Resets the handle's cropping region to `TJUNCROPPED`, so a region set for an earlier
    /// image never applies to this one.
    fn uncrop(&mut self) -> Result<(), String> {
        let uncropped = raw::tjregion { x: 0, y: 0, w: 0, h: 0 };
        // SAFETY: valid handle; TJUNCROPPED (all zeros) is always accepted.
        if unsafe { raw::tj3SetCroppingRegion(self.handle, uncropped) } != 0 {
            return Err(self.error().1);
        }
        Ok(())
    }

    /// The cropping region for `crop` once the header has been read: clamped to `whole`,
    /// `x` aligned down to a multiple of both TurboJPEG's and libjpeg's scaled iMCU widths
    /// (module docs). `None` for a whole-image decode: the window covers the image, is empty
    /// once clamped, or the subsampling has no TurboJPEG iMCU width.
    fn crop_window(&mut self, crop: CropRequest, scale: DctScale, whole: ScaledWindow) -> Option<ScaledWindow> {
        let subsamp = usize::try_from(self.get(raw::TJPARAM_TJPARAM_SUBSAMP)).ok()?;
        let tj_unit = scale.scale(*TJ_MCU_WIDTH.get(subsamp)?);
        // Sampling factors are 1..=4 in valid files and at most 15 in any, so this is at
        // most 120; 8 (no subsampling) when the hint is missing.
        let libjpeg_unit = scale.scale(if crop.mcu_width == 0 { 8 } else { crop.mcu_width.min(8 * 15) });
        if tj_unit == 0 || libjpeg_unit == 0 {
            return None;
        }
        let align = tj_unit / gcd(tj_unit, libjpeg_unit) * libjpeg_unit;
        let right = crop.window.x.saturating_add(crop.window.width).min(whole.width);
        let bottom = crop.window.y.saturating_add(crop.window.height).min(whole.height);
        let (x, y) = (crop.window.x / align * align, crop.window.y);
        if x >= right || y >= bottom {
            return None;
        }
        let window = ScaledWindow { x, y, width: right - x, height: bottom - y };
        (window != whole).then_some(window)
    }
}

impl Drop for TurboDecompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { raw::tj3Destroy(self.handle) };
    }
}

/// # Safety
/// `handle` must be null or a live TurboJPEG handle.
unsafe fn message(handle: raw::tjhandle) -> String {
    // SAFETY: tj3GetErrorStr never returns null: it returns the handle's or the
    // thread-local global NUL-terminated buffer.
    unsafe { CStr::from_ptr(raw::tj3GetErrorStr(handle)) }.to_string_lossy().into_owned()
}

/// libjpeg's warning messages (jerror.h `JWRN_*`), stable for decades.
fn is_libjpeg_warning(text: &str) -> bool {
    const WARNINGS: [&str; 7] = [
        "Corrupt JPEG data",
        "Premature end of JPEG file",
        "Warning: unknown JFIF revision number",
        "Unknown Adobe color transform code",
        "Inconsistent progression sequence",
        "Invalid SOS parameters for sequential JPEG",
        "Application transferred too many scanlines",
    ];
    WARNINGS.iter().any(|w| text.starts_with(w))
}

/// libjpeg's warning for data that ran out before the image was complete.
pub(crate) const PREMATURE_END: &str = "Premature end of JPEG file";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use turbojpeg::Subsamp;

    /// A JPEG of gradients plus strong per-sample noise (deterministic), so chroma differs
    /// between neighbouring pixels and any upsampling difference shows.
    pub(crate) fn noisy_jpeg(
        width: u32,
        height: u32,
        subsamp: Subsamp,
        progressive: bool,
        arithmetic: bool,
    ) -> Vec<u8> {
        let mut state = 0x1234_5678_u32;
        let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    pixels.push(((x * 7 + y * 3 + c * 50 + (state >> 26)) % 256) as u8);
                }
            }
        }
        let mut compressor = turbojpeg::Compressor::new().expect("tj3Init");
        compressor.set_quality(95).expect("quality");
        compressor.set_subsamp(subsamp).expect("subsamp");
        compressor.set_progressive(progressive).expect("progressive");
        compressor.set_arithmetic(arithmetic).expect("arithmetic");
        let format = if subsamp == Subsamp::Gray { turbojpeg::PixelFormat::GRAY } else { turbojpeg::PixelFormat::RGB };
        let pixels: Vec<u8> = if subsamp == Subsamp::Gray { pixels.chunks(3).map(|p| p[0]).collect() } else { pixels };
        crate::image::testdata::compress(&mut compressor, &pixels, width, height, format)
    }

    /// `(subsampling, progressive, arithmetic, name)` for every layout libjpeg-turbo writes.
    const LAYOUTS: [(Subsamp, bool, bool, &str); 9] = [
        (Subsamp::None, false, false, "4:4:4"),
        (Subsamp::Sub2x1, false, false, "4:2:2"),
        (Subsamp::Sub2x2, false, false, "4:2:0"),
        (Subsamp::Sub2x2, true, false, "4:2:0 progressive"),
        (Subsamp::Sub2x2, false, true, "4:2:0 arithmetic"),
        (Subsamp::Sub1x2, false, false, "4:4:0"),
        (Subsamp::Sub4x1, false, false, "4:1:1"),
        (Subsamp::Gray, false, false, "gray"),
        (Subsamp::None, true, false, "4:4:4 progressive"),
    ];

    /// Whether libjpeg-turbo uses fancy h2v1 / h2v2 chroma upsampling for this layout at this
    /// scale (found by this test, explained in the module docs): 4:2:2 at every scale but
    /// 1/8, 4:2:0 at scale 1 only. Everywhere else the IDCT upsamples, or the upsampler only
    /// replicates (4:1:1) or works vertically (4:4:0), and cropping is exact.
    fn fancy_horizontal(subsamp: Subsamp, scale: DctScale) -> bool {
        match subsamp {
            Subsamp::Sub2x1 => scale != DctScale::DOWNSCALES[0],
            Subsamp::Sub2x2 => scale == DctScale::ONE,
            _ => false,
        }
    }

    /// Every cropped decode equals the same window of the whole decode at the same scale,
    /// except, where fancy horizontal upsampling runs, in the first and last decoded column
    /// unless that column is the image's own edge. Rows are always exact.
    #[test]
    fn cropped_decode_equals_the_window_of_a_full_decode() {
        let mut decompressor = TurboDecompressor::new().expect("tj3Init");
        let (mut full, mut cropped) = (Vec::new(), Vec::new());
        for (subsamp, progressive, arithmetic, name) in LAYOUTS {
            let bytes = noisy_jpeg(333, 257, subsamp, progressive, arithmetic);
            let mcu_width = if subsamp == Subsamp::Sub4x1 { 32 } else { 16 };
            for scale in DctScale::DOWNSCALES {
                let whole =
                    decompressor.decompress_window(&bytes, scale, None, TurboPixels::Rgb, &mut full).expect("full");
                assert_eq!((whole.x, whole.y, whole.width, whole.height), (0, 0, scale.scale(333), scale.scale(257)));
                let mut edge_differs = false;
                // Fractions of the scaled size: interior, touching each edge, one pixel, all.
                for [x, y, w, h] in [
                    [0.11, 0.08, 0.15, 0.16],
                    [0.02, 0.01, 0.30, 0.78],
                    [0.30, 0.0, 0.18, 1.0],
                    [0.0, 0.2, 1.0, 0.08],
                    [0.05, 0.04, 0.0, 0.0],
                    [0.6, 0.4, 1.2, 1.2],
                    [0.5, 0.5, 0.5, 0.5],
                ] {
                    let at = |f: f64, size: u32| (f * f64::from(size)) as u32;
                    let window = ScaledWindow {
                        x: at(x, whole.width),
                        y: at(y, whole.height),
                        width: at(w, whole.width).max(1),
                        height: at(h, whole.height).max(1),
                    };
                    let crop = CropRequest { window, mcu_width };
                    let got = decompressor
                        .decompress_window(&bytes, scale, Some(crop), TurboPixels::Rgb, &mut cropped)
                        .unwrap_or_else(|e| panic!("{name} {scale} {window:?}: {e}"));
                    let what = format!("{name} at {scale}, {window:?} -> {got:?}");
                    // Clamped, left edge aligned down, right and bottom edges as asked.
                    assert!(got.x <= window.x && window.x - got.x < 32, "{what}");
                    assert_eq!(got.y, window.y, "{what}");
                    assert_eq!(got.x + got.width, (window.x + window.width).min(whole.width), "{what}");
                    assert_eq!(got.y + got.height, (window.y + window.height).min(whole.height), "{what}");
                    assert_eq!(cropped.len(), got.width as usize * got.height as usize * 3, "{what}");
                    for row in 0..got.height {
                        for col in 0..got.width {
                            let i = ((row * got.width + col) * 3) as usize;
                            let j = (((row + got.y) * whole.width + col + got.x) * 3) as usize;
                            if cropped[i..i + 3] == full[j..j + 3] {
                                continue;
                            }
                            let left_edge = col == 0 && got.x > 0;
                            let right_edge = col + 1 == got.width && got.x + got.width < whole.width;
                            assert!(
                                fancy_horizontal(subsamp, scale) && (left_edge || right_edge),
                                "{what}: pixel ({col}, {row}) differs: {:?} vs {:?}",
                                &cropped[i..i + 3],
                                &full[j..j + 3]
                            );
                            edge_differs = true;
                        }
                    }
                }
                // The exception is real, not just allowed: noisy chroma shows it.
                assert_eq!(edge_differs, fancy_horizontal(subsamp, scale), "{name} at {scale}");
            }
        }
    }

    /// tj3SetCroppingRegion wants x on TurboJPEG's scaled iMCU (16 px for 4:2:0 at 1/1, 6 at
    /// 3/8, 2 at 1/8; 8 px for gray at 1/1, 1 at 1/8); a window already covering the whole
    /// image is decoded uncropped.
    #[test]
    fn crop_x_is_aligned_down_to_the_scaled_imcu() {
        let mut decompressor = TurboDecompressor::new().expect("tj3Init");
        let mut out = Vec::new();
        let cases = [
            (Subsamp::Sub2x2, 16, DctScale::ONE, 37, 32),
            (Subsamp::Sub2x2, 16, DctScale { num: 3, denom: 8 }, 37, 36),
            (Subsamp::Sub2x2, 16, DctScale { num: 1, denom: 8 }, 37, 36),
            (Subsamp::Sub2x2, 16, DctScale { num: 5, denom: 8 }, 37, 30),
            (Subsamp::None, 8, DctScale::ONE, 37, 32),
            (Subsamp::Gray, 8, DctScale::ONE, 37, 32),
            (Subsamp::Gray, 8, DctScale { num: 1, denom: 8 }, 37, 37),
            (Subsamp::Sub4x1, 32, DctScale { num: 1, denom: 2 }, 37, 32),
            // A hint larger than the real iMCU (gray stored with 2x2 factors, say) only
            // aligns further.
            (Subsamp::None, 16, DctScale::ONE, 37, 32),
            (Subsamp::None, 24, DctScale::ONE, 37, 24),
        ];
        for (subsamp, mcu_width, scale, x, want) in cases {
            let bytes = noisy_jpeg(800, 400, subsamp, false, false);
            let window = ScaledWindow { x, y: 3, width: 20, height: 10 };
            let got = decompressor
                .decompress_window(&bytes, scale, Some(CropRequest { window, mcu_width }), TurboPixels::Rgb, &mut out)
                .expect("decodes");
            assert_eq!((got.x, got.y, got.width, got.height), (want, 3, x + 20 - want, 10), "{subsamp:?} {scale}");
        }
        let bytes = noisy_jpeg(200, 100, Subsamp::Sub2x2, false, false);
        let window = ScaledWindow { x: 0, y: 0, width: 1000, height: 1000 };
        let got = decompressor
            .decompress_window(
                &bytes,
                DctScale::ONE,
                Some(CropRequest { window, mcu_width: 16 }),
                TurboPixels::Rgb,
                &mut out,
            )
            .expect("decodes");
        assert_eq!((got.x, got.y, got.width, got.height), (0, 0, 200, 100));
        // Outside the image once clamped: decoded whole.
        let window = ScaledWindow { x: 500, y: 0, width: 10, height: 10 };
        let got = decompressor
            .decompress_window(
                &bytes,
                DctScale::ONE,
                Some(CropRequest { window, mcu_width: 16 }),
                TurboPixels::Rgb,
                &mut out,
            )
            .expect("decodes");
        assert_eq!((got.x, got.y, got.width, got.height), (0, 0, 200, 100));
    }

    /// The cropping region is a handle setting; a whole decode after a cropped one (of a
    /// smaller image, where the old region would not even fit) must not inherit it.
    #[test]
    fn a_crop_does_not_leak_into_the_next_decode() {
        let mut decompressor = TurboDecompressor::new().expect("tj3Init");
        let big = noisy_jpeg(300, 200, Subsamp::Sub2x2, false, false);
        let small = noisy_jpeg(40, 30, Subsamp::None, false, false);
        let mut reference = Vec::new();
        let want = TurboDecompressor::new()
            .expect("tj3Init")
            .decompress_window(&small, DctScale::ONE, None, TurboPixels::Rgb, &mut reference)
            .expect("decodes");
        let mut out = Vec::new();
        let window = ScaledWindow { x: 100, y: 150, width: 150, height: 40 };
        decompressor
            .decompress_window(
                &big,
                DctScale::ONE,
                Some(CropRequest { window, mcu_width: 16 }),
                TurboPixels::Rgb,
                &mut out,
            )
            .expect("cropped");
        let got =
            decompressor.decompress_window(&small, DctScale::ONE, None, TurboPixels::Rgb, &mut out).expect("whole");
        assert_eq!((got, out), (want, reference));
    }

    /// Lossless JPEGs can be neither scaled nor cropped: decoded whole at 1/1.
    #[test]
    fn lossless_jpeg_is_decoded_whole() {
        let mut compressor = turbojpeg::Compressor::new().expect("tj3Init");
        compressor.set_lossless(true).expect("lossless");
        let pixels = vec![77u8; 24 * 16 * 3];
        let image = turbojpeg::Image {
            pixels: &pixels[..],
            width: 24,
            pitch: 72,
            height: 16,
            format: turbojpeg::PixelFormat::RGB,
        };
        let bytes = compressor.compress_to_vec(image).expect("compresses");
        let mut decompressor = TurboDecompressor::new().expect("tj3Init");
        let mut out = Vec::new();
        let window = ScaledWindow { x: 8, y: 2, width: 4, height: 4 };
        let got = decompressor
            .decompress_window(
                &bytes,
                DctScale { num: 1, denom: 2 },
                Some(CropRequest { window, mcu_width: 8 }),
                TurboPixels::Rgb,
                &mut out,
            )
            .expect("decodes");
        assert_eq!((got.scale, got.x, got.y, got.width, got.height), (DctScale::ONE, 0, 0, 24, 16));
        assert_eq!(out, pixels);
    }

    #[test]
    fn scale_matches_libjpeg_rounding() {
        let half = DctScale { num: 1, denom: 2 };
        assert_eq!(half.scale(5), 3);
        assert_eq!(DctScale { num: 3, denom: 8 }.scale(10), 4);
        assert_eq!(DctScale { num: 1, denom: 8 }.scale(1), 1);
        assert_eq!(DctScale::ONE.scale(u32::MAX), u32::MAX);
        assert_eq!(DctScale { num: 7, denom: 8 }.scale(u32::MAX), 3_758_096_384);
    }

    #[test]
    fn every_listed_scale_is_supported_by_libjpeg_turbo() {
        let supported = turbojpeg::Decompressor::supported_scaling_factors();
        for scale in DctScale::DOWNSCALES {
            let factor = turbojpeg::ScalingFactor::new(scale.num.into(), scale.denom.into());
            assert!(supported.contains(&factor), "{scale}");
        }
    }

    #[test]
    fn covering_picks_the_smallest_sufficient_factor() {
        assert_eq!(DctScale::covering(800, 600, 100, 75), DctScale { num: 1, denom: 8 });
        assert_eq!(DctScale::covering(800, 600, 101, 75), DctScale { num: 1, denom: 4 });
        assert_eq!(DctScale::covering(800, 600, 224, 224), DctScale { num: 3, denom: 8 });
        assert_eq!(DctScale::covering(800, 600, 300, 300), DctScale { num: 1, denom: 2 });
        assert_eq!(DctScale::covering(800, 600, 0, 0), DctScale { num: 1, denom: 8 });
        assert_eq!(DctScale::covering(800, 600, 800, 1), DctScale::ONE);
        assert_eq!(DctScale::covering(800, 600, 5000, 5000), DctScale::ONE);
    }

    #[test]
    fn garbage_is_a_fatal_error_not_a_panic() {
        let mut decompressor = TurboDecompressor::new().expect("tj3Init");
        let mut out = Vec::new();
        for bytes in [&b""[..], b"\xFF\xD8", b"\xFF\xD8\xFF\xC0\x00\x11", b"not a jpeg at all"] {
            let got = decompressor.decompress_window(bytes, DctScale::ONE, None, TurboPixels::Rgb, &mut out);
            assert!(got.is_err(), "{bytes:?}: {got:?}");
        }
    }
}
