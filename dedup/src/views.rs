//! Canonical views of an image (DEDUP.md §8 mitigations 2-3, §10 "Views").
//!
//! Both sides of a comparison go through the same steps, so that letterboxing, framing and
//! resolution differences between a test image and its upstream original shrink:
//!
//! 1. [`trim_borders`]: drop uniform near-black / near-white edge rows and columns
//!    (letterbox, pillarbox, padding);
//! 2. [`View`]: the whole trimmed frame (PDQ squashes it to a square) or its centre square;
//! 3. [`Channel`]: native resolution, or area-downsampled (squashed) to 32x32 as the CIFAR
//!    test images were made, so both sides share the same low-pass path.

use bitkit_ingest::image::RgbImage;

use crate::pdq::luma;

/// Which part of the (trimmed) image is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// The whole trimmed frame (squashed to a square by the hash).
    Full,
    /// The centre square crop of the trimmed frame (side = the shorter side).
    Center,
    /// The whole frame as stored, untrimmed. Trimming decides per row and column whether a
    /// border is uniform, and a 32x32 image and its 256 px JPEG copy can decide differently
    /// (one trimmed 6% of a stripe pattern, the other 20%, in the dedup tests): the raw frame
    /// keeps such pairs matchable.
    Raw,
}

impl View {
    pub const ALL: [View; 3] = [View::Full, View::Center, View::Raw];

    pub fn as_str(self) -> &'static str {
        match self {
            View::Full => "full",
            View::Center => "center",
            View::Raw => "raw",
        }
    }
}

/// At which resolution the view is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// As decoded (PDQ's own 64x64 downsample does the rest).
    Native,
    /// Area-downsampled (squashed) to 32x32 first: the CIFAR channel.
    Cifar32,
    /// The CIFAR channel's 32x32 image, [sheared](crate::shear) (a fixed pixel permutation)
    /// before hashing, so that one-axis patterns have energy PDQ sees. Verified as
    /// [`Channel::Cifar32`]: the pixels compared are the unsheared ones.
    Cifar32Sheared,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Native, Channel::Cifar32, Channel::Cifar32Sheared];

    /// Position in [`Channel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Native => "native",
            Channel::Cifar32 => "cifar32",
            Channel::Cifar32Sheared => "cifar32_sheared",
        }
    }

    /// Side of the square grayscale thumbnail verification compares in this channel.
    pub fn thumb_side(self) -> u32 {
        match self {
            Channel::Native => 64,
            Channel::Cifar32 | Channel::Cifar32Sheared => 32,
        }
    }

    /// The channel whose canonical pixels verification compares: the sheared channel's
    /// permutation only serves the hash.
    pub fn verified_as(self) -> Channel {
        match self {
            Channel::Cifar32Sheared => Channel::Cifar32,
            other => other,
        }
    }
}

/// Side of the CIFAR channel.
pub const CIFAR_SIDE: u32 = 32;

/// A border pixel may differ from the border colour by at most this much in every channel
/// (absorbs JPEG noise on flat bars; ringing next to the content usually ends the trim a pixel
/// or two early, which is harmless).
pub const BORDER_TOLERANCE: u8 = 20;

/// The border colour (the mean of the outermost line) must be near black (every channel at
/// most this) or near white (every channel at least `255 -` this). Padding and letterboxing
/// are almost always black or white; restricting to them keeps natural flat regions (a blue
/// sky, a grey wall) from being trimmed by an amount that depends on resolution and noise,
/// which would turn into a framing mismatch between a 32 px test image and its original.
pub const BORDER_EXTREME: u8 = 40;

/// Trimming never leaves less than this fraction (numerator over 2, i.e. half) of a side: an
/// axis whose uniform edges would leave less is left untrimmed (a near-flat image, or a
/// small object on a blank canvas, is kept whole rather than cut down arbitrarily).
const MIN_KEPT_HALVES: usize = 1;

/// A pixel reader over a well-formed image.
#[derive(Clone, Copy)]
struct Pixels<'a> {
    data: &'a [u8],
    width: usize,
}

