//! Reading a dataset back: every stage after ingest reads rows through here.

use super::manifest::Manifest;
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use std::path::{Path, PathBuf};

/// One row, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRow {
    pub key: String,
    pub image_bytes: Vec<u8>,
    pub image_path: Option<String>,
    pub label: Option<i64>,
    pub labels: Vec<i64>,
    pub width: i32,
    pub height: i32,
    pub format: String,
    pub content_hash: [u8; 32],
    pub source: String,
    pub source_index: i64,
    pub original_hash: Option<[u8; 32]>,
}

/// A dataset directory opened for reading.
pub struct DatasetReader {
    dir: PathBuf,
    manifest: Manifest,
}

impl DatasetReader {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        Ok(DatasetReader { dir: dir.to_path_buf(), manifest })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn part_paths(&self) -> Vec<PathBuf> {
        self.manifest.parts.iter().map(|p| self.dir.join(&p.file)).collect()
    }

    /// All rows in dataset order (part by part, row group by row group).
    pub fn rows(&self) -> impl Iterator<Item = Result<DatasetRow>> + '_ {
        self.part_paths().into_iter().flat_map(|path| match open_batches(&path) {
            Ok(reader) => Box::new(reader.flat_map(move |batch| match batch {
                Ok(batch) => batch_rows(&batch),
                Err(e) => vec![Err(Error::Arrow { path: path.clone(), source: e })],
            })) as Box<dyn Iterator<Item = Result<DatasetRow>>>,
            Err(e) => Box::new(std::iter::once(Err(e))),
        })
    }
}

fn open_batches(path: &Path) -> Result<ParquetRecordBatchReader> {
    let file = std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(256).build())
        .map_err(|source| Error::Parquet { path: path.to_path_buf(), source })
}

fn batch_rows(batch: &RecordBatch) -> Vec<Result<DatasetRow>> {
    let column = |name: &str| batch.column_by_name(name);
    let (
        Some(key),
        Some(image),
        Some(label),
        Some(labels),
        Some(width),
        Some(height),
        Some(format),
        Some(hash),
        Some(source),
        Some(index),
    ) = (
        column("key"),
        column("image"),
        column("label"),
        column("labels"),
        column("width"),
        column("height"),
        column("format"),
        column("content_hash"),
        column("source"),
        column("source_index"),
    )
    else {
        return vec![Err(Error::Config("a dataset part lacks a column of the bitkit schema".into()))];
    };
    let key = key.as_string::<i32>();
    let image = image.as_struct();
    let image_bytes = image.column(0).as_binary::<i32>();
    let image_path = image.column(1).as_string::<i32>();
    let label = label.as_primitive::<Int64Type>();
    let labels = labels.as_list::<i32>();
    let width = width.as_primitive::<Int32Type>();
    let height = height.as_primitive::<Int32Type>();
    let format = format.as_string::<i32>();
    let hash = hash.as_fixed_size_binary();
    let source = source.as_string::<i32>();
    let index = index.as_primitive::<Int64Type>();
    let original = column("original_hash").map(|c| c.as_fixed_size_binary().clone());
    let to_hash = |bytes: &[u8]| -> [u8; 32] {
        let mut out = [0u8; 32];
        if bytes.len() == 32 {
            out.copy_from_slice(bytes);
        }
        out
    };
    (0..batch.num_rows())
        .map(|i| {
            let labels = if labels.is_null(i) {
                Vec::new()
            } else {
                labels.value(i).as_primitive::<Int64Type>().values().to_vec()
            };
            Ok(DatasetRow {
                key: key.value(i).to_string(),
                image_bytes: image_bytes.value(i).to_vec(),
                image_path: (!image_path.is_null(i)).then(|| image_path.value(i).to_string()),
                label: (!label.is_null(i)).then(|| label.value(i)),
                labels,
                width: width.value(i),
                height: height.value(i),
                format: format.value(i).to_string(),
                content_hash: to_hash(hash.value(i)),
                source: source.value(i).to_string(),
                source_index: index.value(i),
                original_hash: original.as_ref().and_then(|o| (!o.is_null(i)).then(|| to_hash(o.value(i)))),
            })
        })
        .collect()
}
