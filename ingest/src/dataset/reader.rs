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
        self.part_paths().into_iter().flat_map(|path| match super::guard_decode(&path, || open_batches(&path)) {
            Ok(mut reader) => {
                // Decode batch by batch under the panic guard; stop the part at its first error.
                let mut failed = false;
                Box::new(
                    std::iter::from_fn(move || {
                        if failed {
                            return None;
                        }
                        let next = super::guard_decode(&path, || {
                            Ok(reader.next().map(|b| match b {
                                Ok(batch) => batch_rows(&batch, &path),
                                Err(e) => vec![Err(Error::Arrow { path: path.clone(), source: e })],
                            }))
                        });
                        match next {
                            Ok(Some(rows)) => {
                                failed = rows.iter().any(|r| r.is_err());
                                Some(rows)
                            }
                            Ok(None) => None,
                            Err(e) => {
                                failed = true;
                                Some(vec![Err(e)])
                            }
                        }
                    })
                    .flatten(),
                ) as Box<dyn Iterator<Item = Result<DatasetRow>>>
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        })
    }
}

fn open_batches(path: &Path) -> Result<ParquetRecordBatchReader> {
    let file = super::open_part(path)?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(256).build())
        .map_err(|source| Error::Parquet { path: path.to_path_buf(), source })
}

fn batch_rows(batch: &RecordBatch, path: &Path) -> Vec<Result<DatasetRow>> {
    match typed_columns(batch, path) {
        Ok(columns) => columns.rows(batch.num_rows()),
        Err(e) => vec![Err(e)],
    }
}

/// The columns of a batch with the types of bitkit's schema.
struct Columns<'a> {
    key: &'a arrow_array::StringArray,
    image_bytes: &'a arrow_array::BinaryArray,
    image_path: &'a arrow_array::StringArray,
    label: &'a arrow_array::Int64Array,
    labels: &'a arrow_array::ListArray,
    width: &'a arrow_array::Int32Array,
    height: &'a arrow_array::Int32Array,
    format: &'a arrow_array::StringArray,
    hash: &'a arrow_array::FixedSizeBinaryArray,
    source: &'a arrow_array::StringArray,
    index: &'a arrow_array::Int64Array,
    original: Option<&'a arrow_array::FixedSizeBinaryArray>,
}

fn typed_columns<'a>(batch: &'a RecordBatch, path: &Path) -> Result<Columns<'a>> {
    let bad = |reason: &str| Error::BadManifest {
        path: path.to_path_buf(),
        reason: format!("not in bitkit's dataset schema: {reason}"),
    };
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| bad(&format!("no {name} column")));
    let image = column("image")?.as_struct_opt().ok_or_else(|| bad("image is not a struct"))?;
    if image.num_columns() < 2 {
        return Err(bad("image lacks bytes and path"));
    }
    let labels = column("labels")?.as_list_opt::<i32>().ok_or_else(|| bad("labels is not a list"))?;
    if labels.values().as_primitive_opt::<Int64Type>().is_none() {
        return Err(bad("labels are not int64"));
    }
    Ok(Columns {
        key: column("key")?.as_string_opt::<i32>().ok_or_else(|| bad("key is not utf8"))?,
        image_bytes: image.column(0).as_binary_opt::<i32>().ok_or_else(|| bad("image.bytes is not binary"))?,
        image_path: image.column(1).as_string_opt::<i32>().ok_or_else(|| bad("image.path is not utf8"))?,
        label: column("label")?.as_primitive_opt::<Int64Type>().ok_or_else(|| bad("label is not int64"))?,
        labels,
        width: column("width")?.as_primitive_opt::<Int32Type>().ok_or_else(|| bad("width is not int32"))?,
        height: column("height")?.as_primitive_opt::<Int32Type>().ok_or_else(|| bad("height is not int32"))?,
        format: column("format")?.as_string_opt::<i32>().ok_or_else(|| bad("format is not utf8"))?,
        hash: column("content_hash")?
            .as_fixed_size_binary_opt()
            .ok_or_else(|| bad("content_hash is not fixed_size_binary"))?,
        source: column("source")?.as_string_opt::<i32>().ok_or_else(|| bad("source is not utf8"))?,
        index: column("source_index")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad("source_index is not int64"))?,
        original: match batch.column_by_name("original_hash") {
            Some(c) => Some(c.as_fixed_size_binary_opt().ok_or_else(|| bad("original_hash is not fixed_size_binary"))?),
            None => None,
        },
    })
}

impl Columns<'_> {
    fn rows(&self, num_rows: usize) -> Vec<Result<DatasetRow>> {
        let Columns {
            key,
            image_bytes,
            image_path,
            label,
            labels,
            width,
            height,
            format,
            hash,
            source,
            index,
            original,
        } = self;
        let to_hash = |bytes: &[u8]| -> [u8; 32] {
            let mut out = [0u8; 32];
            if bytes.len() == 32 {
                out.copy_from_slice(bytes);
            }
            out
        };
        (0..num_rows)
            .map(|i| {
                let labels = if labels.is_null(i) {
                    Vec::new()
                } else {
                    labels.value(i).as_primitive_opt::<Int64Type>().map(|v| v.values().to_vec()).unwrap_or_default()
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
}
