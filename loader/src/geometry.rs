//! Per-sample geometry: where to crop, whether to flip (BIT_SPEC §2.1).
//!
//! A [`SamplePlan`] is a pure function of the [`Transform`], the upright image size and the
//! sample's random stream, so a seeded stream replays the same crops and flips on any machine
//! and any thread. Pixels are not touched here: [`crate::render`] turns the plan into pixels.
//!
//! | mode | crop box | draws |
//! |---|---|---|
//! | `upstream` + random crop | torchvision `RandomResizedCrop.get_params` | 2 floats per try (<= 10), top, left |
//! | `small` / `large` + random crop | squash to `precrop`, `RandomCrop(crop)`, mapped to the source | top, left |
//! | random crop off, `test` | the whole image | none |
//!
//! After the crop parameters, `flip` draws one `random_bool(0.5)` when the transform flips.

use crate::mode::{Mode, Transform};

/// A crop in continuous upright source coordinates: pixel `i` spans `[i, i + 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl CropBox {
    /// The whole `width x height` image.
    pub fn whole(width: u32, height: u32) -> CropBox {
        CropBox { left: 0.0, top: 0.0, width: f64::from(width), height: f64::from(height) }
    }
}

/// What happens to one sample: the source box resized to `size x size`, then flipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplePlan {
    pub crop: CropBox,
    pub flip: bool,
    pub size: u32,
}

/// torchvision `RandomResizedCrop` defaults, which BiT's upstream (Inception) crop uses.
pub const RRC_SCALE: (f64, f64) = (0.08, 1.0);
/// torchvision `RandomResizedCrop` default aspect-ratio range (w / h).
pub const RRC_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
/// torchvision tries this many random boxes before falling back to a central crop.
pub const RRC_ATTEMPTS: usize = 10;

/// The plan for a `width x height` (upright) image, drawing from `rng`.
///
/// A zero-sized image gets its (empty) whole-image box and no flip, and draws nothing: the
/// renderer rejects the empty box with an error naming it, which is more useful than a panic
/// here.
pub fn plan_sample<R: rand::Rng + ?Sized>(transform: &Transform, width: u32, height: u32, rng: &mut R) -> SamplePlan {
    let size = transform.crop;
    if width == 0 || height == 0 {
        return SamplePlan { crop: CropBox::whole(width, height), flip: false, size };
    }
    let crop = match (transform.mode, transform.random_crop) {
        (Mode::Upstream, true) => random_resized_crop(width, height, rng),
        (Mode::Small | Mode::Large, true) => squash_random_crop(width, height, transform.precrop, transform.crop, rng),
        (Mode::Upstream | Mode::Small | Mode::Large, false) | (Mode::Test, _) => CropBox::whole(width, height),
    };
    // Drawn after the crop, as torchvision's RandomHorizontalFlip follows the crop: the crop
    // draws of a sample do not depend on whether the transform flips.
    let flip = transform.flip && rng.random_bool(0.5);
    SamplePlan { crop, flip, size }
}

/// torchvision `RandomResizedCrop.get_params(img, scale=(0.08, 1), ratio=(3/4, 4/3))`, in the
/// same order of draws and with Python's rounding (ties to even), returning `(left, top, w, h)`
/// as a box. `width` and `height` are nonzero.
fn random_resized_crop<R: rand::Rng + ?Sized>(width: u32, height: u32, rng: &mut R) -> CropBox {
    let (w_f, h_f) = (f64::from(width), f64::from(height));
    let area = w_f * h_f;
    let (log_lo, log_hi) = (RRC_RATIO.0.ln(), RRC_RATIO.1.ln());
    for _ in 0..RRC_ATTEMPTS {
        let target_area = area * rng.random_range(RRC_SCALE.0..RRC_SCALE.1);
        let aspect = rng.random_range(log_lo..log_hi).exp();
        let w = (target_area * aspect).sqrt().round_ties_even();
        let h = (target_area / aspect).sqrt().round_ties_even();
        if 0.0 < w && w <= w_f && 0.0 < h && h <= h_f {
            // In range, so the casts are exact.
            let (w, h) = (w as u32, h as u32);
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return CropBox { left: f64::from(left), top: f64::from(top), width: f64::from(w), height: f64::from(h) };
        }
    }
    // Central crop at the nearest allowed aspect ratio.
    let in_ratio = w_f / h_f;
    let (w, h) = if in_ratio < RRC_RATIO.0 {
        // round(width / (3/4)) <= height because width / height < 3/4.
        (width, ((w_f / RRC_RATIO.0).round_ties_even() as u32).min(height))
    } else if in_ratio > RRC_RATIO.1 {
        (((h_f * RRC_RATIO.1).round_ties_even() as u32).min(width), height)
    } else {
        (width, height)
    };
    let (top, left) = ((height - h) / 2, (width - w) / 2);
    CropBox { left: f64::from(left), top: f64::from(top), width: f64::from(w), height: f64::from(h) }
}

