//! Evaluation (`bitkit train eval`, and periodic evals during training): top-1, top-5, mean
//! loss, per-class accuracy and the most frequent confusions, over every image of the test
//! set exactly once (BiT's PyTorch evaluation keeps the short last batch).

use std::sync::Arc;

use bitkit_loader::Loader;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::data::{cross_entropy, sigmoid_cross_entropy, DeviceFeeder, LossKind};
use crate::error::TrainError;
use crate::model::ResNetV2;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassAccuracy {
    pub class: i64,
    pub name: Option<String>,
    pub images: u64,
    pub correct: u64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Confusion {
    pub true_class: i64,
    pub predicted: i64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalResult {
    pub images: u64,
    /// Fractions in [0, 1]. With multi-label data a prediction counts when it is any of the
    /// image's labels.
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// The most frequent (true, predicted) mistakes, most frequent first (at most 20).
    pub confusions: Vec<Confusion>,
}

/// Runs the model over every batch of `loader` (a `test`-mode loader) once.
pub fn evaluate(
    net: &ResNetV2,
    loader: &Arc<Loader>,
    feeder: &mut DeviceFeeder,
    loss_kind: LossKind,
    class_names: Option<&[String]>,
) -> Result<EvalResult, TrainError> {
    let classes = net.classes;
    let crop = i64::from(loader.config().transform.crop);
    let steps = loader.steps_per_epoch() as u64;
    let mut images = 0u64;
    let (mut top1, mut top5, mut loss_sum) = (0u64, 0u64, 0f64);
    let mut per_class = vec![(0u64, 0u64); classes.max(0) as usize];
    let mut confusion = std::collections::HashMap::<(i64, i64), u64>::new();
    for batch in loader.iter(0, Some(steps)) {
        let batch = batch?;
        let n = batch.len();
        let (logits, loss) = tch::no_grad(|| {
            let x = feeder.images(&batch, crop);
            let logits = net.forward(&x).to_kind(Kind::Float);
            let loss = match loss_kind {
                LossKind::Softmax => cross_entropy(&logits, &feeder.labels(&batch)),
                LossKind::Sigmoid => sigmoid_cross_entropy(&logits, &feeder.multi_hot(&batch, classes)),
            };
            (logits, loss)
        });
        loss_sum += loss.double_value(&[]) * n as f64;
        let k = classes.min(5);
        let (_, top) = logits.topk(k, 1, true, true);
        let top: Vec<i64> = Vec::<i64>::try_from(top.to_device(tch::Device::Cpu).flatten(0, -1))?;
        for i in 0..n {
            let row = &top[i * k as usize..(i + 1) * k as usize];
            let label = batch.labels[i];
            let truth: &[i64] = if batch.label_sets[i].is_empty() {
                std::slice::from_ref(&batch.labels[i])
            } else {
                &batch.label_sets[i]
            };
            let hit1 = truth.contains(&row[0]);
            top1 += u64::from(hit1);
            top5 += u64::from(row.iter().any(|p| truth.contains(p)));
            if let Some(c) = usize::try_from(label).ok().filter(|&c| c < per_class.len()) {
                per_class[c].0 += 1;
                per_class[c].1 += u64::from(hit1);
            }
            if !hit1 {
                *confusion.entry((label, row[0])).or_default() += 1;
            }
        }
        images += n as u64;
        loader.recycle(batch);
    }
    let frac = |a: u64| if images == 0 { 0.0 } else { a as f64 / images as f64 };
    let mut confusions: Vec<Confusion> =
        confusion.into_iter().map(|((t, p), count)| Confusion { true_class: t, predicted: p, count }).collect();
    confusions.sort_by(|a, b| {
        b.count.cmp(&a.count).then(a.true_class.cmp(&b.true_class)).then(a.predicted.cmp(&b.predicted))
    });
    confusions.truncate(20);
    Ok(EvalResult {
        images,
        top1: frac(top1),
        top5: frac(top5),
        loss: if images == 0 { 0.0 } else { loss_sum / images as f64 },
        per_class: per_class
            .iter()
            .enumerate()
            .map(|(c, &(n, ok))| ClassAccuracy {
                class: c as i64,
                name: class_names.and_then(|names| names.get(c).cloned()),
                images: n,
                correct: ok,
                accuracy: if n == 0 { 0.0 } else { ok as f64 / n as f64 },
            })
            .collect(),
        confusions,
    })
}

/// Logits of a float32 NCHW batch (`bitkit model forward`).
pub fn forward_batch(net: &ResNetV2, x: &Tensor) -> Tensor {
    tch::no_grad(|| net.forward(x))
}
