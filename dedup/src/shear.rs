//! The sheared CIFAR channel: one-axis patterns (wood grain, blinds, stripes) made hashable.
//!
//! PDQ's 16x16 DCT block starts at frequency 1 on both axes, so an image whose luma varies
//! along one axis only has (almost) no energy in any of its 256 coefficients: the bits are the
//! signs of rounding noise, for a test image and its copy alike, and a resized or re-encoded
//! copy of such a 32x32 test image lands ~80 bits away (`scripts/eval-dedup`: all the resize
//! misses and most JPEG q20 misses). A shear fixes that without resampling: the 32x32 image is
//! permuted by the linear map `(x, y) -> (x + y, x + 2y) mod 32` (determinant 1, so a
//! bijection: Arnold's cat map), which turns a pattern along x into one along the diagonal
//! `x + y` and a pattern along y into one along `x + 2y`, both with energy in every row and
//! column of the DCT, while neighbouring pixels stay neighbours (offsets of (1, 1) and
//! (1, 2)). The PDQ hash of the sheared image is as stable as PDQ on a textured image: copies
//! of the one-axis test images of the evaluation land within 30 bits.
//!
//! Test images enter the sheared index only when PDQ cannot see them: little of their energy
//! is two-dimensional ([`two_axis_energy`] below [`SHEAR_MAX_TWO_AXIS_ENERGY`]) and their
//! plain hash is unstable ([`pdq_instability`]). That keeps the index, and the chance matches
//! verification must reject, small; and because images with little two-dimensional structure
//! correlate with each other easily (any two vertical gradients have NCC ~0.95), a pair found
//! in this channel must also agree in detail or in colour
//! ([`verify_sheared`](crate::verify::verify_sheared)).
//! Upstream images are all hashed in this channel too (one more PDQ of a 32x32 image, for
//! the `full` and `raw` views): whether a copy is one-dimensional is decided by its test image.

use bitkit_ingest::image::RgbImage;

use crate::pdq::{with_hasher, Dihedral, PdqHash};
use crate::views::CIFAR_SIDE;

/// Test images whose [`two_axis_energy`] is below this may get sheared entries. In the
/// evaluation every one-axis miss of plain PDQ was below 0.13; 0.2 leaves a margin.
pub const SHEAR_MAX_TWO_AXIS_ENERGY: f32 = 0.2;

/// ... if their plain PDQ hash also moves by more than this many bits when [`DITHER`] levels
/// of fixed noise are added to their luma, as a resize or re-encode does: every one-axis miss
/// of the evaluation moved 50-100 bits, while most one-axis-dominant natural crops (skies,
/// horizons) keep a usable hash and stay out of the sheared index (in `scripts/bench-dedup`'s
/// photo crops this cuts the test images with sheared entries from 41% to 24%, and with them
/// the channel's share of the search and of the chance matches).
pub const SHEAR_MIN_INSTABILITY: u32 = 32;

/// Amplitude (luma levels, 0..255 scale) of the fixed noise of the instability test.
pub const DITHER: f32 = 2.0;

/// The source pixel of output pixel `(x, y)` in a `side x side` image: `(x + y, x + 2y)`
/// modulo `side`.
#[inline]
fn source(x: usize, y: usize, side: usize) -> (usize, usize) {
    ((x + y) % side, (x + 2 * y) % side)
}

/// The sheared image: output pixel `(x, y)` is input pixel `(x + y, x + 2y) mod side`. Only
/// square images are sheared (the CIFAR channel's 32x32); any other shape, or a malformed
/// image, is returned as is.
pub fn shear(image: &RgbImage) -> RgbImage {
    let side = image.width as usize;
    if image.width != image.height || side == 0 || image.pixels.len() != side * side * 3 {
        return image.clone();
    }
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = source(x, y, side);
            let i = (sy * side + sx) * 3;
            pixels.extend_from_slice(&image.pixels[i..i + 3]);
        }
    }
    RgbImage { width: image.width, height: image.height, pixels }
}

