//! Loader batches → device tensors, and the losses BiT trains with.
//!
//! On CPU the loader delivers float32 NCHW in [-1, 1] (normalised by its worker threads); on
//! CUDA it delivers uint8 NHWC, copied through a pinned host buffer with a non-blocking copy
//! and normalised on the device (x/127.5 − 1), a quarter of the bytes over PCIe. MixUp mixes
//! the images on the device and the loss as λ·CE(y) + (1−λ)·CE(y[perm]) (BiT's PyTorch form).

use bitkit_loader::{Batch, Images};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

/// What the head is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Softmax cross-entropy on the primary label (transfer).
    Softmax,
    /// Sigmoid cross-entropy on multi-hot labels (upstream, BIT_SPEC §6): summed over classes,
    /// averaged over the batch.
    Sigmoid,
}

/// Numeric precision of the forward/backward pass; parameters stay float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    /// bfloat16 activations and convolutions, float32 weights, statistics and loss.
    Bf16,
}

/// Moves batches to the device. Keeps two pinned host buffers for CUDA: a non-blocking copy
/// from one may still be in flight while the next batch fills the other.
pub struct DeviceFeeder {
    pub device: Device,
    pub channels_last: bool,
    pub precision: Precision,
    pinned: [Option<Tensor>; 2],
    turn: usize,
}

impl DeviceFeeder {
    pub fn new(device: Device, channels_last: bool, precision: Precision) -> DeviceFeeder {
        DeviceFeeder { device, channels_last, precision, pinned: [None, None], turn: 0 }
    }

    /// The batch's images as NCHW float (or bf16) on the device, MixUp applied.
    pub fn images(&mut self, batch: &Batch, crop: i64) -> Tensor {
        let n = batch.len() as i64;
        let x = match &batch.images {
            Images::F32(v) => {
                Tensor::from_slice(&v[..(n * 3 * crop * crop) as usize]).view([n, 3, crop, crop]).to_device(self.device)
            }
            Images::U8(v) => {
                let host = Tensor::from_slice(&v[..(n * crop * crop * 3) as usize]).view([n, crop, crop, 3]);
                let on_device = if self.device.is_cuda() {
                    let pinned = self.pinned_buffer(n, crop);
                    let mut slot = pinned.narrow(0, 0, n);
                    slot.copy_(&host);
                    slot.to_device_(self.device, Kind::Uint8, true, false)
                } else {
                    host
                };
                // NHWC bytes viewed as NCHW: already channels-last in memory.
                on_device.permute([0i64, 3, 1, 2].as_slice()).to_kind(Kind::Float) / 127.5 - 1.0
            }
        };
        let x = match &batch.mixup {
            Some(m) if m.lambda != 1.0 => {
                let partner = self.index(&m.partner);
                let lambda = f64::from(m.lambda);
                &x * lambda + x.index_select(0, &partner) * (1.0 - lambda)
            }
            _ => x,
        };
        let x = if self.channels_last { to_channels_last(&x) } else { x };
        match self.precision {
            Precision::F32 => x,
            Precision::Bf16 => x.to_kind(Kind::BFloat16),
        }
    }

    /// The next of the two pinned buffers, (re)allocated when too small for this batch.
    fn pinned_buffer(&mut self, n: i64, crop: i64) -> Tensor {
        self.turn = (self.turn + 1) % 2;
        let want = [n, crop, crop, 3];
        let slot = &mut self.pinned[self.turn];
        let fits = slot.as_ref().is_some_and(|t| t.size()[0] >= n && t.size()[1..] == want[1..]);
        if !fits {
            *slot = Some(Tensor::empty(want, (Kind::Uint8, Device::Cpu)).pin_memory(self.device));
        }
        slot.as_ref().map_or_else(|| Tensor::empty(want, (Kind::Uint8, Device::Cpu)), Tensor::shallow_clone)
    }

    /// Primary labels on the device.
    pub fn labels(&self, batch: &Batch) -> Tensor {
        Tensor::from_slice(&batch.labels).to_device(self.device)
    }

    /// Multi-hot targets [N, classes] on the device.
    pub fn multi_hot(&self, batch: &Batch, classes: i64) -> Tensor {
        Tensor::from_slice(&batch.multi_hot(classes as usize))
            .view([batch.len() as i64, classes])
            .to_device(self.device)
    }

    pub fn index(&self, idx: &[u32]) -> Tensor {
        let v: Vec<i64> = idx.iter().map(|&i| i64::from(i)).collect();
        Tensor::from_slice(&v).to_device(self.device)
    }
}

/// The same values, NHWC strides (what cuDNN's fastest kernels want).
pub fn to_channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 {
        return x.shallow_clone();
    }
    x.permute([0i64, 2, 3, 1].as_slice()).contiguous().permute([0i64, 3, 1, 2].as_slice())
}

/// Mean softmax cross-entropy of `logits` [N, C] against class ids [N].
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
}

/// The training loss of one micro-batch, MixUp included.
pub fn batch_loss(logits: &Tensor, batch: &Batch, kind: LossKind, feeder: &DeviceFeeder) -> Tensor {
    let classes = logits.size()[1];
    match kind {
        LossKind::Softmax => {
            let y = feeder.labels(batch);
            match &batch.mixup {
                Some(m) if m.lambda != 1.0 => {
                    let partner = feeder.index(&m.partner);
                    let lambda = f64::from(m.lambda);
                    cross_entropy(logits, &y) * lambda
                        + cross_entropy(logits, &y.index_select(0, &partner)) * (1.0 - lambda)
                }
                _ => cross_entropy(logits, &y),
            }
        }
        LossKind::Sigmoid => {
            let mut t = feeder.multi_hot(batch, classes);
            if let Some(m) = batch.mixup.as_ref().filter(|m| m.lambda != 1.0) {
                let partner = feeder.index(&m.partner);
                let lambda = f64::from(m.lambda);
                t = &t * lambda + t.index_select(0, &partner) * (1.0 - lambda);
            }
            sigmoid_cross_entropy(logits, &t)
        }
    }
}

/// Sigmoid cross-entropy summed over classes, averaged over the batch.
pub fn sigmoid_cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    let per =
        logits.to_kind(Kind::Float).binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::None);
    per.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).mean(Kind::Float)
}
