//! Every input format, ingested and read back.

use crate::util::{files, manifest, rejects, rows, s, TestDir};
use bitkit_fixtures as fx;
use std::collections::BTreeMap;

/// key → (labels, bytes) of a set, for comparisons.
fn by_name(set: &fx::SyntheticSet) -> BTreeMap<String, &fx::Sample> {
    set.samples.iter().map(|sample| (sample.name.clone(), sample)).collect()
}

fn check_row_matches_sample(row: &bitkit_ingest::dataset::DatasetRow, sample: &fx::Sample) {
    assert_eq!(row.image_bytes, sample.bytes, "{}: stored bytes are the source bytes", row.key);
    assert_eq!(row.content_hash, *blake3::hash(&sample.bytes).as_bytes(), "{}", row.key);
    assert_eq!((row.width as u32, row.height as u32), (sample.width, sample.height), "{}", row.key);
    assert_eq!(row.format, "jpeg");
    assert_eq!(row.label, Some(sample.class as i64), "{}", row.key);
}

#[test]
fn imagenet_directory_of_synset_tars() {
    let t = TestDir::new();
    let set = fx::synthetic_set(4, 3, 1);
    fx::write_imagenet_tars(&t.path("in"), &set).expect("fixtures");
    let run = t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--json"]).expect_code(0);
    let summary = run.json();
    assert_eq!(summary["records_written"], 12);
    assert_eq!(summary["records_rejected"], 0);
    let rows = rows(&t.path("ds"));
    let samples = by_name(&set);
    assert_eq!(rows.len(), 12);
    for row in &rows {
        let (wnid, stem) = row.key.split_once('/').expect("key is wnid/stem");
        let sample = samples[stem];
        assert_eq!(wnid, set.classes[sample.class]);
        check_row_matches_sample(row, sample);
        assert_eq!(row.source, format!("{wnid}.tar"));
        assert_eq!(row.image_path.as_deref(), Some(format!("{stem}.JPEG").as_str()));
    }
    // Rows in input order: shards sorted, members in tar order.
    let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let mut sorted = sources.clone();
    sorted.sort();
    assert_eq!(sources, sorted);
    let m = manifest(&t.path("ds"));
    assert_eq!(m.classes.as_deref(), Some(set.classes.as_slice()));
    assert_eq!(m.rows, 12);
    assert!(m.sources.iter().all(|s| s.records_read == 3 && s.written == 3 && s.rejected == 0));
    assert!(rejects(&t.path("ds")).is_empty());
}

#[test]
fn imagenet_outer_tar_gives_the_same_rows_as_the_directory() {
    let t = TestDir::new();
    let set = fx::synthetic_set(3, 4, 2);
    fx::write_imagenet_tars(&t.path("dir"), &set).expect("fixtures");
    fx::write_imagenet_outer_tar(&t.path("winter21_whole.tar"), &set).expect("fixtures");
    t.bitkit(&["ingest", "--format", "imagenet-tar", "dir", "--out", "a", "--quiet"]).expect_code(0);
    t.bitkit(&["ingest", "--format", "imagenet-tar", "winter21_whole.tar", "--out", "b", "--quiet"]).expect_code(0);
    let (a, b) = (rows(&t.path("a")), rows(&t.path("b")));
    assert_eq!(a.len(), 12);
    let strip = |rows: &[bitkit_ingest::dataset::DatasetRow]| -> Vec<(String, Vec<u8>, Vec<i64>, i64)> {
        rows.iter().map(|r| (r.key.clone(), r.image_bytes.clone(), r.labels.clone(), r.source_index)).collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert!(b.iter().all(|r| r.source.starts_with("winter21_whole.tar/n0000000")), "{:?}", b[0].source);
}

#[test]
fn imagenet_class_file_fixes_ids_and_unknown_wnids_are_rejected() {
    let t = TestDir::new();
    let set = fx::synthetic_set(3, 2, 3);
    fx::write_imagenet_tars(&t.path("in"), &set).expect("fixtures");
    // Reverse order, and without n00000001: its records are rejected as bad labels.
    std::fs::write(t.path("classes.txt"), "n00000002 third\nn00000000 first\n").expect("write");
    let run = t
        .bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--classes", "classes.txt", "--json"])
        .expect_code(3);
    assert_eq!(run.json()["records_rejected"], 2);
    let rows = rows(&t.path("ds"));
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let expected = if row.key.starts_with("n00000002/") { 0 } else { 1 };
        assert_eq!(row.labels, [expected], "{}", row.key);
    }
    let rejects = rejects(&t.path("ds"));
    assert!(rejects.iter().all(|r| r.source == "n00000001.tar" && r.reason.contains("n00000001")), "{rejects:?}");
}

