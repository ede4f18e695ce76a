//! Pixel-level verification of a candidate (upstream, test) pair found by hash search.
//!
//! Both images go through the same canonicalisation as their hashes ([`canonical`] for the
//! matched view and channel), become square grayscale thumbnails (32x32 for the CIFAR channel,
//! 64x64 otherwise), the upstream thumbnail is turned back into the test image's orientation,
//! and the two are compared with normalised cross-correlation and mean SSIM.

use bitkit_ingest::image::RgbImage;

use crate::pdq::{luma, Dihedral};
use crate::views::{canonical, gray_thumb, inset_frame, Channel, View, CIFAR_SIDE};

/// SSIM window side (uniform window, as `skimage.metrics.structural_similarity`'s default).
pub const SSIM_WINDOW: usize = 7;
/// SSIM stabilisers for a 0..255 range: `(0.01 * 255)^2` and `(0.03 * 255)^2`.
const SSIM_C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const SSIM_C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// Normalised cross-correlation (Pearson correlation of the pixel values) in [-1, 1].
///
/// Returns 0 when either input is constant (no structure to correlate: a flat image is not
/// evidence of a match), when the lengths differ, or when they are empty.
pub fn ncc(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let n = a.len() as f64;
    let mean_a = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let mean_b = b.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut cov, mut var_a, mut var_b) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - mean_a, f64::from(y) - mean_b);
        cov += dx * dy;
        var_a += dx * dx;
        var_b += dy * dy;
    }
    // Variances below this (per pixel, on a 0..255 scale) are float noise on a flat image.
    let floor = 1e-6 * n;
    if var_a <= floor || var_b <= floor {
        return 0.0;
    }
    (cov / (var_a * var_b).sqrt()).clamp(-1.0, 1.0) as f32
}

/// Mean SSIM of two `side x side` grayscale images on a 0..255 scale.
///
/// Uniform 7x7 windows at every position where they fit (stride 1), sample (N - 1)
/// covariances, `C1 = (0.01 * 255)^2`, `C2 = (0.03 * 255)^2`: `skimage`'s defaults. Images
/// smaller than 7 use one window covering the whole image. Inputs that are not `side * side`
/// long (or empty) give 0.
pub fn ssim(a: &[f32], b: &[f32], side: usize) -> f32 {
    if side == 0 || a.len() != side * side || b.len() != a.len() {
        return 0.0;
    }
    let win = SSIM_WINDOW.min(side);
    let positions = side - win + 1;
    let n = (win * win) as f64;
    // Unbiased (sample) covariance; one-pixel windows (side 1) have none.
    let cov_norm = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
    let mut total = 0f64;
    for r0 in 0..positions {
        for c0 in 0..positions {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64);
            for r in r0..r0 + win {
                for c in c0..c0 + win {
                    let (x, y) = (f64::from(a[r * side + c]), f64::from(b[r * side + c]));
                    sa += x;
                    sb += y;
                    saa += x * x;
                    sbb += y * y;
                    sab += x * y;
                }
            }
            let (ma, mb) = (sa / n, sb / n);
            let va = cov_norm * (saa / n - ma * ma);
            let vb = cov_norm * (sbb / n - mb * mb);
            let vab = cov_norm * (sab / n - ma * mb);
            let num = (2.0 * ma * mb + SSIM_C1) * (2.0 * vab + SSIM_C2);
            let den = (ma * ma + mb * mb + SSIM_C1) * (va + vb + SSIM_C2);
            total += num / den;
        }
    }
    (total / (positions * positions) as f64) as f32
}

/// How well a candidate pair agrees on aligned canonical grayscale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Verification {
    /// [`ncc`], -1..1.
    pub ncc: f32,
    /// [`ssim`], -1..1 (1 = identical).
    pub ssim: f32,
}

