//! Oxford-IIIT Pet test split (FORMATS.md §5): images from `images.tar.gz` (members
//! `images/<Name>_<n>.jpg`) or the extracted `images/`, the split from `annotations/test.txt`
//! (extracted) or the member `annotations/test.txt` of `annotations.tar.gz`.
//!
//! `test.txt` lines are `Image CLASS-ID SPECIES BREED-ID` (e.g. `Abyssinian_201 1 1 1`); blank
//! lines and `#` comments are skipped. The test set is the listed images in file order: index =
//! position among the listed images (0-based line number, not counting skipped lines), label =
//! CLASS-ID - 1 (0..=36), name = `<Image>.jpg`. A line that does not parse, a repeated image or
//! a listed image missing from the images is a `BadTestSet` (with the line number).

use super::{
    bad, find_dir, find_file, missing, read_small_file, read_tar_member, scan_tar, TestImage, TestPixels, TestSet,
    TestSetKind,
};
use crate::DedupError;
use std::collections::HashMap;
use std::path::PathBuf;

const NAME: &str = "pets-test";
const IMAGES_ARCHIVE: &str = "images.tar.gz";
const IMAGES_DIR: &str = "images";
const TEST_TXT: &str = "annotations/test.txt";
const ANNOTATIONS_ARCHIVE: &str = "annotations.tar.gz";
/// Oxford-IIIT Pet has 37 classes.
const CLASSES: i64 = 37;

/// One parsed `test.txt` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitEntry {
    /// Image stem (`Abyssinian_201`).
    pub image: String,
    /// CLASS-ID - 1.
    pub label: i64,
}

/// Parses a split file (`test.txt`, `trainval.txt`); errors name the 1-based line.
pub fn parse_split(bytes: &[u8]) -> Result<Vec<SplitEntry>, String> {
    let text = std::str::from_utf8(bytes).map_err(|error| format!("not UTF-8 text: {error}"))?;
    let mut entries = Vec::new();
    let mut seen = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let image = fields.next().unwrap_or_default();
        let class = fields.next().and_then(|field| field.parse::<i64>().ok());
        let rest_ok = fields.clone().count() <= 2 && fields.all(|field| field.parse::<i64>().is_ok());
        let Some(class) = class.filter(|class| (1..=CLASSES).contains(class) && rest_ok) else {
            return Err(format!(
                "line {}: {line:?} is not `Image CLASS-ID SPECIES BREED-ID` with CLASS-ID in 1..={CLASSES}",
                number + 1
            ));
        };
        if let Some(first) = seen.insert(image.to_owned(), number + 1) {
            return Err(format!("line {}: image {image} is listed again (first on line {first})", number + 1));
        }
        entries.push(SplitEntry { image: image.to_owned(), label: class - 1 });
    }
    if entries.is_empty() {
        return Err("the split lists no images".to_owned());
    }
    Ok(entries)
}

/// The file name of a member directly under `images/`.
fn under_images(member: &str) -> Option<&str> {
    member.strip_prefix("images/").filter(|rest| !rest.contains('/'))
}

/// Loads `pets-test` from `dirs`.
pub fn load(dirs: &[PathBuf]) -> Result<TestSet, DedupError> {
    let (split_bytes, split_path) = if let Some(path) = find_file(dirs, TEST_TXT) {
        (read_small_file(NAME, &path)?, path)
    } else if let Some(archive) = find_file(dirs, ANNOTATIONS_ARCHIVE) {
        let Some(bytes) = read_tar_member(NAME, &archive, true, TEST_TXT)? else {
            return Err(bad(NAME, &archive, format!("the archive holds no member {TEST_TXT}")));
        };
        (bytes, archive)
    } else {
        return Err(missing(NAME, &[TEST_TXT, ANNOTATIONS_ARCHIVE], dirs));
    };
    let entries = parse_split(&split_bytes).map_err(|reason| bad(NAME, &split_path, reason))?;
    let wanted: HashMap<String, usize> =
        entries.iter().enumerate().map(|(position, entry)| (format!("{}.jpg", entry.image), position)).collect();
    let mut found: Vec<Option<Vec<u8>>> = vec![None; entries.len()];

    let images_source = if let Some(archive) = find_file(dirs, IMAGES_ARCHIVE) {
        scan_tar(
            NAME,
            &archive,
            true,
            |member| under_images(member).is_some_and(|file| wanted.contains_key(file)),
            |member, data| {
                if let Some(&position) = under_images(&member).and_then(|file| wanted.get(file)) {
                    found[position] = Some(data);
                }
                Ok(())
            },
        )?;
        archive
    } else if let Some(dir) = find_dir(dirs, IMAGES_DIR) {
        for (file, &position) in &wanted {
            let path = dir.join(file);
            if path.is_file() {
                found[position] = Some(read_small_file(NAME, &path)?);
            }
        }
        dir
    } else {
        return Err(missing(NAME, &[IMAGES_ARCHIVE, "images/"], dirs));
    };

    let absent = found.iter().filter(|data| data.is_none()).count();
    if let Some(first) = found.iter().position(Option::is_none) {
        return Err(bad(
            NAME,
            &images_source,
            format!(
                "{absent} image(s) listed in {TEST_TXT} are missing, the first {}.jpg (truncated archive?)",
                entries[first].image
            ),
        ));
    }
    let images = entries
        .into_iter()
        .zip(found)
        .enumerate()
        .map(|(position, (entry, data))| TestImage {
            index: position as u64,
            label: Some(entry.label),
            name: format!("{}.jpg", entry.image),
            image: TestPixels::Encoded(data.unwrap_or_default().into()),
        })
        .collect();
    Ok(TestSet { name: NAME.to_owned(), kind: TestSetKind::PetsTest, images, sources: vec![images_source, split_path] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines() {
        let entries = parse_split(b"# header\nAbyssinian_201 1 1 1\n\nyorkshire_terrier_9 37 2 25\n").expect("parse");
        assert_eq!(
            entries,
            [
                SplitEntry { image: "Abyssinian_201".into(), label: 0 },
                SplitEntry { image: "yorkshire_terrier_9".into(), label: 36 }
            ]
        );
        for bad_text in ["Abyssinian_201\n", "a 0 1 1\n", "a 38 1 1\n", "a x 1 1\n", "a 1 1 1 1\n", "a 1 b 1\n"] {
            let error = parse_split(bad_text.as_bytes()).expect_err(bad_text);
            assert!(error.starts_with("line 1:"), "{error}");
        }
        let error = parse_split(b"a 1 1 1\nb 2 1 2\na 1 1 1\n").expect_err("repeat");
        assert!(error.starts_with("line 3:") && error.contains("line 1"), "{error}");
        assert!(parse_split(b"\n# only comments\n").is_err());
    }
}
