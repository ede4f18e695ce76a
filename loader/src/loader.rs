//! The loader: dataset index + sampler + per-thread decode/render + prefetch.
//!
//! One batch is built by the loader's rayon pool, one sample per task, each writing its own
//! slot of the batch buffer: the bytes of a batch do not depend on which thread did what.
//! A producer thread builds batches ahead of the consumer into a bounded queue
//! ([`LoaderConfig::prefetch`] batches), so decoding overlaps training; batch buffers come
//! back through [`Loader::recycle`] so steady state allocates nothing per batch.
//!
//! Per sample: `pread` of exactly its encoded bytes ([`DatasetIndex`] knows where they lie),
//! a header probe, the crop plan from the sample's own random stream, a DCT-scaled decode of
//! just the region the crop needs (libjpeg-turbo ROI decode), then an antialiased crop-resize
//! into the slot.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bitkit_ingest::dataset::{DatasetIndex, PartFiles};
use bitkit_ingest::image::{probe_image, Decoder, RegionRequest, RgbImage};
use rayon::prelude::*;

use crate::batch::{Batch, Images, OutputKind, Replacement};
use crate::geometry::{plan_sample, CropBox, SamplePlan};
use crate::mixup::{mixup_for, MixUpConfig};
use crate::mode::Transform;
use crate::random::{stream, Domain};
use crate::render::{OutSlot, Renderer};
use crate::sampler::{apply_exclusions, few_shot, read_exclude_list, Sampler, SamplerConfig};
use crate::LoaderError;

/// Pillow's decompression-bomb limit, the same default as ingest.
pub use bitkit_ingest::pipeline::DEFAULT_MAX_PIXELS;

/// Everything that decides the batches (and, with the dataset, their bytes).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoaderConfig {
    pub transform: Transform,
    pub sampler: SamplerConfig,
    pub output: OutputKind,
    pub mixup: MixUpConfig,
    /// Keys to leave out (dedup's `exclude.txt`).
    pub exclude: Option<PathBuf>,
    /// BiT few-shot: k rows per class.
    pub examples_per_class: Option<usize>,
    pub fewshot_seed: u64,
    /// Images above this many pixels are bad samples (decompression bombs).
    pub max_pixels: u64,
    /// Decode threads (does not change any output byte).
    #[serde(skip)]
    pub threads: usize,
    /// Batches built ahead of the consumer.
    #[serde(skip)]
    pub prefetch: usize,
    /// Benchmark ceiling: read and decode exactly as for training, skip resize and output.
    #[serde(skip)]
    pub decode_only: bool,
}

impl LoaderConfig {
    pub fn new(transform: Transform, batch_size: usize) -> LoaderConfig {
        LoaderConfig {
            transform,
            sampler: SamplerConfig { seed: 0, batch_size, rank: 0, world_size: 1, drop_last: false },
            output: OutputKind::F32,
            mixup: MixUpConfig { alpha: 0.0, batches_per_update: 1 },
            exclude: None,
            examples_per_class: None,
            fewshot_seed: 0,
            max_pixels: DEFAULT_MAX_PIXELS,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: 2,
            decode_only: false,
        }
    }
}

/// What opening found, for logs and `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoaderStats {
    pub rows: usize,
    pub excluded: usize,
    /// Keys of the exclusion list that are not in the dataset.
    pub exclude_unknown: usize,
    pub eligible: usize,
    pub rows_per_rank: usize,
    pub steps_per_epoch: usize,
}

/// A dataset opened for training input.
pub struct Loader {
    index: DatasetIndex,
    parts: PartFiles,
    sampler: Sampler,
    config: LoaderConfig,
    pool: rayon::ThreadPool,
    stats: LoaderStats,
    /// The last epoch order built: consecutive steps share it.
    order_cache: Mutex<Option<(u64, Arc<Vec<u32>>)>>,
    buffers: Mutex<Vec<Images>>,
}

struct Scratch {
    decoder: Decoder,
    renderer: Renderer,
    bytes: Vec<u8>,
    image: RgbImage,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

impl Loader {
    pub fn open(dataset: &Path, config: LoaderConfig) -> Result<Loader, LoaderError> {
        Loader::from_index(DatasetIndex::open(dataset)?, config)
    }

