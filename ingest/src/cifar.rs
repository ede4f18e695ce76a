//! CIFAR binary reader (OWNER: helper C). Stub: signatures only.
use crate::{ReaderConfig, ShardReader};
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CifarVariant {
    Cifar10,
    Cifar100,
}

pub fn detect_variant(_file_name: &str, _size: u64) -> Option<CifarVariant> {
    None
}

pub fn class_names(_variant: CifarVariant, _dir: &Path) -> Vec<String> {
    Vec::new()
}

pub fn cifar_reader<R: Read + Send + 'static>(_stream: R, _shard_stem: String, _variant: CifarVariant, _config: &ReaderConfig) -> Box<dyn ShardReader> {
    crate::tar::unimplemented_reader()
}
