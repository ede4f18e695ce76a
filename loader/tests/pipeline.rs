//! The loader end to end on small generated datasets: every mode, both outputs, determinism
//! across thread counts, exact resume, epoch coverage, bad-image replacement, exclusion,
//! few-shot, ranks and MixUp.

use bitkit_fixtures as fx;
use bitkit_ingest::dataset::{Manifest, PartWriter, Row, WriterSettings};
use bitkit_loader::mixup::MixUpConfig;
use bitkit_loader::{Batch, Images, Loader, LoaderConfig, Mode, OutputKind, SamplerConfig, Transform};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CLASSES: usize = 4;

/// (key, bytes, labels) rows of a varied little dataset: JPEGs of several sizes and aspect
/// ratios, a PNG, grayscale, CMYK and progressive JPEGs.
fn good_rows(n: usize) -> Vec<(String, Vec<u8>, Vec<i64>)> {
    (0..n)
        .map(|i| {
            let class = i % CLASSES;
            let (w, h) = [(120, 90), (90, 120), (200, 150), (64, 64), (333, 257)][i % 5];
            let bytes = match i % 11 {
                3 => fx::synthetic_png(w, h, class, i as u64),
                5 => fx::grayscale_jpeg(w, h, class, i as u64),
                7 => fx::cmyk_jpeg(w, h, class, i as u64),
                9 => fx::progressive_jpeg(w, h, class, i as u64),
                _ => fx::synthetic_jpeg(w, h, class, i as u64, 90),
            };
            (format!("k{i:04}"), bytes, vec![class as i64, ((class + 1) % CLASSES) as i64])
        })
        .collect()
}

/// Writes rows as a dataset the way ingest does (parts, manifest last).
fn write_dataset(dir: &Path, rows: &[(String, Vec<u8>, Vec<i64>)]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let classes: Vec<String> = (0..CLASSES).map(fx::wnid).collect();
    let settings = WriterSettings { row_group_bytes: 40_000, part_bytes: 150_000 };
    let mut parts = Vec::new();
    let mut writer: Option<PartWriter> = None;
    for (i, (key, bytes, labels)) in rows.iter().enumerate() {
        let w = writer.get_or_insert_with(|| {
            PartWriter::create(
                dir,
                &bitkit_ingest::dataset::part_file_name(parts.len()),
                Some(&classes),
                false,
                settings,
            )
            .expect("part")
        });
        let (width, height) = bitkit_ingest::image::probe_image(bytes, u64::MAX)
            .map(|info| (info.width as i32, info.height as i32))
            .unwrap_or((0, 0));
        w.write_row(Row {
            key: key.clone(),
            image_bytes: bytes::Bytes::from(bytes.clone()),
            image_path: Some(format!("{key}.jpg")),
            labels: labels.clone(),
            width,
            height,
            format: "jpeg",
            content_hash: *blake3::hash(bytes).as_bytes(),
            source: Arc::from("test"),
            source_index: i as i64,
            original_hash: None,
        })
        .expect("row");
        if w.is_full() {
            parts.push(writer.take().expect("open").finish().expect("finish"));
        }
    }
    if let Some(w) = writer {
        parts.push(w.finish().expect("finish"));
    }
    Manifest::write_complete(dir, Some(classes), parts, Vec::new(), &[], serde_json::json!({})).expect("manifest");
    dir.to_path_buf()
}

fn config(mode: Mode, crop: Option<u32>, batch: usize, threads: usize) -> LoaderConfig {
    let mut c = LoaderConfig::new(Transform::for_mode(mode, crop).expect("transform"), batch);
    c.threads = threads;
    c.sampler.seed = 42;
    c
}

fn open(dir: &Path, c: LoaderConfig) -> Arc<Loader> {
    Arc::new(Loader::open(dir, c).expect("loader"))
}

fn fingerprints(loader: &Arc<Loader>, start: u64, n: u64) -> Vec<String> {
    loader.iter(start, Some(n)).map(|b| b.expect("batch").fingerprint().to_hex().to_string()).collect()
}

