//! What an optimizer update saw, hashed four ways, so `bitkit audit diff` can name the first
//! cause where two runs part: the *set* of samples (different data), their *order*, their
//! *augmentation* (crop boxes, flips, MixUp) and the full loader fingerprints (pixels too).

use bitkit_loader::Batch;

#[derive(Default)]
pub struct UpdateDigest {
    keys: Vec<String>,
    order: blake3::Hasher,
    augment: blake3::Hasher,
    data: blake3::Hasher,
}

/// The four hex digests of one update (`metrics.jsonl` fields).
#[derive(Debug, Clone)]
pub struct Digests {
    /// Full loader batch fingerprints (keys, labels, augmentation, MixUp, pixels).
    pub data: String,
    /// The sorted keys: which samples, whatever the order.
    pub keys: String,
    /// The keys in order.
    pub order: String,
    /// Crop boxes, flips and MixUp draws in order.
    pub augment: String,
}

impl UpdateDigest {
    pub fn add(&mut self, batch: &Batch) {
        self.data.update(batch.fingerprint().as_bytes());
        for (key, plan) in batch.keys.iter().zip(&batch.plans) {
            self.keys.push(key.clone());
            self.order.update(&(key.len() as u64).to_le_bytes());
            self.order.update(key.as_bytes());
            for v in [plan.crop.left, plan.crop.top, plan.crop.width, plan.crop.height] {
                self.augment.update(&v.to_bits().to_le_bytes());
            }
            self.augment.update(&[u8::from(plan.flip)]);
        }
        if let Some(m) = &batch.mixup {
            self.augment.update(&m.lambda.to_bits().to_le_bytes());
            for p in &m.partner {
                self.augment.update(&p.to_le_bytes());
            }
        }
    }

    pub fn finish(mut self) -> Digests {
        self.keys.sort();
        let mut keys = blake3::Hasher::new();
        for k in &self.keys {
            keys.update(&(k.len() as u64).to_le_bytes());
            keys.update(k.as_bytes());
        }
        Digests {
            data: self.data.finalize().to_hex().to_string(),
            keys: keys.finalize().to_hex().to_string(),
            order: self.order.finalize().to_hex().to_string(),
            augment: self.augment.finalize().to_hex().to_string(),
        }
    }
}