#[test]
fn tfrecord_multi_label_one_based_gzip_and_unpacked() {
    let t = TestDir::new();
    let mut set = fx::synthetic_set(5, 4, 4);
    for (i, sample) in set.samples.iter_mut().enumerate() {
        if i % 3 == 0 {
            sample.extra_labels = vec![(sample.class + 1) % 5, (sample.class + 2) % 5];
        }
    }
    let options =
        fx::TfRecordOptions { shards: 3, gzip: true, label_offset: 1, unpacked_labels: true, ..Default::default() };
    fx::write_tfrecord(&t.path("tfr"), &set, &options).expect("fixtures");
    let run = t
        .bitkit(&["ingest", "--format", "tfrecord", "tfr", "--out", "ds", "--label-offset", "1", "--json"])
        .expect_code(0);
    assert_eq!(run.json()["records_written"], 20);
    let rows = rows(&t.path("ds"));
    let samples = by_name(&set);
    for row in &rows {
        let name =
            row.image_path.as_deref().and_then(|p| p.strip_suffix(".JPEG")).expect("image/filename kept as path");
        let sample = samples[name];
        check_row_matches_sample(row, sample);
        let labels: Vec<i64> = sample.labels().iter().map(|&l| l as i64).collect();
        assert_eq!(row.labels, labels, "multi-label lists are kept whole");
        assert!(row.key.starts_with("train.tfrecord-0000"), "{}", row.key);
    }
    // Without a class list the labels are plain ints.
    assert_eq!(manifest(&t.path("ds")).classes, None);
}

#[test]
fn tfrecord_glob_and_custom_keys() {
    let t = TestDir::new();
    let set = fx::synthetic_set(2, 3, 5);
    std::fs::create_dir_all(t.path("tfr")).expect("mkdir");
    for (i, sample) in set.samples.iter().enumerate() {
        let example = fx::encode_example(&[
            ("label", fx::FeatureValue::Int64(vec![sample.class as i64])),
            ("jpeg", fx::FeatureValue::Bytes(vec![sample.bytes.clone()])),
        ]);
        let shard = t.path(&format!("tfr/data-train.tfrecord-{:05}-of-00006", i));
        std::fs::write(shard, fx::tfrecord_frame(&example)).expect("write");
    }
    let pattern = format!("{}/data-train.tfrecord-*", s(&t.path("tfr")));
    t.bitkit(&[
        "ingest",
        "--format",
        "tfrecord",
        &pattern,
        "--out",
        "ds",
        "--image-key",
        "jpeg",
        "--label-key",
        "label",
        "--quiet",
    ])
    .expect_code(0);
    let rows = rows(&t.path("ds"));
    assert_eq!(rows.len(), 6);
    for (row, sample) in rows.iter().zip(&set.samples) {
        check_row_matches_sample(row, sample);
        assert_eq!(row.image_path, None);
    }
}

#[test]
fn webdataset_with_cls_json_and_txt_labels() {
    for (label, name) in
        [(fx::WebDatasetLabel::Cls, "cls"), (fx::WebDatasetLabel::Json, "json"), (fx::WebDatasetLabel::Txt, "txt")]
    {
        let t = TestDir::new();
        let set = fx::synthetic_set(3, 3, 6);
        fx::write_webdataset(&t.path("wds"), &set, 4, label).expect("fixtures");
        t.bitkit(&["ingest", "--format", "webdataset", "wds", "--out", "ds", "--quiet"]).expect_code(0);
        let rows = rows(&t.path("ds"));
        assert_eq!(rows.len(), 9, "{name}");
        for (row, sample) in rows.iter().zip(&set.samples) {
            check_row_matches_sample(row, sample);
            assert!(row.key.ends_with(&format!("/{}", sample.name)), "{name}: {}", row.key);
        }
    }
}

#[test]
fn flat_tar_and_folder_take_the_class_from_the_directory() {
    let t = TestDir::new();
    let set = fx::synthetic_set(3, 2, 7);
    fx::write_flat_tar(&t.path("flat.tar"), &set).expect("fixtures");
    fx::write_folder(&t.path("tree"), &set).expect("fixtures");
    t.bitkit(&["ingest", "--format", "tar", "flat.tar", "--out", "a", "--quiet"]).expect_code(0);
    t.bitkit(&["ingest", "--format", "folder", "tree", "--out", "b", "--quiet"]).expect_code(0);
    let samples = by_name(&set);
    for dataset in ["a", "b"] {
        let rows = rows(&t.path(dataset));
        assert_eq!(rows.len(), 6, "{dataset}");
        for row in &rows {
            let stem = row.key.rsplit('/').next().expect("key");
            check_row_matches_sample(row, samples[stem]);
        }
        assert_eq!(manifest(&t.path(dataset)).classes.as_deref(), Some(set.classes.as_slice()), "{dataset}");
    }
    // Folder keys are the relative path without extension.
    let folder_keys: Vec<String> = rows(&t.path("b")).into_iter().map(|r| r.key).collect();
    assert!(
        folder_keys.contains(&format!("n00000000/{}", set.samples_of(0).next().expect("sample").name)),
        "{folder_keys:?}"
    );
}

