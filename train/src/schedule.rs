//! Learning-rate schedules: the BiT-HyperRule's (BIT_SPEC §1.2-1.3) and upstream
//! pre-training's (§6), one shape: linear warm-up from exactly 0, then ×0.1 at each decay.
//!
//! Boundaries are strict, as `bit_hyperrule.get_lr`: a decay at step d takes effect from step
//! d + 1, and training stops when the step reaches `total` ([`LrSchedule::lr`] is `None`).

use serde::{Deserialize, Serialize};

/// Dataset-size regimes of the HyperRule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Regime {
    /// n < 20,000: 500 steps, no MixUp.
    Small,
    /// 20,000 ≤ n < 500,000: 10,000 steps, MixUp α = 0.1.
    Medium,
    /// n ≥ 500,000: 20,000 steps, MixUp α = 0.1.
    Large,
}

impl Regime {
    /// From the number of training examples after few-shot subsetting (BIT_SPEC detail 11).
    pub fn for_size(n: u64) -> Regime {
        if n < 20_000 {
            Regime::Small
        } else if n < 500_000 {
            Regime::Medium
        } else {
            Regime::Large
        }
    }

    /// `[warmup_end, d1, d2, d3, total]` of `get_schedule`.
    pub fn supports(self) -> [u64; 5] {
        match self {
            Regime::Small => [100, 200, 300, 400, 500],
            Regime::Medium => [500, 3000, 6000, 9000, 10_000],
            Regime::Large => [500, 6000, 12_000, 18_000, 20_000],
        }
    }

    /// `get_mixup`: Beta(α, α).
    pub fn mixup_alpha(self) -> f64 {
        match self {
            Regime::Small => 0.0,
            Regime::Medium | Regime::Large => 0.1,
        }
    }
}

/// BiT's base learning rate for transfer, at batch 512, not scaled with the batch.
pub const HYPERRULE_BASE_LR: f64 = 0.003;

/// Linear warm-up, then ×0.1 after each decay step, stop at `total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub warmup: u64,
    /// Ascending; the lr divides by 10 for every d with d < step.
    pub decays: Vec<u64>,
    pub total: u64,
}

impl LrSchedule {
    /// The HyperRule schedule of a regime.
    pub fn hyperrule(regime: Regime, base_lr: f64) -> LrSchedule {
        let [warmup, d1, d2, d3, total] = regime.supports();
        LrSchedule { base_lr, warmup, decays: vec![d1, d2, d3], total }
    }

    /// Upstream pre-training (BIT_SPEC §6): lr = 0.03 × batch / 256 unless `base_lr` is
    /// given, `warmup` steps of linear warm-up (5000 in BiT), decays after the given epochs
    /// (BiT-S/M: 30, 60, 80 of 90).
    pub fn upstream(
        base_lr: f64,
        warmup: u64,
        decay_epochs: &[f64],
        epochs: f64,
        updates_per_epoch: f64,
    ) -> LrSchedule {
        let at = |e: f64| (e * updates_per_epoch).round() as u64;
        LrSchedule { base_lr, warmup, decays: decay_epochs.iter().map(|&e| at(e)).collect(), total: at(epochs) }
    }

    /// The lr of optimizer update `step` (0-based), or `None` when training is over.
    pub fn lr(&self, step: u64) -> Option<f64> {
        if step >= self.total {
            return None;
        }
        if step < self.warmup {
            return Some(self.base_lr * step as f64 / self.warmup as f64);
        }
        let k = self.decays.iter().filter(|&&d| d < step).count() as i32;
        Some(self.base_lr / 10f64.powi(k))
    }
}

/// 0.03 × batch / 256 (BIT_SPEC §6).
pub fn upstream_base_lr(batch: u64) -> f64 {
    0.03 * batch as f64 / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= 1e-12 * b.abs().max(1e-12))
    }

    #[test]
    fn regimes_have_strict_size_boundaries() {
        assert_eq!(Regime::for_size(0), Regime::Small);
        assert_eq!(Regime::for_size(19_999), Regime::Small);
        assert_eq!(Regime::for_size(20_000), Regime::Medium);
        assert_eq!(Regime::for_size(499_999), Regime::Medium);
        assert_eq!(Regime::for_size(500_000), Regime::Large);
        assert_eq!(Regime::Small.mixup_alpha(), 0.0);
        assert_eq!(Regime::Medium.mixup_alpha(), 0.1);
        assert_eq!(Regime::Large.mixup_alpha(), 0.1);
    }

    /// Every boundary of all three regimes: warm-up start/end, each decay d (still the old
    /// lr) and d + 1 (the new one), the last step and the stop.
    #[test]
    fn lr_at_every_boundary_of_every_regime() {
        let b = HYPERRULE_BASE_LR;
        for regime in [Regime::Small, Regime::Medium, Regime::Large] {
            let s = LrSchedule::hyperrule(regime, b);
            let [w, d1, d2, d3, total] = regime.supports();
            assert_eq!(s.lr(0), Some(0.0), "{regime:?}: lr 0 at step 0");
            assert!(close(s.lr(1), b / w as f64));
            assert!(close(s.lr(w - 1), b * (w - 1) as f64 / w as f64));
            assert!(close(s.lr(w), b));
            for (k, d) in [d1, d2, d3].into_iter().enumerate() {
                assert!(close(s.lr(d), b / 10f64.powi(k as i32)), "{regime:?} step {d}");
                assert!(close(s.lr(d + 1), b / 10f64.powi(k as i32 + 1)), "{regime:?} step {}", d + 1);
            }
            assert!(close(s.lr(total - 1), b / 1000.0));
            assert_eq!(s.lr(total), None);
            assert_eq!(s.lr(total + 7), None);
        }
        // The spec's worked table (BIT_SPEC §1.3).
        let small = LrSchedule::hyperrule(Regime::Small, b);
        assert!(close(small.lr(1), 3e-5));
        assert!(close(small.lr(99), 2.97e-3));
        for (step, lr) in [(100, 3e-3), (200, 3e-3), (201, 3e-4), (300, 3e-4), (301, 3e-5)] {
            assert!(close(small.lr(step), lr), "step {step}");
        }
        for (step, lr) in [(400, 3e-5), (401, 3e-6), (499, 3e-6)] {
            assert!(close(small.lr(step), lr), "step {step}");
        }
        let medium = LrSchedule::hyperrule(Regime::Medium, b);
        assert!(close(medium.lr(3000), 3e-3));
        assert!(close(medium.lr(3001), 3e-4));
    }

    #[test]
    fn upstream_schedule_follows_the_paper() {
        // BiT-M on ImageNet-21k at batch 4096: lr 0.48, 5000 warm-up steps, decays after
        // epochs 30/60/80 of 90.
        let base = upstream_base_lr(4096);
        assert!((base - 0.48).abs() < 1e-12);
        let s = LrSchedule::upstream(base, 5000, &[30.0, 60.0, 80.0], 90.0, 3467.0);
        assert_eq!(s.decays, vec![104_010, 208_020, 277_360]);
        assert_eq!(s.total, 312_030);
        assert_eq!(s.lr(0), Some(0.0));
        assert!(close(s.lr(2500), 0.24));
        assert!(close(s.lr(5000), 0.48));
        assert!(close(s.lr(104_010), 0.48));
        assert!(close(s.lr(104_011), 0.048));
        assert!(close(s.lr(312_029), 0.00048));
        assert_eq!(s.lr(312_030), None);
    }
}
