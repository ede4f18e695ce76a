//! A minimal safe wrapper over libjpeg-turbo's TurboJPEG 3 decompressor.
//!
//! Why not `turbojpeg::Decompressor`: its `decompress` turns every non-zero return into an
//! error, but TurboJPEG returns -1 for *warnings* too (a fully decoded image with, say,
//! "extraneous bytes before marker"), and libjpeg-based readers such as Pillow accept those
//! images. Telling a warning from a fatal error needs `tj3GetErrorCode`, which the crate
//! does not expose. This wrapper also reads the header once per decode instead of twice.
//!
//! Safety: `tj3Decompress8` writes `output_height` rows of `output_width * pixel_size` bytes
//! at `pitch` into the destination. [`TurboDecompressor::decompress`] reads the header,
//! computes the scaled size exactly as libjpeg does (`TJSCALED`: ceil(dim * num / denom);
//! scaling is disabled for lossless JPEG, by libjpeg and here alike) and sizes the buffer to
//! it before the call; the library re-reads the same header from the same bytes.

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

/// A successful decode: output size and the first libjpeg warning, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurboDecoded {
    pub jpeg_width: u32,
    pub jpeg_height: u32,
    pub width: u32,
    pub height: u32,
    /// libjpeg reports only its first warning (jerror.c `emit_message`).
    pub warning: Option<String>,
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
    /// exactly `width * height * pixels.bytes_per_pixel()` bytes.
    pub(crate) fn decompress(
        &mut self,
        jpeg: &[u8],
        scale: DctScale,
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
        let (width, height) = (scale.scale(jpeg_width), scale.scale(jpeg_height));
        let pitch = (width as usize)
            .checked_mul(pixels.bytes_per_pixel())
            .ok_or_else(|| format!("{width}-pixel rows overflow"))?;
        let len = pitch.checked_mul(height as usize).ok_or_else(|| format!("{width}x{height} overflows"))?;
        let pitch_c = c_int::try_from(pitch).map_err(|_| format!("{width}-pixel rows are too wide"))?;
        if len == 0 {
            return Err(format!("{jpeg_width}x{jpeg_height} image"));
        }
        out.clear();
        out.resize(len, 0);
        // SAFETY: valid handle; `out` holds `height` rows of `pitch` bytes, which is what
        // libjpeg writes for this header and scaling factor (module docs).
        let status =
            unsafe { raw::tj3Decompress8(self.handle, jpeg.as_ptr(), size, out.as_mut_ptr(), pitch_c, pixels.code()) };
        let warning = self.check(status)?;
        Ok(TurboDecoded { jpeg_width, jpeg_height, width, height, warning })
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
mod tests {
    use super::*;

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
            let got = decompressor.decompress(bytes, DctScale::ONE, TurboPixels::Rgb, &mut out);
            assert!(got.is_err(), "{bytes:?}: {got:?}");
        }
    }
}
