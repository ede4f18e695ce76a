//! Decoded pixels + plan -> one output slot (BIT_SPEC §2.1, PERF §4 "Resize / augment").
//!
//! One fused crop-resize with `fast_image_resize` (fir) `Convolution(Bilinear)`: a triangle
//! filter whose support grows with the downscale factor, so downscaling is antialiased like
//! PIL/torchvision bilinear (TF's non-antialiased `resize` is not reproduced).
//!
//! What fir does at the edges of the crop box (read from fir 6.1 `precompute_coefficients`,
//! which ports Pillow's `precompute_coeffs`): the box only sets where each output pixel's
//! centre falls (`left + (x + 0.5) * box_width / size`); the filter window around that centre
//! is clipped to the *whole source image*, not to the box. So
//! - inside the image, output pixels along a box edge also weigh source pixels just outside
//!   the box (within the filter radius: 1 px times the downscale factor). That is PIL's
//!   `Image.resize(size, box=...)`, and close to BiT's squash-then-crop, whose squashed
//!   border pixels were also computed from neighbours beyond the later crop;
//! - at the image border the window is truncated and the remaining weights renormalised to
//!   sum to 1 (no zero padding, no edge replication), again as PIL does;
//! - a box that is integer-aligned and exactly `size x size` is copied without resampling,
//!   and an axis whose scale is 1 and offset integral skips that pass, so identity is exact.
//!
//! fir still allocates its coefficient tables per call (a few KiB); the source view, the
//! output and, for float output, the intermediate bytes live in caller or [`Renderer`] memory.

use bitkit_ingest::image::RgbImage;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::geometry::CropBox;
use crate::LoaderError;

/// Where one sample's pixels go inside a batch buffer.
pub enum OutSlot<'a> {
    /// `size * size * 3` bytes, HWC, RGB.
    U8Hwc(&'a mut [u8]),
    /// `3 * size * size` floats, CHW, RGB, `x / 127.5 - 1`.
    F32Chw(&'a mut [f32]),
}

impl OutSlot<'_> {
    /// The same slot for a shorter borrow (a bad sample's slot is written by its replacement).
    pub fn reborrow(&mut self) -> OutSlot<'_> {
        match self {
            OutSlot::U8Hwc(s) => OutSlot::U8Hwc(s),
            OutSlot::F32Chw(s) => OutSlot::F32Chw(s),
        }
    }
}

/// Per-thread resize state and scratch; reuse it (no allocation per sample in steady state).
#[derive(Default)]
pub struct Renderer {
    /// fir keeps its intermediate (vertical-pass) image buffer here between calls.
    resizer: Resizer,
    /// The resized RGB bytes before conversion to float.
    scratch: Vec<u8>,
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer::default()
    }

    /// Resizes `crop` (in `src` pixel coordinates) of `src` to `size x size`, flips it when
    /// asked, and writes it into `out`.
    ///
    /// The box is first clipped to the image; a box that is not finite or has no area left
    /// is a [`LoaderError::Config`] naming it, as is a slot of the wrong length or a source
    /// whose buffer is shorter than `width * height * 3`.
    pub fn render(
        &mut self,
        src: &RgbImage,
        crop: CropBox,
        size: u32,
        flip: bool,
        out: OutSlot<'_>,
    ) -> Result<(), LoaderError> {
        let (w, h) = (src.width, src.height);
        let need = rgb_len(w, h).filter(|&n| src.pixels.len() >= n).ok_or_else(|| {
            config(format!("render: a {w}x{h} RGB image needs {w} * {h} * 3 bytes, not {}", src.pixels.len()))
        })?;
        let src_view = ImageRef::new(w, h, &src.pixels[..need], PixelType::U8x3)
            .map_err(|e| config(format!("render: {w}x{h} source image: {e}")))?;
        let out_len = rgb_len(size, size)
            .filter(|_| size > 0)
            .ok_or_else(|| config(format!("render: output size {size} is out of range")))?;
        let clipped = clip_box(crop, w, h).ok_or_else(|| {
            config(format!(
                "render: crop box (left {}, top {}, width {}, height {}) has no area inside the {w}x{h} image",
                crop.left, crop.top, crop.width, crop.height
            ))
        })?;
        let options = ResizeOptions::new()
            .crop(clipped.left, clipped.top, clipped.width, clipped.height)
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        let resize_err = |e: fast_image_resize::ResizeError| {
            config(format!("render: resizing {clipped:?} of a {w}x{h} image to {size}x{size}: {e}"))
        };
        match out {
            OutSlot::U8Hwc(slot) => {
                check_len("u8 HWC", slot.len(), out_len, size)?;
                // Straight into the batch slot: no copy.
                let mut dst = Image::from_slice_u8(size, size, slot, PixelType::U8x3)
                    .map_err(|e| config(format!("render: {size}x{size} output slot: {e}")))?;
                self.resizer.resize(&src_view, &mut dst, &options).map_err(resize_err)?;
                if flip {
                    flip_rows(dst.buffer_mut(), size as usize);
                }
            }
            OutSlot::F32Chw(slot) => {
                check_len("f32 CHW", slot.len(), out_len, size)?;
                // Same length every call in steady state, so neither allocates nor zeroes.
                self.scratch.resize(out_len, 0);
                let mut dst = Image::from_slice_u8(size, size, &mut self.scratch, PixelType::U8x3)
                    .map_err(|e| config(format!("render: {size}x{size} scratch: {e}")))?;
                self.resizer.resize(&src_view, &mut dst, &options).map_err(resize_err)?;
                hwc_to_chw_f32(&self.scratch, size as usize, flip, slot);
            }
        }
        Ok(())
    }
}