impl Pixels<'_> {
    #[inline]
    fn at(&self, row: usize, col: usize) -> [u8; 3] {
        let i = (row * self.width + col) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

fn well_formed(image: &RgbImage) -> bool {
    let n = (image.width as usize).checked_mul(image.height as usize).and_then(|n| n.checked_mul(3));
    image.width > 0 && image.height > 0 && n == Some(image.pixels.len())
}

/// Mean colour of a line of pixels, if it is a border colour (near black or near white).
fn border_colour(line: impl Iterator<Item = [u8; 3]>) -> Option<[u8; 3]> {
    let mut sum = [0u64; 3];
    let mut n = 0u64;
    for p in line {
        for (s, v) in sum.iter_mut().zip(p) {
            *s += u64::from(v);
        }
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let mean = sum.map(|s| ((s + n / 2) / n).min(255) as u8);
    let dark = mean.iter().all(|&v| v <= BORDER_EXTREME);
    let light = mean.iter().all(|&v| v >= 255 - BORDER_EXTREME);
    (dark || light).then_some(mean)
}

#[inline]
fn near(p: [u8; 3], colour: [u8; 3]) -> bool {
    p.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) <= BORDER_TOLERANCE)
}

/// How many lines from one edge are uniform: `line(k)` yields the pixels of the k-th line from
/// that edge; stops at `limit`.
fn uniform_lines<I: Iterator<Item = [u8; 3]>>(limit: usize, line: impl Fn(usize) -> I) -> usize {
    let Some(colour) = border_colour(line(0)) else {
        return 0;
    };
    (0..limit).take_while(|&k| line(k).all(|p| near(p, colour))).count()
}

/// Edge lines to cut on one axis, `(from the start, from the end)`: `(0, 0)` when the cut
/// would leave less than half the side.
fn axis_trim(len: usize, start: usize, end: usize) -> (usize, usize) {
    let keep_min = (len * MIN_KEPT_HALVES).div_ceil(2);
    if start + end > len - keep_min.min(len) {
        (0, 0)
    } else {
        (start, end)
    }
}

/// A rectangle of pixels: `width x height` at `(left, top)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// The whole of `image`.
    pub fn whole(image: &RgbImage) -> Rect {
        Rect { left: 0, top: 0, width: image.width, height: image.height }
    }

    /// Whether the rectangle lies within `image`.
    pub fn inside(self, image: &RgbImage) -> bool {
        let right = u64::from(self.left) + u64::from(self.width);
        let bottom = u64::from(self.top) + u64::from(self.height);
        right <= u64::from(image.width) && bottom <= u64::from(image.height)
    }

    /// The centre square (side = the shorter side; odd leftovers go right / down).
    pub fn center_square(self) -> Rect {
        let side = self.width.min(self.height);
        Rect {
            left: self.left + (self.width - side) / 2,
            top: self.top + (self.height - side) / 2,
            width: side,
            height: side,
        }
    }

    /// This rectangle of a plane `stride` pixels wide with `channels` samples per pixel.
    fn window<T>(self, data: &[T], stride: usize, channels: usize) -> Window<'_, T> {
        Window {
            data,
            stride,
            channels,
            left: self.left as usize,
            top: self.top as usize,
            width: self.width as usize,
            height: self.height as usize,
        }
    }
}

/// The `rect` of `image`; the caller keeps it inside.
fn cut(image: &RgbImage, rect: Rect) -> RgbImage {
    let window = rect.window(&image.pixels, image.width as usize, 3);
    let mut pixels = Vec::with_capacity(window.width * window.height * 3);
    for r in 0..window.height {
        pixels.extend_from_slice(window.row(r));
    }
    RgbImage { width: rect.width, height: rect.height, pixels }
}

/// The rectangle [`trim_borders`] keeps.
pub fn trim_rect(image: &RgbImage) -> Rect {
    let (w, h) = (image.width as usize, image.height as usize);
    if !well_formed(image) {
        return Rect::whole(image);
    }
    let px = Pixels { data: &image.pixels, width: w };
    // Rows first (letterbox), over the full width.
    let top = uniform_lines(h, |k| (0..w).map(move |c| px.at(k, c)));
    let bottom = uniform_lines(h, |k| (0..w).map(move |c| px.at(h - 1 - k, c)));
    let (top, bottom) = axis_trim(h, top, bottom);
    // Then columns (pillarbox), over the rows that remain, so a window-box loses both.
    let (r0, r1) = (top, h - bottom);
    let left = uniform_lines(w, |k| (r0..r1).map(move |r| px.at(r, k)));
    let right = uniform_lines(w, |k| (r0..r1).map(move |r| px.at(r, w - 1 - k)));
    let (left, right) = axis_trim(w, left, right);
    Rect { left: left as u32, top: top as u32, width: (w - left - right) as u32, height: (h - top - bottom) as u32 }
}

