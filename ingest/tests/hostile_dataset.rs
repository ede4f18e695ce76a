//! Hostile dataset directories: a valid dataset written by `ingest`, with its `dataset.json`
//! damaged (truncation, bit flips, wrong types, absurd numbers, parts naming missing or outside
//! files) or its `part-00000.parquet` damaged (truncation, bit flips, a corrupted footer
//! length), opened by every reader: `Manifest::read`, `DatasetIndex::open` and
//! `DatasetReader::open` + `rows()`. None may panic; each returns a typed error naming the file
//! it could not use, or (for damage no check covers: blake3 is only checked by `audit verify`,
//! Parquet page checksums are not written) rows; memory is measured per case by a counting
//! allocator and time is bounded.
//!
//! These tests found readers that panicked inside parquet/arrow (now caught and reported as
//! `Error::CorruptPart`), blocked on a FIFO, read parts outside the dataset directory and used
//! panicking Arrow casts; all are fixed and tested here.

use bitkit_fixtures as fx;
use bitkit_ingest::dataset::{DatasetIndex, DatasetReader, Manifest, WriterSettings};
use bitkit_ingest::formats::Format;
use bitkit_ingest::pipeline::{ingest, IngestConfig, Progress};
use bitkit_ingest::Error;
use parquet::file::metadata::ParquetMetaDataReader;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bitkit_fixtures::meter;

#[global_allocator]
static METER: meter::Meter = meter::Meter;

const MANIFEST: &str = "dataset.json";
const PART: &str = "part-00000.parquet";
/// Most bytes a reader may hold for this ~40 KB dataset, whatever the damage.
const MEMORY_BOUND: usize = 64 << 20;
/// Most time a reader may take on it.
const TIME_BOUND: Duration = Duration::from_secs(10);

/// The files of a valid dataset: 10 rows in one part of 3-4 row groups.
struct Pristine {
    manifest: Vec<u8>,
    part: Vec<u8>,
    rejects: Vec<u8>,
    rows: usize,
    /// End of the last column chunk: the page index (offset and column indexes) and the footer
    /// follow.
    pages_end: usize,
}

fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let set = fx::synthetic_set(2, 5, 11);
        fx::write_folder(&dir.path().join("in"), &set).expect("folder");
        let out = dir.path().join("ds");
        let inputs = vec![dir.path().join("in").display().to_string()];
        let mut config = IngestConfig::new(Format::Folder, inputs, out.clone());
        config.workers = 2;
        config.writer = WriterSettings { row_group_bytes: 6_000, part_bytes: 1 << 30 };
        ingest(&config, &Progress::default()).expect("ingest");
        let read = |name: &str| std::fs::read(out.join(name)).expect("read");
        let part = read(PART);
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(part.clone()))
            .expect("the pristine part's metadata");
        let pages_end = metadata
            .row_groups()
            .iter()
            .flat_map(|group| group.columns())
            .map(|column| {
                let (start, len) = column.byte_range();
                (start + len) as usize
            })
            .max()
            .expect("columns");
        let pristine = Pristine {
            manifest: read(MANIFEST),
            part,
            rejects: read("rejects.jsonl"),
            rows: set.samples.len(),
            pages_end,
        };
        let index = DatasetIndex::open(&out).expect("the pristine dataset opens");
        assert_eq!(index.len(), pristine.rows);
        assert_eq!(index.manifest().parts.len(), 1, "one part");
        pristine
    })
}

fn manifest_json() -> Value {
    serde_json::from_slice(&pristine().manifest).expect("json")
}

/// Writes a dataset with these files into `root/ds` and returns that directory.
fn write_dataset(root: &Path, manifest: &[u8], part: &[u8]) -> PathBuf {
    let ds = root.join("ds");
    std::fs::create_dir_all(&ds).expect("mkdir");
    std::fs::write(ds.join(MANIFEST), manifest).expect("write");
    std::fs::write(ds.join(PART), part).expect("write");
    std::fs::write(ds.join("rejects.jsonl"), &pristine().rejects).expect("write");
    ds
}

/// What every reader made of a dataset directory.
#[derive(Debug)]
struct Outcome {
    manifest: Result<Manifest, String>,
    index: Result<usize, String>,
    /// Rows read in order until the first error (which ends the reading).
    rows: Result<usize, String>,
}