    /// A loader over an index already opened (to choose the mode from its image sizes first).
    pub fn from_index(index: DatasetIndex, config: LoaderConfig) -> Result<Loader, LoaderError> {
        config.mixup.validate()?;
        let parts = index.open_parts()?;
        let rows = u32::try_from(index.len())
            .map_err(|_| LoaderError::Config(format!("{} rows: more than 2^32 per dataset", index.len())))?;
        let exclude = match &config.exclude {
            Some(path) => read_exclude_list(path)?,
            None => HashSet::new(),
        };
        let (mut eligible, exclude_unknown) = apply_exclusions((0..rows).map(|r| (r, index.key(r as usize))), &exclude);
        let excluded = rows as usize - eligible.len();
        // Rows without an image can never be loaded: not eligible at all.
        eligible.retain(|&r| index.location(r as usize).is_some());
        if let Some(k) = config.examples_per_class {
            let names = index.classes().map(<[String]>::to_vec);
            let name = |c: i64| {
                names.as_ref().and_then(|n| usize::try_from(c).ok().and_then(|c| n.get(c).cloned())).unwrap_or_default()
            };
            eligible = few_shot(eligible.iter().map(|&r| (r, index.label(r as usize))), k, config.fewshot_seed, name)?;
        }
        let sampler = Sampler::new(eligible, config.sampler)?;
        let stats = LoaderStats {
            rows: rows as usize,
            excluded,
            exclude_unknown,
            eligible: sampler.eligible().len(),
            rows_per_rank: sampler.rows_per_rank(),
            steps_per_epoch: sampler.steps_per_epoch(),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .thread_name(|i| format!("bitkit-loader-{i}"))
            .build()
            .map_err(|e| LoaderError::Config(format!("starting {} loader threads: {e}", config.threads)))?;
        Ok(Loader {
            index,
            parts,
            sampler,
            config,
            pool,
            stats,
            order_cache: Mutex::new(None),
            buffers: Mutex::new(Vec::new()),
        })
    }

    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    pub fn index(&self) -> &DatasetIndex {
        &self.index
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.sampler.steps_per_epoch()
    }

    /// Class count: the manifest's class list, else one past the largest label.
    pub fn num_classes(&self) -> usize {
        match self.index.classes() {
            Some(c) => c.len(),
            None => (0..self.index.len())
                .flat_map(|r| self.index.labels(r).iter().copied().chain(self.index.label(r)))
                .max()
                .map_or(0, |m| usize::try_from(m).map_or(0, |m| m + 1)),
        }
    }

    fn epoch_order(&self, epoch: u64) -> Arc<Vec<u32>> {
        let mut cache = self.order_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, order)) = cache.as_ref() {
            if *cached == epoch {
                return order.clone();
            }
        }
        let order = Arc::new(self.sampler.epoch_order(epoch));
        *cache = Some((epoch, order.clone()));
        order
    }

    /// Gives a consumed batch's pixel buffer back for reuse.
    pub fn recycle(&self, batch: Batch) {
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if buffers.len() < self.config.prefetch + 2 {
            buffers.push(batch.images);
        }
    }

    fn buffer(&self, len: usize) -> Images {
        let reused = self.buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match (self.config.output, reused) {
            (OutputKind::U8, Some(Images::U8(mut v))) => {
                v.resize(len, 0);
                Images::U8(v)
            }
            (OutputKind::F32, Some(Images::F32(mut v))) => {
                v.resize(len, 0.0);
                Images::F32(v)
            }
            (OutputKind::U8, _) => {
                tracing::debug!(len, "new u8 batch buffer");
                Images::U8(vec![0; len])
            }
            (OutputKind::F32, _) => {
                tracing::debug!(len, "new f32 batch buffer");
                Images::F32(vec![0.0; len])
            }
        }
    }

    /// Builds batch `step` (any step, in any order: a pure function of the configuration).
    pub fn batch(&self, step: u64) -> Result<Batch, LoaderError> {
        let position = self.sampler.position(step);
        let order = self.epoch_order(position.epoch);
        let slots: Vec<usize> = (position.start..position.end).collect();
        let size = self.config.transform.crop;
        let per_image = size as usize * size as usize * 3;
        let mut images = self.buffer(per_image * slots.len());
        let results: Vec<Result<Loaded, LoaderError>> = self.pool.install(|| match &mut images {
            Images::U8(px) => px
                .par_chunks_mut(per_image.max(1))
                .zip(slots.par_iter())
                .map(|(slot, &pos)| self.load_slot(&order, pos, position.epoch, Some(OutSlot::U8Hwc(slot))))
                .collect(),
            Images::F32(px) => px
                .par_chunks_mut(per_image.max(1))
                .zip(slots.par_iter())
                .map(|(slot, &pos)| self.load_slot(&order, pos, position.epoch, Some(OutSlot::F32Chw(slot))))
                .collect(),
        });
        let mut batch = Batch {
            step,
            epoch: position.epoch,
            size,
            rows: Vec::with_capacity(slots.len()),
            keys: Vec::with_capacity(slots.len()),
            labels: Vec::with_capacity(slots.len()),
            label_sets: Vec::with_capacity(slots.len()),
            plans: Vec::with_capacity(slots.len()),
            images,
            mixup: mixup_for(
                &self.config.mixup,
                self.config.sampler.seed,
                step,
                self.config.sampler.rank,
                slots.len(),
            )?,
            replaced: Vec::new(),
        };
        for (slot, result) in results.into_iter().enumerate() {
            let loaded = result?;
            let row = loaded.row as usize;
            if let Some((key, reason)) = loaded.replaced {
                tracing::warn!(%key, %reason, replaced_by = self.index.key(row), "bad image replaced");
                batch.replaced.push(Replacement { slot, key, reason, replaced_by: self.index.key(row).to_string() });
            }
            batch.rows.push(loaded.row);
            batch.keys.push(self.index.key(row).to_string());
            batch.labels.push(self.index.label(row).unwrap_or(-1));
            batch.label_sets.push(self.index.labels(row).to_vec());
            batch.plans.push(loaded.plan);
        }
        Ok(batch)
    }