#[test]
fn every_mode_gives_full_batches_in_range_and_u8_matches_f32() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = write_dataset(&dir.path().join("ds"), &good_rows(30));
    for (mode, crop) in
        [(Mode::Upstream, Some(64)), (Mode::Small, None), (Mode::Large, Some(384)), (Mode::Test, Some(48))]
    {
        let mut f32_config = config(mode, crop, 8, 2);
        f32_config.output = OutputKind::F32;
        let mut u8_config = f32_config.clone();
        u8_config.output = OutputKind::U8;
        let (a, b) = (open(&ds, f32_config), open(&ds, u8_config));
        assert_eq!(a.steps_per_epoch(), 4, "{mode}: 30 rows in batches of 8, short batch kept");
        for step in [0u64, 3, 5] {
            let (fa, fb) = (a.batch(step).expect("f32"), b.batch(step).expect("u8"));
            let size = fa.size as usize;
            let expected_len = if step % 4 == 3 { 6 } else { 8 };
            assert_eq!(fa.len(), expected_len, "{mode} step {step}");
            assert_eq!((fa.rows.clone(), fa.plans.clone()), (fb.rows.clone(), fb.plans.clone()));
            let (Images::F32(px), Images::U8(bytes)) = (&fa.images, &fb.images) else { panic!("kinds") };
            assert_eq!(px.len(), fa.len() * 3 * size * size);
            assert_eq!(bytes.len(), px.len());
            // Same pixels: NHWC u8 -> NCHW x / 127.5 - 1.
            for i in 0..fa.len() {
                for y in (0..size).step_by(7) {
                    for x in (0..size).step_by(5) {
                        for c in 0..3 {
                            let u = bytes[((i * size + y) * size + x) * 3 + c];
                            let f = px[((i * 3 + c) * size + y) * size + x];
                            assert_eq!(f, f32::from(u) / 127.5 - 1.0, "{mode} sample {i} ({x},{y},{c})");
                        }
                    }
                }
            }
            assert!(px.iter().all(|v| (-1.0..=1.0).contains(v)));
            assert!(bytes.iter().any(|&v| v > 0), "{mode}: some non-black pixels");
            assert!(fa.replaced.is_empty(), "{mode}: {:?}", fa.replaced);
        }
    }
}

#[test]
fn fingerprints_do_not_depend_on_threads_and_resume_is_exact() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = write_dataset(&dir.path().join("ds"), &good_rows(26));
    let mut c = config(Mode::Upstream, Some(40), 5, 1);
    c.mixup = MixUpConfig { alpha: 0.2, batches_per_update: 2 };
    let one = fingerprints(&open(&ds, c.clone()), 0, 12);
    let mut many = c.clone();
    many.threads = 4;
    many.prefetch = 3;
    assert_eq!(one, fingerprints(&open(&ds, many), 0, 12));
    // Resume at step 7: the same batches as the uninterrupted run from 7 on.
    assert_eq!(one[7..], fingerprints(&open(&ds, c.clone()), 7, 5)[..]);
    // Any other seed changes them.
    let mut other = c;
    other.sampler.seed = 43;
    assert_ne!(one, fingerprints(&open(&ds, other), 0, 12));
}

#[test]
fn every_row_once_per_epoch_and_ranks_disjoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = write_dataset(&dir.path().join("ds"), &good_rows(23));
    let loader = open(&ds, config(Mode::Small, None, 4, 2));
    let epoch: Vec<Batch> = loader.iter(0, Some(loader.steps_per_epoch() as u64)).map(|b| b.expect("b")).collect();
    let mut rows: Vec<u32> = epoch.iter().flat_map(|b| b.rows.clone()).collect();
    rows.sort_unstable();
    assert_eq!(rows, (0..23).collect::<Vec<_>>());
    let next = loader.batch(loader.steps_per_epoch() as u64).expect("b");
    assert_eq!(next.epoch, 1);

    let mut seen = HashSet::new();
    for rank in 0..3 {
        let mut c = config(Mode::Small, None, 4, 2);
        c.sampler = SamplerConfig { seed: 42, batch_size: 4, rank, world_size: 3, drop_last: true };
        let l = open(&ds, c);
        assert_eq!((l.stats().rows_per_rank, l.steps_per_epoch()), (7, 1));
        for b in l.iter(0, Some(1)) {
            for row in b.expect("b").rows {
                assert!(seen.insert(row), "row {row} on two ranks");
            }
        }
    }
}