/// Removes uniform borders (letterbox, pillarbox, padding).
///
/// From each edge, lines (rows, then columns within the kept rows) are dropped while every
/// pixel is within [`BORDER_TOLERANCE`] (per channel) of the border colour, the mean of that
/// edge's outermost line, which must be near black or near white ([`BORDER_EXTREME`]). An axis
/// is left alone if trimming it would keep less than half its length. A malformed image is
/// returned as is.
pub fn trim_borders(image: &RgbImage) -> RgbImage {
    let rect = trim_rect(image);
    if rect == Rect::whole(image) {
        return image.clone();
    }
    cut(image, rect)
}

/// The rectangles of `image` that [`view`] cuts out, in [`View::ALL`] order (borders found
/// once for the two trimmed views).
pub fn view_rects(image: &RgbImage) -> [Rect; 3] {
    let trimmed = trim_rect(image);
    debug_assert_eq!(View::ALL, [View::Full, View::Center, View::Raw]);
    [trimmed, trimmed.center_square(), Rect::whole(image)]
}

/// The rectangle of `image` that [`view`] cuts out.
pub fn view_rect(image: &RgbImage, view: View) -> Rect {
    match view {
        View::Full => trim_rect(image),
        View::Center => trim_rect(image).center_square(),
        View::Raw => Rect::whole(image),
    }
}

/// The view of `image`: [`View::Full`] is the trimmed image, [`View::Center`] the centre
/// square of the trimmed image. A malformed image is returned as is.
pub fn view(image: &RgbImage, view: View) -> RgbImage {
    let rect = view_rect(image, view);
    if rect == Rect::whole(image) || !well_formed(image) {
        return image.clone();
    }
    cut(image, rect)
}

/// The weights of an area (box) resample from `src` to `dst` samples: output `o` is the
/// weighted sum of source samples `first..first + len` with `weights[start..start + len]`,
/// the overlaps of the output cell `[o * src / dst, (o + 1) * src / dst)` with each source
/// cell, normalised to sum to 1. Works both ways (upsampling gives each output a fraction of
/// one or two inputs). Flat, so a resample allocates two vectors, not one per output.
struct AreaWeights {
    /// `(first, start, len)` per output.
    spans: Vec<(usize, usize, usize)>,
    weights: Vec<f32>,
}

impl AreaWeights {
    fn new(src: usize, dst: usize) -> AreaWeights {
        Self::span(src, 0.0, src as f64, dst)
    }

    /// The weights of the source span `[lo, hi)` (fractional pixel coordinates within
    /// `0..src`, `lo < hi`) resampled to `dst` samples.
    fn span(src: usize, lo: f64, hi: f64, dst: usize) -> AreaWeights {
        let (origin, scale) = (lo, (hi - lo) / dst as f64);
        let mut spans = Vec::with_capacity(dst);
        let mut weights = Vec::with_capacity(dst * (src.div_ceil(dst.max(1)) + 1));
        let mut cell = Vec::new();
        for o in 0..dst {
            let lo = origin + o as f64 * scale;
            let hi = origin + (o + 1) as f64 * scale;
            let first = (lo.floor().max(0.0) as usize).min(src - 1);
            let last = ((hi.ceil() as usize).max(first + 1)).min(src);
            cell.clear();
            cell.extend((first..last).map(|i| {
                let (a, b) = (i as f64, (i + 1) as f64);
                (b.min(hi) - a.max(lo)).max(0.0)
            }));
            let total: f64 = cell.iter().sum();
            let norm = if total > 0.0 { total } else { 1.0 };
            spans.push((first, weights.len(), cell.len()));
            weights.extend(cell.iter().map(|w| (w / norm) as f32));
        }
        AreaWeights { spans, weights }
    }

    /// `(first source index, weights)` per output.
    fn iter(&self) -> impl Iterator<Item = (usize, &[f32])> {
        self.spans.iter().map(|&(first, start, len)| (first, &self.weights[start..start + len]))
    }
}

/// `v.round().clamp(0.0, 255.0) as u8` without the `roundf` call that baseline x86-64 makes
/// of `f32::round`: the same result for every input (half away from zero; `v - t` is exact).
#[inline]
fn round_to_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let t = v as u8;
    if v - f32::from(t) >= 0.5 {
        t + 1
    } else {
        t
    }
}