/// The error's text with its sources, as `bitkit` prints it.
fn text(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Opens `ds` with every reader, within the memory and time bounds; any panic fails the case.
/// Each error must name a file: the manifest, or the part it was reading (`parts` are the
/// paths the manifest lists, resolved as the readers resolve them).
fn open_everything(ds: &Path) -> Outcome {
    let started = Instant::now();
    let (outcome, peak, largest) = meter::peak(|| {
        let manifest = Manifest::read(ds);
        let index = DatasetIndex::open(ds).map(|index| index.len());
        let rows = DatasetReader::open(ds).and_then(|reader| {
            let mut rows = 0;
            // A manifest may list a part many times: the count is bounded by its size.
            for row in reader.rows().take(1 << 20) {
                row?;
                rows += 1;
            }
            Ok(rows)
        });
        (manifest, index, rows)
    });
    let elapsed = started.elapsed();
    let (manifest, index, rows) = outcome;
    assert!(peak <= MEMORY_BOUND, "held {peak} bytes (largest allocation {largest})");
    assert!(elapsed < TIME_BOUND, "took {elapsed:?}");
    let parts: Vec<PathBuf> =
        manifest.as_ref().map(|m| m.parts.iter().map(|p| ds.join(&p.file)).collect()).unwrap_or_default();
    let named = |error: Error| {
        let text = text(&error);
        let manifest_path = ds.join(MANIFEST);
        let files = std::iter::once(&manifest_path).chain(&parts);
        assert!(
            files.into_iter().any(|file| text.contains(&file.display().to_string())),
            "the error names no file of the dataset: {text} ({error:?})"
        );
        text
    };
    Outcome { manifest: manifest.map_err(named), index: index.map_err(named), rows: rows.map_err(named) }
}

/// What holds for any damage: a manifest that does not read fails every reader the same way,
/// naming `dataset.json`; the index and the row reader agree on the row count when both work.
fn check(ds: &Path, outcome: &Outcome) {
    match &outcome.manifest {
        Err(error) => {
            assert!(error.contains(&ds.join(MANIFEST).display().to_string()), "{error}");
            assert_eq!(outcome.index.as_ref().err(), Some(error), "the index fails as the manifest");
            assert_eq!(outcome.rows.as_ref().err(), Some(error), "the reader fails as the manifest");
        }
        Ok(manifest) => {
            if let (Ok(index_rows), Ok(reader_rows)) = (&outcome.index, &outcome.rows) {
                assert_eq!(index_rows, reader_rows, "index and reader disagree");
                // The index checks every part's rows against the manifest.
                let listed: u64 = manifest.parts.iter().map(|p| p.rows).sum();
                assert_eq!(*index_rows as u64, listed);
            }
        }
    }
}

// ---- dataset.json ----

/// Where a value is replaced: a top-level key, or a key of the first part.
const MANIFEST_PATHS: [&str; 15] = [
    "/format_version",
    "/bitkit_version",
    "/rows",
    "/classes",
    "/classes/1",
    "/parts",
    "/parts/0",
    "/parts/0/file",
    "/parts/0/rows",
    "/parts/0/bytes",
    "/parts/0/blake3",
    "/sources",
    "/rejected",
    "/rejects_by_kind",
    "/config",
];

/// Hostile JSON values: wrong types, absurd and out-of-range numbers, and file names that
/// point at nothing, at a directory or outside the dataset.
fn hostile_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(1),
        json!(i64::MAX),
        json!(1u64 << 63),
        json!(u64::MAX),
        // 2^64: no integer type holds it.
        serde_json::from_str("18446744073709551616").expect("number"),
        json!(1e308),
        json!(-0.5),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        json!([1, 2, 3]),
        json!("missing.parquet"),
        json!("../part-00000.parquet"),
        json!("/etc/passwd"),
        json!("."),
        json!(".."),
        json!("part-00000.parquet/"),
        json!("part-00000.parquet\u{0}x"),
        json!("x".repeat(100_000)),
    ]
}

