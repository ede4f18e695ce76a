//! `--max-side`: shrink large images at ingest so every later decode is cheap.
//!
//! Decode cost scales with stored pixels and bytes, and it is paid every epoch; resizing
//! once at ingest (FFCV's `max_resolution`, timm's 600/768-capped ImageNet-21k copies) is
//! the biggest decode-cost lever after the GPU (PERF.md section 4, "Ingest"). An image whose
//! shorter side exceeds `max_side` is:
//!
//! 1. decoded at the smallest DCT scale that keeps the upright image at least as large as
//!    the target (libjpeg-turbo skips most of the IDCT work; JPEG only),
//! 2. turned upright by its EXIF orientation (the new file carries no EXIF),
//! 3. resized with antialiasing to shorter side == `max_side`, the other side
//!    `round(long * max_side / short)`,
//! 4. encoded as a baseline JPEG, 4:2:0, quality `quality` (libjpeg-turbo, accurate DCT).
//!
//! Filter: Catmull-Rom (`fast_image_resize` `Convolution(CatmullRom)`), Pillow's `BICUBIC`
//! kernel (a = -0.5), the default of Pillow's `resize` and of most pre-resized dataset
//! copies. This resize is done once and stored for good; the loader later applies its own
//! bilinear antialiased resize on top, and a bilinear ingest step would blur twice. The
//! extra cost over bilinear (about 2x of a ~0.3 ms step) is small next to the decode and
//! encode around it.
//!
//! Determinism: the same bytes and settings give the same output bytes. libjpeg-turbo's
//! integer DCT, colour conversion and Huffman coding are exact, and its SIMD paths match the
//! C code bit for bit; `fast_image_resize`'s integer convolution is checked against its
//! scalar path in the tests below.

use fast_image_resize as fir;

use super::decode::{Decoder, RgbImage};
use super::{probe_image, DecodeError};

/// Settings of the `--max-side` re-encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReencodeConfig {
    /// Images whose shorter side exceeds this are resized so the shorter side equals it.
    pub max_side: u32,
    /// JPEG quality 1..=100 of the re-encoded (4:2:0) image.
    pub quality: u8,
}

/// 512: keeps BiT's 480-pixel fine-tuning crops possible without upscaling (PERF.md
/// recommends 512-600 for that reason).
pub const DEFAULT_REENCODE_MAX_SIDE: u32 = 512;

/// 90: FFCV's default; visually lossless at 4:2:0 and ~1.8x cheaper to decode than
/// ImageNet's typical 4:4:4 q96 (PERF.md section 3).
pub const DEFAULT_REENCODE_QUALITY: u8 = 90;

impl Default for ReencodeConfig {
    fn default() -> Self {
        ReencodeConfig { max_side: DEFAULT_REENCODE_MAX_SIDE, quality: DEFAULT_REENCODE_QUALITY }
    }
}

impl ReencodeConfig {
    /// Checks the ranges: `max_side >= 1`, `quality` in 1..=100.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.max_side == 0 {
            return Err(DecodeError::BadConfig("max_side must be at least 1".into()));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(DecodeError::BadConfig(format!("JPEG quality {} is outside 1..=100", self.quality)));
        }
        Ok(())
    }
}

/// `(width, height)` after scaling `width x height` so its shorter side is `max_side`;
/// the longer side is rounded to nearest (halves up) and at least 1.
pub fn max_side_target(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let (short, long) = (width.min(height), width.max(height));
    if short == 0 {
        return (width, height);
    }
    let scaled = (2 * u64::from(long) * u64::from(max_side) + u64::from(short)) / (2 * u64::from(short));
    let scaled = u32::try_from(scaled).unwrap_or(u32::MAX).max(1);
    if width <= height {
        (max_side, scaled)
    } else {
        (scaled, max_side)
    }
}

/// Per-thread re-encode state: a [`Decoder`], a TurboJPEG compressor, a resizer and the
/// intermediate buffers. Keep one per worker thread.
pub struct Reencoder {
    decoder: Decoder,
    compressor: turbojpeg::Compressor,
    resizer: fir::Resizer,
    decoded: RgbImage,
    resized: Vec<u8>,
}

impl std::fmt::Debug for Reencoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reencoder").finish_non_exhaustive()
    }
}

