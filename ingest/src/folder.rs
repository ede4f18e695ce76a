//! ImageFolder reader: one class directory of `ROOT/<class>/...` is one shard, every regular
//! file below it one record labelled with the class directory's name (torchvision
//! `ImageFolder` layout, FORMATS.md §1 for ImageNet-21K-P's `imagenet21k_train/<wnid>/`).
//!
//! Invariants:
//! - Deterministic order: a depth-first walk where each directory's entries are sorted by the
//!   bytes of their names, so indices and output bytes do not depend on the file system.
//! - Names starting with `.` are skipped (`.DS_Store`, `.ipynb_checkpoints/`). Symbolic links
//!   to files are read; symbolic links to directories are not followed (no cycles, no
//!   escaping the tree); sockets, FIFOs and devices are skipped (a FIFO would block forever).
//! - A file larger than `max_record_bytes` is rejected from its metadata without being read.
//! - One bad file (unreadable, too large, name not UTF-8) is one reject and the walk goes on;
//!   an unreadable subdirectory is one shard-level reject (no index) and the walk goes on.
//!
//! Key = path relative to the root without the file's extension, `/`-separated
//! (`n01440764/n01440764_10026`); path = the same with extension; offset = 0 (there is no
//! stream); index = position among the files of the walk, rejected ones included.
//! Per-file I/O errors are reported as [`RejectKind::ShardUnreadable`] with the record's index:
//! the record kinds have no finer class for "the OS refused", and the reason carries its error.
use crate::{RawLabel, RawPayload, RawRecord, ReaderConfig, RecordError, RejectKind, ShardReader};
use std::ffi::OsString;
use std::fs::{self, File, FileType};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Reader of one class directory of an ImageFolder tree (`ROOT/<class>/...`).
pub fn folder_reader(class_dir: PathBuf, root: PathBuf, config: &ReaderConfig) -> Box<dyn ShardReader> {
    // Keys are relative to `root`; a class directory outside it keys from its own parent.
    let base =
        if class_dir.starts_with(&root) { root } else { class_dir.parent().map(Path::to_path_buf).unwrap_or_default() };
    Box::new(FolderReader {
        class_dir,
        base,
        max_record_bytes: config.max_record_bytes,
        class_name: String::new(),
        stack: Vec::new(),
        started: false,
        done: false,
        next_index: 0,
        bytes_read: 0,
    })
}

/// A directory entry waiting in a sorted listing.
struct DirItem {
    name: OsString,
    path: PathBuf,
    file_type: io::Result<FileType>,
}

struct FolderReader {
    class_dir: PathBuf,
    base: PathBuf,
    max_record_bytes: u64,
    /// The label of every record, set when the walk starts.
    class_name: String,
    /// Sorted listings of the directories being walked, innermost last.
    stack: Vec<std::vec::IntoIter<DirItem>>,
    started: bool,
    done: bool,
    next_index: u64,
    bytes_read: u64,
}

/// Entries of `dir` except hidden ones, sorted by name bytes.
fn list_dir(dir: &Path) -> io::Result<Vec<DirItem>> {
    let mut items = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        items.push(DirItem { path: entry.path(), file_type: entry.file_type(), name });
    }
    items.sort_by(|a, b| a.name.as_encoded_bytes().cmp(b.name.as_encoded_bytes()));
    Ok(items)
}