#[derive(Debug, Clone)]
enum ManifestDamage {
    Cut(f64),
    Flips(Vec<(f64, u8)>),
    Replace {
        path: usize,
        value: usize,
    },
    Remove(usize),
    /// The part listed this many times.
    RepeatPart(usize),
}

fn damaged_manifest(damage: &ManifestDamage) -> Vec<u8> {
    let original = &pristine().manifest;
    let at = |fraction: f64, len: usize| ((len as f64 * fraction) as usize).min(len.saturating_sub(1));
    match damage {
        ManifestDamage::Cut(keep) => original[..(original.len() as f64 * keep) as usize].to_vec(),
        ManifestDamage::Flips(flips) => {
            let mut bytes = original.clone();
            for &(fraction, mask) in flips {
                let i = at(fraction, bytes.len());
                bytes[i] ^= mask;
            }
            bytes
        }
        ManifestDamage::Replace { path, value } => {
            let mut json = manifest_json();
            let values = hostile_values();
            *json.pointer_mut(MANIFEST_PATHS[path % MANIFEST_PATHS.len()]).expect("path") =
                values[value % values.len()].clone();
            serde_json::to_vec_pretty(&json).expect("json")
        }
        ManifestDamage::Remove(path) => {
            let mut json = manifest_json();
            let path = MANIFEST_PATHS[path % MANIFEST_PATHS.len()];
            let (parent, key) = path.rsplit_once('/').expect("a path");
            match json.pointer_mut(parent).expect("parent") {
                Value::Object(map) => {
                    map.remove(key);
                }
                Value::Array(list) => {
                    list.remove(key.parse::<usize>().expect("index"));
                }
                _ => unreachable!("parents are objects and arrays"),
            }
            serde_json::to_vec_pretty(&json).expect("json")
        }
        ManifestDamage::RepeatPart(times) => {
            let mut json = manifest_json();
            let part = json["parts"][0].clone();
            json["parts"] = Value::Array(vec![part; *times]);
            serde_json::to_vec_pretty(&json).expect("json")
        }
    }
}

fn manifest_damage() -> impl Strategy<Value = ManifestDamage> {
    prop_oneof![
        (0.0f64..1.0).prop_map(ManifestDamage::Cut),
        proptest::collection::vec((0.0f64..1.0, 1u8..=255), 1..6).prop_map(ManifestDamage::Flips),
        (any::<usize>(), any::<usize>()).prop_map(|(path, value)| ManifestDamage::Replace { path, value }),
        any::<usize>().prop_map(ManifestDamage::Remove),
        (0usize..64).prop_map(ManifestDamage::RepeatPart),
    ]
}

// ---- part-00000.parquet ----

#[derive(Debug, Clone)]
enum PartDamage {
    Cut(f64),
    /// Flips in the column chunks (pages and their headers; the page index and footer after
    /// them are swept by `one_bit_flips_in_the_page_index_and_footer`).
    Flips(Vec<(f64, u8)>),
    /// The footer's 4-byte metadata length set to this (an index into [`footer_lengths`]).
    FooterLength(usize),
    /// The trailing magic `PAR1` changed.
    Magic(u8),
}

/// Values for the footer length: around the true one, around the file size, and the largest.
fn footer_lengths(part: &[u8]) -> Vec<u32> {
    let len = part.len() as u32;
    let actual = footer_length(part);
    vec![
        0,
        1,
        7,
        8,
        actual - 1,
        actual + 1,
        actual - 16,
        actual + 16,
        actual / 2,
        len - 12,
        len - 8,
        len - 7,
        len,
        len + 1,
        0x7fff_ffff,
        0x8000_0000,
        u32::MAX,
    ]
}

fn footer_length(part: &[u8]) -> u32 {
    let n = part.len();
    u32::from_le_bytes([part[n - 8], part[n - 7], part[n - 6], part[n - 5]])
}

fn damaged_part(damage: &PartDamage) -> Vec<u8> {
    let mut bytes = pristine().part.clone();
    let len = bytes.len();
    match damage {
        PartDamage::Cut(keep) => bytes.truncate((len as f64 * keep) as usize),
        PartDamage::Flips(flips) => {
            let pages = pristine().pages_end;
            for &(fraction, mask) in flips {
                bytes[((pages as f64 * fraction) as usize).min(pages - 1)] ^= mask;
            }
        }
        PartDamage::FooterLength(which) => {
            let lengths = footer_lengths(&bytes);
            let value = lengths[which % lengths.len()];
            bytes[len - 8..len - 4].copy_from_slice(&value.to_le_bytes());
        }
        PartDamage::Magic(mask) => bytes[len - 1] ^= mask,
    }
    bytes
}

