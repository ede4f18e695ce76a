//! MixUp as BiT's PyTorch trainer does it (BIT_SPEC §2.1): one λ ~ Beta(α, α) per optimizer
//! update, shared by all its micro-batches (and all ranks), and a fresh random partner
//! permutation per micro-batch. The loader delivers (λ, permutation) with the batch; the
//! trainer mixes the images on the device and the loss as λ·CE(y) + (1-λ)·CE(y[perm]).
//! α = 0 means no MixUp (λ = 1), BiT's choice for datasets under 20,000 images.

use rand_distr::{Beta, Distribution};

use crate::random::{shuffle, stream, Domain};
use crate::LoaderError;

/// The MixUp of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct MixUp {
    pub lambda: f32,
    /// Batch position of each sample's partner: x̃[i] = λ·x[i] + (1-λ)·x[partner[i]].
    pub partner: Vec<u32>,
}

/// MixUp settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MixUpConfig {
    /// Beta(α, α); 0 turns MixUp off.
    pub alpha: f64,
    /// Loader batches per optimizer update (gradient accumulation): they share one λ.
    pub batches_per_update: u64,
}

impl MixUpConfig {
    pub fn validate(&self) -> Result<(), LoaderError> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(LoaderError::Config(format!("MixUp alpha {} must be finite and >= 0", self.alpha)));
        }
        if self.batches_per_update == 0 {
            return Err(LoaderError::Config("batches per update must be at least 1".into()));
        }
        Ok(())
    }
}

/// λ of the optimizer update that step `step` belongs to.
pub fn lambda(config: &MixUpConfig, seed: u64, step: u64) -> Result<f32, LoaderError> {
    if config.alpha == 0.0 {
        return Ok(1.0);
    }
    let beta = Beta::new(config.alpha, config.alpha)
        .map_err(|e| LoaderError::Config(format!("MixUp alpha {}: {e}", config.alpha)))?;
    let update = step / config.batches_per_update.max(1);
    Ok(beta.sample(&mut stream(Domain::MixupLambda, seed, &[update])) as f32)
}

/// The MixUp of batch `step` on `rank` with `len` samples; `None` when α = 0.
pub fn mixup_for(
    config: &MixUpConfig,
    seed: u64,
    step: u64,
    rank: usize,
    len: usize,
) -> Result<Option<MixUp>, LoaderError> {
    if config.alpha == 0.0 {
        return Ok(None);
    }
    let lambda = lambda(config, seed, step)?;
    let mut partner: Vec<u32> = (0..len as u32).collect();
    shuffle(&mut partner, &mut stream(Domain::MixupPartner, seed, &[step, rank as u64]));
    Ok(Some(MixUp { lambda, partner }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_follows_beta_and_is_shared_within_an_update() {
        let config = MixUpConfig { alpha: 0.1, batches_per_update: 4 };
        let lambdas: Vec<f32> = (0..4000).map(|u| lambda(&config, 3, u * 4).expect("lambda")).collect();
        assert!(lambdas.iter().all(|l| (0.0..=1.0).contains(l)));
        let mean = lambdas.iter().map(|&l| f64::from(l)).sum::<f64>() / lambdas.len() as f64;
        assert!((mean - 0.5).abs() < 0.03, "Beta(a, a) has mean 1/2, got {mean}");
        // Beta(0.1, 0.1) is U-shaped: most mass near 0 and 1.
        let extreme = lambdas.iter().filter(|&&l| !(0.1..=0.9).contains(&l)).count();
        assert!(extreme as f64 / lambdas.len() as f64 > 0.7, "{extreme}");
        for step in 0..4 {
            assert_eq!(lambda(&config, 3, 8 + step).expect("l"), lambda(&config, 3, 8).expect("l"));
        }
        assert_ne!(lambda(&config, 3, 8).expect("l"), lambda(&config, 3, 12).expect("l"));
        // Variance of Beta(a, a) = 1 / (4 (2a + 1)).
        let var = lambdas.iter().map(|&l| (f64::from(l) - mean).powi(2)).sum::<f64>() / lambdas.len() as f64;
        assert!((var - 1.0 / (4.0 * 1.2)).abs() < 0.02, "{var}");
    }

    #[test]
    fn partners_are_permutations_fresh_per_batch() {
        let config = MixUpConfig { alpha: 0.1, batches_per_update: 2 };
        let a = mixup_for(&config, 1, 0, 0, 64).expect("ok").expect("on");
        let b = mixup_for(&config, 1, 1, 0, 64).expect("ok").expect("on");
        let mut sorted = a.partner.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..64).collect::<Vec<_>>());
        assert_ne!(a.partner, b.partner);
        assert_eq!(a.lambda, b.lambda);
        assert_eq!(mixup_for(&MixUpConfig { alpha: 0.0, ..config }, 1, 0, 0, 64).expect("ok"), None);
        assert!(MixUpConfig { alpha: -1.0, batches_per_update: 1 }.validate().is_err());
        assert!(MixUpConfig { alpha: f64::NAN, batches_per_update: 1 }.validate().is_err());
        assert!(MixUpConfig { alpha: 0.1, batches_per_update: 0 }.validate().is_err());
    }
}