/// BiT's normalisation, `ToTensor` then `Normalize(0.5, 0.5)`: `x / 127.5 - 1`, written as
/// exactly this expression (a division: multiplying by the reciprocal rounds 111 of the 256
/// bytes differently) so every value is bit-reproducible against any implementation of the
/// same formula.
#[inline(always)]
pub fn normalize(x: u8) -> f32 {
    f32::from(x) / 127.5 - 1.0
}

/// [`normalize`] of every byte, evaluated once at compile time with the same IEEE operations
/// (a test checks all 256 entries bit for bit). The conversion loop looks values up instead
/// of dividing: with the baseline x86-64 target (SSE2, no `target-cpu=native`) the vectorised
/// division is bound by `divps` throughput and measured ~1.5x slower than the table.
static NORMALIZED: [f32; 256] = {
    let mut table = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as f32 / 127.5 - 1.0;
        i += 1;
    }
    table
};

fn config(msg: String) -> LoaderError {
    LoaderError::Config(msg)
}

fn rgb_len(w: u32, h: u32) -> Option<usize> {
    (w as usize).checked_mul(h as usize)?.checked_mul(3)
}

fn check_len(what: &str, got: usize, want: usize, size: u32) -> Result<(), LoaderError> {
    if got == want {
        Ok(())
    } else {
        Err(config(format!("render: {what} slot of {got} values for a {size}x{size} RGB output, needs {want}")))
    }
}

/// `crop` intersected with the `w x h` image, or `None` when a field is not finite or nothing
/// of positive area is left. fir rejects boxes whose `left + width` passes the image edge, so
/// the width is nudged down by an ulp where the subtraction rounded up.
fn clip_box(crop: CropBox, w: u32, h: u32) -> Option<CropBox> {
    let CropBox { left, top, width, height } = crop;
    if ![left, top, width, height].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (w, h) = (f64::from(w), f64::from(h));
    let (l, r) = (left.max(0.0), (left + width).min(w));
    let (t, b) = (top.max(0.0), (top + height).min(h));
    let fit = |start: f64, end: f64, limit: f64| {
        let mut len = end - start;
        if start + len > limit {
            len = len.next_down();
        }
        // Written so that NaN (impossible here, but cheap to rule out) also fails.
        (len > 0.0 && start < limit && start + len <= limit).then_some(len)
    };
    let width = fit(l, r, w)?;
    let height = fit(t, b, h)?;
    Some(CropBox { left: l, top: t, width, height })
}

/// Mirrors each row of a `size`-wide RGB8 image in place.
fn flip_rows(buf: &mut [u8], size: usize) {
    let (pixels, _) = buf.as_chunks_mut::<3>();
    for row in pixels.chunks_exact_mut(size) {
        row.reverse();
    }
}

