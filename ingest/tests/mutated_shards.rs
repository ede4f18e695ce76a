//! Whole-pipeline property test: valid shards of every byte-stream format, damaged by random
//! truncation and byte flips, are ingested without a panic or a fatal error, and every record is
//! accounted for (written or listed as rejected).

use bitkit_fixtures as fx;
use bitkit_ingest::dataset::manifest::read_rejects;
use bitkit_ingest::dataset::{DatasetReader, Manifest};
use bitkit_ingest::formats::Format;
use bitkit_ingest::pipeline::{ingest, IngestConfig, Progress};
use proptest::prelude::*;
use std::path::Path;

/// One valid shard per format, as (format, file name, bytes).
fn valid_shards() -> Vec<(Format, &'static str, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let set = fx::synthetic_set(2, 3, 5);
    let imagenet = fx::synset_tar(&set, 0).expect("synset tar");
    fx::write_tfrecord(dir.path(), &set, &fx::TfRecordOptions::default()).expect("tfrecord");
    let tfrecord = std::fs::read(dir.path().join("train.tfrecord-00000-of-00001")).expect("read");
    fx::write_webdataset(&dir.path().join("wds"), &set, 100, fx::WebDatasetLabel::Cls).expect("wds");
    let webdataset = std::fs::read(dir.path().join("wds/shard-000000.tar")).expect("read");
    fx::write_cifar(&dir.path().join("test_batch.bin"), fx::CifarVariant::Cifar10, 4, 1).expect("cifar");
    let cifar = std::fs::read(dir.path().join("test_batch.bin")).expect("read");
    vec![
        (Format::ImagenetTar, "n00000000.tar", imagenet),
        (Format::Tfrecord, "train.tfrecord-00000-of-00001", tfrecord),
        (Format::Webdataset, "shard-000000.tar", webdataset),
        (Format::Cifar, "test_batch.bin", cifar),
    ]
}

fn run(format: Format, name: &str, bytes: &[u8], dir: &Path) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join(name), bytes).expect("write shard");
    let mut config = IngestConfig::new(format, vec![input.join(name).display().to_string()], dir.join("out"));
    config.workers = 2;
    if format == Format::ImagenetTar {
        // The class list must not depend on the damage.
        std::fs::write(dir.join("classes.txt"), "n00000000\nn00000001\n").expect("write classes");
        config.classes_file = Some(dir.join("classes.txt"));
    }
    let summary = ingest(&config, &Progress::default()).expect("damage in a shard is never fatal");
    let manifest = Manifest::read(&dir.join("out")).expect("manifest");
    let rows = DatasetReader::open(&dir.join("out")).expect("open").rows().count() as u64;
    let rejects = read_rejects(&dir.join("out")).expect("rejects").len() as u64;
    assert_eq!(rows, manifest.rows);
    assert_eq!(rows, summary.records_written);
    assert_eq!(rejects, manifest.rejected);
    let source = &manifest.sources[0];
    assert_eq!(source.written, rows);
    assert_eq!(source.rejected, rejects);
    // Every framed record is written or rejected; shard-level rejects have no index.
    assert!(source.records_read <= source.written + source.rejected);
}

proptest! {
    // Cases: PROPTEST_CASES (scripts/test: 64; set 10000 for a long local run).
    #[test]
    fn damaged_shards_never_panic_and_lose_nothing(
        which in 0usize..4,
        cut in proptest::option::of(0.0f64..1.0),
        flips in proptest::collection::vec((0.0f64..1.0, 1u8..=255), 0..6),
    ) {
        let (format, name, mut bytes) = valid_shards().swap_remove(which);
        for (at, mask) in flips {
            let i = ((bytes.len() as f64) * at) as usize;
            if let Some(b) = bytes.get_mut(i) {
                *b ^= mask;
            }
        }
        if let Some(cut) = cut {
            bytes.truncate(((bytes.len() as f64) * cut) as usize);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        run(format, name, &bytes, dir.path());
    }
}

#[test]
fn undamaged_shards_ingest_completely() {
    for (format, name, bytes) in valid_shards() {
        let dir = tempfile::tempdir().expect("temp dir");
        run(format, name, &bytes, dir.path());
        let manifest = Manifest::read(&dir.path().join("out")).expect("manifest");
        assert_eq!(manifest.rejected, 0, "{format:?}");
        assert!(manifest.rows > 0, "{format:?}");
    }
}
