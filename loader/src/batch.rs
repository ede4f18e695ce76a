//! What the loader hands the trainer: one batch with everything needed to train on it and to
//! prove later what it was.

use crate::geometry::SamplePlan;
use crate::mixup::MixUp;

/// Pixel layout of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// `[B, H, W, 3]` uint8 RGB: 4x fewer bytes to the device, normalised there.
    U8,
    /// `[B, 3, H, W]` float32 RGB in [-1, 1] (`x / 127.5 - 1`), BiT's input.
    F32,
}

impl std::str::FromStr for OutputKind {
    type Err = crate::LoaderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "u8" => Ok(OutputKind::U8),
            "f32" => Ok(OutputKind::F32),
            _ => Err(crate::LoaderError::Config(format!("unknown output {s:?} (u8 or f32)"))),
        }
    }
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::U8 => "u8",
            OutputKind::F32 => "f32",
        }
    }
}

/// The pixels of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Images {
    /// NHWC.
    U8(Vec<u8>),
    /// NCHW.
    F32(Vec<f32>),
}

impl Images {
    pub fn kind(&self) -> OutputKind {
        match self {
            Images::U8(_) => OutputKind::U8,
            Images::F32(_) => OutputKind::F32,
        }
    }
}

/// A sample whose image could not be used, and the one that took its place (the next
/// decodable row of the same epoch order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replacement {
    /// Position in the batch.
    pub slot: usize,
    pub key: String,
    pub reason: String,
    pub replaced_by: String,
}

/// One batch of one rank.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub step: u64,
    pub epoch: u64,
    /// Square side of every image.
    pub size: u32,
    /// Dataset row of each sample (after replacement).
    pub rows: Vec<u32>,
    pub keys: Vec<String>,
    /// Primary class id per sample (-1 when the row has no label).
    pub labels: Vec<i64>,
    /// All class ids per sample (multi-label data).
    pub label_sets: Vec<Vec<i64>>,
    pub plans: Vec<SamplePlan>,
    pub images: Images,
    /// `None` when MixUp is off.
    pub mixup: Option<MixUp>,
    pub replaced: Vec<Replacement>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `[B, classes]` multi-hot targets (1.0 for every listed class id below `classes`).
    pub fn multi_hot(&self, classes: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.len() * classes];
        for (i, labels) in self.label_sets.iter().enumerate() {
            for &label in labels {
                if let Ok(c) = usize::try_from(label) {
                    if c < classes {
                        out[i * classes + c] = 1.0;
                    }
                }
            }
        }
        out
    }

    /// blake3 over the step, every sample's key, labels and augmentation parameters, the
    /// MixUp draw and the pixels: two runs saw the same batch iff the fingerprints agree.
    pub fn fingerprint(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"bitkit-batch/v1");
        h.update(&self.step.to_le_bytes());
        h.update(&self.epoch.to_le_bytes());
        h.update(&self.size.to_le_bytes());
        h.update(&(self.len() as u64).to_le_bytes());
        for i in 0..self.len() {
            let key = self.keys[i].as_bytes();
            h.update(&(key.len() as u64).to_le_bytes());
            h.update(key);
            h.update(&self.labels[i].to_le_bytes());
            h.update(&(self.label_sets[i].len() as u64).to_le_bytes());
            for l in &self.label_sets[i] {
                h.update(&l.to_le_bytes());
            }
            let p = &self.plans[i];
            for v in [p.crop.left, p.crop.top, p.crop.width, p.crop.height] {
                h.update(&v.to_bits().to_le_bytes());
            }
            h.update(&[u8::from(p.flip)]);
        }
        match &self.mixup {
            None => {
                h.update(&[0]);
            }
            Some(m) => {
                h.update(&[1]);
                h.update(&m.lambda.to_bits().to_le_bytes());
                for p in &m.partner {
                    h.update(&p.to_le_bytes());
                }
            }
        }
        match &self.images {
            Images::U8(px) => {
                h.update(b"u8");
                h.update(px);
            }
            Images::F32(px) => {
                h.update(b"f32");
                for chunk in px.chunks(4096) {
                    let mut bytes = [0u8; 4096 * 4];
                    for (dst, v) in bytes.chunks_exact_mut(4).zip(chunk) {
                        dst.copy_from_slice(&v.to_le_bytes());
                    }
                    h.update(&bytes[..chunk.len() * 4]);
                }
            }
        }
        h.finalize()
    }
}
