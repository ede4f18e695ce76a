//! The downstream test sets `bitkit dedup --against` checks, read from their official downloads
//! (FORMATS.md §2, §5), archived or extracted, under the data directory (`--data-dir`, else
//! `BITKIT_DATA`), or any dataset written by `bitkit ingest`.
//!
//! | name             | looked for, in this order, in each search directory                          |
//! |------------------|-------------------------------------------------------------------------------|
//! | `cifar10-test`   | `cifar-10-batches-bin/test_batch.bin`, `cifar-10-binary.tar.gz`               |
//! | `cifar100-test`  | `cifar-100-binary/test.bin`, `cifar-100-binary.tar.gz`                        |
//! | `ilsvrc2012-val` | `ILSVRC2012_img_val.tar`, `ILSVRC2012_img_val/`, `val/` (+ ground truth, optional) |
//! | `pets-test`      | `images.tar.gz` or `images/`, and `annotations/test.txt` or `annotations.tar.gz` |
//! | `flowers-test`   | `102flowers.tgz` or `jpg/`, and `setid.mat`; `imagelabels.mat` (optional)     |
//!
//! Search directories: the data directory itself, then for Pets `oxford-iiit-pet/` and for
//! Flowers `flowers-102/` inside it (torchvision's folder names). A file that is not found is a
//! [`DedupError::MissingTestSet`] naming every file expected and every directory looked in; a
//! file found but malformed is a [`DedupError::BadTestSet`] naming it, with the record, line or
//! byte offset where that applies. See each reader module for index and label conventions.
//!
//! Memory: every test image is held in memory ([`TestSet::images`]) as its encoded bytes (or
//! 32x32 pixels for CIFAR), because hashing makes several views of each and the report shows
//! thumbnails. That is ~31 MB for a CIFAR set, ~0.4 GB for Pets, ~0.3 GB for Flowers, and
//! **~6.4 GB for ILSVRC-2012 val** (the size of its tar); archives themselves are streamed,
//! never loaded whole, and no single member larger than [`MAX_MEMBER_BYTES`] is read.

pub mod cifar;
pub mod dataset;
pub mod flowers;
pub mod ilsvrc;
pub mod mat;
pub mod pets;

use crate::DedupError;
use bitkit_ingest::image::RgbImage;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Environment variable naming the data directory when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "BITKIT_DATA";

/// Largest archive member or test-set file read into memory: far above any real image or
/// annotation file, far below memory.
pub const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// One test image: its index in the official test split, its label, and the encoded bytes or
/// pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    /// Position in the official split (see each reader for the convention).
    pub index: u64,
    /// The class label, where the download provides one.
    pub label: Option<i64>,
    /// File name in the download (`ILSVRC2012_val_00000001.JPEG`), `test_batch.bin#123` for a
    /// CIFAR record, the key for a dataset row.
    pub name: String,
    pub image: TestPixels,
}

/// The image as the download stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestPixels {
    /// JPEG / PNG bytes as in the archive.
    Encoded(bytes::Bytes),
    /// Raw pixels (CIFAR, 32x32).
    Rgb(RgbImage),
}

/// Which test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TestSetKind {
    Cifar10Test,
    Cifar100Test,
    Ilsvrc2012Val,
    PetsTest,
    FlowersTest,
    /// A bitkit dataset directory given by path.
    Dataset,
}

/// Every registry name, in the order `--against` lists them in help.
pub const REGISTRY: [TestSetKind; 5] = [
    TestSetKind::Cifar10Test,
    TestSetKind::Cifar100Test,
    TestSetKind::Ilsvrc2012Val,
    TestSetKind::PetsTest,
    TestSetKind::FlowersTest,
];

impl TestSetKind {
    /// The kind of a registry name (`cifar10-test`, ...); `None` for anything else (a path).
    /// `dataset` is not a registry name.
    pub fn parse(name: &str) -> Option<TestSetKind> {
        REGISTRY.into_iter().find(|kind| kind.name() == name)
    }

    /// The registry name; `dataset` for [`TestSetKind::Dataset`].
    pub fn name(self) -> &'static str {
        match self {
            TestSetKind::Cifar10Test => "cifar10-test",
            TestSetKind::Cifar100Test => "cifar100-test",
            TestSetKind::Ilsvrc2012Val => "ilsvrc2012-val",
            TestSetKind::PetsTest => "pets-test",
            TestSetKind::FlowersTest => "flowers-test",
            TestSetKind::Dataset => "dataset",
        }
    }

    /// CIFAR sets use the 32x32 channel.
    pub fn is_cifar(self) -> bool {
        matches!(self, TestSetKind::Cifar10Test | TestSetKind::Cifar100Test)
    }

    /// Directories searched for this set's files under `data_dir`, in order.
    pub fn search_dirs(self, data_dir: &Path) -> Vec<PathBuf> {
        let mut dirs = vec![data_dir.to_path_buf()];
        match self {
            TestSetKind::PetsTest => dirs.push(data_dir.join("oxford-iiit-pet")),
            TestSetKind::FlowersTest => dirs.push(data_dir.join("flowers-102")),
            _ => {}
        }
        dirs
    }
}