/// The grayscale thumbnail of `image` that verification compares for `(view, channel)`.
pub fn thumb(image: &RgbImage, view: View, channel: Channel) -> Vec<f32> {
    let channel = channel.verified_as();
    gray_thumb(&canonical(image, view, channel), channel.thumb_side())
}

/// Verifies a candidate pair found with the test image's `dihedral` variant.
///
/// Convention: the search matches the upstream's identity hash against the test image's
/// variant hash for `dihedral`, which approximates the hash of the test image transformed by
/// `dihedral` ([`Dihedral::apply_rgb`]). So `upstream ≈ dihedral(test)`, and the upstream
/// thumbnail is brought into the test image's orientation with `dihedral.inverse()` before the
/// comparison. Both images are canonicalised with `(view, channel)` and compared as 32x32
/// (CIFAR channel) or 64x64 (native) luma thumbnails.
pub fn verify(upstream: &RgbImage, test: &RgbImage, view: View, channel: Channel, dihedral: Dihedral) -> Verification {
    compare(upstream, view, channel, dihedral, &thumb(test, view, channel))
}

/// [`verify`] for a candidate found through the test image's inset frame at `at` (CIFAR
/// channel): the upstream's `view` against [`inset_frame`] of the test image, as 32x32 luma
/// thumbnails.
pub fn verify_inset(
    upstream: &RgbImage,
    test: &RgbImage,
    view: View,
    dihedral: Dihedral,
    at: (f64, f64),
) -> Verification {
    compare(upstream, view, Channel::Cifar32, dihedral, &gray_thumb(&inset_frame(test, at), CIFAR_SIDE))
}

/// What else two CIFAR-channel images agree on, for pairs found through the sheared channel:
/// their images vary along one axis (or hardly at all), so NCC and SSIM alone cannot tell a
/// copy from another image with a similar profile (any two vertical gradients correlate at
/// ~0.95, whatever their colour). A copy agrees in its detail or in its colours.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Agreement {
    /// NCC of the detail (luma minus its 3x3 mean) of the aligned 32x32 images, -1..1.
    pub detail_ncc: f32,
    /// Mean absolute difference of the aligned 32x32 RGB images, 0..255.
    pub colour_diff: f32,
}

impl Agreement {
    /// Detail NCC at or above this is agreement: true pairs of the evaluation found through the
    /// sheared channel had p5 >= 0.96 for resize, flip, grayscale, brightness and contrast
    /// copies (0.6-0.7 for JPEG q20, crops and letterbox, which agree in colour instead), while
    /// different crops of one photo (an aurora sky at other offsets) reach 0.5-0.8.
    pub const MIN_DETAIL_NCC: f32 = 0.9;
    /// A mean RGB difference at or below this is agreement: true pairs without a colour
    /// transformation had p95 <= 7 (JPEG q20: 2.8); other images with a similar profile 59
    /// (median), and a blue gradient against brown stripes far more.
    pub const MAX_COLOUR_DIFF: f32 = 10.0;

    pub fn passes(&self) -> bool {
        self.detail_ncc >= Self::MIN_DETAIL_NCC || self.colour_diff <= Self::MAX_COLOUR_DIFF
    }
}

/// [`verify`] for a candidate found through the sheared channel (verified on the unsheared
/// CIFAR-channel `view`s), and the pair's [`Agreement`]: each image canonicalised once for
/// both. The 32x32 luma planes are the thumbnails [`verify`] compares.
pub fn verify_sheared(
    upstream: &RgbImage,
    test: &RgbImage,
    view: View,
    dihedral: Dihedral,
) -> (Verification, Agreement) {
    let up = dihedral.inverse().apply_rgb(&canonical(upstream, view, Channel::Cifar32));
    let test = canonical(test, view, Channel::Cifar32);
    let side = CIFAR_SIDE as usize;
    let (up_luma, test_luma) = (luma(&up), luma(&test));
    let verification = Verification { ncc: ncc(&up_luma, &test_luma), ssim: ssim(&up_luma, &test_luma, side) };
    if up.pixels.len() != side * side * 3 || test.pixels.len() != up.pixels.len() {
        return (verification, Agreement { detail_ncc: 0.0, colour_diff: 255.0 });
    }
    let colour_diff = up.pixels.iter().zip(&test.pixels).map(|(&a, &b)| u64::from(a.abs_diff(b))).sum::<u64>() as f32
        / up.pixels.len() as f32;
    let detail_ncc = ncc(&detail(&up_luma, side), &detail(&test_luma, side));
    (verification, Agreement { detail_ncc, colour_diff })
}

