//! `bitkit dedup` end to end: planted upscaled (and flipped, and 5%-cropped) copies of CIFAR-10
//! test images in an upstream dataset of distinct images are found, exactly, and nothing else.

use crate::util::TestDir;
use bitkit_fixtures as fx;
use bitkit_fixtures::testsets::{cifar_test_picture, write_cifar10_test, Layout};
use image::{imageops, RgbImage};
use rand::{Rng, SeedableRng};

const SEED: u64 = 7;
/// How a planted copy was made from its test image (upscaled to 256 px, then this).
#[derive(Clone, Copy)]
enum Planted {
    Upscaled,
    Flipped,
    /// 13 px (5%) cut from each axis, off centre: found through the test-side inset frames.
    Cropped,
}

const PLANTED: [(usize, Planted); 4] =
    [(3, Planted::Upscaled), (17, Planted::Flipped), (42, Planted::Upscaled), (55, Planted::Cropped)];

fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(image).expect("encodes");
    out
}

/// A smooth random picture: a few random sinusoids per channel (distinct from each other and
/// from the fixture's CIFAR patterns).
fn distinct(seed: u64) -> RgbImage {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let waves: Vec<(f32, f32, f32, f32)> = (0..9)
        .map(|_| {
            (
                rng.random_range(0.5..6.0),
                rng.random_range(0.5..6.0),
                rng.random_range(0.0..std::f32::consts::TAU),
                rng.random_range(20.0..60.0),
            )
        })
        .collect();
    RgbImage::from_fn(320, 240, |x, y| {
        let (u, v) = (x as f32 / 320.0, y as f32 / 240.0);
        let channel = |c: usize| {
            let s: f32 = waves[c * 3..c * 3 + 3]
                .iter()
                .map(|(fx, fy, p, a)| a * (std::f32::consts::TAU * (fx * u + fy * v) + p).sin())
                .sum();
            (128.0 + s).clamp(0.0, 255.0) as u8
        };
        image::Rgb([channel(0), channel(1), channel(2)])
    })
}

fn upstream(t: &TestDir) -> Vec<String> {
    let dir = t.path("up/images");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut planted = Vec::new();
    for (index, how) in PLANTED {
        let picture = cifar_test_picture(fx::CifarVariant::Cifar10, SEED, index);
        let small = RgbImage::from_raw(32, 32, picture.rgb).expect("32x32");
        let mut big = imageops::resize(&small, 256, 256, imageops::FilterType::Triangle);
        match how {
            Planted::Upscaled => {}
            Planted::Flipped => big = imageops::flip_horizontal(&big),
            Planted::Cropped => big = imageops::crop_imm(&big, 3, 10, 256 - 13, 256 - 13).to_image(),
        }
        let name = format!("planted_{index:03}");
        std::fs::write(dir.join(format!("{name}.jpg")), jpeg(&big, 85)).expect("write");
        planted.push(name);
    }
    for i in 0..40 {
        std::fs::write(dir.join(format!("distinct_{i:03}.jpg")), jpeg(&distinct(1000 + i), 90)).expect("write");
    }
    std::fs::write(dir.join("broken_000.jpg"), b"\xFF\xD8\xFF\xE0 not really a jpeg").expect("write");
    planted
}

/// String columns of `pairs.parquet`, in row order.
fn pair_columns<const N: usize>(path: &std::path::Path, names: [&str; N]) -> [Vec<String>; N] {
    let file = std::fs::File::open(path).expect("pairs");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out: [Vec<String>; N] = std::array::from_fn(|_| Vec::new());
    for batch in reader {
        let batch = batch.expect("batch");
        for (column, name) in out.iter_mut().zip(names) {
            let array = batch.column_by_name(name).expect(name);
            let strings = array.as_any().downcast_ref::<arrow_array::StringArray>().expect("utf8");
            column.extend(strings.iter().map(|v| v.unwrap_or_default().to_string()));
        }
    }
    out
}

