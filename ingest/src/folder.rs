//! ImageFolder reader (OWNER: helper C). Stub: signatures only.
use crate::{ReaderConfig, ShardReader};
use std::path::PathBuf;

/// Reader of one class directory of an ImageFolder tree (`ROOT/<class>/...`).
pub fn folder_reader(_class_dir: PathBuf, _root: PathBuf, _config: &ReaderConfig) -> Box<dyn ShardReader> {
    crate::tar::unimplemented_reader()
}