/// A window of a row-major image plane with `channels` interleaved samples per pixel: the
/// `width x height` pixels at `(left, top)` of a plane `stride` pixels wide.
#[derive(Clone, Copy)]
struct Window<'a, T> {
    data: &'a [T],
    stride: usize,
    channels: usize,
    left: usize,
    top: usize,
    width: usize,
    height: usize,
}

impl<T> Window<'_, T> {
    /// Row `r` of the window (`width * channels` samples).
    #[inline]
    fn row(&self, r: usize) -> &[T] {
        let start = ((self.top + r) * self.stride + self.left) * self.channels;
        &self.data[start..start + self.width * self.channels]
    }
}

/// Area-resamples a window of `channels` interleaved samples to `out_w x out_h` (separable:
/// along columns first, a whole row of samples at a time so the loop vectorises, then along
/// rows on the few output rows). Sides must be >= 1 and the window inside the plane (callers
/// check).
fn area_resize<T: Copy + Into<f32>>(window: Window<'_, T>, out_w: usize, out_h: usize) -> Vec<f32> {
    let xs = AreaWeights::new(window.width, out_w);
    let ys = AreaWeights::new(window.height, out_h);
    area_resize_with(window, &xs, &ys)
}

/// [`area_resize`] with the weights given (`xs` over the window's columns, `ys` over its rows).
fn area_resize_with<T: Copy + Into<f32>>(window: Window<'_, T>, xs: &AreaWeights, ys: &AreaWeights) -> Vec<f32> {
    let channels = window.channels;
    let (out_w, out_h) = (xs.spans.len(), ys.spans.len());
    // Along columns: out_h x width.
    let stride = window.width * channels;
    let mut tmp = vec![0f32; out_h * stride];
    for (dst, (first, weights)) in tmp.chunks_exact_mut(stride).zip(ys.iter()) {
        for (k, &wt) in weights.iter().enumerate() {
            for (acc, &v) in dst.iter_mut().zip(window.row(first + k)) {
                *acc += wt * v.into();
            }
        }
    }
    // Along rows: out_h x out_w (RGB unrolled: the same sums in the same order).
    let mut out = vec![0f32; out_h * out_w * channels];
    for (row, dst) in tmp.chunks_exact(stride).zip(out.chunks_exact_mut(out_w * channels)) {
        if channels == 3 {
            for ((first, weights), acc) in xs.iter().zip(dst.chunks_exact_mut(3)) {
                let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
                for (&wt, src) in weights.iter().zip(row[first * 3..].chunks_exact(3)) {
                    r += wt * src[0];
                    g += wt * src[1];
                    b += wt * src[2];
                }
                acc.copy_from_slice(&[r, g, b]);
            }
            continue;
        }
        for ((first, weights), acc) in xs.iter().zip(dst.chunks_exact_mut(channels)) {
            for (k, &wt) in weights.iter().enumerate() {
                let src = &row[(first + k) * channels..(first + k + 1) * channels];
                for (a, v) in acc.iter_mut().zip(src) {
                    *a += wt * v;
                }
            }
        }
    }
    out
}

/// Box/area average to `width x height` (a squash: the aspect ratio is not kept), each output
/// pixel the area-weighted mean of the input pixels it covers, rounded. Equal sizes return an
/// exact copy. A zero target side, or a malformed or empty input, gives an empty image of the
/// target size filled with black (there is nothing to average).
pub fn area_downsample(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    area_downsample_rect(image, Rect::whole(image), width, height)
}

/// [`area_downsample`] of the `rect` window of `image`, without cutting it out first: the
/// same pixels as `area_downsample(&cut(image, rect), width, height)`. A rect outside the
/// image is treated as a malformed input.
pub fn area_downsample_rect(image: &RgbImage, rect: Rect, width: u32, height: u32) -> RgbImage {
    let (ow, oh) = (width as usize, height as usize);
    if !well_formed(image) || !rect.inside(image) || rect.width == 0 || rect.height == 0 || ow == 0 || oh == 0 {
        return RgbImage { width, height, pixels: vec![0; ow * oh * 3] };
    }
    if rect.width == width && rect.height == height {
        return cut(image, rect);
    }
    let out = area_resize(rect.window(&image.pixels, image.width as usize, 3), ow, oh);
    RgbImage { width, height, pixels: out.iter().map(|&v| round_to_u8(v)).collect() }
}

