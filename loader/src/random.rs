//! Named, independent random streams: every random decision of the loader is a pure function
//! of the seed and the coordinates of that decision, never of timing or thread count.
//!
//! A stream is ChaCha8 keyed by blake3(domain, seed, coordinates). ChaCha8's output for a key is
//! fixed by its specification (rand_chacha promises value stability), so a recorded run replays
//! the same crops on another machine or a later bitkit.

use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream decides; part of its key, so streams never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The order of an epoch: (seed, epoch).
    EpochOrder,
    /// One sample's crop and flip: (seed, epoch, row, rank).
    Sample,
    /// The few-shot subset of one class: (fewshot seed, class).
    FewShot,
    /// MixUp's lambda for one optimizer update: (seed, update).
    MixupLambda,
    /// MixUp's partner permutation for one batch: (seed, step, rank).
    MixupPartner,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::EpochOrder => b"bitkit-loader/epoch-order/v1",
            Domain::Sample => b"bitkit-loader/sample/v1",
            Domain::FewShot => b"bitkit-loader/fewshot/v1",
            Domain::MixupLambda => b"bitkit-loader/mixup-lambda/v1",
            Domain::MixupPartner => b"bitkit-loader/mixup-partner/v1",
        }
    }
}

/// The stream for `domain` at `coordinates`.
pub fn stream(domain: Domain, seed: u64, coordinates: &[u64]) -> ChaCha8Rng {
    let mut hasher = blake3::Hasher::new();
    let tag = domain.tag();
    hasher.update(&(tag.len() as u64).to_le_bytes());
    hasher.update(tag);
    hasher.update(&seed.to_le_bytes());
    for c in coordinates {
        hasher.update(&c.to_le_bytes());
    }
    ChaCha8Rng::from_seed(*hasher.finalize().as_bytes())
}

/// A uniform integer in `0..n` (n > 0) from one 64-bit draw (Lemire's multiply-shift; the
/// bias is below 2^-32 for any n below 2^32). Hand-written so the mapping never changes
/// with a dependency's version.
pub fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// Fisher-Yates shuffle driven by [`below`].
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_every_coordinate_and_domain() {
        let draw = |d, s, c: &[u64]| stream(d, s, c).next_u64();
        let base = draw(Domain::Sample, 1, &[2, 3, 4]);
        assert_eq!(base, draw(Domain::Sample, 1, &[2, 3, 4]));
        assert_ne!(base, draw(Domain::Sample, 2, &[2, 3, 4]));
        assert_ne!(base, draw(Domain::Sample, 1, &[2, 3, 5]));
        assert_ne!(base, draw(Domain::Sample, 1, &[2, 3]));
        assert_ne!(base, draw(Domain::EpochOrder, 1, &[2, 3, 4]));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = stream(Domain::Sample, 0, &[]);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..1000).collect();
        shuffle(&mut items, &mut stream(Domain::EpochOrder, 5, &[0]));
        assert_ne!(items, (0..1000).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..1000).collect::<Vec<_>>());
    }
}
