//! From the command line's INPUTs to an ordered list of shards, a worker's share of them, the
//! class list, and an open reader per shard.
//!
//! Each INPUT is a shard file, a directory of shards (taken in sorted order) or a glob. An
//! outer ImageNet tar (a tar of per-synset tars) is indexed by a header skim — 512 bytes read
//! per member, its data skipped — and each inner tar becomes a shard streamed from its offset,
//! so shards can be split among workers and resumed one by one. `source` names are relative to
//! the ingest root (the common parent of the inputs): no absolute path reaches the dataset.

use crate::cifar::{self, CifarVariant};
use crate::classes::ClassList;
use crate::compression::{open_stream, sniff_compression, Compression};
use crate::formats::Format;
use crate::source::MappedRegion;
use crate::tar::{list_members, TarMember};
use crate::tfrecord::TfRecordReader;
use crate::{Error, ReaderConfig, RecordError, RejectKind, Result, ShardReader};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One unit of reading, resuming and worker splitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    /// Name relative to the ingest root; the `source` column.
    pub source: String,
    /// The file holding the shard.
    pub path: PathBuf,
    /// For an inner tar of an outer ImageNet tar: where its bytes are.
    pub member: Option<TarMember>,
    /// Shard size in bytes (file size, or member size).
    pub bytes: u64,
}

impl ShardSpec {
    /// The shard's own name without directories: a folder's class, the prefix of TFRecord keys
    /// (`train.tfrecord-00000-of-01024`).
    pub fn file_name(&self) -> &str {
        self.source.rsplit('/').next().unwrap_or(&self.source)
    }

    /// [`ShardSpec::file_name`] without the last extension: the WordNet id of a per-synset tar,
    /// the key prefix of tar / WebDataset / CIFAR records.
    pub fn stem(&self) -> String {
        let name = self.file_name();
        let name = name.strip_suffix(".gz").unwrap_or(name);
        match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => name.to_string(),
        }
    }
}

/// `--worker-index I --num-workers N`: worker I takes the I-th of N contiguous blocks of
/// shards, so concatenating the workers' outputs in index order gives the single-run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerSplit {
    pub index: usize,
    pub count: usize,
}

impl WorkerSplit {
    pub fn range(&self, shards: usize) -> std::ops::Range<usize> {
        (shards * self.index / self.count)..(shards * (self.index + 1) / self.count)
    }
}

/// The shards of all inputs in order, and the root their `source` names are relative to.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub root: PathBuf,
    pub shards: Vec<ShardSpec>,
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Does a file in a directory input look like a shard of `format`?
fn is_shard_file(format: Format, path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') {
        return false;
    }
    match format {
        Format::ImagenetTar | Format::Tar | Format::Webdataset => {
            name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")
        }
        // TFDS shards are `name-split.tfrecord-00000-of-01024`; the Inception converter's are
        // `train-00000-of-01024`. Side files (dataset_info.json, *.labels.txt) are skipped.
        Format::Tfrecord => name.contains(".tfrecord") || name.contains("-of-") || name.ends_with(".tfrec"),
        Format::Cifar => name.ends_with(".bin"),
        Format::Folder => false,
    }
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

