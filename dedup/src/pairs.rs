//! `pairs.parquet`: every candidate pair the search found, with its verification and verdict,
//! for audit (DESIGN §3).

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::DedupError;

/// One row of `pairs.parquet`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairRow {
    pub upstream_key: String,
    pub upstream_row: i64,
    pub test_set: String,
    pub test_index: i64,
    pub test_name: String,
    /// The view both sides were hashed in: `full`, `center` or `raw`; `full_inset` / `raw_inset`
    /// when found through an inset frame of the test image, `full_sheared` / `raw_sheared` through
    /// the sheared CIFAR channel (one-axis test images).
    pub view: String,
    /// The dihedral variant of the test image that matched (`identity`, `flip_x`, ...).
    pub flip: String,
    pub distance: i32,
    pub upstream_quality: i32,
    pub test_quality: i32,
    /// Verification: normalized cross-correlation and SSIM of the aligned grayscale views.
    pub ncc: f32,
    pub ssim: f32,
    /// The verification score the verdict thresholds (NCC).
    pub score: f32,
    /// `duplicate` or `rejected`.
    pub verdict: String,
}

pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("upstream_key", DataType::Utf8, false),
        Field::new("upstream_row", DataType::Int64, false),
        Field::new("test_set", DataType::Utf8, false),
        Field::new("test_index", DataType::Int64, false),
        Field::new("test_name", DataType::Utf8, false),
        Field::new("view", DataType::Utf8, false),
        Field::new("flip", DataType::Utf8, false),
        Field::new("distance", DataType::Int32, false),
        Field::new("upstream_quality", DataType::Int32, false),
        Field::new("test_quality", DataType::Int32, false),
        Field::new("ncc", DataType::Float32, false),
        Field::new("ssim", DataType::Float32, false),
        Field::new("score", DataType::Float32, false),
        Field::new("verdict", DataType::Utf8, false),
    ])
}

/// Writes `rows` to `path` (temporary name, then rename).
pub fn write_pairs(path: &Path, rows: &[PairRow]) -> Result<(), DedupError> {
    let fail = |reason: String| DedupError::Write { path: path.to_path_buf(), reason };
    let schema = Arc::new(schema());
    let strings = |f: fn(&PairRow) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f)));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(|r| &r.upstream_key),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.upstream_row))),
            strings(|r| &r.test_set),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.test_index))),
            strings(|r| &r.test_name),
            strings(|r| &r.view),
            strings(|r| &r.flip),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.distance))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.upstream_quality))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.test_quality))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.ncc))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.ssim))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
            strings(|r| &r.verdict),
        ],
    )
    .map_err(|e| fail(e.to_string()))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| fail(e.to_string()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("bitkit {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| fail(e.to_string()))?;
    writer.write(&batch).map_err(|e| fail(e.to_string()))?;
    let file = writer.into_inner().map_err(|e| fail(e.to_string()))?;
    file.sync_all().map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))
}