impl FolderReader {
    /// `path` relative to the base, `/`-separated; `None` when a component is not UTF-8.
    fn relative_path(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.base).unwrap_or(path);
        let mut parts = Vec::new();
        for component in relative.components() {
            if let Component::Normal(part) = component {
                parts.push(part.to_str()?);
            }
        }
        Some(parts.join("/"))
    }

    fn read_class_name(&self) -> Result<String, RecordError> {
        let name = self.class_dir.file_name().ok_or_else(|| {
            RecordError::new(RejectKind::Malformed, format!("class directory {} has no name", self.class_dir.display()))
        })?;
        name.to_str().map(str::to_owned).ok_or_else(|| {
            RecordError::new(
                RejectKind::Malformed,
                format!("class directory name {:?} is not UTF-8", name.to_string_lossy()),
            )
        })
    }

    fn directory_error(&self, dir: &Path, error: &io::Error) -> RecordError {
        let name = self.relative_path(dir).unwrap_or_else(|| dir.to_string_lossy().into_owned());
        RecordError::new(RejectKind::ShardUnreadable, format!("reading directory {}: {error}", dir.display()))
            .named(name)
    }

    /// Reads one file as record `index`.
    fn read_file(&mut self, index: u64, path: &Path) -> Result<RawRecord, RecordError> {
        let Some(relative) = self.relative_path(path) else {
            return Err(RecordError::new(RejectKind::Malformed, "file path is not UTF-8")
                .with_index(index)
                .named(path.to_string_lossy()));
        };
        let fail =
            |kind: RejectKind, reason: String| RecordError::new(kind, reason).with_index(index).named(relative.clone());
        let mut file =
            File::open(path).map_err(|error| fail(RejectKind::ShardUnreadable, format!("opening: {error}")))?;
        let size = file
            .metadata()
            .map_err(|error| fail(RejectKind::ShardUnreadable, format!("reading metadata: {error}")))?
            .len();
        let limit = self.max_record_bytes;
        if size > limit {
            return Err(fail(
                RejectKind::BadLength,
                format!("file has {size} bytes, more than the {limit}-byte limit (max_record_bytes)"),
            ));
        }
        let capacity =
            usize::try_from(size).map_err(|_| fail(RejectKind::BadLength, format!("file has {size} bytes")))?;
        let mut bytes = Vec::with_capacity(capacity);
        // One byte past the limit tells a file that grew since `metadata` from one at the limit.
        (&mut file)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|error| fail(RejectKind::ShardUnreadable, format!("reading: {error}")))?;
        self.bytes_read += bytes.len() as u64;
        if bytes.len() as u64 > limit {
            return Err(fail(
                RejectKind::BadLength,
                format!("file grew past the {limit}-byte limit (max_record_bytes) while read"),
            ));
        }
        let key = crate::tar::strip_extension(&relative).to_owned();
        Ok(RawRecord {
            index,
            offset: 0,
            payload: RawPayload::Image {
                key,
                path: Some(relative),
                bytes: bytes.into(),
                label: RawLabel::ClassName(self.class_name.clone()),
            },
        })
    }

    fn start(&mut self) -> Option<RecordError> {
        match self.read_class_name() {
            Ok(name) => self.class_name = name,
            Err(error) => return Some(error),
        }
        match list_dir(&self.class_dir) {
            Ok(items) => {
                self.stack.push(items.into_iter());
                None
            }
            Err(error) => Some(self.directory_error(&self.class_dir, &error)),
        }
    }
}