/// RGB8 HWC -> planar f32 CHW with [`normalize`], mirroring each row when `flip`.
/// `src` is `size * size * 3` bytes and `out` as many floats (checked by the caller).
///
/// At 480 px this writes 2.7 MB per image, and the table lookup ran at about one value per
/// cycle: 20% of the `test` pipeline. With AVX2 (detected at run time; the release build
/// targets baseline x86-64) 16 pixels are deinterleaved with byte shuffles and converted 8
/// lanes at a time with the same IEEE operations (`x / 127.5 - 1` in f32, each correctly
/// rounded), so the output is bit-identical to the table.
fn hwc_to_chw_f32(src: &[u8], size: usize, flip: bool, out: &mut [f32]) {
    let plane = size * size;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let rows = src
        .chunks_exact(size * 3)
        .zip(r.chunks_exact_mut(size))
        .zip(g.chunks_exact_mut(size).zip(b.chunks_exact_mut(size)));
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    for ((s, r), (g, b)) in rows {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 is available (checked above); `s` holds `r.len()` pixels and
            // `r`, `g`, `b` are equally long (chunks of the same size).
            unsafe { simd::row_to_planes_avx2(s, r, g, b, flip) };
            continue;
        }
        row_to_planes_table(s, r, g, b, flip, 0);
    }
}

/// Pixels `from..` of one row through the table. Zipping equal-length slices leaves no
/// bounds checks in the loop, and a `u8` index into a 256-entry table needs none either.
fn row_to_planes_table(s: &[u8], r: &mut [f32], g: &mut [f32], b: &mut [f32], flip: bool, from: usize) {
    let (px, _) = s.as_chunks::<3>();
    let n = r.len();
    if flip {
        // Pixel i goes to n - 1 - i: pixels from.. fill outputs ..n - from, reversed.
        let (r, g, b) = (&mut r[..n - from], &mut g[..n - from], &mut b[..n - from]);
        row_to_planes(px[from..].iter().rev(), r, g, b);
    } else {
        row_to_planes(px[from..].iter(), &mut r[from..], &mut g[from..], &mut b[from..]);
    }
}

#[inline(always)]
fn row_to_planes<'a>(px: impl Iterator<Item = &'a [u8; 3]>, r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    for (((p, r), g), b) in px.zip(r.iter_mut()).zip(g.iter_mut()).zip(b.iter_mut()) {
        *r = NORMALIZED[usize::from(p[0])];
        *g = NORMALIZED[usize::from(p[1])];
        *b = NORMALIZED[usize::from(p[2])];
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// `pshufb` masks gathering channel `c` of 16 RGB pixels from the `k`-th 16-byte load of
    /// their 48 bytes: lane `l` takes byte `3l + c` when that byte lies in load `k`, else
    /// zero (index 0x80), so OR-ing the three shuffles gives the channel.
    const fn mask(channel: usize, load: usize) -> [u8; 16] {
        let mut m = [0x80u8; 16];
        let mut lane = 0;
        while lane < 16 {
            let byte = 3 * lane + channel;
            if byte >= 16 * load && byte < 16 * (load + 1) {
                m[lane] = (byte - 16 * load) as u8;
            }
            lane += 1;
        }
        m
    }

    const MASKS: [[[u8; 16]; 3]; 3] = [
        [mask(0, 0), mask(0, 1), mask(0, 2)],
        [mask(1, 0), mask(1, 1), mask(1, 2)],
        [mask(2, 0), mask(2, 1), mask(2, 2)],
    ];

    /// One row of `r.len()` pixels; the tail past a multiple of 16 goes through the table.
    ///
    /// # Safety
    /// AVX2 must be available; `s.len() >= 3 * r.len()` and `g`, `b` as long as `r`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn row_to_planes_avx2(s: &[u8], r: &mut [f32], g: &mut [f32], b: &mut [f32], flip: bool) {
        let n = r.len();
        debug_assert!(s.len() >= 3 * n && g.len() == n && b.len() == n);
        let divisor = _mm256_set1_ps(127.5);
        let one = _mm256_set1_ps(1.0);
        let reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
        // SAFETY (all loads of the masks): each is 16 readable bytes of a static.
        let masks: [[__m128i; 3]; 3] =
            std::array::from_fn(|c| std::array::from_fn(|k| unsafe { _mm_loadu_si128(MASKS[c][k].as_ptr().cast()) }));
        let planes = [r.as_mut_ptr(), g.as_mut_ptr(), b.as_mut_ptr()];
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, so bytes 3i..3i + 48 lie within `s`.
            let loads = unsafe {
                let p = s.as_ptr().add(3 * i);
                [_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(16).cast()), _mm_loadu_si128(p.add(32).cast())]
            };
            for (c, plane) in planes.iter().enumerate() {
                let m = &masks[c];
                let bytes = _mm_or_si128(
                    _mm_or_si128(_mm_shuffle_epi8(loads[0], m[0]), _mm_shuffle_epi8(loads[1], m[1])),
                    _mm_shuffle_epi8(loads[2], m[2]),
                );
                let halves = [bytes, _mm_srli_si128::<8>(bytes)];
                for (h, half) in halves.into_iter().enumerate() {
                    let values = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(half));
                    let normalized = _mm256_sub_ps(_mm256_div_ps(values, divisor), one);
                    let first = i + 8 * h;
                    // SAFETY: first + 8 <= n; flipped, pixels first..first + 8 go to
                    // n - first - 8..n - first, also within the plane of n floats.
                    unsafe {
                        if flip {
                            let mirrored = _mm256_permutevar8x32_ps(normalized, reverse);
                            _mm256_storeu_ps(plane.add(n - first - 8), mirrored);
                        } else {
                            _mm256_storeu_ps(plane.add(first), normalized);
                        }
                    }
                }
            }
            i += 16;
        }
        super::row_to_planes_table(s, r, g, b, flip, i);
    }
}