/// BiT PyTorch's `Resize((precrop, precrop))` then `RandomCrop(crop)`, expressed as the box of
/// the source that the crop covers: one crop-resize of that box samples the same geometry as
/// the squash followed by the crop. Offsets are drawn top first, then left, like torchvision;
/// when `precrop <= crop` there is nothing to choose (torchvision draws nothing when the crop
/// equals the image) and the box is the whole image.
fn squash_random_crop<R: rand::Rng + ?Sized>(width: u32, height: u32, precrop: u32, crop: u32, rng: &mut R) -> CropBox {
    if precrop <= crop {
        return CropBox::whole(width, height);
    }
    let slack = precrop - crop;
    let top = rng.random_range(0..=slack);
    let left = rng.random_range(0..=slack);
    let (sx, sy) = (f64::from(width) / f64::from(precrop), f64::from(height) / f64::from(precrop));
    CropBox {
        left: f64::from(left) * sx,
        top: f64::from(top) * sy,
        width: f64::from(crop) * sx,
        height: f64::from(crop) * sy,
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Yields the same word forever. With rand 0.9's samplers, all zeros give the low end of
    /// every range (`random_range(a..=b)` = a, floats = the lower bound, `random_bool(0.5)` =
    /// true) and all ones give `random_range(a..=b)` = b and `random_bool(0.5)` = false.
    struct Const(u64);

    impl RngCore for Const {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(self.0 as u8);
        }
    }

    fn t(mode: Mode) -> Transform {
        Transform::for_mode(mode, None).expect("valid mode")
    }

    fn b(left: f64, top: f64, width: f64, height: f64) -> CropBox {
        CropBox { left, top, width, height }
    }

    #[test]
    fn small_box_is_the_squashed_crop_mapped_back() {
        // 500x375 squashed to 160x160: one squashed pixel is 500/160 = 3.125 wide and
        // 375/160 = 2.34375 high; the 128 crop covers 400 x 300 source pixels.
        let lo = plan_sample(&t(Mode::Small), 500, 375, &mut Const(0));
        assert_eq!(lo, SamplePlan { crop: b(0.0, 0.0, 400.0, 300.0), flip: true, size: 128 });
        // Offsets 32 (= 160 - 128) down and right: 32 * 3.125 = 100, 32 * 2.34375 = 75.
        let hi = plan_sample(&t(Mode::Small), 500, 375, &mut Const(u64::MAX));
        assert_eq!(hi, SamplePlan { crop: b(100.0, 75.0, 400.0, 300.0), flip: false, size: 128 });
    }

    #[test]
    fn large_box_is_the_squashed_crop_mapped_back() {
        // 512 -> 480: scale 500/512 = 0.9765625 and 375/512 = 0.732421875 (exact in binary).
        let hi = plan_sample(&t(Mode::Large), 500, 375, &mut Const(u64::MAX));
        assert_eq!(hi.crop, b(31.25, 23.4375, 468.75, 351.5625));
        assert_eq!(hi.size, 480);
        let lo = plan_sample(&t(Mode::Large), 500, 375, &mut Const(0));
        assert_eq!(lo.crop, b(0.0, 0.0, 468.75, 351.5625));
    }

    #[test]
    fn seeded_small_box_uses_top_then_left() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut replay = rng.clone();
        let plan = plan_sample(&t(Mode::Small), 500, 375, &mut rng);
        let top: u32 = replay.random_range(0..=32);
        let left: u32 = replay.random_range(0..=32);
        let flip = replay.random_bool(0.5);
        let expect = b(f64::from(left) * 3.125, f64::from(top) * 2.34375, 400.0, 300.0);
        assert_eq!(plan, SamplePlan { crop: expect, flip, size: 128 });
        // Both streams consumed the same draws.
        assert_eq!(rng.next_u64(), replay.next_u64());
    }

    #[test]
    fn rrc_first_attempt_by_hand() {
        // All-zero stream: scale 0.08 -> target area 0.08 * 187500 = 15000; aspect 3/4;
        // w = round(sqrt(11250)) = round(106.07) = 106, h = round(sqrt(20000)) = round(141.42)
        // = 141; both fit, offsets 0.
        let up = plan_sample(&t(Mode::Upstream), 500, 375, &mut Const(0));
        assert_eq!(up, SamplePlan { crop: b(0.0, 0.0, 106.0, 141.0), flip: true, size: 224 });
        // All-ones stream: scale ~1, aspect ~4/3: w = round(sqrt(250000)) = 500 fits but
        // h = round(sqrt(140625)) = 375 fits too (up to float error, just below), offsets max.
        let up = plan_sample(&t(Mode::Upstream), 500, 375, &mut Const(u64::MAX));
        assert_eq!(up.crop, b(0.0, 0.0, 500.0, 375.0));
        assert!(!up.flip);
    }

    #[test]
    fn rrc_falls_back_to_a_central_crop() {
        // 10000x10: even the smallest box at the widest aspect is 77 px high, so all ten
        // attempts fail. Fallback: h = 10, w = round(10 * 4/3) = 13, left = (10000 - 13) / 2.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            let wide = plan_sample(&t(Mode::Upstream), 10_000, 10, &mut rng);
            assert_eq!(wide.crop, b(4993.0, 0.0, 13.0, 10.0));
            // Tall: w = 10, h = round(10 / (3/4)) = 13.
            let tall = plan_sample(&t(Mode::Upstream), 10, 10_000, &mut rng);
            assert_eq!(tall.crop, b(0.0, 4993.0, 10.0, 13.0));
        }
        // The fallback consumes exactly 10 attempts of 2 draws, then the flip.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut replay = rng.clone();
        let plan = plan_sample(&t(Mode::Upstream), 10_000, 10, &mut rng);
        for _ in 0..RRC_ATTEMPTS {
            let _: f64 = replay.random_range(RRC_SCALE.0..RRC_SCALE.1);
            let _: f64 = replay.random_range(RRC_RATIO.0.ln()..RRC_RATIO.1.ln());
        }
        assert_eq!(plan.flip, replay.random_bool(0.5));
        // A 1x1 image: w, h round to 0 or 1; the fallback (ratio 1) is the whole pixel.
        let one = plan_sample(&t(Mode::Upstream), 1, 1, &mut rng);
        assert_eq!(one.crop, b(0.0, 0.0, 1.0, 1.0));
    }

    #[test]
    fn rrc_statistics() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let (w, h) = (500u32, 375u32);
        let area = f64::from(w) * f64::from(h);
        let (mut min_frac, mut max_frac) = (f64::MAX, 0.0f64);
        for _ in 0..20_000 {
            let c = plan_sample(&t(Mode::Upstream), w, h, &mut rng).crop;
            assert!(c.left >= 0.0 && c.top >= 0.0 && c.width >= 1.0 && c.height >= 1.0, "{c:?}");
            assert!(c.left + c.width <= f64::from(w) && c.top + c.height <= f64::from(h), "{c:?}");
            assert_eq!((c.left.fract(), c.top.fract(), c.width.fract(), c.height.fract()), (0.0, 0.0, 0.0, 0.0));
            // A 500x375 image never falls back in practice (p < 1e-6 per sample), so every
            // box is an accepted attempt: its unrounded area is in [0.08, 1] * area and its
            // unrounded aspect in [3/4, 4/3]; rounding each side moves them by < 0.5 px.
            let frac = c.width * c.height / area;
            let slack = (c.width + c.height) * 0.5 / area + 0.25 / area;
            assert!(frac >= 0.08 - slack && frac <= 1.0 + slack, "{c:?} area fraction {frac}");
            let aspect = c.width / c.height;
            let lo = (c.width - 0.5) / (c.height + 0.5);
            let hi = (c.width + 0.5) / (c.height - 0.5);
            assert!(hi >= 0.75 && lo <= 4.0 / 3.0, "{c:?} aspect {aspect}");
            min_frac = min_frac.min(frac);
            max_frac = max_frac.max(frac);
        }
        // The distribution covers the range.
        assert!(min_frac < 0.1 && max_frac > 0.9, "{min_frac} {max_frac}");
    }

    #[test]
    fn flip_frequency_and_switch() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for mode in [Mode::Upstream, Mode::Small, Mode::Large] {
            let n = 20_000;
            let flips = (0..n).filter(|_| plan_sample(&t(mode), 320, 240, &mut rng).flip).count();
            // 5 sigma of a Binomial(20000, 0.5) is ~354.
            assert!(flips.abs_diff(n / 2) < 354, "{mode}: {flips} of {n}");
        }
        // Flip off: never flips and draws nothing for it.
        let mut no_flip = t(Mode::Small);
        no_flip.flip = false;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut replay = rng.clone();
        for _ in 0..1000 {
            assert!(!plan_sample(&no_flip, 320, 240, &mut rng).flip);
            let _: u32 = replay.random_range(0..=32);
            let _: u32 = replay.random_range(0..=32);
        }
        assert_eq!(rng.next_u64(), replay.next_u64());
    }

    #[test]
    fn whole_image_when_not_cropping() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let test = plan_sample(&t(Mode::Test), 500, 375, &mut rng);
        assert_eq!(test, SamplePlan { crop: b(0.0, 0.0, 500.0, 375.0), flip: false, size: 480 });
        for mode in [Mode::Upstream, Mode::Small, Mode::Large] {
            let mut tr = t(mode);
            tr.random_crop = false;
            tr.flip = false;
            let mut before = rng.clone();
            let plan = plan_sample(&tr, 500, 375, &mut rng);
            assert_eq!(plan, SamplePlan { crop: b(0.0, 0.0, 500.0, 375.0), flip: false, size: tr.crop });
            // Nothing drawn.
            assert_eq!(rng.next_u64(), before.next_u64());
        }
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for mode in Mode::ALL {
            for (w, h) in [(0, 0), (0, 10), (10, 0)] {
                let plan = plan_sample(&t(mode), w, h, &mut rng);
                assert_eq!(plan.crop, CropBox::whole(w, h));
                assert!(!plan.flip);
            }
            // Tiny and extreme images stay inside the image.
            for (w, h) in [(1, 1), (1, 100_000), (100_000, 1), (2, 3)] {
                let c = plan_sample(&t(mode), w, h, &mut rng).crop;
                assert!(c.left >= 0.0 && c.top >= 0.0 && c.width > 0.0 && c.height > 0.0, "{mode} {c:?}");
                assert!(c.left + c.width <= f64::from(w) && c.top + c.height <= f64::from(h), "{mode} {c:?}");
            }
        }
        // A hand-built transform whose precrop is below its crop: whole image, no panic.
        let odd = Transform { mode: Mode::Small, precrop: 100, crop: 128, random_crop: true, flip: false };
        assert_eq!(plan_sample(&odd, 50, 40, &mut rng).crop, b(0.0, 0.0, 50.0, 40.0));
    }

    #[test]
    fn equal_seeds_give_equal_plans() {
        for mode in Mode::ALL {
            let plans = |seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                (0..200).map(|i| plan_sample(&t(mode), 100 + i, 300 - i, &mut rng)).collect::<Vec<_>>()
            };
            assert_eq!(plans(9), plans(9));
            if mode != Mode::Test {
                assert_ne!(plans(9), plans(10));
            }
        }
    }
}