/// The crop fraction (per axis) of the test-side inset frames: the CIFAR test index also holds
/// each test image without 5% of its width and height, cut at 4 positions (see
/// [`inset`]), because a copy cropped by 3-7% is closer to one of those than to the whole
/// image (PDQ of a 32x32 image misses most 5% crops otherwise: recall 0.32 → 0.99 in
/// `scripts/eval-dedup`).
pub const INSET: f64 = 0.05;

/// `image` without `fraction` of each axis, `at.0` of it cut from the left and `at.1` from the
/// top (`(0.5, 0.5)`: the centre), area-resampled with fractional edges to `width x height`
/// and rounded: what a slightly cropped copy of `image` shows, for test images too small
/// (32x32) to crop by whole pixels. A malformed or empty image, or a fraction or position
/// outside `0..1`, gives black.
pub fn inset(image: &RgbImage, fraction: f64, at: (f64, f64), width: u32, height: u32) -> RgbImage {
    let (ow, oh) = (width as usize, height as usize);
    let unit = 0.0..=1.0;
    if !well_formed(image)
        || ow == 0
        || oh == 0
        || !(0.0..1.0).contains(&fraction)
        || !unit.contains(&at.0)
        || !unit.contains(&at.1)
    {
        return RgbImage { width, height, pixels: vec![0; ow * oh * 3] };
    }
    let (w, h) = (image.width as usize, image.height as usize);
    let span = |n: usize, at: f64| {
        let cut = n as f64 * fraction;
        (cut * at, n as f64 - cut * (1.0 - at))
    };
    let ((x0, x1), (y0, y1)) = (span(w, at.0), span(h, at.1));
    let xs = AreaWeights::span(w, x0, x1, ow);
    let ys = AreaWeights::span(h, y0, y1, oh);
    let out = area_resize_with(Rect::whole(image).window(&image.pixels, w, 3), &xs, &ys);
    RgbImage { width, height, pixels: out.iter().map(|&v| round_to_u8(v)).collect() }
}

/// The inset frame at `at` of `image`'s full view, as the CIFAR channel hashes and verifies
/// it: [`inset`] by [`INSET`], resampled to 32x32.
pub fn inset_frame(image: &RgbImage, at: (f64, f64)) -> RgbImage {
    inset(&view(image, View::Full), INSET, at, CIFAR_SIDE, CIFAR_SIDE)
}

/// The canonical image hashed for `(view, channel)`: [`view`], then for [`Channel::Cifar32`]
/// [`area_downsample`] to 32x32 (a no-op for a 32x32 image without uniform borders), and for
/// [`Channel::Cifar32Sheared`] that [`shear`](crate::shear::shear)ed.
pub fn canonical(image: &RgbImage, view_kind: View, channel: Channel) -> RgbImage {
    let v = view(image, view_kind);
    match channel {
        Channel::Native => v,
        Channel::Cifar32 => area_downsample(&v, CIFAR_SIDE, CIFAR_SIDE),
        Channel::Cifar32Sheared => crate::shear::shear(&area_downsample(&v, CIFAR_SIDE, CIFAR_SIDE)),
    }
}