/// Damage the readers turn into errors today: truncation, the footer length, the magic.
fn part_damage() -> impl Strategy<Value = PartDamage> {
    prop_oneof![
        (0.0f64..1.0).prop_map(PartDamage::Cut),
        any::<usize>().prop_map(PartDamage::FooterLength),
        (1u8..=255).prop_map(PartDamage::Magic),
    ]
}

/// Bit flips in the pages (see [`PartDamage::Flips`]).
fn page_flips() -> impl Strategy<Value = PartDamage> {
    proptest::collection::vec((0.0f64..1.0, 1u8..=255), 1..6).prop_map(PartDamage::Flips)
}

/// The pristine manifest with the part's size set to `bytes` (so the index goes on to parse a
/// part whose size changed, as after a damaged copy whose manifest was "fixed").
fn manifest_with_size(bytes: u64) -> Vec<u8> {
    let mut json = manifest_json();
    json["parts"][0]["bytes"] = json!(bytes);
    serde_json::to_vec_pretty(&json).expect("json")
}

proptest! {
    // Cases: PROPTEST_CASES (scripts/test: 64).
    #[test]
    fn a_damaged_manifest_is_a_typed_error_or_still_a_dataset(damage in manifest_damage()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = damaged_manifest(&damage);
        let ds = write_dataset(dir.path(), &manifest, &pristine().part);
        let outcome = open_everything(&ds);
        check(&ds, &outcome);
        // Every part named is in the dataset directory here, so a manifest that reads and lists
        // the part as written gives its rows.
        if let Ok(manifest) = &outcome.manifest {
            let original: Manifest = serde_json::from_slice(&pristine().manifest).expect("json");
            if manifest.parts.iter().all(|p| *p == original.parts[0]) {
                let want = pristine().rows * manifest.parts.len();
                prop_assert_eq!(outcome.index.as_ref().ok(), Some(&want), "{:?}", outcome);
                prop_assert_eq!(outcome.rows.as_ref().ok(), Some(&want), "{:?}", outcome);
            }
        }
    }

    #[test]
    fn a_damaged_part_is_a_typed_error_or_rows(damage in part_damage(), fix_size in any::<bool>()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let part = damaged_part(&damage);
        let manifest = if fix_size { manifest_with_size(part.len() as u64) } else { pristine().manifest.clone() };
        let ds = write_dataset(dir.path(), &manifest, &part);
        let outcome = open_everything(&ds);
        check(&ds, &outcome);
        prop_assert!(outcome.manifest.is_ok());
        if part.len() != pristine().part.len() && !fix_size {
            // The index checks the size before anything else.
            let error = outcome.index.as_ref().expect_err("a part of another size is refused");
            prop_assert!(error.contains("manifest records"), "{}", error);
        }
        if let PartDamage::Magic(_) | PartDamage::FooterLength(_) = damage {
            let footer = footer_length(&part);
            if footer != footer_length(&pristine().part) || part[part.len() - 4..] != *b"PAR1" {
                prop_assert!(outcome.index.is_err() && outcome.rows.is_err(), "{:?}", outcome);
            }
        }
    }
}

proptest! {
    /// Bit flips in the pages: what blake3 would catch (only `audit verify` checks it) reaches
    /// the Parquet decoders. E.g. byte 15766 ^ 0x95 of the pristine part panics in
    /// `arrow_buffer::bit_util` (definition levels) under both readers.
    #[test]
    fn flipped_page_bytes_are_a_typed_error_or_rows(damage in page_flips()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ds = write_dataset(dir.path(), &pristine().manifest, &damaged_part(&damage));
        let outcome = open_everything(&ds);
        check(&ds, &outcome);
        prop_assert!(outcome.manifest.is_ok());
    }
}