#[cfg(test)]
mod simd_tests {
    use super::*;

    /// The AVX2 path (when the CPU has it) equals the table bit for bit, for every row length
    /// around the 16-pixel blocks, flipped or not.
    #[test]
    fn vector_conversion_equals_the_table() {
        for size in [1usize, 7, 15, 16, 17, 31, 32, 33, 48, 100] {
            let src: Vec<u8> = (0..size * size * 3).map(|i| (i * 37 + i / 7) as u8).collect();
            for flip in [false, true] {
                let mut fast = vec![0.0f32; size * size * 3];
                hwc_to_chw_f32(&src, size, flip, &mut fast);
                let mut slow = vec![0.0f32; size * size * 3];
                let plane = size * size;
                for y in 0..size {
                    for x in 0..size {
                        let ox = if flip { size - 1 - x } else { x };
                        for c in 0..3 {
                            slow[c * plane + y * size + ox] = normalize(src[(y * size + x) * 3 + c]);
                        }
                    }
                }
                let same = fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "size {size} flip {flip}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn noise(width: u32, height: u32, seed: u64) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pixels = (0..width * height * 3).map(|_| rng.random()).collect();
        RgbImage { width, height, pixels }
    }

    fn solid(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage { width, height, pixels: rgb.repeat((width * height) as usize) }
    }

    fn b(left: f64, top: f64, width: f64, height: f64) -> CropBox {
        CropBox { left, top, width, height }
    }

    fn u8_out(r: &mut Renderer, src: &RgbImage, crop: CropBox, size: u32, flip: bool) -> Vec<u8> {
        let mut out = vec![0u8; (size * size * 3) as usize];
        r.render(src, crop, size, flip, OutSlot::U8Hwc(&mut out)).expect("renders");
        out
    }

    fn f32_out(r: &mut Renderer, src: &RgbImage, crop: CropBox, size: u32, flip: bool) -> Vec<f32> {
        let mut out = vec![f32::NAN; (size * size * 3) as usize];
        r.render(src, crop, size, flip, OutSlot::F32Chw(&mut out)).expect("renders");
        out
    }

    fn mirrored(img: &[u8], size: usize) -> Vec<u8> {
        img.chunks_exact(size * 3).flat_map(|row| row.chunks_exact(3).rev().flatten().copied()).collect()
    }

    #[test]
    fn identity_is_exact() {
        let mut r = Renderer::new();
        for side in [1, 7, 37, 64] {
            let src = noise(side, side, u64::from(side));
            let whole = b(0.0, 0.0, f64::from(side), f64::from(side));
            assert_eq!(u8_out(&mut r, &src, whole, side, false), src.pixels, "{side}");
        }
        // An integer-aligned sub-box of the output size is copied too.
        let src = noise(50, 40, 1);
        let out = u8_out(&mut r, &src, b(10.0, 5.0, 20.0, 20.0), 20, false);
        let expect: Vec<u8> = (5..25).flat_map(|y| src.pixels[(y * 50 + 10) * 3..(y * 50 + 30) * 3].to_vec()).collect();
        assert_eq!(out, expect);
    }

    #[test]
    fn flip_mirrors_rows_exactly() {
        let mut r = Renderer::new();
        let src = noise(50, 40, 2);
        for (crop, size) in [(b(3.5, 2.25, 30.7, 33.1), 24), (b(0.0, 0.0, 50.0, 40.0), 64), (b(0.0, 0.0, 9.0, 9.0), 9)]
        {
            let plain = u8_out(&mut r, &src, crop, size, false);
            let flipped = u8_out(&mut r, &src, crop, size, true);
            assert_eq!(flipped, mirrored(&plain, size as usize), "{crop:?}");
            assert_ne!(flipped, plain);
        }
    }

    #[test]
    fn f32_is_normalized_u8_in_chw() {
        let mut r = Renderer::new();
        let src = noise(61, 47, 3);
        let size = 29usize;
        for flip in [false, true] {
            let crop = b(4.3, 1.9, 50.2, 40.6);
            let bytes = u8_out(&mut r, &src, crop, size as u32, flip);
            let floats = f32_out(&mut r, &src, crop, size as u32, flip);
            for c in 0..3 {
                for i in 0..size * size {
                    let want = f32::from(bytes[i * 3 + c]) / 127.5 - 1.0;
                    assert_eq!(floats[c * size * size + i].to_bits(), want.to_bits(), "c {c} i {i} flip {flip}");
                }
            }
        }
        // The ends of the range.
        assert_eq!((normalize(0), normalize(255)), (-1.0, 1.0));
    }

    #[test]
    fn table_matches_the_expression_bit_for_bit() {
        for x in 0..=255u8 {
            // black_box: evaluate the division at run time, not by constant folding.
            let runtime = f32::from(std::hint::black_box(x)) / 127.5 - 1.0;
            assert_eq!(NORMALIZED[usize::from(x)].to_bits(), runtime.to_bits(), "{x}");
            assert_eq!(normalize(x).to_bits(), runtime.to_bits(), "{x}");
        }
    }

    #[test]
    fn constant_colour_stays_constant() {
        let mut r = Renderer::new();
        for rgb in [[0, 0, 0], [255, 255, 255], [12, 200, 77], [1, 254, 128]] {
            let src = solid(83, 59, rgb);
            for (crop, size) in [
                (b(0.0, 0.0, 83.0, 59.0), 32),
                (b(0.0, 0.0, 83.0, 59.0), 480),
                (b(10.25, 3.5, 7.3, 50.0), 128),
                (b(70.9, 0.1, 12.1, 2.5), 3),
                (b(0.0, 0.0, 83.0, 59.0), 1),
            ] {
                let out = u8_out(&mut r, &src, crop, size, false);
                assert!(out.chunks_exact(3).all(|p| p == rgb), "{rgb:?} {crop:?} -> {size}");
                let floats = f32_out(&mut r, &src, crop, size, true);
                let n = (size * size) as usize;
                for c in 0..3 {
                    assert!(floats[c * n..(c + 1) * n].iter().all(|&v| v == normalize(rgb[c])));
                }
            }
        }
    }

    #[test]
    fn left_half_crop_is_red_except_where_the_filter_reaches_past_the_box() {
        // 64x32: columns 0..32 red, 32..64 blue.
        let pixels = (0..32 * 64).flat_map(|i| if i % 64 < 32 { [255, 0, 0] } else { [0, 0, 255] }).collect();
        let src = RgbImage { width: 64, height: 32, pixels };
        let mut r = Renderer::new();
        // Same scale: a plain copy of the red half.
        let copy = u8_out(&mut r, &src, b(0.0, 0.0, 32.0, 32.0), 32, false);
        assert!(copy.chunks_exact(3).all(|p| p == [255, 0, 0]));
        // Downscale by 2: bilinear's support is 2 source pixels, and fir clips it to the image,
        // not to the box. Output column 15 is centred on source x = 31 and takes source column
        // 32 (blue) with weight 0.25 / 2 = 1/8; every other column is pure red.
        let half = u8_out(&mut r, &src, b(0.0, 0.0, 32.0, 32.0), 16, false);
        for (i, p) in half.chunks_exact(3).enumerate() {
            if i % 16 == 15 {
                assert!(p[0] >= 220 && p[0] < 255 && p[1] == 0 && p[2] > 0 && p[2] <= 35, "{p:?}");
            } else {
                assert_eq!(p, [255, 0, 0], "pixel {i}");
            }
        }
        // Flipped: the bled column moves to the left edge.
        let flipped = u8_out(&mut r, &src, b(0.0, 0.0, 32.0, 32.0), 16, true);
        assert!(flipped.chunks_exact(3).enumerate().all(|(i, p)| (i % 16 == 0) == (p[2] > 0)));
    }

    #[test]
    fn box_is_clipped_to_the_image() {
        let mut r = Renderer::new();
        let src = noise(40, 30, 4);
        let clipped = u8_out(&mut r, &src, b(10.0, 5.0, 30.0, 25.0), 16, false);
        assert_eq!(u8_out(&mut r, &src, b(10.0, 5.0, 100.0, 100.0), 16, false), clipped);
        let clipped = u8_out(&mut r, &src, b(0.0, 0.0, 12.5, 7.5), 8, false);
        assert_eq!(u8_out(&mut r, &src, b(-5.0, -2.5, 17.5, 10.0), 8, false), clipped);
        // Sub-pixel sums that round past the edge are nudged back inside.
        let odd = b(0.1, 0.7, 39.9, 29.3);
        assert_eq!(u8_out(&mut r, &src, odd, 5, false).len(), 75);
    }

    #[test]
    fn bad_inputs_are_config_errors() {
        let mut r = Renderer::new();
        let src = noise(20, 10, 5);
        let whole = b(0.0, 0.0, 20.0, 10.0);
        let err = |r: &mut Renderer, src: &RgbImage, crop: CropBox, size: u32, out: OutSlot<'_>| match r
            .render(src, crop, size, false, out)
        {
            Err(LoaderError::Config(msg)) => msg,
            other => panic!("expected a config error, got {other:?}"),
        };
        let mut bytes = vec![0u8; 8 * 8 * 3];
        let mut floats = vec![0f32; 8 * 8 * 3];
        let msg = err(&mut r, &src, whole, 8, OutSlot::U8Hwc(&mut bytes[1..]));
        assert_eq!(msg, "render: u8 HWC slot of 191 values for a 8x8 RGB output, needs 192");
        let msg = err(&mut r, &src, whole, 7, OutSlot::F32Chw(&mut floats));
        assert_eq!(msg, "render: f32 CHW slot of 192 values for a 7x7 RGB output, needs 147");
        for crop in [
            b(0.0, 0.0, 0.0, 10.0),
            b(0.0, 0.0, 20.0, -1.0),
            b(20.0, 0.0, 5.0, 5.0),
            b(-9.0, 0.0, 9.0, 10.0),
            b(0.0, 50.0, 5.0, 5.0),
            b(f64::NAN, 0.0, 5.0, 5.0),
            b(0.0, 0.0, f64::INFINITY, 5.0),
        ] {
            let msg = err(&mut r, &src, crop, 8, OutSlot::U8Hwc(&mut bytes));
            let named = format!("(left {}, top {}, width {}, height {})", crop.left, crop.top, crop.width, crop.height);
            assert!(msg.contains(&named) && msg.contains("20x10"), "{msg}");
        }
        let msg = err(&mut r, &src, b(0.0, 0.0, 0.0, 10.0), 8, OutSlot::F32Chw(&mut floats));
        assert_eq!(msg, "render: crop box (left 0, top 0, width 0, height 10) has no area inside the 20x10 image");
        let msg = err(&mut r, &src, whole, 0, OutSlot::U8Hwc(&mut []));
        assert_eq!(msg, "render: output size 0 is out of range");
        let short = RgbImage { width: 20, height: 10, pixels: vec![0; 599] };
        let msg = err(&mut r, &short, whole, 8, OutSlot::U8Hwc(&mut bytes));
        assert_eq!(msg, "render: a 20x10 RGB image needs 20 * 10 * 3 bytes, not 599");
        let empty = RgbImage { width: 0, height: 0, pixels: Vec::new() };
        assert!(err(&mut r, &empty, b(0.0, 0.0, 0.0, 0.0), 8, OutSlot::U8Hwc(&mut bytes)).contains("0x0"));
        // The renderer is still usable after errors.
        assert_eq!(u8_out(&mut r, &src, whole, 4, false).len(), 48);
    }

    #[test]
    fn scratch_is_reused() {
        let mut r = Renderer::new();
        let src = noise(100, 80, 6);
        let _ = f32_out(&mut r, &src, b(1.5, 2.5, 90.0, 70.0), 48, false);
        let ptr = r.scratch.as_ptr();
        for i in 0..10 {
            let _ = f32_out(&mut r, &src, b(f64::from(i), 0.5, 60.0, 70.0), 48, i % 2 == 0);
            assert_eq!(r.scratch.as_ptr(), ptr);
        }
    }
}