/// A loaded test set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSet {
    /// The registry name (`cifar10-test`, ...) or the dataset path as given.
    pub name: String,
    pub kind: TestSetKind,
    /// In split order (ascending `index`).
    pub images: Vec<TestImage>,
    /// The files read.
    pub sources: Vec<PathBuf>,
}

/// Resolves a `--against` item: a registry name looked up under `data_dir` (else
/// `BITKIT_DATA`), or a path to a bitkit dataset directory (has `dataset.json`).
pub fn load(item: &str, data_dir: Option<&Path>) -> Result<TestSet, DedupError> {
    if let Some(kind) = TestSetKind::parse(item) {
        let dir = match data_dir {
            Some(dir) => dir.to_path_buf(),
            None => data_dir_from_env().ok_or_else(|| {
                DedupError::Config(format!(
                    "test set {item} is read from its official download: pass --data-dir DIR or set {DATA_DIR_ENV}"
                ))
            })?,
        };
        let dirs = kind.search_dirs(&dir);
        return match kind {
            TestSetKind::Cifar10Test | TestSetKind::Cifar100Test => cifar::load(kind, &dirs),
            TestSetKind::Ilsvrc2012Val => ilsvrc::load(&dirs),
            TestSetKind::PetsTest => pets::load(&dirs),
            TestSetKind::FlowersTest => flowers::load(&dirs),
            // `parse` never yields `Dataset`; a path is handled below.
            TestSetKind::Dataset => dataset::load(item, Path::new(item)),
        };
    }
    let path = Path::new(item);
    let manifest = path.join(bitkit_ingest::dataset::MANIFEST_FILE);
    if manifest.is_file() {
        return dataset::load(item, path);
    }
    let names = REGISTRY.map(TestSetKind::name).join(", ");
    if path.exists() {
        return Err(DedupError::BadTestSet {
            name: item.to_owned(),
            path: path.to_path_buf(),
            reason: format!(
                "not a bitkit dataset directory (no {}) and not a test set name ({names})",
                bitkit_ingest::dataset::MANIFEST_FILE
            ),
        });
    }
    Err(DedupError::MissingTestSet {
        name: item.to_owned(),
        expected: format!(
            "a test set name ({names}) or a bitkit dataset directory with {}",
            bitkit_ingest::dataset::MANIFEST_FILE
        ),
        looked_in: vec![path.to_path_buf()],
    })
}

/// The data directory from `BITKIT_DATA`, if set and not empty.
pub fn data_dir_from_env() -> Option<PathBuf> {
    std::env::var_os(DATA_DIR_ENV).filter(|value| !value.is_empty()).map(PathBuf::from)
}

// ---- helpers shared by the readers ----

pub(crate) fn bad(name: &str, path: &Path, reason: impl Into<String>) -> DedupError {
    DedupError::BadTestSet { name: name.to_owned(), path: path.to_path_buf(), reason: reason.into() }
}

pub(crate) fn missing(name: &str, expected: &[&str], dirs: &[PathBuf]) -> DedupError {
    DedupError::MissingTestSet { name: name.to_owned(), expected: expected.join(" or "), looked_in: dirs.to_vec() }
}

fn io_error(path: &Path, source: std::io::Error) -> DedupError {
    DedupError::Io { path: path.to_path_buf(), source }
}

/// The first `dir/relative` that is a file, in `dirs` order.
pub(crate) fn find_file(dirs: &[PathBuf], relative: &str) -> Option<PathBuf> {
    dirs.iter().map(|dir| dir.join(relative)).find(|path| path.is_file())
}

/// The first `dir/relative` that is a directory, in `dirs` order.
pub(crate) fn find_dir(dirs: &[PathBuf], relative: &str) -> Option<PathBuf> {
    dirs.iter().map(|dir| dir.join(relative)).find(|path| path.is_dir())
}

/// Reads a whole (small) file, refusing one over [`MAX_MEMBER_BYTES`] before reading.
pub(crate) fn read_small_file(name: &str, path: &Path) -> Result<Vec<u8>, DedupError> {
    let size = std::fs::metadata(path).map_err(|source| io_error(path, source))?.len();
    if size > MAX_MEMBER_BYTES {
        return Err(bad(name, path, format!("file is {size} bytes, more than the {MAX_MEMBER_BYTES}-byte limit")));
    }
    std::fs::read(path).map_err(|source| io_error(path, source))
}

