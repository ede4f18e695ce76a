//! Tar shard readers (OWNER: helper C). Stub: signatures only.
use crate::{ReaderConfig, ShardReader};
use std::io::Read;
use std::path::Path;

/// A regular-file member of a tar, found by a header skim (seeking over data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    /// Full member name (GNU long names and pax paths applied).
    pub name: String,
    /// Offset of the member's first data byte in the tar file.
    pub data_offset: u64,
    pub size: u64,
}

/// Lists regular-file members of a seekable tar file, reading only headers.
pub fn list_members(_path: &Path) -> std::io::Result<Vec<TarMember>> {
    Ok(Vec::new())
}

/// Reader of one per-synset ImageNet tar (`nXXXXXXXX.tar`, flat `nXXXXXXXX_N.JPEG` members).
pub fn imagenet_inner_reader<R: Read + Send + 'static>(_stream: R, _wnid: String, _config: &ReaderConfig) -> Box<dyn ShardReader> {
    unimplemented_reader()
}

/// Reader of a flat tar whose members' parent directory names the class.
pub fn flat_tar_reader<R: Read + Send + 'static>(_stream: R, _shard_stem: String, _config: &ReaderConfig) -> Box<dyn ShardReader> {
    unimplemented_reader()
}

pub(crate) fn unimplemented_reader() -> Box<dyn ShardReader> {
    struct Empty;
    impl ShardReader for Empty {
        fn next_record(&mut self) -> Option<Result<crate::RawRecord, crate::RecordError>> {
            None
        }
        fn bytes_read(&self) -> u64 {
            0
        }
    }
    Box::new(Empty)
}
