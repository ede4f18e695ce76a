//! bitkit-loader: a dataset written by `bitkit ingest` in, BiT training batches out.
//!
//! - [`mode`]: BiT's four pipelines ([`Mode`], [`Transform`]) and the HyperRule resolution.
//! - [`sampler`]: the seeded per-epoch permutation, rank sharding, exclusion lists, few-shot
//!   subsets, step -> (epoch, batch) for exact resume.
//! - [`random`]: the named random streams every decision draws from (pure functions of the
//!   seed and the decision's coordinates).
//! - [`geometry`]: per-sample crop boxes and flips ([`SamplePlan`]).
//! - [`render`]: decoded pixels + plan -> one output slot (antialiased crop-resize, flip,
//!   uint8 NHWC or float32 NCHW in [-1, 1]).
//! - [`mixup`]: λ per optimizer update, partner permutation per batch.
//! - [`batch`]: [`Batch`] and its fingerprint.
//! - [`loader`]: [`Loader`], which ties them together with a thread pool and prefetch.
//! - [`grid`]: the PNG contact sheet of `bitkit loader inspect`.
//! - [`font`]: the built-in 5x7 bitmap font of the contact sheet and the training charts.

pub mod batch;
pub mod error;
pub mod font;
pub mod geometry;
pub mod grid;
pub mod loader;
pub mod mixup;
pub mod mode;
pub mod random;
pub mod render;
pub mod sampler;

pub use batch::{Batch, Images, OutputKind, Replacement};
pub use error::LoaderError;
pub use geometry::{plan_sample, CropBox, SamplePlan};
pub use loader::{BatchIter, Loader, LoaderConfig, LoaderStats, DEFAULT_MAX_PIXELS};
pub use mixup::{MixUp, MixUpConfig};
pub use mode::{hyperrule_mode, median_area, Mode, Transform};
pub use render::{OutSlot, Renderer};
pub use sampler::{Sampler, SamplerConfig};