/// Luma (PDQ's weights) area-resampled (squashed) to `side x side`, row-major, 0..255 scale,
/// not rounded. A malformed or empty image, or `side == 0`, gives `side * side` zeros.
pub fn gray_thumb(image: &RgbImage, side: u32) -> Vec<f32> {
    let s = side as usize;
    if !well_formed(image) || s == 0 {
        return vec![0.0; s * s];
    }
    let gray = luma(image);
    if image.width == side && image.height == side {
        return gray;
    }
    area_resize(Rect::whole(image).window(&gray, image.width as usize, 1), s, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdq::testimg::{jpeg, photo, resize};
    use crate::pdq::{pdq, Dihedral};

    /// `image` pasted at `(left, top)` on a `width x height` canvas of `colour`.
    fn pad(image: &RgbImage, width: u32, height: u32, left: u32, top: u32, colour: [u8; 3]) -> RgbImage {
        let mut pixels = colour.repeat((width * height) as usize);
        for r in 0..image.height {
            let src = (r * image.width * 3) as usize;
            let dst = (((top + r) * width + left) * 3) as usize;
            let n = (image.width * 3) as usize;
            pixels[dst..dst + n].copy_from_slice(&image.pixels[src..src + n]);
        }
        RgbImage { width, height, pixels }
    }

    #[test]
    fn trims_letterbox_pillarbox_and_padding() {
        let img = photo(120, 80, 1);
        // Letterbox, black.
        let boxed = pad(&img, 120, 110, 0, 15, [0, 0, 0]);
        assert_eq!(trim_borders(&boxed), img);
        // Window-box, white, uneven.
        let windowed = pad(&img, 150, 100, 10, 7, [255, 255, 255]);
        assert_eq!(trim_rect(&windowed), Rect { left: 10, top: 7, width: 120, height: 80 });
        assert_eq!(trim_borders(&windowed), img);
        // Through JPEG the bars are noisy and the content edge rings: still (nearly) trimmed.
        let noisy = jpeg(&pad(&img, 160, 120, 20, 20, [0, 0, 0]), 75);
        let Rect { left: l, top: t, width: w, height: h } = trim_rect(&noisy);
        assert!((14..=21).contains(&l) && (14..=21).contains(&t), "{l} {t}");
        assert!((118..=132).contains(&w) && (78..=92).contains(&h), "{w} {h}");
    }

    #[test]
    fn leaves_content_flat_colours_and_near_empty_images_alone() {
        let img = photo(100, 70, 2);
        assert_eq!(trim_borders(&img), img);
        // A mid-blue band at the top is content (a sky), not padding.
        let sky = pad(&img, 100, 90, 0, 20, [60, 120, 200]);
        assert_eq!(trim_borders(&sky), sky);
        // A small object on a big white canvas: trimming would keep < 50%, so nothing is cut.
        let small = pad(&photo(20, 20, 3), 100, 100, 40, 40, [255, 255, 255]);
        assert_eq!(trim_borders(&small), small);
        // All black: untouched.
        let black = RgbImage { width: 10, height: 10, pixels: vec![0; 300] };
        assert_eq!(trim_borders(&black), black);
        // Malformed: untouched, no panic.
        let broken = RgbImage { width: 10, height: 10, pixels: vec![0; 7] };
        assert_eq!(trim_borders(&broken), broken);
        assert_eq!(view(&broken, View::Center), broken);
    }

    #[test]
    fn views_full_and_center() {
        let img = photo(90, 60, 4);
        assert_eq!(view(&img, View::Full), img);
        let c = view(&img, View::Center);
        assert_eq!((c.width, c.height), (60, 60));
        assert_eq!(&c.pixels[..3], &img.pixels[15 * 3..16 * 3]);
        let tall = view(&photo(40, 61, 4), View::Center);
        assert_eq!((tall.width, tall.height), (40, 40));
        // Centre of the trimmed image.
        let boxed = pad(&img, 90, 100, 0, 20, [0, 0, 0]);
        assert_eq!(view(&boxed, View::Center), c);
    }

    #[test]
    fn area_downsample_averages_and_is_identity_at_equal_size() {
        let img = photo(32, 32, 5);
        assert_eq!(area_downsample(&img, 32, 32), img);
        assert_eq!(canonical(&img, View::Full, Channel::Cifar32), img);
        assert_eq!(canonical(&img, View::Center, Channel::Cifar32), img);
        // 2x2 blocks average exactly.
        let px = vec![0, 0, 0, 10, 20, 30, 100, 100, 100, 50, 60, 71];
        let two = RgbImage { width: 2, height: 2, pixels: px };
        assert_eq!(area_downsample(&two, 1, 1).pixels, vec![40, 45, 50]);
        // Fractional coverage: 3 -> 2 weights 2/3, 1/3.
        let row = RgbImage { width: 3, height: 1, pixels: vec![0, 0, 0, 90, 90, 90, 180, 180, 180] };
        assert_eq!(area_downsample(&row, 2, 1).pixels, vec![30, 30, 30, 150, 150, 150]);
        // Upsampling repeats.
        assert_eq!(area_downsample(&row, 6, 1).pixels[..9], [0, 0, 0, 0, 0, 0, 90, 90, 90]);
        // A flat image stays flat at any size; a mean is preserved.
        let flat = RgbImage { width: 37, height: 23, pixels: [7u8, 99, 200].repeat(37 * 23) };
        assert_eq!(area_downsample(&flat, 32, 32).pixels, [7u8, 99, 200].repeat(32 * 32));
        assert_eq!(area_downsample(&flat, 0, 5).pixels.len(), 0);
    }

    #[test]
    fn inset_is_the_cropped_image_resampled() {
        let img = photo(100, 100, 9);
        // Whole-pixel edges: the same as cutting first (2 px off each side, or 4 px off the
        // right and bottom), then area-downsampling.
        let centre = cut(&img, Rect { left: 2, top: 2, width: 96, height: 96 });
        assert_eq!(inset(&img, 0.04, (0.5, 0.5), 32, 32), area_downsample(&centre, 32, 32));
        let corner = cut(&img, Rect { left: 0, top: 0, width: 96, height: 96 });
        assert_eq!(inset(&img, 0.04, (0.0, 0.0), 32, 32), area_downsample(&corner, 32, 32));
        // No cut: the whole image.
        assert_eq!(inset(&img, 0.0, (0.5, 0.5), 32, 32), area_downsample(&img, 32, 32));
        // Fractional edges on a 32x32 image move the content: not the identity, but close.
        let small = photo(32, 32, 9);
        let moved = inset(&small, 0.05, (0.25, 0.75), 32, 32);
        assert_ne!(moved, small);
        let diff: f64 = moved.pixels.iter().zip(&small.pixels).map(|(&a, &b)| f64::from(a.abs_diff(b))).sum();
        assert!(diff / (32.0 * 32.0 * 3.0) < 40.0, "{diff}");
        // Out of range: black, no panic.
        assert!(inset(&small, 1.5, (0.5, 0.5), 4, 4).pixels.iter().all(|&v| v == 0));
        assert!(inset(&small, 0.05, (2.0, 0.5), 4, 4).pixels.iter().all(|&v| v == 0));
        assert!(inset(&RgbImage::default(), 0.05, (0.5, 0.5), 4, 4).pixels.iter().all(|&v| v == 0));
    }

    #[test]
    fn round_to_u8_is_round_then_clamp() {
        let edges = [-3.0, -0.5, 0.0, 0.49999997, 0.5, 1.5, 2.5, 127.49999, 127.5, 254.5, 254.99998, 255.0, 255.7, 1e9];
        let sweep = (0..=300_000).map(|i| i as f32 * 0.001 - 20.0);
        for v in edges.into_iter().chain(sweep).chain([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]) {
            assert_eq!(round_to_u8(v), v.round().clamp(0.0, 255.0) as u8, "{v}");
        }
    }

    #[test]
    fn gray_thumb_is_squashed_luma() {
        let img = photo(128, 64, 6);
        let t = gray_thumb(&img, 64);
        assert_eq!(t.len(), 64 * 64);
        let l = luma(&img);
        let want = (l[0] + l[1]) / 2.0;
        assert!((t[0] - want).abs() < 1e-3);
        assert_eq!(gray_thumb(&photo(32, 32, 1), 32), luma(&photo(32, 32, 1)));
        assert_eq!(gray_thumb(&RgbImage::default(), 4), vec![0.0; 16]);
    }

    #[test]
    fn cifar_channel_matches_a_squashed_original() {
        // A test image made by squashing an upstream photo to 32x32, and the upstream as it
        // might be found elsewhere: rescaled and re-encoded, possibly letterboxed.
        let mut worst = 0;
        let mut unrelated = 256;
        for seed in 0..8 {
            let original = photo(500, 375, seed);
            let test = area_downsample(&original, 32, 32);
            let test_hash = pdq(&canonical(&test, View::Full, Channel::Cifar32)).hash;
            let upstreams = [
                jpeg(&resize(&original, 640, 480), 85),
                jpeg(&original, 60),
                jpeg(&pad(&resize(&original, 400, 300), 400, 400, 0, 50, [0, 0, 0]), 80),
            ];
            for up in &upstreams {
                let h = pdq(&canonical(up, View::Full, Channel::Cifar32)).hash;
                worst = worst.max(h.distance(&test_hash));
            }
            let other = pdq(&canonical(&photo(500, 375, 50 + seed), View::Full, Channel::Cifar32)).hash;
            unrelated = unrelated.min(other.distance(&test_hash));
        }
        // Measured: worst 8, closest unrelated 118.
        assert!(worst <= 24, "{worst}");
        assert!(unrelated >= 70, "{unrelated}");
    }

    #[test]
    fn center_view_commutes_with_flips() {
        let img = photo(90, 60, 7);
        for d in Dihedral::ALL {
            assert_eq!(view(&d.apply_rgb(&img), View::Center), d.apply_rgb(&view(&img, View::Center)), "{d:?}");
        }
    }
}