/// One flip the proptest above found (the offset is specific to the fixture's bytes): the
/// definition levels of a page decode into a panic in `arrow_buffer::bit_util`.
#[test]
fn a_known_page_flip_is_a_typed_error_or_rows() {
    let mut part = pristine().part.clone();
    part[15766] ^= 0x95;
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = write_dataset(dir.path(), &pristine().manifest, &part);
    check(&ds, &open_everything(&ds));
}

/// Every manifest path set to every hostile value, and removed: no panic, and the errors name
/// the file.
#[test]
fn every_manifest_field_with_every_hostile_value() {
    let values = hostile_values().len();
    for path in 0..MANIFEST_PATHS.len() {
        for value in 0..values {
            let dir = tempfile::tempdir().expect("temp dir");
            let manifest = damaged_manifest(&ManifestDamage::Replace { path, value });
            let ds = write_dataset(dir.path(), &manifest, &pristine().part);
            check(&ds, &open_everything(&ds));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ds = write_dataset(dir.path(), &damaged_manifest(&ManifestDamage::Remove(path)), &pristine().part);
        check(&ds, &open_everything(&ds));
    }
}

#[test]
fn wrong_types_and_absurd_numbers_in_the_manifest() {
    let cases: [(&str, Value, &str); 6] = [
        ("/rows", json!(-1), "invalid value"),
        ("/rows", serde_json::from_str("18446744073709551616").expect("2^64"), "invalid type: floating point"),
        ("/parts", json!({}), "invalid type"),
        ("/parts/0/bytes", json!("12"), "invalid type"),
        ("/format_version", json!(2), "format_version 2"),
        ("/classes", json!(7), "invalid type"),
    ];
    for (path, value, words) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut json = manifest_json();
        *json.pointer_mut(path).expect("path") = value.clone();
        let ds = write_dataset(dir.path(), &serde_json::to_vec(&json).expect("json"), &pristine().part);
        let outcome = open_everything(&ds);
        check(&ds, &outcome);
        let error = outcome.manifest.expect_err("refused");
        assert!(error.contains(words), "{path} = {value}: {error}");
    }
    // rows = 2^63 reads (rows is only a count), and the index refuses the disagreement.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut json = manifest_json();
    json["rows"] = json!(1u64 << 63);
    json["parts"][0]["rows"] = json!(1u64 << 63);
    json["parts"][0]["bytes"] = json!(u64::MAX);
    let ds = write_dataset(dir.path(), &serde_json::to_vec(&json).expect("json"), &pristine().part);
    let outcome = open_everything(&ds);
    check(&ds, &outcome);
    assert_eq!(outcome.manifest.as_ref().map(|m| m.rows).ok(), Some(1 << 63));
    let error = outcome.index.expect_err("refused");
    assert!(error.contains("manifest records 18446744073709551615"), "{error}");
}

#[test]
fn parts_naming_missing_files_or_directories_are_refused() {
    for file in ["missing.parquet", "", ".", "..", "sub/part-00000.parquet", "part-00000.parquet/"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut json = manifest_json();
        json["parts"][0]["file"] = json!(file);
        let ds = write_dataset(dir.path(), &serde_json::to_vec(&json).expect("json"), &pristine().part);
        let outcome = open_everything(&ds);
        check(&ds, &outcome);
        let index = outcome.index.expect_err("refused");
        let rows = outcome.rows.expect_err("refused");
        // Named either as the part's path or, when the manifest itself refuses the name, as
        // the manifest's entry.
        let path = ds.join(file).display().to_string();
        let entry = format!("part {file:?}");
        let names = |e: &str| e.contains(&path) || e.contains(&entry);
        assert!(names(&index) && names(&rows), "{file:?}: {index} / {rows}");
    }
}

/// A manifest is data from wherever the dataset came from: a part name must not reach outside
/// the dataset directory (`../`, an absolute path), even when a valid part lies there.
#[test]
fn parts_outside_the_dataset_directory_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("elsewhere.parquet"), &pristine().part).expect("write");
    let outside = dir.path().join("elsewhere.parquet").display().to_string();
    for file in ["../elsewhere.parquet", outside.as_str()] {
        let mut json = manifest_json();
        json["parts"][0]["file"] = json!(file);
        let ds = write_dataset(dir.path(), &serde_json::to_vec(&json).expect("json"), &pristine().part);
        let outcome = open_everything(&ds);
        assert!(outcome.manifest.is_err(), "{file:?} accepted as a part name: {outcome:?}");
        assert!(outcome.index.is_err() && outcome.rows.is_err(), "{file:?} read: {outcome:?}");
    }
}