impl Reencoder {
    pub fn new() -> Result<Reencoder, DecodeError> {
        let init = |e: turbojpeg::Error| DecodeError::Init(e.to_string());
        let mut compressor = turbojpeg::Compressor::new().map_err(init)?;
        compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2).map_err(init)?;
        Ok(Reencoder {
            decoder: Decoder::new()?,
            compressor,
            resizer: fir::Resizer::new(),
            decoded: RgbImage::default(),
            resized: Vec::new(),
        })
    }

    /// See [`reencode_max_side`].
    pub fn reencode_max_side(
        &mut self,
        bytes: &[u8],
        config: &ReencodeConfig,
        max_pixels: u64,
    ) -> Result<Option<Vec<u8>>, DecodeError> {
        config.validate()?;
        let info = probe_image(bytes, max_pixels)?;
        if info.width.min(info.height) <= config.max_side {
            return Ok(None);
        }
        let (upright_width, upright_height) = info.oriented_size();
        let (width, height) = max_side_target(upright_width, upright_height, config.max_side);
        self.decoder.decode_rgb_into(bytes, max_pixels, width, height, &mut self.decoded)?;

        let source = &self.decoded;
        let pixels: &[u8] = if (source.width, source.height) == (width, height) {
            // The DCT scale landed exactly on the target (e.g. 1024x768 at 1/2 for 512).
            &source.pixels
        } else {
            let resize_error = |reason: String| DecodeError::Resize {
                from_width: source.width,
                from_height: source.height,
                to_width: width,
                to_height: height,
                reason,
            };
            let src = fir::images::ImageRef::new(source.width, source.height, &source.pixels, fir::PixelType::U8x3)
                .map_err(|e| resize_error(e.to_string()))?;
            let mut buffer = std::mem::take(&mut self.resized);
            buffer.clear();
            buffer.resize(width as usize * height as usize * 3, 0);
            let mut dst = fir::images::Image::from_vec_u8(width, height, buffer, fir::PixelType::U8x3)
                .map_err(|e| resize_error(e.to_string()))?;
            let options =
                fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom));
            self.resizer.resize(&src, &mut dst, &options).map_err(|e| resize_error(e.to_string()))?;
            self.resized = dst.into_vec();
            &self.resized
        };

        let encode_error = |e: turbojpeg::Error| DecodeError::Encode { width, height, reason: e.to_string() };
        self.compressor.set_quality(i32::from(config.quality)).map_err(encode_error)?;
        let image = turbojpeg::Image {
            pixels,
            width: width as usize,
            pitch: width as usize * 3,
            height: height as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        let jpeg = self.compressor.compress_to_vec(image).map_err(encode_error)?;
        if self.resized.capacity() > 64 << 20 {
            self.resized = Vec::new();
        }
        Ok(Some(jpeg))
    }
}

