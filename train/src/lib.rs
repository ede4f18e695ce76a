//! bitkit-train: BiT ResNet-v2 (GroupNorm + Weight Standardization) in tch, the official
//! BiT .npz weights, the BiT-HyperRule and upstream schedules, and the trainer.
//!
//! - [`variant`]: the model family and its parameter table (names, shapes, counts).
//! - [`model`]: [`ResNetV2`] as BIT_SPEC §3 describes it.
//! - [`npz`]: NumPy .npy/.npz reading and writing (hostile input in).
//! - [`weights`]: BiT .npz ↔ model, safetensors, variant inference, [`Model`].
//! - [`schedule`]: HyperRule regimes and learning-rate schedules.
//! - [`sgd`]: SGD with momentum, PyTorch's form, checkpointable.
//! - [`data`]: loader batches → device tensors, MixUp, losses; [`digest`]: what an update saw.
//! - [`trainer`]: the training loop, resume, signals; [`checkpoint`]: run checkpoints.
//! - [`eval`]: top-1/top-5/loss, per-class accuracy, confusions.
//! - [`metrics`], [`plot`]: `metrics.jsonl` and PNG plots.
//! - [`device`]: `--device auto|cpu|cuda`.

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod digest;
pub mod error;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod npz;
pub mod plot;
pub mod schedule;
pub mod sgd;
pub mod trainer;
pub mod variant;
pub mod weights;

pub use error::TrainError;
pub use model::ResNetV2;
pub use schedule::{LrSchedule, Regime};
pub use tch;
pub use trainer::{Task, TrainArgs, TrainConfig, TrainSummary, Trainer};
pub use variant::Variant;
pub use weights::Model;