/// Member name as a relative path: a leading `./` (from `tar -C dir .`) removed.
fn normalize_member_name(raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    let mut name: &str = &name;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    name.to_owned()
}

/// Streams the regular-file members of the tar (gzipped when `gzipped`) at `path`: `want`
/// decides by name which members to read; `take` receives each wanted member's name and
/// bytes. Nothing but one member at a time is in memory. A damaged or truncated archive is a
/// `BadTestSet` naming the last member read; a wanted member over [`MAX_MEMBER_BYTES`] too.
/// Returns the number of members seen. Note: a tar cut exactly at a member boundary looks like
/// a complete archive without end blocks (the `tar` crate accepts it), so the callers check
/// that everything they need was found.
pub(crate) fn scan_tar(
    name: &str,
    path: &Path,
    gzipped: bool,
    mut want: impl FnMut(&str) -> bool,
    mut take: impl FnMut(String, Vec<u8>) -> Result<(), DedupError>,
) -> Result<u64, DedupError> {
    let file = File::open(path).map_err(|source| io_error(path, source))?;
    let reader = BufReader::with_capacity(1 << 16, file);
    let stream: Box<dyn Read> =
        if gzipped { Box::new(flate2::read::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|error| bad(name, path, format!("not a readable tar: {error}")))?;
    let mut last = String::from("(none)");
    let mut seen = 0u64;
    for entry in entries {
        let damaged = |error: std::io::Error, last: &str| {
            bad(name, path, format!("archive damaged or truncated after member {last}: {error}"))
        };
        let entry = entry.map_err(|error| damaged(error, &last))?;
        seen += 1;
        let member = normalize_member_name(&entry.path_bytes());
        let is_file = entry.header().entry_type().is_file() && !member.ends_with('/');
        if is_file && want(&member) {
            let size = entry.size();
            if size > MAX_MEMBER_BYTES {
                return Err(bad(
                    name,
                    path,
                    format!("member {member} is {size} bytes, more than the {MAX_MEMBER_BYTES}-byte limit"),
                ));
            }
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry.take(size).read_to_end(&mut data).map_err(|error| damaged(error, &member))?;
            if (data.len() as u64) < size {
                return Err(bad(
                    name,
                    path,
                    format!("archive truncated inside member {member}: {} of {size} bytes present", data.len()),
                ));
            }
            last.clone_from(&member);
            take(member, data)?;
        } else {
            last = member;
        }
    }
    Ok(seen)
}

/// Reads the single member `member` of a tar(.gz); `None` when the archive lacks it.
pub(crate) fn read_tar_member(
    name: &str,
    path: &Path,
    gzipped: bool,
    member: &str,
) -> Result<Option<Vec<u8>>, DedupError> {
    let mut found = None;
    scan_tar(
        name,
        path,
        gzipped,
        |candidate| candidate == member,
        |_, data| {
            found = Some(data);
            Ok(())
        },
    )?;
    Ok(found)
}

/// The regular files directly in `dir`, sorted by name (non-UTF-8 names skipped).
pub(crate) fn list_dir(name: &str, dir: &Path) -> Result<Vec<(String, PathBuf)>, DedupError> {
    let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(test_set = name, path = %path.display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        files.push((file_name, path));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in REGISTRY {
            assert_eq!(TestSetKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(TestSetKind::parse("dataset"), None);
        assert_eq!(TestSetKind::parse("CIFAR10-test"), None);
        assert!(TestSetKind::Cifar10Test.is_cifar() && TestSetKind::Cifar100Test.is_cifar());
        assert!(!TestSetKind::PetsTest.is_cifar() && !TestSetKind::Dataset.is_cifar());
    }

    #[test]
    fn member_names_lose_dot_slash() {
        assert_eq!(normalize_member_name(b"./././a/b.jpg"), "a/b.jpg");
        assert_eq!(normalize_member_name(b"a/b.jpg"), "a/b.jpg");
    }

    #[test]
    fn unknown_items_name_what_was_expected() {
        let error = load("/nonexistent/bitkit/nothing", Some(Path::new("/tmp"))).expect_err("missing");
        let text = error.to_string();
        assert!(text.contains("cifar10-test") && text.contains("dataset.json"), "{text}");
        let dir = tempfile::tempdir().expect("tempdir");
        let item = dir.path().to_string_lossy().into_owned();
        assert!(matches!(load(&item, None), Err(DedupError::BadTestSet { .. })));
    }
}