/// A part that is a FIFO (a hostile directory rather than hostile bytes) must not block a reader
/// forever.
#[test]
fn a_part_that_is_a_fifo_does_not_block() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = write_dataset(dir.path(), &manifest_with_size(0), &pristine().part);
    let fifo = ds.join(PART);
    std::fs::remove_file(&fifo).expect("rm");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(status.success());
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader_ds = ds.clone();
    std::thread::spawn(move || {
        let index = DatasetIndex::open(&reader_ds).map(|index| index.len()).map_err(|e| text(&e));
        let rows = DatasetReader::open(&reader_ds).map(|reader| reader.rows().filter(Result::is_err).count());
        let _ = sender.send((index, rows.map_err(|e| text(&e))));
    });
    let result = receiver.recv_timeout(Duration::from_secs(5));
    let blocked = result.is_err();
    // Unblock a blocked reader: open the FIFO for writing (non-blocking: fails while no reader
    // waits) until the reader thread is done.
    let result = result.or_else(|_| {
        use std::os::unix::fs::OpenOptionsExt;
        for _ in 0..600 {
            let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
            if let Ok(done) = receiver.recv_timeout(Duration::from_millis(100)) {
                return Ok(done);
            }
        }
        Err(())
    });
    assert!(!blocked, "a reader blocked for 5 s opening a FIFO part (once unblocked: {result:?})");
    let (index, rows) = result.expect("the readers return");
    assert!(index.is_err() && rows != Ok(0), "{index:?} {rows:?}");
}

/// Every byte after the column chunks (the page index, the Thrift footer with the Arrow schema
/// in it, its length and magic), XORed with one bit: collects every panic rather than stopping
/// at the first. Run with `--ignored` to list them (~1 min).
#[test]
fn one_bit_flips_in_the_page_index_and_footer() {
    let part = &pristine().part;
    let manifest = &pristine().manifest;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut panics = Vec::new();
    let mut noticed = 0;
    let span = pristine().pages_end..part.len();
    for i in span.clone() {
        let mut bytes = part.clone();
        let mask = 1u8 << (i % 8);
        bytes[i] ^= mask;
        let ds = write_dataset(dir.path(), manifest, &bytes);
        match std::panic::catch_unwind(|| {
            let outcome = open_everything(&ds);
            check(&ds, &outcome);
            outcome
        }) {
            Ok(outcome) => noticed += usize::from(outcome.index.is_err() || outcome.rows.is_err()),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                panics.push(format!("byte {i} ^ {mask:#04x}: {message}"));
            }
        }
    }
    assert!(panics.is_empty(), "{} of {} flips panicked:\n{}", panics.len(), span.len(), panics.join("\n"));
    assert!(noticed > span.len() / 4, "only {noticed} of {} flips were noticed", span.len());
}

/// A part with the bitkit column names but other types (all utf8): what a footer flip that
/// changes a column's type looks like to the readers. `DatasetIndex::open` refuses it with a
/// typed error; `DatasetReader::rows` must too (it casts with the panicking `as_struct`,
/// `as_binary`, `as_primitive`, ...).
#[test]
fn a_part_with_other_column_types_is_a_typed_error() {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let names =
        ["key", "image", "label", "labels", "width", "height", "format", "content_hash", "source", "source_index"];
    let columns: Vec<(&str, ArrayRef)> =
        names.iter().map(|&name| (name, std::sync::Arc::new(StringArray::from(vec!["x"])) as ArrayRef)).collect();
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let mut part = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut part, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let mut json = manifest_json();
    json["parts"][0]["bytes"] = json!(part.len());
    json["parts"][0]["rows"] = json!(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = write_dataset(dir.path(), &serde_json::to_vec(&json).expect("json"), &part);
    let outcome = open_everything(&ds);
    check(&ds, &outcome);
    assert!(outcome.index.is_err() && outcome.rows.is_err(), "{outcome:?}");
}