#[test]
fn cifar_pixels_are_stored_losslessly_as_png() {
    let t = TestDir::new();
    std::fs::create_dir_all(t.path("cifar-10-batches-bin")).expect("mkdir");
    fx::write_cifar(&t.path("cifar-10-batches-bin/test_batch.bin"), fx::CifarVariant::Cifar10, 20, 8)
        .expect("fixtures");
    let raw = std::fs::read(t.path("cifar-10-batches-bin/test_batch.bin")).expect("read");
    fx::write_cifar_names(&t.path("cifar-10-batches-bin"), fx::CifarVariant::Cifar10).expect("fixtures");
    t.bitkit(&["ingest", "--format", "cifar", "cifar-10-batches-bin", "--out", "ds", "--quiet"]).expect_code(0);
    let rows = rows(&t.path("ds"));
    assert_eq!(rows.len(), 20);
    for (i, row) in rows.iter().enumerate() {
        let record = &raw[i * 3073..(i + 1) * 3073];
        assert_eq!(row.format, "png");
        assert_eq!((row.width, row.height), (32, 32));
        assert_eq!(row.label, Some(i64::from(record[0])));
        let decoded = image::load_from_memory(&row.image_bytes).expect("png decodes").to_rgb8();
        for (p, pixel) in decoded.pixels().enumerate() {
            assert_eq!(pixel.0, [record[1 + p], record[1 + 1024 + p], record[1 + 2048 + p]], "row {i} pixel {p}");
        }
    }
    assert_eq!(manifest(&t.path("ds")).classes.expect("names")[0], "airplane");
}

#[test]
fn same_inputs_give_byte_identical_output_whatever_the_thread_count() {
    let t = TestDir::new();
    let set = fx::synthetic_set(6, 10, 9);
    fx::write_imagenet_tars(&t.path("in"), &set).expect("fixtures");
    // Small row groups and parts so the layout rules are exercised.
    let common = ["ingest", "--format", "imagenet-tar", "in", "--row-group-mb", "1", "--part-mb", "1", "--quiet"];
    t.bitkit(&[&common[..], &["--out", "a", "--workers", "1"]].concat()).expect_code(0);
    t.bitkit(&[&common[..], &["--out", "b", "--workers", "2"]].concat()).expect_code(0);
    t.bitkit(&[&common[..], &["--out", "c", "--workers", "7"]].concat()).expect_code(0);
    let a = files(&t.path("a"));
    assert!(a.contains_key("dataset.json") && a.contains_key("part-00000.parquet") && a.contains_key("rejects.jsonl"));
    assert_eq!(a, files(&t.path("b")));
    assert_eq!(a, files(&t.path("c")));
    // The manifest's part hashes are the files' hashes.
    for part in manifest(&t.path("a")).parts {
        assert_eq!(part.blake3, blake3::hash(&a[&part.file]).to_hex().to_string());
        assert_eq!(part.bytes, a[&part.file].len() as u64);
    }
}

#[test]
fn rerunning_a_complete_ingest_does_nothing() {
    let t = TestDir::new();
    fx::write_imagenet_tars(&t.path("in"), &fx::synthetic_set(2, 2, 10)).expect("fixtures");
    t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--quiet"]).expect_code(0);
    let before = files(&t.path("ds"));
    let run = t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--json"]).expect_code(0);
    assert_eq!(run.json()["already_complete"], true);
    assert_eq!(before, files(&t.path("ds")));
    // Other options into the same directory are refused, and nothing is touched.
    let run =
        t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--max-pixels", "1000"]).expect_code(1);
    assert!(run.stderr().contains("already holds a dataset"), "{}", run.stderr());
    assert_eq!(before, files(&t.path("ds")));
}

