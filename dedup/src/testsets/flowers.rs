//! Oxford Flowers-102 test split (FORMATS.md §5): images from `102flowers.tgz` (members
//! `jpg/image_00001.jpg` ...) or the extracted `jpg/`, the split from `setid.mat` (variable
//! `tstid`: 1-based image ids), labels from `imagelabels.mat` (variable `labels`: 1..=102 per
//! image id) — both MAT v5, read by [`super::mat`].
//!
//! The test set is `tstid` in file order: index = position in `tstid`, name =
//! `image_%05d.jpg`, label = `labels[id - 1] - 1` (0..=101); `None` when `imagelabels.mat` is
//! absent. `setid.mat` is required. A MAT file that does not parse or lacks its variable, an id
//! that is not a positive integer, a label out of range, or a listed image missing from the
//! images is a `BadTestSet`.

use super::mat::parse_mat;
use super::{
    bad, find_dir, find_file, missing, read_small_file, scan_tar, TestImage, TestPixels, TestSet, TestSetKind,
};
use crate::DedupError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const NAME: &str = "flowers-test";
const ARCHIVE: &str = "102flowers.tgz";
const IMAGES_DIR: &str = "jpg";
const SETID: &str = "setid.mat";
const LABELS: &str = "imagelabels.mat";
/// Flowers-102 has 102 classes.
const CLASSES: f64 = 102.0;
/// Ids above this are refused (the set has 8,189 images): bounds the label lookups.
const MAX_ID: f64 = 1e7;

/// File name of image `id` (1-based).
pub fn image_name(id: u64) -> String {
    format!("image_{id:05}.jpg")
}

/// A MAT variable as whole numbers in `1..=max`; errors name the variable and position.
fn whole_numbers(path: &Path, variable: &str, max: f64) -> Result<Vec<u64>, DedupError> {
    let bytes = read_small_file(NAME, path)?;
    let file = parse_mat(&bytes).map_err(|error| bad(NAME, path, format!("not a readable MAT v5 file: {error}")))?;
    let Some(values) = file.values(variable) else {
        let names: Vec<&str> = file.arrays.iter().map(|array| array.name.as_str()).collect();
        return Err(bad(NAME, path, format!("no numeric variable `{variable}` (variables: {})", names.join(", "))));
    };
    values
        .iter()
        .enumerate()
        .map(|(position, &value)| {
            if value.fract() == 0.0 && (1.0..=max).contains(&value) {
                // Checked whole and in range: the conversion is exact.
                Ok(value as u64)
            } else {
                Err(bad(NAME, path, format!("{variable}[{position}] = {value} is not a whole number in 1..={max}")))
            }
        })
        .collect()
}

/// Loads `flowers-test` from `dirs`.
pub fn load(dirs: &[PathBuf]) -> Result<TestSet, DedupError> {
    let Some(setid) = find_file(dirs, SETID) else {
        return Err(missing(NAME, &[SETID], dirs));
    };
    let ids = whole_numbers(&setid, "tstid", MAX_ID)?;
    if ids.is_empty() {
        return Err(bad(NAME, &setid, "tstid is empty"));
    }
    let mut sources = Vec::new();
    let labels = match find_file(dirs, LABELS) {
        Some(path) => {
            let labels = whole_numbers(&path, "labels", CLASSES)?;
            if let Some(id) = ids.iter().find(|&&id| id as usize > labels.len()) {
                return Err(bad(NAME, &path, format!("{} labels, but tstid lists image {id}", labels.len())));
            }
            sources.push(path);
            Some(labels)
        }
        None => {
            tracing::info!("no {LABELS} found: Flowers-102 test labels are unknown");
            None
        }
    };
    let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
    for (position, &id) in ids.iter().enumerate() {
        // A repeated id is kept (the official split has none); both positions get the image.
        wanted.entry(image_name(id)).or_default().push(position);
    }
    let mut found: Vec<Option<bytes::Bytes>> = vec![None; ids.len()];
    let mut store = |file: &str, data: Vec<u8>| {
        let data = bytes::Bytes::from(data);
        for &position in wanted.get(file).map(Vec::as_slice).unwrap_or_default() {
            found[position] = Some(data.clone());
        }
    };
    let images_source = if let Some(archive) = find_file(dirs, ARCHIVE) {
        let in_jpg = |member: &str| member.strip_prefix("jpg/").filter(|rest| !rest.contains('/')).map(str::to_owned);
        let wanted_names: std::collections::HashSet<String> = wanted.keys().cloned().collect();
        scan_tar(
            NAME,
            &archive,
            true,
            |member| in_jpg(member).is_some_and(|file| wanted_names.contains(&file)),
            |member, data| {
                if let Some(file) = in_jpg(&member) {
                    store(&file, data);
                }
                Ok(())
            },
        )?;
        archive
    } else if let Some(dir) = find_dir(dirs, IMAGES_DIR) {
        let names: Vec<String> = wanted.keys().cloned().collect();
        for file in names {
            let path = dir.join(&file);
            if path.is_file() {
                store(&file, read_small_file(NAME, &path)?);
            }
        }
        dir
    } else {
        return Err(missing(NAME, &[ARCHIVE, "jpg/"], dirs));
    };
    let absent = found.iter().filter(|data| data.is_none()).count();
    if let Some(first) = found.iter().position(Option::is_none) {
        return Err(bad(
            NAME,
            &images_source,
            format!(
                "{absent} image(s) listed in tstid are missing, the first {} (truncated archive?)",
                image_name(ids[first])
            ),
        ));
    }
    let images = ids
        .iter()
        .zip(found)
        .enumerate()
        .map(|(position, (&id, data))| TestImage {
            index: position as u64,
            // `id <= labels.len()` was checked above; labels are 1..=102.
            label: labels.as_ref().and_then(|labels| labels.get(id as usize - 1)).map(|&label| label as i64 - 1),
            name: image_name(id),
            image: TestPixels::Encoded(data.unwrap_or_default()),
        })
        .collect();
    sources.insert(0, setid);
    sources.insert(0, images_source);
    Ok(TestSet { name: NAME.to_owned(), kind: TestSetKind::FlowersTest, images, sources })
}