/// Re-encodes an image whose shorter side exceeds `config.max_side` (module docs) with this
/// thread's [`Reencoder`]. `Ok(None)`: the image is small enough and stays byte-for-byte as
/// it is.
pub fn reencode_max_side(
    bytes: &[u8],
    config: &ReencodeConfig,
    max_pixels: u64,
) -> Result<Option<Vec<u8>>, DecodeError> {
    thread_local! {
        static REENCODER: std::cell::RefCell<Option<Reencoder>> = const { std::cell::RefCell::new(None) };
    }
    REENCODER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let reencoder = match &mut *slot {
                Some(reencoder) => reencoder,
                empty @ None => empty.insert(Reencoder::new()?),
            };
            reencoder.reencode_max_side(bytes, config, max_pixels)
        }
        Err(_) => Reencoder::new()?.reencode_max_side(bytes, config, max_pixels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testdata::{self, JpegKind};
    use crate::image::{decode_rgb, ImageFormat, ProbeError};

    const LIMIT: u64 = 1 << 28;

    fn config(max_side: u32) -> ReencodeConfig {
        ReencodeConfig { max_side, quality: 90 }
    }

    #[test]
    fn target_keeps_aspect_and_rounds() {
        assert_eq!(max_side_target(1000, 750, 512), (683, 512));
        assert_eq!(max_side_target(750, 1000, 512), (512, 683));
        assert_eq!(max_side_target(600, 600, 512), (512, 512));
        assert_eq!(max_side_target(3, 2, 1), (2, 1)); // 1.5 rounds up
        assert_eq!(max_side_target(100_000, 600, 1), (167, 1));
        assert_eq!(max_side_target(65_535, 65_535, 1), (1, 1));
    }

    #[test]
    fn small_images_are_left_alone() {
        let jpeg = testdata::jpeg(300, 200, JpegKind::Baseline444);
        assert_eq!(reencode_max_side(&jpeg, &config(200), LIMIT), Ok(None));
        assert_eq!(reencode_max_side(&jpeg, &config(512), LIMIT), Ok(None));
        // The longer side may exceed max_side; only the shorter side counts.
        assert_eq!(reencode_max_side(&testdata::png_rgb(2000, 100), &config(100), LIMIT), Ok(None));
    }

    #[test]
    fn large_images_shrink_to_max_side_as_baseline_420_jpeg() {
        let cases = [
            (testdata::jpeg(800, 600, JpegKind::Baseline444), (341, 256)),
            (testdata::jpeg(600, 800, JpegKind::Progressive), (256, 341)),
            (testdata::jpeg(700, 500, JpegKind::Cmyk), (358, 256)),
            (testdata::jpeg(500, 300, JpegKind::Gray), (427, 256)),
            (testdata::png_rgb(640, 480), (341, 256)),
        ];
        for (bytes, (width, height)) in cases {
            let out = reencode_max_side(&bytes, &config(256), LIMIT).expect("re-encodes").expect("large enough");
            let info = probe_image(&out, LIMIT).expect("valid JPEG");
            assert_eq!((info.format, info.width, info.height), (ImageFormat::Jpeg, width, height));
            let jpeg = info.jpeg.expect("jpeg info");
            assert_eq!(jpeg.sof_marker, 0xC0, "baseline");
            assert_eq!(jpeg.components, 3);
            assert_eq!(jpeg.sampling_factors, [0x22, 0x11, 0x11, 0], "4:2:0");
        }
    }

    #[test]
    fn exact_dct_scale_needs_no_resize() {
        // 1024x768 at 1/2 is 512x384: the shorter side lands on 384 exactly.
        let bytes = testdata::jpeg_solid(1024, 768, JpegKind::Baseline420, [200, 100, 50]);
        let out = reencode_max_side(&bytes, &config(384), LIMIT).expect("ok").expect("large");
        let image = decode_rgb(&out, LIMIT).expect("decodes");
        assert_eq!((image.width, image.height), (512, 384));
        let first = &image.pixels[image.pixels.len() / 2..image.pixels.len() / 2 + 3];
        for (got, want) in first.iter().zip([200u8, 100, 50]) {
            assert!(got.abs_diff(want) <= 4, "{first:?}");
        }
    }

    #[test]
    fn exif_rotation_is_baked_in() {
        let bytes = testdata::with_exif_orientation(&testdata::jpeg_halves(800, 400), 6);
        let out = reencode_max_side(&bytes, &config(200), LIMIT).expect("ok").expect("large");
        let info = probe_image(&out, LIMIT).expect("valid");
        assert_eq!((info.width, info.height), (200, 400));
        assert_eq!(info.orientation, crate::image::Orientation::Normal);
        let image = decode_rgb(&out, LIMIT).expect("decodes");
        let top = &image.pixels[(50 * 200 + 100) * 3..][..3];
        let bottom = &image.pixels[(350 * 200 + 100) * 3..][..3];
        assert!(top[0] > 200 && top[2] < 60, "top is red: {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom is blue: {bottom:?}");
    }

    #[test]
    fn output_is_deterministic() {
        let bytes = testdata::jpeg(900, 700, JpegKind::Baseline444);
        let first = reencode_max_side(&bytes, &config(300), LIMIT).expect("ok");
        let mut fresh = Reencoder::new().expect("reencoder");
        // Interleave another image so reused buffers must not leak state.
        let other = testdata::jpeg(1200, 640, JpegKind::Progressive);
        assert!(fresh.reencode_max_side(&other, &config(300), LIMIT).expect("ok").is_some());
        assert_eq!(fresh.reencode_max_side(&bytes, &config(300), LIMIT), Ok(first.clone()));
        assert_eq!(reencode_max_side(&bytes, &config(300), LIMIT), Ok(first));
    }

    /// The SIMD resize path gives the same bytes as the scalar one, so output does not depend
    /// on which CPU ran the ingest.
    #[test]
    fn resize_is_identical_across_cpu_extensions() {
        let source = decode_rgb(&testdata::jpeg(613, 419, JpegKind::Baseline444), LIMIT).expect("decodes");
        let src = fir::images::ImageRef::new(source.width, source.height, &source.pixels, fir::PixelType::U8x3)
            .expect("sized");
        let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom));
        let resize_with = |extensions: fir::CpuExtensions| {
            let mut resizer = fir::Resizer::new();
            // SAFETY: only extensions the running CPU reports are selected below.
            unsafe { resizer.set_cpu_extensions(extensions) };
            let mut dst = fir::images::Image::new(251, 172, fir::PixelType::U8x3);
            resizer.resize(&src, &mut dst, &options).expect("resizes");
            dst.into_vec()
        };
        let scalar = resize_with(fir::CpuExtensions::None);
        #[cfg(target_arch = "x86_64")]
        let candidates = [fir::CpuExtensions::Sse4_1, fir::CpuExtensions::Avx2];
        #[cfg(target_arch = "aarch64")]
        let candidates = [fir::CpuExtensions::Neon];
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let candidates: [fir::CpuExtensions; 0] = [];
        for extensions in candidates.into_iter().filter(|e| e.is_supported()) {
            assert!(resize_with(extensions) == scalar, "{extensions:?} differs from scalar");
        }
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(reencode_max_side(b"", &config(10), LIMIT), Err(DecodeError::Probe(ProbeError::Empty)));
        assert!(matches!(
            reencode_max_side(&testdata::jpeg(64, 64, JpegKind::Baseline420), &config(10), 100),
            Err(DecodeError::Probe(ProbeError::TooManyPixels { .. }))
        ));
        assert_eq!(
            reencode_max_side(b"", &ReencodeConfig { max_side: 10, quality: 0 }, LIMIT),
            Err(DecodeError::BadConfig("JPEG quality 0 is outside 1..=100".into()))
        );
        assert_eq!(
            reencode_max_side(b"", &ReencodeConfig { max_side: 0, quality: 90 }, LIMIT),
            Err(DecodeError::BadConfig("max_side must be at least 1".into()))
        );
        let truncated = testdata::jpeg(300, 300, JpegKind::Baseline444);
        assert!(matches!(
            reencode_max_side(&truncated[..truncated.len() / 2], &config(100), LIMIT),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