#[test]
fn planted_duplicates_are_found_exactly_and_the_cache_is_reused() {
    let t = TestDir::new();
    write_cifar10_test(&t.path("data"), 60, SEED, Layout::Archive).expect("cifar");
    let planted = upstream(&t);
    // The broken file is rejected by ingest (not an image); the rest are rows.
    let run = t.bitkit(&["ingest", "--format", "folder", "up", "--out", "ds", "--quiet"]);
    assert!(matches!(run.code(), 0 | 3), "{}", run.stderr());

    let args = ["dedup", "ds", "--against", "cifar10-test", "--data-dir", "data", "--out", "dd", "--json"];
    let summary = t.bitkit(&args).expect_code(0).json();
    let set = &summary["test_sets"][0];
    assert_eq!(set["test_set"], "cifar10-test");
    assert_eq!(set["test_images"], 60);
    assert_eq!(set["upstream_rows_removed"], PLANTED.len(), "{summary}");
    let excluded: Vec<String> =
        std::fs::read_to_string(t.path("dd/exclude.txt")).expect("exclude.txt").lines().map(str::to_string).collect();
    assert_eq!(excluded.len(), PLANTED.len(), "{excluded:?}");
    for name in &planted {
        assert!(excluded.iter().any(|k| k.ends_with(name.as_str())), "{name} missing from {excluded:?}");
    }
    assert!(summary["hashed_now"].as_u64().expect("count") > 0);
    let html = std::fs::read_to_string(t.path("dd/report.html")).expect("report");
    assert!(html.contains("cifar10-test") && html.contains("data:image/png;base64,"));
    let [keys, views, verdicts] = pair_columns(&t.path("dd/pairs.parquet"), ["upstream_key", "view", "verdict"]);
    let rows = keys.len();
    let mut cropped_view = None;
    for ((key, view), verdict) in keys.into_iter().zip(views).zip(verdicts) {
        if key.ends_with("planted_055") && verdict == "duplicate" {
            cropped_view = Some(view);
        }
    }
    assert!(rows >= PLANTED.len());
    // The cropped copy is matched through an inset frame of its test image.
    let cropped_view = cropped_view.expect("the cropped copy has a duplicate pair");
    assert!(cropped_view.ends_with("_inset"), "{cropped_view}");

    // Second run: every upstream hash comes from the cache.
    let again = t.bitkit(&["dedup", "ds", "--against", "cifar10-test", "--data-dir", "data", "--out", "dd2", "--json"]);
    let again = again.expect_code(0).json();
    assert_eq!(again["hashed_now"], 0);
    assert_eq!(
        std::fs::read(t.path("dd/exclude.txt")).expect("a"),
        std::fs::read(t.path("dd2/exclude.txt")).expect("b")
    );

    // --write-clean drops exactly the excluded rows.
    t.bitkit(&[&args[..], &["--write-clean", "clean"]].concat()).expect_code(0);
    let before = crate::util::rows(&t.path("ds")).len();
    let after = crate::util::rows(&t.path("clean"));
    assert_eq!(after.len(), before - PLANTED.len());
    assert!(after.iter().all(|r| !r.key.contains("planted")));
}

#[test]
fn a_missing_test_set_names_the_files_and_where_it_looked() {
    let t = TestDir::new();
    std::fs::create_dir_all(t.path("up/a")).expect("mkdir");
    std::fs::write(t.path("up/a/x.jpg"), jpeg(&distinct(1), 90)).expect("write");
    t.bitkit(&["ingest", "--format", "folder", "up", "--out", "ds", "--quiet"]).expect_code(0);
    std::fs::create_dir_all(t.path("empty")).expect("mkdir");
    let run = t.bitkit(&["dedup", "ds", "--against", "cifar100-test", "--data-dir", "empty", "--out", "dd"]);
    let stderr = run.expect_code(1).stderr();
    assert!(stderr.contains("cifar-100-binary") && stderr.contains("empty"), "{stderr}");
    let run = t.bitkit(&["dedup", "ds", "--against", "imagenet-test", "--data-dir", "empty", "--out", "dd"]);
    assert!(run.expect_code(1).stderr().contains("imagenet-test"));
}

#[test]
fn flat_images_never_match_and_a_dataset_path_works_as_test_set() {
    let t = TestDir::new();
    // Test set: a bitkit dataset of flat images and distinct pictures.
    std::fs::create_dir_all(t.path("test/a")).expect("mkdir");
    for i in 0..4u8 {
        let flat = RgbImage::from_pixel(96, 96, image::Rgb([40 * i, 40 * i, 40 * i]));
        std::fs::write(t.path(&format!("test/a/flat_{i}.jpg")), jpeg(&flat, 90)).expect("write");
        std::fs::write(t.path(&format!("test/a/pic_{i}.jpg")), jpeg(&distinct(500 + u64::from(i)), 90)).expect("write");
    }
    t.bitkit(&["ingest", "--format", "folder", "test", "--out", "tds", "--quiet"]).expect_code(0);
    // Upstream: other flat images, and a resized copy of pic_2.
    std::fs::create_dir_all(t.path("up/b")).expect("mkdir");
    for i in 0..4u8 {
        let flat = RgbImage::from_pixel(200, 150, image::Rgb([20 + 40 * i, 20 + 40 * i, 25 + 40 * i]));
        std::fs::write(t.path(&format!("up/b/flat_up_{i}.jpg")), jpeg(&flat, 90)).expect("write");
    }
    let copy = imageops::resize(&distinct(502), 480, 360, imageops::FilterType::Triangle);
    std::fs::write(t.path("up/b/copy_of_pic_2.jpg"), jpeg(&copy, 80)).expect("write");
    t.bitkit(&["ingest", "--format", "folder", "up", "--out", "ds", "--quiet"]).expect_code(0);

    let summary = t.bitkit(&["dedup", "ds", "--against", "tds", "--out", "dd", "--json"]).expect_code(0).json();
    assert_eq!(summary["test_sets"][0]["test_images"], 8);
    let excluded = std::fs::read_to_string(t.path("dd/exclude.txt")).expect("exclude.txt");
    assert_eq!(excluded.lines().collect::<Vec<_>>(), vec!["b/copy_of_pic_2"], "{summary}");
}