/// The share of a square luma image's AC energy, over the DCT frequencies below half the side
/// (what PDQ's block covers), that lies off the frequency-0 row and column: near 0 for an
/// image that varies along one axis only, ~0.35 for a typical textured tile. A flat image
/// gives 0.
pub fn two_axis_energy(luma: &[f32], side: usize) -> f32 {
    if side < 2 || luma.len() != side * side {
        return 0.0;
    }
    let n = side / 2;
    // Rows 0..n of the orthogonal DCT-II matrix (the scale does not matter for a ratio).
    let basis: Vec<f64> = (0..n)
        .flat_map(|k| {
            (0..side).map(move |x| (std::f64::consts::PI * (2 * x + 1) as f64 * k as f64 / (2 * side) as f64).cos())
        })
        .collect();
    // T = D L (n x side), C = T D^T (n x n).
    let mut t = vec![0f64; n * side];
    for k in 0..n {
        for y in 0..side {
            let d = basis[k * side + y];
            for x in 0..side {
                t[k * side + x] += d * f64::from(luma[y * side + x]);
            }
        }
    }
    let (mut axis, mut both) = (0f64, 0f64);
    for v in 0..n {
        for u in 0..n {
            if u == 0 && v == 0 {
                continue;
            }
            let c: f64 = (0..side).map(|x| t[v * side + x] * basis[u * side + x]).sum();
            if u == 0 || v == 0 {
                axis += c * c;
            } else {
                both += c * c;
            }
        }
    }
    let total = axis + both;
    if total <= 1e-9 {
        0.0
    } else {
        (both / total) as f32
    }
}

/// The 8 dihedral hashes of `image` in the sheared channel, each of the transformed image
/// sheared (variant `d` is `pdq(shear(d.apply_rgb(image)))`: a shear does not commute with
/// flips and rotations, so variants cannot come from one DCT), and the identity's quality.
pub fn sheared_dihedral_exact(image: &RgbImage) -> ([PdqHash; 8], u8) {
    with_hasher(|h| {
        let mut hashes = [PdqHash::ZERO; 8];
        let mut quality = 0;
        for (slot, d) in hashes.iter_mut().zip(Dihedral::ALL) {
            let p = h.hash(&shear(&d.apply_rgb(image)));
            if d == Dihedral::Identity {
                quality = p.quality;
            }
            *slot = p.hash;
        }
        (hashes, quality)
    })
}

/// How many bits the plain PDQ hash of a luma plane moves when fixed pseudo-random noise of
/// ±[`DITHER`] levels is added to it (deterministic: the noise depends on the pixel index only).
pub fn pdq_instability(luma: &[f32], width: usize, height: usize) -> u32 {
    let noisy: Vec<f32> = luma
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            // SplitMix64 of the index, reduced to -DITHER..=DITHER in whole levels.
            let mut z = (i as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            v + (z % (2 * DITHER as u64 + 1)) as f32 - DITHER
        })
        .collect();
    with_hasher(|h| h.hash_luma(luma, width, height).hash.distance(&h.hash_luma(&noisy, width, height).hash))
}

