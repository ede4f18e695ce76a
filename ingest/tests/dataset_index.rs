//! `DatasetIndex`: the image offsets it records point at exactly the bytes the Parquet reader
//! returns, its metadata equals the rows, and a part that disagrees with the manifest is
//! refused.

use bitkit_fixtures as fx;
use bitkit_ingest::dataset::{DatasetIndex, DatasetReader, WriterSettings};
use bitkit_ingest::formats::Format;
use bitkit_ingest::pipeline::{ingest, IngestConfig, Progress};
use std::os::unix::fs::FileExt;
use std::path::Path;

fn dataset(dir: &Path, writer: WriterSettings) -> std::path::PathBuf {
    let set = fx::synthetic_set(3, 20, 11);
    fx::write_tfrecord(&dir.join("in"), &set, &fx::TfRecordOptions::default()).expect("tfrecord");
    let out = dir.join("ds");
    let mut config = IngestConfig::new(Format::Tfrecord, vec![dir.join("in").display().to_string()], out.clone());
    config.workers = 2;
    config.writer = writer;
    ingest(&config, &Progress::default()).expect("ingest");
    out
}

#[test]
fn offsets_point_at_the_image_bytes_of_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Tiny row groups and parts: many row groups, several parts, several pages.
    let out = dataset(dir.path(), WriterSettings { row_group_bytes: 6_000, part_bytes: 25_000 });
    let index = DatasetIndex::open(&out).expect("index");
    let rows: Vec<_> = DatasetReader::open(&out).expect("open").rows().collect::<Result<_, _>>().expect("rows");
    assert_eq!(index.len(), rows.len());
    assert!(index.part_paths().len() > 1, "the test wants several parts");
    let files: Vec<std::fs::File> =
        index.part_paths().iter().map(|p| std::fs::File::open(p).expect("open part")).collect();
    for (i, row) in rows.iter().enumerate() {
        let location = index.location(i).expect("image present");
        let mut bytes = vec![0u8; location.len as usize];
        files[location.part as usize].read_exact_at(&mut bytes, location.offset).expect("read");
        assert_eq!(bytes, row.image_bytes, "row {i}");
        assert_eq!(index.key(i), row.key);
        assert_eq!(index.label(i), row.label);
        assert_eq!(index.labels(i), row.labels.as_slice());
        assert_eq!(index.size(i), (row.width as u32, row.height as u32));
        assert_eq!(index.content_hash(i), row.content_hash);
    }
    assert_eq!(index.rows_by_key().len(), rows.len());
}

#[test]
fn a_part_that_disagrees_with_the_manifest_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dataset(dir.path(), WriterSettings::default());
    let part = out.join("part-00000.parquet");
    let mut bytes = std::fs::read(&part).expect("read");
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&part, bytes).expect("write");
    let error = DatasetIndex::open(&out).expect_err("refused").to_string();
    assert!(error.contains("part-00000.parquet") && error.contains("manifest records"), "{error}");
    std::fs::remove_file(&part).expect("rm");
    let error = DatasetIndex::open(&out).expect_err("refused").to_string();
    assert!(error.contains("cannot be read"), "{error}");
}
