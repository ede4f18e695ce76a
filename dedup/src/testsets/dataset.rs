//! A bitkit dataset directory (written by `bitkit ingest`) used as a test set: every row is a
//! test image, index = row number in dataset order, name = the row's key, label = its `label`
//! column, image = the stored bytes.

use super::{bad, TestImage, TestPixels, TestSet, TestSetKind};
use crate::DedupError;
use bitkit_ingest::dataset::DatasetReader;
use std::path::Path;

/// Loads the dataset at `path`; `item` is the `--against` text, used as the set's name.
pub fn load(item: &str, path: &Path) -> Result<TestSet, DedupError> {
    let reader = DatasetReader::open(path)?;
    let mut images = Vec::new();
    for (index, row) in reader.rows().enumerate() {
        let row = row?;
        if row.image_bytes.is_empty() {
            return Err(bad(item, path, format!("row {index} ({}) has no image bytes", row.key)));
        }
        images.push(TestImage {
            index: index as u64,
            label: row.label,
            name: row.key,
            image: TestPixels::Encoded(row.image_bytes.into()),
        });
    }
    let mut sources = vec![path.join(bitkit_ingest::dataset::MANIFEST_FILE)];
    sources.extend(reader.part_paths());
    Ok(TestSet { name: item.to_owned(), kind: TestSetKind::Dataset, images, sources })
}