/// Whether a CIFAR-channel test image (32x32) gets sheared entries: it varies mostly along one
/// axis and its plain PDQ hash is unstable.
pub fn needs_shear(image: &RgbImage) -> bool {
    let side = CIFAR_SIDE as usize;
    if image.width as usize != side || image.height as usize != side {
        return false;
    }
    let plane = crate::pdq::luma(image);
    two_axis_energy(&plane, side) < SHEAR_MAX_TWO_AXIS_ENERGY
        && pdq_instability(&plane, side, side) > SHEAR_MIN_INSTABILITY
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdq::pdq;
    use crate::pdq::testimg::{jpeg, photo, resize};
    use crate::views::area_downsample;

    fn from_fn(side: u32, f: impl Fn(usize, usize) -> u8) -> RgbImage {
        let s = side as usize;
        let pixels = (0..s * s).flat_map(|i| [f(i % s, i / s); 3]).collect();
        RgbImage { width: side, height: side, pixels }
    }

    /// A one-axis pattern along x: irregular stripes, like wood grain (32 random levels,
    /// smoothed, spread over `side` columns).
    fn stripes(side: u32, seed: u64) -> RgbImage {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 160) as f64 + 48.0
        };
        let raw: Vec<f64> = (0..34).map(|_| next()).collect();
        let levels: Vec<f64> = (0..32).map(|i| (raw[i] + 2.0 * raw[i + 1] + raw[i + 2]) / 4.0).collect();
        from_fn(side, move |x, _| levels[x * 32 / side as usize] as u8)
    }

    /// A pattern with structure along both axes at many scales: random levels on a 16x16
    /// grid, bilinearly interpolated.
    fn texture(side: u32) -> RgbImage {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let grid: Vec<f64> = (0..17 * 17)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 200) as f64 + 28.0
            })
            .collect();
        from_fn(side, move |x, y| {
            let (u, v) = (x as f64 * 16.0 / f64::from(side), y as f64 * 16.0 / f64::from(side));
            let (i, j) = (u as usize, v as usize);
            let (fu, fv) = (u - i as f64, v - j as f64);
            let at = |a: usize, b: usize| grid[b * 17 + a];
            let top = at(i, j) * (1.0 - fu) + at(i + 1, j) * fu;
            let bottom = at(i, j + 1) * (1.0 - fu) + at(i + 1, j + 1) * fu;
            (top * (1.0 - fv) + bottom * fv) as u8
        })
    }

    #[test]
    fn shear_is_a_permutation() {
        let img = from_fn(32, |x, y| ((x * 7 + y * 13) % 251) as u8);
        let sheared = shear(&img);
        let mut seen = vec![false; 32 * 32];
        for y in 0..32 {
            for x in 0..32 {
                let (sx, sy) = source(x, y, 32);
                assert!(!std::mem::replace(&mut seen[sy * 32 + sx], true), "({sx}, {sy}) used twice");
                assert_eq!(sheared.pixels[(y * 32 + x) * 3], img.pixels[(sy * 32 + sx) * 3]);
            }
        }
        // Not square: unchanged.
        let wide = RgbImage { width: 4, height: 2, pixels: vec![9; 24] };
        assert_eq!(shear(&wide), wide);
    }

    #[test]
    fn two_axis_energy_separates_one_axis_patterns() {
        let luma = |img: &RgbImage| crate::pdq::luma(img);
        assert!(two_axis_energy(&luma(&stripes(32, 1)), 32) < 1e-6);
        let transposed = Dihedral::Transpose.apply_rgb(&stripes(32, 1));
        assert!(two_axis_energy(&luma(&transposed), 32) < 1e-6);
        let textured = area_downsample(&texture(128), 32, 32);
        assert!(two_axis_energy(&luma(&textured), 32) > SHEAR_MAX_TWO_AXIS_ENERGY);
        assert_eq!(two_axis_energy(&[7.0; 32 * 32], 32), 0.0);
        assert_eq!(two_axis_energy(&[1.0; 5], 32), 0.0);
        assert!(needs_shear(&stripes(32, 2)));
        assert!(!needs_shear(&textured));
        // Plain PDQ of a two-axis texture shrugs off the noise; of stripes it does not.
        assert!(pdq_instability(&luma(&textured), 32, 32) <= SHEAR_MIN_INSTABILITY / 2);
        assert!(pdq_instability(&luma(&stripes(32, 2)), 32, 32) > SHEAR_MIN_INSTABILITY);
    }

    /// The reason for the channel: a resized JPEG copy of a stripe pattern is far from it in
    /// plain PDQ bits and close once both are sheared.
    #[test]
    fn sheared_hash_matches_copies_of_one_axis_patterns() {
        let mut plain_far = 0;
        for seed in 0..8 {
            let test = area_downsample(&stripes(128, seed), 32, 32);
            let copy = area_downsample(&jpeg(&resize(&stripes(128, seed), 256, 256), 85), 32, 32);
            let sheared = pdq(&shear(&test)).hash.distance(&pdq(&shear(&copy)).hash);
            assert!(sheared <= 31, "seed {seed}: sheared distance {sheared}");
            plain_far += usize::from(pdq(&test).hash.distance(&pdq(&copy).hash) > 56);
            // A different stripe pattern stays far.
            let other = stripes(32, seed + 100);
            assert!(pdq(&shear(&test)).hash.distance(&pdq(&shear(&other)).hash) > 64);
        }
        assert!(plain_far > 0, "the stripe copies should defeat plain PDQ for the test to mean anything");
    }

    #[test]
    fn sheared_variants_are_the_sheared_transformed_images() {
        let image = area_downsample(&photo(120, 90, 8), 32, 32);
        let (hashes, quality) = sheared_dihedral_exact(&image);
        for (hash, d) in hashes.iter().zip(Dihedral::ALL) {
            assert_eq!(*hash, pdq(&shear(&d.apply_rgb(&image))).hash, "{d:?}");
        }
        assert_eq!(quality, pdq(&shear(&image)).quality);
        // A shear does not commute with a flip: the variants are not each other's transforms.
        assert_ne!(hashes[0], hashes[1]);
    }
}