impl ShardReader for FolderReader {
    fn next_record(&mut self) -> Option<Result<RawRecord, RecordError>> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            if let Some(error) = self.start() {
                self.done = true;
                return Some(Err(error));
            }
        }
        loop {
            let Some(listing) = self.stack.last_mut() else {
                self.done = true;
                return None;
            };
            let Some(item) = listing.next() else {
                self.stack.pop();
                continue;
            };
            let is_file = match &item.file_type {
                Ok(file_type) if file_type.is_dir() => {
                    match list_dir(&item.path) {
                        Ok(items) => self.stack.push(items.into_iter()),
                        Err(error) => return Some(Err(self.directory_error(&item.path, &error))),
                    }
                    continue;
                }
                Ok(file_type) if file_type.is_file() => Ok(()),
                // Follow a link only to see whether it names a file.
                Ok(file_type) if file_type.is_symlink() => match fs::metadata(&item.path) {
                    Ok(target) if target.is_file() => Ok(()),
                    Ok(_) => continue,
                    Err(error) => Err(format!("following symbolic link: {error}")),
                },
                Ok(_) => continue,
                Err(error) => Err(format!("reading file type: {error}")),
            };
            let index = self.next_index;
            self.next_index += 1;
            return Some(match is_file {
                Ok(()) => self.read_file(index, &item.path),
                Err(reason) => {
                    let name =
                        self.relative_path(&item.path).unwrap_or_else(|| item.path.to_string_lossy().into_owned());
                    Err(RecordError::new(RejectKind::ShardUnreadable, reason).with_index(index).named(name))
                }
            });
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::tests::{image, read_all};

    fn write(path: &Path, bytes: &[u8]) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, bytes).expect("write");
    }

    fn walk(class_dir: &Path, root: &Path, config: &ReaderConfig) -> Vec<Result<RawRecord, RecordError>> {
        read_all(folder_reader(class_dir.to_path_buf(), root.to_path_buf(), config))
    }

    fn summary(results: &[Result<RawRecord, RecordError>]) -> Vec<String> {
        results
            .iter()
            .map(|result| match result {
                Ok(record) => {
                    let (key, path, bytes, label) = image(record);
                    format!(
                        "{} {key} {} {} {label:?}",
                        record.index,
                        path.unwrap_or("-"),
                        String::from_utf8_lossy(bytes)
                    )
                }
                Err(error) => format!("{:?} {} {:?}", error.index, error.kind.as_str(), error.name),
            })
            .collect()
    }

    #[test]
    fn sorted_recursive_walk_skips_hidden_entries() {
        let root = tempfile::tempdir().expect("tempdir");
        let class_dir = root.path().join("n01");
        write(&class_dir.join("b.jpg"), b"B");
        write(&class_dir.join("a.v2.JPEG"), b"A");
        write(&class_dir.join("B.png"), b"upper sorts first");
        write(&class_dir.join("sub/z.jpg"), b"Z");
        write(&class_dir.join("sub/deeper/y.jpg"), b"Y");
        write(&class_dir.join("c"), b"no extension");
        write(&class_dir.join(".DS_Store"), b"hidden");
        write(&class_dir.join(".cache/x.jpg"), b"hidden dir");
        fs::create_dir_all(class_dir.join("empty")).expect("mkdir");
        let results = walk(&class_dir, root.path(), &ReaderConfig::default());
        assert_eq!(
            summary(&results),
            [
                "0 n01/B n01/B.png upper sorts first ClassName(\"n01\")",
                "1 n01/a.v2 n01/a.v2.JPEG A ClassName(\"n01\")",
                "2 n01/b n01/b.jpg B ClassName(\"n01\")",
                "3 n01/c n01/c no extension ClassName(\"n01\")",
                "4 n01/sub/deeper/y n01/sub/deeper/y.jpg Y ClassName(\"n01\")",
                "5 n01/sub/z n01/sub/z.jpg Z ClassName(\"n01\")",
            ]
        );
        assert!(results.iter().all(|result| result.as_ref().is_ok_and(|record| record.offset == 0)));
        let mut reader = folder_reader(class_dir.clone(), root.path().to_path_buf(), &ReaderConfig::default());
        while reader.next_record().is_some() {}
        assert_eq!(reader.bytes_read(), 1 + 1 + 17 + 1 + 1 + 12);
    }

    #[test]
    fn oversized_file_is_rejected_unread_and_the_walk_goes_on() {
        let root = tempfile::tempdir().expect("tempdir");
        let class_dir = root.path().join("cls");
        write(&class_dir.join("a.jpg"), &[1; 10]);
        write(&class_dir.join("b.jpg"), &[2; 11]);
        write(&class_dir.join("c.jpg"), &[3; 3]);
        let results = walk(&class_dir, root.path(), &ReaderConfig { max_record_bytes: 10, ..Default::default() });
        assert_eq!(results.len(), 3);
        let Err(error) = &results[1] else { panic!("b.jpg is too big") };
        assert_eq!(
            (error.kind, error.index, error.name.as_deref()),
            (RejectKind::BadLength, Some(1), Some("cls/b.jpg"))
        );
        assert_eq!(error.reason, "file has 11 bytes, more than the 10-byte limit (max_record_bytes)");
        assert!(results[0].is_ok() && results[2].is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_unreadable_files_and_directories() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        write(&outside.path().join("o.jpg"), b"outside");
        let class_dir = root.path().join("cls");
        write(&class_dir.join("a.jpg"), b"A");
        write(&class_dir.join("locked.jpg"), b"L");
        write(&class_dir.join("lockeddir/x.jpg"), b"X");
        write(&class_dir.join("z.jpg"), b"Z");
        symlink(outside.path().join("o.jpg"), class_dir.join("link.jpg")).expect("symlink");
        symlink(outside.path(), class_dir.join("linkdir")).expect("symlink");
        symlink(class_dir.join("gone.jpg"), class_dir.join("broken.jpg")).expect("symlink");
        fs::set_permissions(class_dir.join("locked.jpg"), fs::Permissions::from_mode(0o000)).expect("chmod");
        fs::set_permissions(class_dir.join("lockeddir"), fs::Permissions::from_mode(0o000)).expect("chmod");
        // Root ignores permission bits; then the locked entries read fine.
        let privileged = File::open(class_dir.join("locked.jpg")).is_ok();
        let results = walk(&class_dir, root.path(), &ReaderConfig::default());
        fs::set_permissions(class_dir.join("lockeddir"), fs::Permissions::from_mode(0o755)).expect("chmod");
        let summary = summary(&results);
        assert_eq!(summary[0], "0 cls/a cls/a.jpg A ClassName(\"cls\")");
        assert_eq!(summary[1], "Some(1) shard_unreadable Some(\"cls/broken.jpg\")");
        assert_eq!(summary[2], "2 cls/link cls/link.jpg outside ClassName(\"cls\")");
        if privileged {
            assert_eq!(summary.len(), 6);
        } else {
            assert_eq!(summary[3], "Some(3) shard_unreadable Some(\"cls/locked.jpg\")");
            assert_eq!(summary[4], "None shard_unreadable Some(\"cls/lockeddir\")");
            assert_eq!(summary[5], "4 cls/z cls/z.jpg Z ClassName(\"cls\")");
            assert_eq!(summary.len(), 6);
            let Err(error) = &results[3] else { panic!("locked") };
            assert!(error.reason.starts_with("opening: Permission denied"), "{}", error.reason);
        }
    }

    /// Deterministic even as root: files change between the listing and the read.
    #[cfg(target_os = "linux")]
    #[test]
    fn file_vanishing_or_unreadable_after_listing_is_one_reject() {
        let root = tempfile::tempdir().expect("tempdir");
        let class_dir = root.path().join("cls");
        for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] {
            write(&class_dir.join(name), name.as_bytes());
        }
        let mut reader = folder_reader(class_dir.clone(), root.path().to_path_buf(), &ReaderConfig::default());
        assert!(matches!(reader.next_record(), Some(Ok(_))));
        fs::remove_file(class_dir.join("b.jpg")).expect("rm");
        fs::remove_file(class_dir.join("c.jpg")).expect("rm");
        fs::create_dir(class_dir.join("c.jpg")).expect("mkdir");
        let results = read_all(reader);
        assert_eq!(results.len(), 3);
        let (Err(vanished), Err(unreadable)) = (&results[0], &results[1]) else { panic!("{results:?}") };
        assert_eq!(
            (vanished.kind, vanished.index, vanished.name.as_deref()),
            (RejectKind::ShardUnreadable, Some(1), Some("cls/b.jpg"))
        );
        assert!(vanished.reason.starts_with("opening: No such file"), "{}", vanished.reason);
        assert_eq!((unreadable.kind, unreadable.index), (RejectKind::ShardUnreadable, Some(2)));
        assert!(unreadable.reason.starts_with("reading: Is a directory"), "{}", unreadable.reason);
        assert_eq!(results[2].as_ref().map(|record| record.index).ok(), Some(3));
    }

    #[test]
    fn missing_class_directory_is_one_shard_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let results = walk(&root.path().join("nope"), root.path(), &ReaderConfig::default());
        assert_eq!(results.len(), 1);
        let Err(error) = &results[0] else { panic!("missing dir") };
        assert_eq!((error.kind, error.index), (RejectKind::ShardUnreadable, None));
    }

    #[test]
    fn class_directory_outside_the_root_keys_from_its_parent() {
        let root = tempfile::tempdir().expect("tempdir");
        let class_dir = root.path().join("train/cls");
        write(&class_dir.join("a.jpg"), b"A");
        let results = walk(&class_dir, Path::new("/elsewhere"), &ReaderConfig::default());
        assert_eq!(summary(&results), ["0 cls/a cls/a.jpg A ClassName(\"cls\")"]);
    }
}
