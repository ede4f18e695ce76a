//! Which rows a rank sees, in which order, at which step (DESIGN §4).
//!
//! - The eligible rows are the dataset minus an exclusion list (dedup's `exclude.txt`),
//!   optionally cut to a few-shot subset (k rows per class, seeded).
//! - Every epoch has its own seeded permutation of all eligible rows (not a shuffle buffer).
//!   Rank r of W takes positions r, r + W, r + 2W, ... of the first `W * floor(n / W)`: equal,
//!   disjoint parts; the up to W - 1 rows past that are a different random set each epoch.
//! - A rank's part is cut into batches of `batch_size`. BiT (PyTorch, `drop_last=False`)
//!   keeps the short last batch; `drop_last` drops it.
//! - Step k is batch `k % steps_per_epoch` of epoch `k / steps_per_epoch`: the stream of
//!   batches is a pure function of (rows, seed, rank, world size, batch size), so resuming at
//!   step k yields exactly the batches of an uninterrupted run.

use std::collections::BTreeMap;

use crate::random::{shuffle, stream, Domain};
use crate::LoaderError;

/// How the eligible rows are split into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SamplerConfig {
    pub seed: u64,
    pub batch_size: usize,
    pub rank: usize,
    pub world_size: usize,
    pub drop_last: bool,
}

/// The batch schedule of one rank.
#[derive(Debug, Clone)]
pub struct Sampler {
    eligible: Vec<u32>,
    config: SamplerConfig,
    per_rank: usize,
    steps_per_epoch: usize,
}

/// Where a step falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPosition {
    pub epoch: u64,
    /// Batch number within the epoch.
    pub batch: usize,
    /// Positions `start..end` of this rank's epoch order.
    pub start: usize,
    pub end: usize,
}

impl Sampler {
    /// `eligible`: row numbers of the dataset, in dataset order.
    pub fn new(eligible: Vec<u32>, config: SamplerConfig) -> Result<Sampler, LoaderError> {
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(LoaderError::Config(format!(
                "rank {} must be below world size {}",
                config.rank, config.world_size
            )));
        }
        if config.batch_size == 0 {
            return Err(LoaderError::Config("batch size must be at least 1".into()));
        }
        let per_rank = eligible.len() / config.world_size;
        let steps_per_epoch =
            if config.drop_last { per_rank / config.batch_size } else { per_rank.div_ceil(config.batch_size) };
        if steps_per_epoch == 0 {
            return Err(LoaderError::Config(format!(
                "{} eligible rows give rank {} of {} {} rows: not one batch of {}{}",
                eligible.len(),
                config.rank,
                config.world_size,
                per_rank,
                config.batch_size,
                if config.drop_last { " (with drop_last)" } else { "" }
            )));
        }
        Ok(Sampler { eligible, config, per_rank, steps_per_epoch })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Rows eligible for training (after exclusion and few-shot selection), all ranks.
    pub fn eligible(&self) -> &[u32] {
        &self.eligible
    }

    /// Rows this rank sees per epoch.
    pub fn rows_per_rank(&self) -> usize {
        self.per_rank
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    pub fn position(&self, step: u64) -> StepPosition {
        let spe = self.steps_per_epoch as u64;
        let batch = (step % spe) as usize;
        let start = batch * self.config.batch_size;
        StepPosition { epoch: step / spe, batch, start, end: (start + self.config.batch_size).min(self.per_rank) }
    }

    /// This rank's rows of `epoch`, in order.
    pub fn epoch_order(&self, epoch: u64) -> Vec<u32> {
        let mut all = self.eligible.clone();
        shuffle(&mut all, &mut stream(Domain::EpochOrder, self.config.seed, &[epoch]));
        let world = self.config.world_size;
        all.into_iter().skip(self.config.rank).step_by(world).take(self.per_rank).collect()
    }
}

/// Rows of `rows` (dataset order) minus those whose key is in `exclude`. Returns the kept
/// rows and how many listed keys were not found in the dataset.
pub fn apply_exclusions<'a>(
    rows: impl Iterator<Item = (u32, &'a str)>,
    exclude: &std::collections::HashSet<String>,
) -> (Vec<u32>, usize) {
    let mut found = 0usize;
    let kept = rows
        .filter(|(_, key)| {
            let drop = exclude.contains(*key);
            found += usize::from(drop);
            !drop
        })
        .map(|(row, _)| row)
        .collect();
    (kept, exclude.len().saturating_sub(found))
}

/// Reads an exclusion list: one key per line; blank lines and lines starting with `#` are
/// skipped.
pub fn read_exclude_list(path: &std::path::Path) -> Result<std::collections::HashSet<String>, LoaderError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| LoaderError::Exclude { path: path.to_path_buf(), source })?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