/// `plane` minus its 3x3 box mean (edges clamped): what is left of a gradient is ~0, of a
/// stripe pattern the stripes.
fn detail(plane: &[f32], side: usize) -> Vec<f32> {
    let at = |r: isize, c: isize| {
        let clamp = |v: isize| v.clamp(0, side as isize - 1) as usize;
        plane[clamp(r) * side + clamp(c)]
    };
    (0..side * side)
        .map(|i| {
            let (r, c) = ((i / side) as isize, (i % side) as isize);
            let mut sum = 0.0;
            for dr in -1..=1 {
                for dc in -1..=1 {
                    sum += at(r + dr, c + dc);
                }
            }
            plane[i] - sum / 9.0
        })
        .collect()
}

/// The upstream's `(view, channel)` thumbnail, turned back into the test image's orientation,
/// against the test-side thumbnail `test` (`side x side` of the channel).
fn compare(upstream: &RgbImage, view: View, channel: Channel, dihedral: Dihedral, test: &[f32]) -> Verification {
    let side = channel.thumb_side() as usize;
    let up = dihedral.inverse().apply_gray(&thumb(upstream, view, channel), side);
    Verification { ncc: ncc(&up, test), ssim: ssim(&up, test, side) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdq::testimg::{flat, jpeg, photo, resize};
    use crate::pdq::{pdq, pdq_dihedral};
    use crate::views::area_downsample;

    #[test]
    fn ncc_basics() {
        let a: Vec<f32> = (0..100).map(|v| (v * 7 % 13) as f32).collect();
        assert!((ncc(&a, &a) - 1.0).abs() < 1e-6);
        let scaled: Vec<f32> = a.iter().map(|v| 3.0 * v + 10.0).collect();
        assert!((ncc(&a, &scaled) - 1.0).abs() < 1e-6);
        let neg: Vec<f32> = a.iter().map(|v| -v).collect();
        assert!((ncc(&a, &neg) + 1.0).abs() < 1e-6);
        assert_eq!(ncc(&a, &[5.0; 100]), 0.0);
        assert_eq!(ncc(&a, &a[1..]), 0.0);
        assert_eq!(ncc(&[], &[]), 0.0);
    }

    #[test]
    fn ssim_basics() {
        let a: Vec<f32> = (0..256).map(|v| (v * 37 % 251) as f32).collect();
        assert!((ssim(&a, &a, 16) - 1.0).abs() < 1e-6);
        let b: Vec<f32> = a.iter().map(|v| 255.0 - v).collect();
        assert!(ssim(&a, &b, 16) < 0.0);
        // Flat vs flat of the same value is identical; small sides use one window.
        assert!((ssim(&[9.0; 16], &[9.0; 16], 4) - 1.0).abs() < 1e-6);
        assert!((ssim(&a[..9], &a[..9], 3) - 1.0).abs() < 1e-6);
        assert_eq!(ssim(&a, &a, 15), 0.0);
        assert_eq!(ssim(&[], &[], 0), 0.0);
    }

    #[test]
    fn identical_reencoded_and_unrelated() {
        let mut worst_copy = Verification { ncc: 1.0, ssim: 1.0 };
        let mut best_other = Verification { ncc: -1.0, ssim: -1.0 };
        for seed in 0..4 {
            let img = photo(300, 200, seed);
            for channel in Channel::ALL {
                for v in View::ALL {
                    let same = verify(&img, &img, v, channel, Dihedral::Identity);
                    assert!(same.ncc > 0.9999 && same.ssim > 0.9999, "{same:?}");
                    let copy = jpeg(&resize(&img, 150, 100), 60);
                    let c = verify(&img, &copy, v, channel, Dihedral::Identity);
                    worst_copy.ncc = worst_copy.ncc.min(c.ncc);
                    worst_copy.ssim = worst_copy.ssim.min(c.ssim);
                    let other = verify(&photo(300, 200, 100 + seed), &img, v, channel, Dihedral::Identity);
                    best_other.ncc = best_other.ncc.max(other.ncc);
                    best_other.ssim = best_other.ssim.max(other.ssim);
                }
            }
        }
        // Measured: copies ncc >= 0.9993, ssim >= 0.991; unrelated ncc <= 0.17, ssim <= 0.23.
        assert!(worst_copy.ncc > 0.99 && worst_copy.ssim > 0.95, "{worst_copy:?}");
        assert!(best_other.ncc < 0.6 && best_other.ssim < 0.6, "{best_other:?}");
        // A CIFAR-style test image against its upstream original.
        let original = photo(500, 375, 9);
        let test = area_downsample(&original, 32, 32);
        let v = verify(&jpeg(&original, 70), &test, View::Full, Channel::Cifar32, Dihedral::Identity);
        assert!(v.ncc > 0.98 && v.ssim > 0.9, "{v:?}");
        // A flat test image never verifies by correlation.
        let f = verify(&original, &flat(40, 40, [10, 10, 10]), View::Full, Channel::Native, Dihedral::Identity);
        assert_eq!(f.ncc, 0.0);
    }

    #[test]
    fn flipped_and_rotated_copies_verify_with_the_matching_dihedral() {
        for seed in 0..3 {
            let upstream = photo(320, 240, seed);
            let up_hash = pdq(&upstream).hash;
            for d in Dihedral::ALL {
                // The test image is the upstream turned so that upstream = d(test).
                let test = jpeg(&d.inverse().apply_rgb(&upstream), 80);
                // The search would find it: the test's d-variant hash is near the upstream's.
                let (variants, _) = pdq_dihedral(&test);
                let dist = variants[d.index()].distance(&up_hash);
                // Measured: <= 24 at 320x240.
                assert!(dist <= 31, "{d:?} seed {seed}: distance {dist}");
                for channel in Channel::ALL {
                    let right = verify(&upstream, &test, View::Full, channel, d);
                    // Measured: ncc >= 0.9999, ssim >= 0.999 (the test side is a JPEG).
                    assert!(right.ncc > 0.99 && right.ssim > 0.95, "{d:?} {channel:?} {right:?}");
                    if d != Dihedral::Identity {
                        let wrong = verify(&upstream, &test, View::Full, channel, Dihedral::Identity);
                        // Measured: ncc <= 0.68 (transverse), ssim <= 0.46.
                        assert!(wrong.ncc < 0.8 && wrong.ssim < 0.6, "{d:?} {channel:?} identity {wrong:?}");
                    }
                }
            }
            // Spelled out for the common cases: a horizontal mirror is FlipY (self-inverse); a
            // test image rotated 90° counter-clockwise from the upstream matches as Rotate270.
            let mirrored = Dihedral::FlipY.apply_rgb(&upstream);
            assert!(verify(&upstream, &mirrored, View::Center, Channel::Native, Dihedral::FlipY).ncc > 0.99);
            let ccw = Dihedral::Rotate90.apply_rgb(&upstream);
            assert!(verify(&upstream, &ccw, View::Center, Channel::Native, Dihedral::Rotate270).ncc > 0.99);
            assert!(verify(&upstream, &ccw, View::Center, Channel::Native, Dihedral::Rotate90).ncc < 0.9);
        }
    }
}
