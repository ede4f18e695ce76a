//! The test-set readers against fake official downloads from `bitkit_fixtures::testsets`: every
//! set from its archive and its extracted layout, labels and order, missing and malformed files.

use bitkit_dedup::testsets::{load, TestPixels, TestSet, TestSetKind};
use bitkit_dedup::DedupError;
use bitkit_fixtures as fx;
use bitkit_fixtures::testsets::{
    write_cifar100_test, write_cifar10_test, write_flowers, write_ilsvrc_val, write_pets, GroundTruth, Layout,
    MatOptions,
};
use std::fs;
use std::path::Path;

const LAYOUTS: [Layout; 2] = [Layout::Archive, Layout::Extracted];

fn encoded(set: &TestSet) -> Vec<&[u8]> {
    set.images
        .iter()
        .map(|image| match &image.image {
            TestPixels::Encoded(bytes) => bytes.as_ref(),
            TestPixels::Rgb(_) => panic!("{}: expected encoded bytes", image.name),
        })
        .collect()
}

fn indices(set: &TestSet) -> Vec<u64> {
    set.images.iter().map(|image| image.index).collect()
}

fn labels(set: &TestSet) -> Vec<Option<i64>> {
    set.images.iter().map(|image| image.label).collect()
}

fn bad_reason(result: Result<TestSet, DedupError>) -> (std::path::PathBuf, String) {
    match result {
        Err(DedupError::BadTestSet { path, reason, .. }) => (path, reason),
        other => panic!("expected BadTestSet, got {other:?}"),
    }
}

#[test]
fn cifar10_from_both_layouts() {
    for layout in LAYOUTS {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_cifar10_test(dir.path(), 23, 7, layout).expect("write");
        let set = load("cifar10-test", Some(dir.path())).expect("load");
        assert_eq!((set.name.as_str(), set.kind), ("cifar10-test", TestSetKind::Cifar10Test));
        assert_eq!(set.sources, std::slice::from_ref(&written.path));
        assert_eq!(indices(&set), (0..23).collect::<Vec<_>>());
        assert_eq!(labels(&set), written.labels.iter().map(|&l| Some(i64::from(l))).collect::<Vec<_>>());
        assert_eq!(set.images[5].name, "test_batch.bin#5");
        for (image, picture) in set.images.iter().zip(&written.pictures) {
            let TestPixels::Rgb(rgb) = &image.image else { panic!("CIFAR images are pixels") };
            assert_eq!((rgb.width, rgb.height), (32, 32));
            assert_eq!(rgb.pixels, picture.rgb, "{layout:?} {}", image.name);
        }
        // The planting helper gives the same pixels.
        let picture = fx::testsets::cifar_test_picture(fx::CifarVariant::Cifar10, 7, 17);
        assert_eq!(picture, written.pictures[17]);
    }
}

#[test]
fn cifar100_from_both_layouts_uses_fine_labels() {
    for layout in LAYOUTS {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_cifar100_test(dir.path(), 105, 3, layout).expect("write");
        let set = load("cifar100-test", Some(dir.path())).expect("load");
        assert_eq!(set.kind, TestSetKind::Cifar100Test);
        assert_eq!(set.images.len(), 105);
        assert_eq!(set.images[104].label, Some(4));
        assert_eq!(labels(&set), written.labels.iter().map(|&l| Some(i64::from(l))).collect::<Vec<_>>());
        assert_eq!(set.images[3].name, "test.bin#3");
        let TestPixels::Rgb(rgb) = &set.images[99].image else { panic!("pixels") };
        assert_eq!(rgb.pixels, written.pictures[99].rgb);
    }
}

#[test]
fn extracted_cifar_wins_over_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_cifar10_test(dir.path(), 4, 1, Layout::Archive).expect("write");
    let extracted = write_cifar10_test(dir.path(), 6, 2, Layout::Extracted).expect("write");
    let set = load("cifar10-test", Some(dir.path())).expect("load");
    assert_eq!(set.images.len(), 6);
    assert_eq!(set.sources, [extracted.path]);
}