/// BiT's few-shot subset: `k` rows of every class present, chosen by a seeded stream per
/// class, returned in dataset order (each epoch shuffles them). `rows` are (row, primary
/// label) in dataset order; rows without a label are never picked. A class with fewer than
/// `k` rows is an error naming it (BiT fails the same way).
pub fn few_shot(
    rows: impl Iterator<Item = (u32, Option<i64>)>,
    k: usize,
    seed: u64,
    class_name: impl Fn(i64) -> String,
) -> Result<Vec<u32>, LoaderError> {
    let mut by_class: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (row, label) in rows {
        if let Some(label) = label {
            by_class.entry(label).or_default().push(row);
        }
    }
    if by_class.is_empty() {
        return Err(LoaderError::Config("few-shot selection needs labelled rows; the dataset has none".into()));
    }
    let mut chosen = Vec::with_capacity(k * by_class.len());
    for (class, mut members) in by_class {
        if members.len() < k {
            return Err(LoaderError::Config(format!(
                "class {} ({}) has {} rows, fewer than --examples-per-class {k}",
                class,
                class_name(class),
                members.len()
            )));
        }
        // Seeded by class id, so a class's pick does not change when other classes do.
        shuffle(&mut members, &mut stream(Domain::FewShot, seed, &[class as u64]));
        chosen.extend_from_slice(&members[..k]);
    }
    chosen.sort_unstable();
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(batch_size: usize, rank: usize, world_size: usize, drop_last: bool) -> SamplerConfig {
        SamplerConfig { seed: 7, batch_size, rank, world_size, drop_last }
    }

    #[test]
    fn every_row_once_per_epoch_on_one_rank() {
        let sampler = Sampler::new((0..103).collect(), config(10, 0, 1, false)).expect("sampler");
        assert_eq!(sampler.steps_per_epoch(), 11);
        for epoch in 0..3 {
            let mut order = sampler.epoch_order(epoch);
            order.sort_unstable();
            assert_eq!(order, (0..103).collect::<Vec<_>>());
        }
        assert_ne!(sampler.epoch_order(0), sampler.epoch_order(1));
        let last = sampler.position(10);
        assert_eq!((last.epoch, last.batch, last.end - last.start), (0, 10, 3));
        assert_eq!(sampler.position(11).epoch, 1);
    }

    #[test]
    fn ranks_are_disjoint_equal_and_cover_all_but_the_remainder() {
        let world = 4;
        let samplers: Vec<Sampler> =
            (0..world).map(|r| Sampler::new((0..103).collect(), config(5, r, world, true)).expect("s")).collect();
        for epoch in 0..3 {
            let mut seen = std::collections::HashSet::new();
            for s in &samplers {
                let order = s.epoch_order(epoch);
                assert_eq!(order.len(), 25);
                for row in order {
                    assert!(seen.insert(row), "row {row} on two ranks");
                }
            }
            assert_eq!(seen.len(), 100);
        }
        assert_eq!(samplers[0].steps_per_epoch(), 5);
    }

    #[test]
    fn drop_last_and_keep_short_batch() {
        let keep = Sampler::new((0..25).collect(), config(10, 0, 1, false)).expect("s");
        let drop = Sampler::new((0..25).collect(), config(10, 0, 1, true)).expect("s");
        assert_eq!((keep.steps_per_epoch(), drop.steps_per_epoch()), (3, 2));
        assert!(Sampler::new((0..5).collect(), config(10, 0, 1, true)).is_err());
        assert!(Sampler::new((0..5).collect(), config(10, 1, 1, false)).is_err());
        assert!(Sampler::new((0..5).collect(), config(0, 0, 1, false)).is_err());
    }

    #[test]
    fn orders_depend_only_on_seed_and_epoch() {
        let a = Sampler::new((0..50).collect(), config(8, 0, 1, false)).expect("s");
        let b = Sampler::new((0..50).collect(), config(8, 0, 1, false)).expect("s");
        assert_eq!(a.epoch_order(3), b.epoch_order(3));
        let other_seed = Sampler::new((0..50).collect(), SamplerConfig { seed: 8, ..*a.config() }).expect("s");
        assert_ne!(a.epoch_order(3), other_seed.epoch_order(3));
    }

    #[test]
    fn exclusions_and_few_shot() {
        let keys = ["a", "b", "c", "d"];
        let exclude: std::collections::HashSet<String> = ["b", "zz"].iter().map(|s| s.to_string()).collect();
        let (kept, unknown) = apply_exclusions(keys.iter().enumerate().map(|(i, k)| (i as u32, *k)), &exclude);
        assert_eq!((kept, unknown), (vec![0, 2, 3], 1));

        let rows = (0..30u32).map(|r| (r, Some(i64::from(r % 3))));
        let picked = few_shot(rows.clone(), 4, 1, |c| c.to_string()).expect("few-shot");
        assert_eq!(picked.len(), 12);
        for class in 0..3 {
            assert_eq!(picked.iter().filter(|&&r| r % 3 == class).count(), 4);
        }
        assert_eq!(picked, few_shot(rows.clone(), 4, 1, |c| c.to_string()).expect("again"));
        assert_ne!(picked, few_shot(rows.clone(), 4, 2, |c| c.to_string()).expect("other seed"));
        let error = few_shot(rows, 11, 1, |c| format!("n{c}")).expect_err("too few").to_string();
        assert!(error.contains("n0") && error.contains("10 rows"), "{error}");
    }
}
