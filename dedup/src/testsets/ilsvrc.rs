//! ILSVRC-2012 validation set (FORMATS.md §2): `ILSVRC2012_img_val.tar` (a flat tar of
//! `ILSVRC2012_val_00000001.JPEG` .. `_00050000.JPEG`, not in name order) or the extracted
//! directory `ILSVRC2012_img_val/` or `val/` (files directly in it or one level down, as in
//! torchvision's class-folder layout).
//!
//! Index = the number in the file name minus 1 (the images come back sorted by it); the
//! indices must be exactly 0..N with no duplicates (a truncated tar loses members, and the
//! official set is complete). Members with other names are skipped.
//!
//! Labels: from `ILSVRC2012_validation_ground_truth.txt` when present (looked for directly in
//! the data directory, as `ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`,
//! then inside `ILSVRC2012_devkit_t12.tar.gz`): line i is the label of image i, an
//! **ILSVRC2012_ID in 1..=1000 in the devkit's own order, kept as-is** (not the sorted-WNID
//! 0..999 index of torchvision/TFDS; map through the devkit's `meta.mat` for that). Without the
//! file, labels are `None`.

use super::{
    bad, find_dir, find_file, list_dir, missing, read_small_file, read_tar_member, scan_tar, TestImage, TestPixels,
    TestSet, TestSetKind,
};
use crate::DedupError;
use std::path::{Path, PathBuf};

const NAME: &str = "ilsvrc2012-val";
const TAR: &str = "ILSVRC2012_img_val.tar";
const DIRS: [&str; 2] = ["ILSVRC2012_img_val", "val"];
const GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
const DEVKIT_GROUND_TRUTH: &str = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt";
const DEVKIT_ARCHIVE: &str = "ILSVRC2012_devkit_t12.tar.gz";

/// Index of a validation file name (`ILSVRC2012_val_00000001.JPEG` → 0), else `None`.
pub fn val_index(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_prefix("ILSVRC2012_val_")?.strip_suffix(".JPEG")?;
    if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_sub(1)
}

fn base_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

/// Loads `ilsvrc2012-val` from the first directory of `dirs` holding it.
pub fn load(dirs: &[PathBuf]) -> Result<TestSet, DedupError> {
    let mut sources = Vec::new();
    let labels = ground_truth(dirs, &mut sources)?;
    let (images, source) = if let Some(tar) = find_file(dirs, TAR) {
        let mut images = Vec::new();
        scan_tar(
            NAME,
            &tar,
            false,
            |member| val_index(base_name(member)).is_some(),
            |member, data| {
                let file_name = base_name(&member).to_owned();
                if let Some(index) = val_index(&file_name) {
                    images.push((index, file_name, data));
                }
                Ok(())
            },
        )?;
        (images, tar)
    } else if let Some(dir) = DIRS.iter().find_map(|relative| find_dir(dirs, relative)) {
        (read_dir_images(&dir)?, dir)
    } else {
        let expected: Vec<String> = [TAR.to_owned()].into_iter().chain(DIRS.iter().map(|d| format!("{d}/"))).collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        return Err(missing(NAME, &expected, dirs));
    };
    sources.insert(0, source.clone());
    finish(images, labels.as_ref(), &source, sources)
}

/// Validation files directly in `dir` or in its immediate subdirectories.
fn read_dir_images(dir: &Path) -> Result<Vec<(u64, String, Vec<u8>)>, DedupError> {
    let mut images = Vec::new();
    for (file_name, path) in list_dir(NAME, dir)? {
        if path.is_dir() {
            for (inner_name, inner_path) in list_dir(NAME, &path)? {
                if let Some(index) = val_index(&inner_name).filter(|_| inner_path.is_file()) {
                    images.push((index, inner_name, read_small_file(NAME, &inner_path)?));
                }
            }
        } else if let Some(index) = val_index(&file_name) {
            images.push((index, file_name, read_small_file(NAME, &path)?));
        }
    }
    if images.is_empty() {
        return Err(bad(NAME, dir, "the directory holds no ILSVRC2012_val_XXXXXXXX.JPEG files"));
    }
    Ok(images)
}