#[test]
fn malformed_cifar_files_name_the_file_and_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_cifar10_test(dir.path(), 3, 1, Layout::Extracted).expect("write");
    let mut bytes = fs::read(&written.path).expect("read");
    bytes.truncate(2 * 3073 + 10);
    fs::write(&written.path, &bytes).expect("write");
    let (path, reason) = bad_reason(load("cifar10-test", Some(dir.path())));
    assert_eq!(path, written.path);
    assert!(reason.contains("not a whole number of 3073-byte records") && reason.contains("record 2"), "{reason}");

    // A truncated archive.
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_cifar100_test(dir.path(), 30, 1, Layout::Archive).expect("write");
    let bytes = fs::read(&written.path).expect("read");
    fs::write(&written.path, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let (path, reason) = bad_reason(load("cifar100-test", Some(dir.path())));
    assert_eq!(path, written.path);
    assert!(reason.contains("truncated") || reason.contains("damaged"), "{reason}");

    // An archive without the test batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = fx::build_tar(&[("cifar-10-batches-bin/data_batch_1.bin", [0u8; 3073].as_slice())]).expect("tar");
    fs::write(dir.path().join("cifar-10-binary.tar.gz"), fx::gzip(&tar)).expect("write");
    let (_, reason) = bad_reason(load("cifar10-test", Some(dir.path())));
    assert!(reason.contains("no member cifar-10-batches-bin/test_batch.bin"), "{reason}");
}

#[test]
fn missing_sets_list_expected_files_and_every_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[&str], usize); 5] = [
        ("cifar10-test", &["cifar-10-batches-bin/test_batch.bin", "cifar-10-binary.tar.gz"], 1),
        ("cifar100-test", &["cifar-100-binary/test.bin", "cifar-100-binary.tar.gz"], 1),
        ("ilsvrc2012-val", &["ILSVRC2012_img_val.tar", "ILSVRC2012_img_val/", "val/"], 1),
        ("pets-test", &["annotations/test.txt", "annotations.tar.gz"], 2),
        ("flowers-test", &["setid.mat"], 2),
    ];
    for (name, expected_files, dirs) in cases {
        match load(name, Some(dir.path())) {
            Err(error @ DedupError::MissingTestSet { .. }) => {
                let text = error.to_string();
                let DedupError::MissingTestSet { name: got, expected, looked_in } = error else { unreachable!() };
                assert_eq!(got, name);
                for file in expected_files {
                    assert!(expected.contains(file), "{name}: {expected}");
                    assert!(text.contains(file), "{text}");
                }
                assert_eq!(looked_in.len(), dirs, "{name}: {looked_in:?}");
                assert_eq!(looked_in[0], dir.path());
                assert!(text.contains(&dir.path().display().to_string()), "{text}");
            }
            other => panic!("{name}: expected MissingTestSet, got {other:?}"),
        }
    }
    // Pets with annotations but no images names the image files.
    let pets_dir = tempfile::tempdir().expect("tempdir");
    write_pets(pets_dir.path(), 3, 2, Layout::Extracted).expect("write");
    fs::remove_dir_all(pets_dir.path().join("images")).expect("rm");
    let error = load("pets-test", Some(pets_dir.path())).expect_err("no images");
    assert!(error.to_string().contains("images.tar.gz or images/"), "{error}");
}

