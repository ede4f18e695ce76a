//! Shared helpers of the trainer's tests: generated, learnable datasets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bitkit_fixtures::cifar::{write_cifar, CifarVariant};
use bitkit_ingest::formats::Format;
use bitkit_ingest::pipeline::{ingest, IngestConfig, Progress};

/// A CIFAR-10-format dataset of `n` generated 32x32 pictures (class = index mod 10, each
/// class a colour and pattern a small CNN can learn), ingested into `dir/name`.
pub fn cifar_dataset(dir: &Path, name: &str, n: usize, seed: u64) -> PathBuf {
    let raw = dir.join(format!("{name}-raw"));
    std::fs::create_dir_all(&raw).expect("mkdir");
    let file = raw.join(if name.contains("test") { "test_batch.bin" } else { "data_batch_1.bin" });
    write_cifar(&file, CifarVariant::Cifar10, n, seed).expect("write cifar");
    let out = dir.join(name);
    let mut config = IngestConfig::new(Format::Cifar, vec![file.display().to_string()], out.clone());
    config.workers = 2;
    ingest(&config, &Progress::default()).expect("ingest");
    out
}