/// Expands INPUTs (files, directories, globs) into shard files, in order.
pub fn expand_inputs(format: Format, inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if has_glob_chars(input) {
            let pattern =
                glob::glob(input).map_err(|e| Error::BadInput { input: input.clone(), reason: e.to_string() })?;
            let mut matched: Vec<PathBuf> =
                pattern.filter_map(|p| p.ok()).filter(|p| p.is_file() || format == Format::Folder).collect();
            matched.sort();
            if matched.is_empty() {
                return Err(Error::BadInput { input: input.clone(), reason: "the glob matches no file".into() });
            }
            files.extend(matched);
            continue;
        }
        let path = PathBuf::from(input);
        let meta = std::fs::metadata(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
        if format == Format::Folder {
            if !meta.is_dir() {
                return Err(Error::BadInput {
                    input: input.clone(),
                    reason: "--format folder takes the root directory of an ImageFolder tree".into(),
                });
            }
            files.push(path);
        } else if meta.is_dir() {
            let found: Vec<PathBuf> =
                sorted_dir(&path)?.into_iter().filter(|p| p.is_file() && is_shard_file(format, p)).collect();
            if found.is_empty() {
                return Err(Error::BadInput {
                    input: input.clone(),
                    reason: format!("no {} shard files in this directory", format.as_str()),
                });
            }
            files.extend(found);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// The deepest directory containing every input (each input's parent, or itself for a dir).
fn common_root(paths: &[PathBuf], format: Format) -> PathBuf {
    let dirs: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            if format == Format::Folder {
                p
            } else {
                p.parent().map(Path::to_path_buf).unwrap_or_default()
            }
        })
        .collect();
    let Some(first) = dirs.first() else { return PathBuf::new() };
    let mut root = first.clone();
    for dir in &dirs[1..] {
        while !dir.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }
    root
}

fn relative(path: &Path, root: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let rel = abs.strip_prefix(root).unwrap_or(&abs);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Per-synset tars are named by their WordNet id (`n01440764.tar`).
fn is_wnid_named(path: &Path) -> bool {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem.len() == 9 && stem.starts_with('n') && stem[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The inner tars of an outer ImageNet tar (a tar of per-synset tars), from a header skim;
/// `None` when `path` is a per-synset tar itself (WordNet-id name, or a first member that is
/// not a `.tar`) or cannot be listed (its reader then reports it as a reject).
fn outer_imagenet_members(path: &Path) -> Option<Vec<TarMember>> {
    if is_wnid_named(path) {
        return None;
    }
    let members = list_members(path).ok()?;
    members.first().is_some_and(|m| m.name.ends_with(".tar")).then_some(members)
}

/// Lists the shards of the inputs.
pub fn plan_shards(format: Format, inputs: &[String]) -> Result<ShardPlan> {
    if inputs.is_empty() {
        return Err(Error::Config("no INPUT given".into()));
    }
    let files = expand_inputs(format, inputs)?;
    let root = common_root(&files, format);
    let mut shards = Vec::new();
    for file in &files {
        if format == Format::Folder {
            // Each class directory of the tree is a shard.
            for class_dir in sorted_dir(file)?.into_iter().filter(|p| p.is_dir() && !is_hidden(p)) {
                shards.push(ShardSpec { source: relative(&class_dir, &root), path: class_dir, member: None, bytes: 0 });
            }
            continue;
        }
        let bytes = std::fs::metadata(file).map_err(|source| Error::Read { path: file.clone(), source })?.len();
        let outer_members = if format == Format::ImagenetTar { outer_imagenet_members(file) } else { None };
        if let Some(members) = outer_members {
            let outer = relative(file, &root);
            let mut inner: Vec<TarMember> = members.into_iter().filter(|m| m.name.ends_with(".tar")).collect();
            // Tar order is arbitrary (the ILSVRC val tar is not sorted): sort by name.
            inner.sort_by(|a, b| a.name.cmp(&b.name));
            for member in inner {
                let name = member.name.rsplit('/').next().unwrap_or(&member.name).to_string();
                shards.push(ShardSpec {
                    source: format!("{outer}/{name}"),
                    path: file.clone(),
                    bytes: member.size,
                    member: Some(member),
                });
            }
        } else {
            shards.push(ShardSpec { source: relative(file, &root), path: file.clone(), member: None, bytes });
        }
    }
    let mut seen = std::collections::HashSet::new();
    for shard in &shards {
        if !seen.insert(shard.source.as_str()) {
            return Err(Error::BadInput {
                input: shard.source.clone(),
                reason: "the same shard is named twice".into(),
            });
        }
    }
    Ok(ShardPlan { root, shards })
}

/// The class list of a run: `--classes FILE`, else derived from all shards (not only this
/// worker's, so every worker assigns the same ids), else none (integer labels without names).
pub fn derive_classes(
    format: Format,
    plan: &ShardPlan,
    classes_file: Option<&Path>,
    label_key: &str,
) -> Result<Option<ClassList>> {
    if let Some(path) = classes_file {
        return ClassList::read_file(path).map(Some);
    }
    match format {
        Format::ImagenetTar | Format::Folder => {
            Ok(Some(ClassList::from_unsorted(plan.shards.iter().map(|shard| match format {
                Format::Folder => shard.file_name().to_string(),
                _ => shard.stem(),
            }))))
        }
        Format::Tar => {
            let mut names = Vec::new();
            for shard in &plan.shards {
                // A shard that cannot be listed is not fatal here: its reader reports it as a
                // reject later, and the other shards go on.
                let members = match list_members(&shard.path) {
                    Ok(members) => members,
                    Err(e) => {
                        tracing::warn!("{}: cannot list members for the class list: {e}", shard.path.display());
                        continue;
                    }
                };
                names.extend(members.iter().filter_map(|m| {
                    let parent = m.name.trim_end_matches('/').rsplit_once('/')?.0;
                    Some(parent.rsplit('/').next().unwrap_or(parent).to_string())
                }));
            }
            Ok((!names.is_empty()).then(|| ClassList::from_unsorted(names)))
        }
        Format::Cifar => {
            let Some(first) = plan.shards.first() else { return Ok(None) };
            let variant = cifar_variant(first)?;
            let dir = first.path.parent().unwrap_or(Path::new("."));
            ClassList::try_from_names(cifar::class_names(variant, dir))
                .map(Some)
                .map_err(|reason| Error::BadInput { input: first.source.clone(), reason })
        }
        Format::Tfrecord => {
            // TFDS writes `<feature>.labels.txt` beside the shards, one class name per line.
            let Some(first) = plan.shards.first() else { return Ok(None) };
            let dir = first.path.parent().unwrap_or(Path::new("."));
            let feature = label_key.rsplit('/').next().unwrap_or(label_key);
            for candidate in [format!("{}.labels.txt", label_key.replace('/', "_")), format!("{feature}.labels.txt")] {
                let path = dir.join(candidate);
                if path.is_file() {
                    return ClassList::read_file(&path).map(Some);
                }
            }
            Ok(None)
        }
        Format::Webdataset => Ok(None),
    }
}

fn cifar_variant(shard: &ShardSpec) -> Result<CifarVariant> {
    let name = shard.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    cifar::detect_variant(name, shard.bytes).ok_or_else(|| Error::BadInput {
        input: shard.source.clone(),
        reason: format!(
            "cannot tell CIFAR-10 (3073-byte records) from CIFAR-100 (3074) for a file of {} bytes",
            shard.bytes
        ),
    })
}

/// Opens the reader of one shard. Failure to open is a shard-level reject, not a fatal error:
/// the other shards go on.
pub fn open_shard(
    format: Format,
    shard: &ShardSpec,
    root: &Path,
    config: &ReaderConfig,
) -> std::result::Result<Box<dyn ShardReader>, RecordError> {
    let unreadable = |e: std::io::Error| {
        RecordError::new(RejectKind::ShardUnreadable, format!("cannot read {}: {e}", shard.path.display()))
    };
    if format == Format::Folder {
        let _ = std::fs::read_dir(&shard.path).map_err(unreadable)?;
        return Ok(crate::folder::folder_reader(shard.path.clone(), root.to_path_buf(), config));
    }
    if config.mmap {
        if let Some(reader) = open_mapped(format, shard, config).map_err(unreadable)? {
            return Ok(reader);
        }
    }
    let mut file = File::open(&shard.path).map_err(unreadable)?;
    let raw: Box<dyn Read + Send> = match &shard.member {
        Some(member) => {
            file.seek(SeekFrom::Start(member.data_offset)).map_err(unreadable)?;
            Box::new(file.take(member.size))
        }
        None => Box::new(file),
    };
    let (stream, _) = open_stream(raw, format == Format::Tfrecord).map_err(unreadable)?;
    let stem = shard.stem();
    Ok(match format {
        Format::ImagenetTar => crate::tar::imagenet_inner_reader(stream, stem, config),
        Format::Tar => crate::tar::flat_tar_reader(stream, stem, config),
        Format::Webdataset => crate::webdataset::webdataset_reader(stream, stem, config),
        Format::Tfrecord => crate::tfrecord::tfrecord_reader(stream, config),
        Format::Cifar => {
            let variant =
                cifar_variant(shard).map_err(|e| RecordError::new(RejectKind::ShardUnreadable, e.to_string()))?;
            crate::cifar::cifar_reader(stream, stem, variant, config)
        }
        Format::Folder => unreachable!("handled above"),
    })
}

/// The reader of an uncompressed shard of a tar-like or TFRecord format over a memory map of
/// it ([`crate::source`]); `None` for compressed shards, other formats, and files that cannot
/// be mapped (pipes, file systems without mmap), which are streamed instead.
fn open_mapped(
    format: Format,
    shard: &ShardSpec,
    config: &ReaderConfig,
) -> std::io::Result<Option<Box<dyn ShardReader>>> {
    if !matches!(format, Format::ImagenetTar | Format::Tar | Format::Webdataset | Format::Tfrecord) {
        return Ok(None);
    }
    let file = File::open(&shard.path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let (start, len) = shard.member.as_ref().map_or((0, meta.len()), |member| (member.data_offset, member.size));
    let Ok(mut region) = MappedRegion::new(file, start, len) else { return Ok(None) };
    let Ok(head) = region.peek(2) else { return Ok(None) };
    match sniff_compression(&head) {
        Compression::None => {}
        Compression::Zlib if format != Format::Tfrecord => {}
        Compression::Gzip | Compression::Zlib => return Ok(None),
    }
    let stem = shard.stem();
    Ok(Some(match format {
        Format::ImagenetTar => crate::tar::imagenet_inner_reader_of(region, stem, config),
        Format::Tar => crate::tar::flat_tar_reader_of(region, stem, config),
        Format::Webdataset => crate::webdataset::webdataset_reader_of(region, stem, config),
        _ => Box::new(TfRecordReader::mapped(region, config)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_blocks_are_disjoint_and_cover_everything() {
        for shards in [0, 1, 3, 7, 100] {
            for count in 1..6 {
                let mut covered = Vec::new();
                for index in 0..count {
                    covered.extend(WorkerSplit { index, count }.range(shards));
                }
                assert_eq!(covered, (0..shards).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn stems() {
        let spec = |source: &str| ShardSpec { source: source.into(), path: PathBuf::new(), member: None, bytes: 0 };
        assert_eq!(spec("winter21_whole.tar/n01440764.tar").stem(), "n01440764");
        assert_eq!(spec("shards/shard-000001.tar.gz").stem(), "shard-000001");
        assert_eq!(spec("cifar-10-batches-bin/test_batch.bin").stem(), "test_batch");
    }
}
