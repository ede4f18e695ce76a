//! Bad input: every hostile shard of the fixtures, with an assertion on the exact outcome.

use crate::util::{manifest, rejects, rows, s, TestDir};
use bitkit_fixtures as fx;

/// Checks one ingested dataset against the fixture's expectations for `source`.
fn check(dataset: &std::path::Path, source_suffix: &str, expected: &fx::Expected) {
    let rows: Vec<_> = rows(dataset).into_iter().filter(|r| r.source.ends_with(source_suffix)).collect();
    let kept: Vec<(i64, &str, i32, i32)> =
        rows.iter().map(|r| (r.source_index, r.format.as_str(), r.width, r.height)).collect();
    let want: Vec<(i64, &str, i32, i32)> = expected
        .kept
        .iter()
        .filter(|k| k.format.is_some())
        .map(|k| (k.index as i64, k.format.unwrap_or_default(), k.width as i32, k.height as i32))
        .collect();
    if expected.kept.iter().all(|k| k.format.is_some()) {
        assert_eq!(kept, want, "{source_suffix}: rows kept");
    } else {
        let indices: Vec<i64> = expected.kept.iter().map(|k| k.index as i64).collect();
        assert_eq!(rows.iter().map(|r| r.source_index).collect::<Vec<_>>(), indices, "{source_suffix}: rows kept");
    }
    for (row, want) in rows.iter().zip(&expected.kept) {
        assert_eq!(row.labels, want.labels, "{source_suffix} record {}", want.index);
    }
    let rejects: Vec<(u64, String)> = rejects(dataset)
        .into_iter()
        .filter(|r| r.source.ends_with(source_suffix))
        .map(|r| (r.index.unwrap_or(u64::MAX), r.kind.as_str().to_string()))
        .collect();
    let want: Vec<(u64, String)> = expected.reject_kinds().into_iter().map(|(i, k)| (i, k.to_string())).collect();
    assert_eq!(rejects, want, "{source_suffix}: rejects");
    let stats =
        manifest(dataset).sources.into_iter().find(|st| st.path.ends_with(source_suffix)).expect("source listed");
    assert_eq!(stats.written as usize, expected.good(), "{source_suffix}: manifest written");
    assert_eq!(stats.rejected as usize, expected.rejects.len(), "{source_suffix}: manifest rejected");
}

#[test]
fn every_hostile_shard_keeps_good_records_and_lists_each_reject() {
    let t = TestDir::new();
    let shards = fx::write_all_hostile(&t.path("bad")).expect("fixtures");
    // The five ImageNet tars together (their class list is the five wnids) ...
    let run = t
        .bitkit(&["ingest", "--format", "imagenet-tar", s(&t.path("bad/imagenet")), "--out", "imagenet", "--json"])
        .expect_code(3);
    let summary = run.json();
    let imagenet: Vec<&fx::HostileShard> = shards.iter().filter(|h| h.format == "imagenet-tar").collect();
    let total_rejects: usize = imagenet.iter().map(|h| h.expected.rejects.len()).sum();
    assert_eq!(summary["records_rejected"], total_rejects as u64);
    for shard in &imagenet {
        let name = shard.path.file_name().and_then(|n| n.to_str()).expect("name");
        check(&t.path("imagenet"), name, &shard.expected);
    }
    // ... every other shard alone.
    for (n, shard) in shards.iter().filter(|h| h.format != "imagenet-tar").enumerate() {
        let out = format!("out{n}");
        let code = if shard.expected.rejects.is_empty() { 0 } else { 3 };
        t.bitkit(&["ingest", "--format", shard.format, s(&shard.path), "--out", &out, "--quiet"]).expect_code(code);
        let suffix =
            if shard.format == "folder" { "" } else { shard.path.file_name().and_then(|n| n.to_str()).expect("name") };
        check(&t.path(&out), suffix, &shard.expected);
    }
}

#[test]
fn rejects_name_the_shard_record_offset_and_reason() {
    let t = TestDir::new();
    std::fs::create_dir_all(t.path("in")).expect("mkdir");
    fx::write_bad_tfrecord_shard(&t.path("in/bad.tfrecord-00000-of-00001"), false).expect("fixtures");
    t.bitkit(&["ingest", "--format", "tfrecord", "in", "--out", "ds", "--quiet"]).expect_code(3);
    for reject in rejects(&t.path("ds")) {
        assert_eq!(reject.source, "bad.tfrecord-00000-of-00001");
        assert!(reject.index.is_some() && reject.offset.is_some(), "{reject:?}");
        assert!(!reject.reason.is_empty());
    }
    let m = manifest(&t.path("ds"));
    assert_eq!(m.rejected as usize, rejects(&t.path("ds")).len());
    assert_eq!(m.rejects_by_kind.values().sum::<u64>(), m.rejected);
}

#[test]
fn strict_makes_the_first_reject_fatal_and_writes_no_dataset() {
    let t = TestDir::new();
    fx::write_bad_imagenet_tar(&t.path("n00000000.tar")).expect("fixtures");
    let run =
        t.bitkit(&["ingest", "--format", "imagenet-tar", "n00000000.tar", "--out", "ds", "--strict"]).expect_code(1);
    assert!(run.stderr().contains("n00000000.tar") && run.stderr().contains("--strict"), "{}", run.stderr());
    assert!(!t.path("ds/dataset.json").exists());
}

#[test]
fn an_unreadable_shard_is_reported_and_the_others_go_on() {
    let t = TestDir::new();
    let set = fx::synthetic_set(2, 3, 13);
    let options = fx::TfRecordOptions { shards: 2, ..Default::default() };
    fx::write_tfrecord(&t.path("in"), &set, &options).expect("fixtures");
    // A shard that is not gzip although it says so: the stream cannot be read at all.
    std::fs::write(t.path("in/train.tfrecord-00001-of-00002.broken"), b"\x1f\x8b\x08garbage, not deflate")
        .expect("write");
    let run = t.bitkit(&["ingest", "--format", "tfrecord", "in", "--out", "ds", "--json"]).expect_code(3);
    assert_eq!(run.json()["records_written"], 6);
    let rejects = rejects(&t.path("ds"));
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].source, "train.tfrecord-00001-of-00002.broken");
}

#[test]
fn a_garbage_flat_tar_does_not_stop_the_class_scan_or_the_other_shards() {
    let t = TestDir::new();
    let set = fx::synthetic_set(2, 3, 14);
    std::fs::create_dir_all(t.path("in")).expect("mkdir");
    fx::write_flat_tar(&t.path("in/a.tar"), &set).expect("fixtures");
    std::fs::write(t.path("in/b.tar"), vec![0x5a; 5000]).expect("write");
    let run = t.bitkit(&["ingest", "--format", "tar", "in", "--out", "ds", "--json"]).expect_code(3);
    assert_eq!(run.json()["records_written"], 6);
    let rejects = rejects(&t.path("ds"));
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].source, "b.tar");
    assert_eq!(manifest(&t.path("ds")).classes.as_deref(), Some(set.classes.as_slice()));
}