fn finish(
    mut images: Vec<(u64, String, Vec<u8>)>,
    labels: Option<&(PathBuf, Vec<i64>)>,
    source: &Path,
    sources: Vec<PathBuf>,
) -> Result<TestSet, DedupError> {
    if images.is_empty() {
        return Err(bad(NAME, source, "no ILSVRC2012_val_XXXXXXXX.JPEG members"));
    }
    images.sort_by_key(|(index, _, _)| *index);
    for (position, (index, file_name, _)) in images.iter().enumerate() {
        if *index != position as u64 {
            let reason = if *index < position as u64 {
                format!("{file_name} appears twice")
            } else {
                format!(
                    "ILSVRC2012_val_{:08}.JPEG is missing (truncated archive?); {} images found",
                    position + 1,
                    images.len()
                )
            };
            return Err(bad(NAME, source, reason));
        }
    }
    if let Some((path, labels)) = labels {
        if labels.len() < images.len() {
            return Err(bad(
                NAME,
                path,
                format!("{} labels, but the validation set has {} images", labels.len(), images.len()),
            ));
        }
    }
    let images = images
        .into_iter()
        .map(|(index, name, data)| TestImage {
            index,
            // `index < images.len() <= labels.len()`, checked above.
            label: labels.and_then(|(_, labels)| labels.get(index as usize).copied()),
            name,
            image: TestPixels::Encoded(data.into()),
        })
        .collect();
    Ok(TestSet { name: NAME.to_owned(), kind: TestSetKind::Ilsvrc2012Val, images, sources })
}

/// The ground-truth labels and the file they came from, if any of the places has them.
fn ground_truth(dirs: &[PathBuf], sources: &mut Vec<PathBuf>) -> Result<Option<(PathBuf, Vec<i64>)>, DedupError> {
    let found = match find_file(dirs, GROUND_TRUTH).or_else(|| find_file(dirs, DEVKIT_GROUND_TRUTH)) {
        Some(path) => Some((read_small_file(NAME, &path)?, path)),
        None => match find_file(dirs, DEVKIT_ARCHIVE) {
            Some(archive) => {
                let Some(bytes) = read_tar_member(NAME, &archive, true, DEVKIT_GROUND_TRUTH)? else {
                    return Err(bad(
                        NAME,
                        &archive,
                        format!("the devkit archive holds no member {DEVKIT_GROUND_TRUTH}"),
                    ));
                };
                Some((bytes, archive))
            }
            None => None,
        },
    };
    let Some((bytes, path)) = found else {
        tracing::info!("no ILSVRC-2012 validation ground truth found: labels are unknown");
        return Ok(None);
    };
    let labels = parse_ground_truth(&bytes).map_err(|reason| bad(NAME, &path, reason))?;
    sources.push(path.clone());
    Ok(Some((path, labels)))
}

/// One ILSVRC2012_ID (1..=1000) per line; blank lines at the end are ignored.
pub fn parse_ground_truth(bytes: &[u8]) -> Result<Vec<i64>, String> {
    let text = std::str::from_utf8(bytes).map_err(|error| format!("not UTF-8 text: {error}"))?;
    let mut labels = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<i64>() {
            Ok(label) if (1..=1000).contains(&label) => labels.push(label),
            _ => return Err(format!("line {}: {line:?} is not an ILSVRC2012_ID in 1..=1000", number + 1)),
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_names() {
        assert_eq!(val_index("ILSVRC2012_val_00000001.JPEG"), Some(0));
        assert_eq!(val_index("ILSVRC2012_val_00050000.JPEG"), Some(49_999));
        assert_eq!(val_index("ILSVRC2012_val_00000000.JPEG"), None);
        assert_eq!(val_index("ILSVRC2012_val_0000001.JPEG"), None);
        assert_eq!(val_index("ILSVRC2012_val_00000001.jpg"), None);
        assert_eq!(val_index("ILSVRC2012_val_+0000001.JPEG"), None);
        assert_eq!(base_name("val/n01440764/ILSVRC2012_val_00000001.JPEG"), "ILSVRC2012_val_00000001.JPEG");
    }

    #[test]
    fn ground_truth_lines() {
        assert_eq!(parse_ground_truth(b"490\n361\n1000\n\n"), Ok(vec![490, 361, 1000]));
        assert_eq!(parse_ground_truth(b"1\n0\n").map_err(|e| e.starts_with("line 2:")), Err(true));
        assert_eq!(parse_ground_truth(b"1\nx\n").map_err(|e| e.starts_with("line 2:")), Err(true));
    }
}
