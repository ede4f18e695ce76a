//! WebDataset tar reader (OWNER: helper C). Stub: signatures only.
use crate::{ReaderConfig, ShardReader};
use std::io::Read;

pub fn webdataset_reader<R: Read + Send + 'static>(_stream: R, _shard_stem: String, _config: &ReaderConfig) -> Box<dyn ShardReader> {
    crate::tar::unimplemented_reader()
}