#[test]
fn bad_images_are_replaced_deterministically_by_the_next_row_of_the_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut rows = good_rows(20);
    let jpeg = fx::synthetic_jpeg(120, 90, 0, 1, 90);
    rows[4].1 = jpeg[..jpeg.len() / 2].to_vec(); // header fine, data cut
    rows[11].1 = b"definitely not an image".to_vec();
    let ds = write_dataset(&dir.path().join("ds"), &rows);
    let run = |threads| {
        let l = open(&ds, config(Mode::Small, None, 5, threads));
        l.iter(0, Some(4)).map(|b| b.expect("batch")).collect::<Vec<_>>()
    };
    let (a, b) = (run(1), run(3));
    assert_eq!(a, b);
    let replaced: Vec<&str> = a.iter().flat_map(|b| b.replaced.iter().map(|r| r.key.as_str())).collect();
    assert_eq!(replaced.len(), 2, "{replaced:?}");
    assert!(replaced.contains(&"k0004") && replaced.contains(&"k0011"));
    for batch in &a {
        assert_eq!(batch.len(), 5, "never a short batch because of a bad image");
        assert!(!batch.rows.contains(&4) && !batch.rows.contains(&11));
        for r in &batch.replaced {
            assert!(!r.reason.is_empty());
            assert_eq!(batch.keys[r.slot], r.replaced_by);
        }
    }
}

#[test]
fn exclusion_list_and_few_shot_pick_the_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = write_dataset(&dir.path().join("ds"), &good_rows(40));
    let exclude = dir.path().join("exclude.txt");
    std::fs::write(&exclude, "# from dedup\nk0001\nk0002\n\nnot-a-key\n").expect("write");
    let mut c = config(Mode::Test, Some(32), 38, 2);
    c.exclude = Some(exclude);
    let l = open(&ds, c.clone());
    assert_eq!((l.stats().excluded, l.stats().exclude_unknown, l.stats().eligible), (2, 1, 38));
    let keys: HashSet<String> = l.batch(0).expect("b").keys.into_iter().collect();
    assert!(!keys.contains("k0001") && !keys.contains("k0002") && keys.len() == 38);

    let mut few = c;
    few.exclude = None;
    few.examples_per_class = Some(3);
    few.fewshot_seed = 9;
    few.sampler.batch_size = 12;
    let l = open(&ds, few.clone());
    let batch = l.batch(0).expect("b");
    for class in 0..CLASSES as i64 {
        assert_eq!(batch.labels.iter().filter(|&&c| c == class).count(), 3);
    }
    assert_eq!(batch.multi_hot(CLASSES).iter().filter(|&&v| v == 1.0).count(), 24, "two labels per row");
    let again: HashSet<u32> = open(&ds, few.clone()).batch(0).expect("b").rows.into_iter().collect();
    assert_eq!(again, batch.rows.iter().copied().collect());
    few.examples_per_class = Some(11);
    assert!(Loader::open(&ds, few).is_err(), "10 rows per class < 11");
}

#[test]
fn flips_and_crops_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = write_dataset(&dir.path().join("ds"), &good_rows(12));
    let mut c = config(Mode::Small, None, 12, 2);
    c.transform.flip = false;
    c.transform.random_crop = false;
    let batch = open(&ds, c.clone()).batch(0).expect("b");
    assert!(batch.plans.iter().all(|p| !p.flip && p.crop.left == 0.0 && p.crop.top == 0.0));
    c.transform.flip = true;
    let flipped = open(&ds, c).batch(0).expect("b");
    assert!(flipped.plans.iter().any(|p| p.flip));
}