/// A one-axis test image (irregular vertical stripes, like wood grain), 32x32: plain PDQ has no
/// energy to hash in it, so its copies are found through the sheared CIFAR channel.
fn stripes(seed: u64) -> RgbImage {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // 17 random levels, linearly interpolated: stripes 2 px wide and wider, as real grain is
    // at 32 px (one-pixel stripes do not survive any resize).
    let levels: Vec<f32> = (0..17).map(|_| rng.random_range(40.0..210.0)).collect();
    RgbImage::from_fn(32, 32, |x, _| {
        let at = x as f32 / 2.0;
        let (i, f) = (at as usize, at.fract());
        let v = levels[i] * (1.0 - f) + levels[i + 1] * f;
        image::Rgb([v as u8, (v * 0.8) as u8, (v * 0.55) as u8])
    })
}

/// CIFAR-10 binary records (label byte, then the red, green and blue planes) of `images`.
fn cifar_records(images: &[RgbImage]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, image) in images.iter().enumerate() {
        out.push((i % 10) as u8);
        for c in 0..3 {
            out.extend(image.pixels().map(|p| p.0[c]));
        }
    }
    out
}

#[test]
fn resized_copies_of_one_axis_images_are_found_through_the_sheared_channel() {
    let t = TestDir::new();
    // Test set: stripe patterns among the fixture's CIFAR-like pictures.
    let mut tests: Vec<RgbImage> = (0..24)
        .map(|i| RgbImage::from_raw(32, 32, cifar_test_picture(fx::CifarVariant::Cifar10, SEED, i).rgb).expect("32x32"))
        .collect();
    let striped = [5usize, 11, 19];
    for (k, &i) in striped.iter().enumerate() {
        tests[i] = stripes(300 + k as u64);
    }
    std::fs::create_dir_all(t.path("data/cifar-10-batches-bin")).expect("mkdir");
    std::fs::write(t.path("data/cifar-10-batches-bin/test_batch.bin"), cifar_records(&tests)).expect("write");
    // Upstream: a 256 px JPEG copy of each stripe test image (the middle one mirrored), other
    // stripe patterns, and distinct pictures.
    std::fs::create_dir_all(t.path("up/a")).expect("mkdir");
    for (k, &i) in striped.iter().enumerate() {
        let mut big = imageops::resize(&tests[i], 256, 256, imageops::FilterType::Triangle);
        if k == 1 {
            big = imageops::flip_horizontal(&big);
        }
        std::fs::write(t.path(&format!("up/a/copy_{i:02}.jpg")), jpeg(&big, 80)).expect("write");
    }
    for k in 0..6u64 {
        let other = imageops::resize(&stripes(900 + k), 256, 256, imageops::FilterType::Triangle);
        std::fs::write(t.path(&format!("up/a/other_stripes_{k}.jpg")), jpeg(&other, 80)).expect("write");
        std::fs::write(t.path(&format!("up/a/distinct_{k}.jpg")), jpeg(&distinct(2000 + k), 90)).expect("write");
    }
    t.bitkit(&["ingest", "--format", "folder", "up", "--out", "ds", "--quiet"]).expect_code(0);

    let args = ["dedup", "ds", "--against", "cifar10-test", "--data-dir", "data", "--json"];
    let summary = t.bitkit(&[&args[..], &["--out", "dd"]].concat()).expect_code(0).json();
    let excluded: Vec<String> =
        std::fs::read_to_string(t.path("dd/exclude.txt")).expect("exclude.txt").lines().map(str::to_string).collect();
    let expected: Vec<String> = striped.iter().map(|i| format!("a/copy_{i:02}")).collect();
    assert_eq!(excluded, expected, "{summary}");
    let [views, verdicts] = pair_columns(&t.path("dd/pairs.parquet"), ["view", "verdict"]);
    let sheared = views
        .iter()
        .zip(&verdicts)
        .filter(|(view, verdict)| *verdict == "duplicate" && view.ends_with("_sheared"))
        .count();
    assert_eq!(sheared, striped.len());

    // Without the channel (radius 0: only a bit-identical sheared hash would match) plain PDQ
    // misses them: the channel is what finds these copies.
    let without = t.bitkit(&[&args[..], &["--out", "dd0", "--radius-sheared", "0"]].concat()).expect_code(0).json();
    assert_eq!(without["excluded"], 0, "{without}");
}