#[test]
fn ilsvrc_val_from_both_layouts_sorted_by_file_number() {
    for layout in LAYOUTS {
        for truth in [GroundTruth::Absent, GroundTruth::File, GroundTruth::DevkitDir, GroundTruth::DevkitArchive] {
            let dir = tempfile::tempdir().expect("tempdir");
            let written = write_ilsvrc_val(dir.path(), 12, truth, layout).expect("write");
            let set = load("ilsvrc2012-val", Some(dir.path())).expect("load");
            assert_eq!(set.kind, TestSetKind::Ilsvrc2012Val);
            assert_eq!(indices(&set), (0..12).collect::<Vec<_>>(), "{layout:?} {truth:?}");
            assert_eq!(set.images[0].name, "ILSVRC2012_val_00000001.JPEG");
            assert_eq!(encoded(&set), written.jpegs.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let expected: Vec<Option<i64>> = match truth {
                GroundTruth::Absent => vec![None; 12],
                _ => written.labels.iter().map(|&l| Some(l)).collect(),
            };
            assert_eq!(labels(&set), expected, "{layout:?} {truth:?}");
            assert_eq!(set.sources[0], written.path);
            assert_eq!(set.sources.len(), if truth == GroundTruth::Absent { 1 } else { 2 });
        }
    }
}

#[test]
fn ilsvrc_val_directory_named_val_with_class_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_ilsvrc_val(dir.path(), 5, GroundTruth::Absent, Layout::Extracted).expect("write");
    let val = dir.path().join("val");
    fs::create_dir_all(val.join("n01440764")).expect("mkdir");
    for index in 0..5 {
        let name = fx::testsets::ilsvrc_val_name(index);
        let target = if index % 2 == 0 { val.join("n01440764").join(&name) } else { val.join(&name) };
        fs::rename(written.path.join(&name), target).expect("move");
    }
    fs::remove_dir(&written.path).expect("rmdir");
    let set = load("ilsvrc2012-val", Some(dir.path())).expect("load");
    assert_eq!(indices(&set), [0, 1, 2, 3, 4]);
    assert_eq!(encoded(&set), written.jpegs.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[test]
fn malformed_ilsvrc_inputs() {
    // A truncated tar (members are in descending order: the lowest numbers go missing).
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_ilsvrc_val(dir.path(), 8, GroundTruth::Absent, Layout::Archive).expect("write");
    let bytes = fs::read(&written.path).expect("read");
    for cut in [bytes.len() / 2, bytes.len() / 2 / 512 * 512, bytes.len() - 1024 - 700] {
        fs::write(&written.path, &bytes[..cut]).expect("write");
        let (path, reason) = bad_reason(load("ilsvrc2012-val", Some(dir.path())));
        assert_eq!(path, written.path);
        assert!(reason.contains("truncated") || reason.contains("damaged"), "cut {cut}: {reason}");
    }
    // Ground truth with a bad line, and with too few lines.
    let dir = tempfile::tempdir().expect("tempdir");
    write_ilsvrc_val(dir.path(), 4, GroundTruth::File, Layout::Extracted).expect("write");
    let truth = dir.path().join("ILSVRC2012_validation_ground_truth.txt");
    fs::write(&truth, "5\n6\nseven\n8\n").expect("write");
    let (path, reason) = bad_reason(load("ilsvrc2012-val", Some(dir.path())));
    assert_eq!(path, truth);
    assert!(reason.starts_with("line 3:"), "{reason}");
    fs::write(&truth, "5\n6\n").expect("write");
    let (_, reason) = bad_reason(load("ilsvrc2012-val", Some(dir.path())));
    assert!(reason.contains("2 labels") && reason.contains("4 images"), "{reason}");
}

#[test]
fn pets_from_both_layouts_in_test_txt_order() {
    for layout in LAYOUTS {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_pets(dir.path(), 45, 30, layout).expect("write");
        let set = load("pets-test", Some(dir.path())).expect("load");
        assert_eq!(set.kind, TestSetKind::PetsTest);
        assert_eq!(indices(&set), (0..45).collect::<Vec<_>>());
        let names: Vec<String> = written.test.iter().map(|image| format!("{}.jpg", image.name)).collect();
        assert_eq!(set.images.iter().map(|image| image.name.clone()).collect::<Vec<_>>(), names, "{layout:?}");
        let expected: Vec<Option<i64>> = written.test.iter().map(|image| Some(i64::from(image.class_id) - 1)).collect();
        assert_eq!(labels(&set), expected);
        assert_eq!(encoded(&set), written.test.iter().map(|image| image.jpeg.as_slice()).collect::<Vec<_>>());
        assert_eq!(set.sources.len(), 2);
    }
}

#[test]
fn pets_under_the_torchvision_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_pets(&dir.path().join("oxford-iiit-pet"), 4, 4, Layout::Extracted).expect("write");
    let set = load("pets-test", Some(dir.path())).expect("load");
    assert_eq!(set.images.len(), written.test.len());
}

#[test]
fn malformed_pets_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pets(dir.path(), 6, 2, Layout::Extracted).expect("write");
    let test_txt = dir.path().join("annotations/test.txt");
    let text = fs::read_to_string(&test_txt).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "Abyssinian_9 one 1 1";
    fs::write(&test_txt, lines.join("\n")).expect("write");
    let (path, reason) = bad_reason(load("pets-test", Some(dir.path())));
    assert_eq!(path, test_txt);
    assert!(reason.starts_with("line 3:"), "{reason}");

    // A listed image that is not in the images.
    lines[2] = "Sphynx_99 34 1 12";
    fs::write(&test_txt, lines.join("\n")).expect("write");
    let (path, reason) = bad_reason(load("pets-test", Some(dir.path())));
    assert_eq!(path, dir.path().join("images"));
    assert!(reason.contains("Sphynx_99.jpg"), "{reason}");

    // A truncated images archive.
    let dir = tempfile::tempdir().expect("tempdir");
    write_pets(dir.path(), 20, 20, Layout::Archive).expect("write");
    let archive = dir.path().join("images.tar.gz");
    let bytes = fs::read(&archive).expect("read");
    fs::write(&archive, &bytes[..bytes.len() / 2]).expect("write");
    let (path, _) = bad_reason(load("pets-test", Some(dir.path())));
    assert_eq!(path, archive);
}