    /// Loads the row at `pos` of the epoch order into `out`; on a bad image, the next rows of
    /// the order (wrapping) until one loads.
    fn load_slot(
        &self,
        order: &[u32],
        pos: usize,
        epoch: u64,
        mut out: Option<OutSlot<'_>>,
    ) -> Result<Loaded, LoaderError> {
        let mut first_failure: Option<(String, String)> = None;
        for attempt in 0..order.len() {
            let row = order[(pos + attempt) % order.len()];
            match self.load_row(row, epoch, out.as_mut()) {
                Ok(plan) => return Ok(Loaded { row, plan, replaced: first_failure }),
                Err(reason) => {
                    if first_failure.is_none() {
                        first_failure = Some((self.index.key(row as usize).to_string(), reason));
                    }
                }
            }
        }
        let (key, reason) = first_failure.unwrap_or_default();
        Err(LoaderError::NoValidSample { key, reason })
    }

    /// One row into one slot. Errors are reasons (the caller replaces the sample).
    fn load_row(&self, row: u32, epoch: u64, out: Option<&mut OutSlot<'_>>) -> Result<SamplePlan, String> {
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let scratch = match &mut *guard {
                Some(s) => s,
                empty => empty.insert(Scratch {
                    decoder: Decoder::new().map_err(|e| e.to_string())?,
                    renderer: Renderer::new(),
                    bytes: Vec::new(),
                    image: RgbImage::default(),
                }),
            };
            self.index.read_image(&self.parts, row as usize, &mut scratch.bytes).map_err(|e| e.to_string())?;
            let info = probe_image(&scratch.bytes, self.config.max_pixels).map_err(|e| e.to_string())?;
            let (width, height) = info.oriented_size();
            let mut rng = stream(
                Domain::Sample,
                self.config.sampler.seed,
                &[epoch, u64::from(row), self.config.sampler.rank as u64],
            );
            let plan = plan_sample(&self.config.transform, width, height, &mut rng);
            let request = RegionRequest {
                left: plan.crop.left,
                top: plan.crop.top,
                width: plan.crop.width,
                height: plan.crop.height,
                min_width: plan.size,
                min_height: plan.size,
            };
            let region = scratch
                .decoder
                .decode_probed_region_into(&scratch.bytes, info, self.config.max_pixels, &request, &mut scratch.image)
                .map_err(|e| e.to_string())?;
            if self.config.decode_only {
                return Ok(plan);
            }
            let crop = CropBox {
                left: plan.crop.left * region.scale_x - f64::from(region.x0),
                top: plan.crop.top * region.scale_y - f64::from(region.y0),
                width: plan.crop.width * region.scale_x,
                height: plan.crop.height * region.scale_y,
            };
            if let Some(out) = out {
                scratch
                    .renderer
                    .render(&scratch.image, crop, plan.size, plan.flip, out.reborrow())
                    .map_err(|e| e.to_string())?;
            }
            Ok(plan)
        })
    }

    /// Batches `start..start + count` (endless when `count` is `None`), built ahead of the
    /// consumer on a producer thread.
    pub fn iter(self: &Arc<Self>, start: u64, count: Option<u64>) -> BatchIter {
        let (sender, receiver) = crossbeam_channel::bounded(self.config.prefetch.max(1));
        let loader = Arc::clone(self);
        let producer = std::thread::Builder::new().name("bitkit-loader-producer".into()).spawn(move || {
            let end = count.map_or(u64::MAX, |c| start.saturating_add(c));
            for step in start..end {
                let batch = loader.batch(step);
                let failed = batch.is_err();
                if sender.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        BatchIter { receiver, _producer: producer.ok() }
    }
}

struct Loaded {
    row: u32,
    plan: SamplePlan,
    replaced: Option<(String, String)>,
}

/// Prefetched batches in step order.
pub struct BatchIter {
    receiver: crossbeam_channel::Receiver<Result<Batch, LoaderError>>,
    _producer: Option<std::thread::JoinHandle<()>>,
}

impl Iterator for BatchIter {
    type Item = Result<Batch, LoaderError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}