#[test]
fn worker_split_then_merge_gives_the_rows_of_a_single_run() {
    let t = TestDir::new();
    let set = fx::synthetic_set(7, 3, 11);
    fx::write_imagenet_tars(&t.path("in"), &set).expect("fixtures");
    t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "single", "--quiet"]).expect_code(0);
    let mut parts = Vec::new();
    for i in 0..4 {
        let out = format!("w{i}");
        let index = i.to_string();
        t.bitkit(&[
            "ingest",
            "--format",
            "imagenet-tar",
            "in",
            "--out",
            &out,
            "--worker-index",
            &index,
            "--num-workers",
            "4",
            "--quiet",
        ])
        .expect_code(0);
        parts.push(out);
    }
    // Any order on the command line.
    let mut args = vec!["ingest", "merge", "merged", "--json"];
    args.extend(parts.iter().rev().map(String::as_str));
    let run = t.bitkit(&args).expect_code(0);
    assert_eq!(run.json()["rows"], 21);
    assert_eq!(rows(&t.path("single")), rows(&t.path("merged")));
    let (single, merged) = (manifest(&t.path("single")), manifest(&t.path("merged")));
    assert_eq!(single.sources, merged.sources);
    assert_eq!(single.config, merged.config);
    assert_eq!(single.classes, merged.classes);
    // Merging an incomplete set of workers is refused.
    let run = t.bitkit(&["ingest", "merge", "partial", "w0", "w2", "w3"]).expect_code(1);
    assert!(run.stderr().contains("worker 1 of 4 is missing"), "{}", run.stderr());
}

#[test]
fn max_side_reencodes_large_images_and_keeps_the_original_hash() {
    let t = TestDir::new();
    let config = fx::SyntheticSetConfig {
        num_classes: 2,
        per_class: 3,
        seed: 12,
        min_side: 100,
        max_side: 300,
        ..Default::default()
    };
    let set = fx::synthetic_set_with(&config);
    fx::write_imagenet_tars(&t.path("in"), &set).expect("fixtures");
    t.bitkit(&[
        "ingest",
        "--format",
        "imagenet-tar",
        "in",
        "--out",
        "ds",
        "--max-side",
        "128",
        "--quality",
        "90",
        "--quiet",
    ])
    .expect_code(0);
    let samples = by_name(&set);
    let rows = rows(&t.path("ds"));
    assert_eq!(rows.len(), 6);
    let mut resized = 0;
    for row in &rows {
        let sample = samples[row.key.rsplit('/').next().expect("key")];
        assert_eq!(row.original_hash, Some(*blake3::hash(&sample.bytes).as_bytes()));
        assert_eq!(row.content_hash, *blake3::hash(&row.image_bytes).as_bytes());
        let shorter = sample.width.min(sample.height);
        if shorter > 128 {
            resized += 1;
            assert_eq!(row.width.min(row.height), 128, "{}", row.key);
            let ratio = f64::from(row.width) / f64::from(row.height);
            let source_ratio = f64::from(sample.width) / f64::from(sample.height);
            assert!((ratio - source_ratio).abs() < 0.02, "aspect kept: {ratio} vs {source_ratio}");
            assert_ne!(row.image_bytes, sample.bytes);
        } else {
            assert_eq!(row.image_bytes, sample.bytes, "small images stay byte-for-byte");
        }
    }
    assert!(resized > 0, "the fixture has images above 128 px");
    let m = manifest(&t.path("ds"));
    assert_eq!(m.config["reencode"]["max_side"], 128);
    assert_eq!(m.config["reencode"]["quality"], 90);
}

#[test]
fn mapped_and_streamed_reading_give_byte_identical_datasets() {
    let t = TestDir::new();
    let set = fx::synthetic_set(3, 4, 31);
    fx::write_imagenet_tars(&t.path("dir"), &set).expect("fixtures");
    fx::write_imagenet_outer_tar(&t.path("outer.tar"), &set).expect("fixtures");
    fx::write_tfrecord(&t.path("tfr"), &set, &fx::TfRecordOptions { shards: 2, ..Default::default() })
        .expect("fixtures");
    fx::write_webdataset(&t.path("wds"), &set, 4, fx::WebDatasetLabel::Cls).expect("fixtures");
    fx::write_flat_tar(&t.path("flat.tar"), &set).expect("fixtures");
    let inputs = [
        ("imagenet-tar", "dir"),
        ("imagenet-tar", "outer.tar"),
        ("tfrecord", "tfr"),
        ("webdataset", "wds"),
        ("tar", "flat.tar"),
    ];
    for (n, (format, input)) in inputs.into_iter().enumerate() {
        let (mapped, streamed) = (format!("m{n}"), format!("s{n}"));
        // Small row groups: several image column chunks per part.
        let common = ["ingest", "--format", format, input, "--row-group-mb", "1", "--quiet"];
        t.bitkit(&[&common[..], &["--out", &mapped]].concat()).expect_code(0);
        t.bitkit(&[&common[..], &["--out", &streamed, "--no-mmap"]].concat()).expect_code(0);
        let written = files(&t.path(&mapped));
        assert_eq!(written, files(&t.path(&streamed)), "{format} {input}");
        assert_eq!(rows(&t.path(&mapped)).len(), 12, "{format} {input}");
        for part in manifest(&t.path(&mapped)).parts {
            assert_eq!(part.blake3, blake3::hash(&written[&part.file]).to_hex().to_string());
        }
    }
}