#[test]
fn flowers_from_both_layouts_and_every_mat_variant() {
    let test_ids = [7, 2, 11, 5];
    for layout in LAYOUTS {
        for compressed in [false, true] {
            for big_endian in [false, true] {
                let dir = tempfile::tempdir().expect("tempdir");
                let mat = MatOptions { compressed, big_endian };
                let written = write_flowers(dir.path(), 12, &test_ids, layout, mat).expect("write");
                let set = load("flowers-test", Some(dir.path())).expect("load");
                assert_eq!(set.kind, TestSetKind::FlowersTest);
                assert_eq!(indices(&set), [0, 1, 2, 3]);
                let names: Vec<&str> = set.images.iter().map(|image| image.name.as_str()).collect();
                assert_eq!(names, ["image_00007.jpg", "image_00002.jpg", "image_00011.jpg", "image_00005.jpg"]);
                let expected: Vec<Option<i64>> =
                    test_ids.iter().map(|&id| Some(i64::from(written.labels[id as usize - 1]) - 1)).collect();
                assert_eq!(labels(&set), expected, "{layout:?} {mat:?}");
                assert_eq!(encoded(&set), written.test.iter().map(|(_, jpeg)| jpeg.as_slice()).collect::<Vec<_>>());
                assert_eq!(set.sources.len(), 3);
            }
        }
    }
}

#[test]
fn flowers_without_imagelabels_has_no_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_flowers(dir.path(), 5, &[3, 1], Layout::Extracted, MatOptions::default()).expect("write");
    fs::remove_file(dir.path().join("imagelabels.mat")).expect("rm");
    let set = load("flowers-test", Some(dir.path())).expect("load");
    assert_eq!(labels(&set), [None, None]);
}

fn rewrite_mat(path: &Path, variables: &[fx::testsets::MatVariable]) {
    fs::write(path, fx::testsets::mat_file(variables, MatOptions::default())).expect("write");
}

#[test]
fn malformed_flowers_inputs() {
    use fx::testsets::{MatStorage, MatVariable};
    let dir = tempfile::tempdir().expect("tempdir");
    write_flowers(dir.path(), 6, &[1, 2], Layout::Extracted, MatOptions::default()).expect("write");
    let setid = dir.path().join("setid.mat");

    rewrite_mat(&setid, &[MatVariable::row("trnid", vec![1.0], MatStorage::Double)]);
    let (path, reason) = bad_reason(load("flowers-test", Some(dir.path())));
    assert_eq!(path, setid);
    assert!(reason.contains("`tstid`") && reason.contains("trnid"), "{reason}");

    rewrite_mat(&setid, &[MatVariable::row("tstid", vec![1.0, 2.5], MatStorage::Double)]);
    let (_, reason) = bad_reason(load("flowers-test", Some(dir.path())));
    assert!(reason.contains("tstid[1] = 2.5"), "{reason}");

    rewrite_mat(&setid, &[MatVariable::row("tstid", vec![1.0, 9.0], MatStorage::Double)]);
    let (path, reason) = bad_reason(load("flowers-test", Some(dir.path())));
    assert_eq!(path, dir.path().join("imagelabels.mat"));
    assert!(reason.contains("6 labels") && reason.contains("image 9"), "{reason}");

    // A listed id past the images (labels cover it).
    let labels = dir.path().join("imagelabels.mat");
    rewrite_mat(&labels, &[MatVariable::row("labels", vec![1.0; 10], MatStorage::Uint8)]);
    let (path, reason) = bad_reason(load("flowers-test", Some(dir.path())));
    assert_eq!(path, dir.path().join("jpg"));
    assert!(reason.contains("image_00009.jpg"), "{reason}");

    // A truncated MAT file names its byte offset.
    let full = fx::testsets::mat_file(
        &[MatVariable::row("tstid", vec![1.0, 2.0], MatStorage::Double)],
        MatOptions { compressed: true, big_endian: false },
    );
    fs::write(&setid, &full[..full.len() - 5]).expect("write");
    let (path, reason) = bad_reason(load("flowers-test", Some(dir.path())));
    assert_eq!(path, setid);
    assert!(reason.contains("byte 128"), "{reason}");

    // Not a MAT file at all.
    fs::write(&setid, b"tstid = [1 2]").expect("write");
    let (_, reason) = bad_reason(load("flowers-test", Some(dir.path())));
    assert!(reason.contains("MAT v5"), "{reason}");
}

#[test]
fn a_dataset_path_is_a_test_set() {
    use bitkit_ingest::formats::Format;
    use bitkit_ingest::pipeline::{ingest, IngestConfig, Progress};
    let dir = tempfile::tempdir().expect("tempdir");
    let set = fx::synthetic_set(2, 3, 5);
    fx::write_folder(&dir.path().join("in"), &set).expect("folder");
    let out = dir.path().join("ds");
    let mut config = IngestConfig::new(Format::Folder, vec![dir.path().join("in").display().to_string()], out.clone());
    config.workers = 1;
    ingest(&config, &Progress::default()).expect("ingest");
    let rows: Vec<_> = bitkit_ingest::dataset::DatasetReader::open(&out)
        .expect("open")
        .rows()
        .collect::<Result<_, _>>()
        .expect("rows");

    let item = out.display().to_string();
    let loaded = load(&item, None).expect("load");
    assert_eq!((loaded.name.as_str(), loaded.kind), (item.as_str(), TestSetKind::Dataset));
    assert_eq!(loaded.images.len(), rows.len());
    for (position, (image, row)) in loaded.images.iter().zip(&rows).enumerate() {
        assert_eq!(image.index, position as u64);
        assert_eq!(image.name, row.key);
        assert_eq!(image.label, row.label);
        assert_eq!(image.image, TestPixels::Encoded(row.image_bytes.clone().into()));
    }
    assert!(loaded.sources[0].ends_with("dataset.json"));
}

#[test]
fn registry_names_need_a_data_dir_unless_bitkit_data_is_set() {
    // Only meaningful when the environment does not set BITKIT_DATA; the test never sets it
    // (tests run in parallel threads of one process).
    if bitkit_dedup::testsets::data_dir_from_env().is_none() {
        let error = load("cifar10-test", None).expect_err("no data dir");
        assert!(error.to_string().contains("BITKIT_DATA"), "{error}");
    }
}
