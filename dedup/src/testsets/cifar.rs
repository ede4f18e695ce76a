//! CIFAR-10 / CIFAR-100 test batches (FORMATS.md §5): `test_batch.bin` / `test.bin`, extracted
//! or inside the official `.tar.gz`.
//!
//! Records are fixed-size (`bitkit_ingest::cifar::CifarVariant::record_bytes`: 3073 / 3074
//! bytes): label byte(s), then 32x32 R, G and B planes. Image `i` = record `i` (index `i`,
//! name `test_batch.bin#i`), label = the (fine) label byte, pixels as [`TestPixels::Rgb`]. A
//! file whose size is not a whole number of records, or a label out of range, is a
//! `BadTestSet` naming the record and its byte offset.

use super::{bad, missing, read_small_file, read_tar_member, TestImage, TestPixels, TestSet, TestSetKind};
use crate::DedupError;
use bitkit_ingest::cifar::{CifarVariant, CIFAR_PIXEL_BYTES, CIFAR_SIDE};
use bitkit_ingest::image::RgbImage;
use std::path::{Path, PathBuf};

/// Where a CIFAR test batch lives.
struct Layout {
    variant: CifarVariant,
    /// Path of the batch once extracted, and its member name in the archive.
    member: &'static str,
    archive: &'static str,
}

fn layout(kind: TestSetKind) -> Layout {
    match kind {
        TestSetKind::Cifar100Test => Layout {
            variant: CifarVariant::Cifar100,
            member: "cifar-100-binary/test.bin",
            archive: "cifar-100-binary.tar.gz",
        },
        _ => Layout {
            variant: CifarVariant::Cifar10,
            member: "cifar-10-batches-bin/test_batch.bin",
            archive: "cifar-10-binary.tar.gz",
        },
    }
}

/// Loads `cifar10-test` or `cifar100-test` from the first directory of `dirs` holding it.
pub fn load(kind: TestSetKind, dirs: &[PathBuf]) -> Result<TestSet, DedupError> {
    let name = kind.name();
    let layout = layout(kind);
    for dir in dirs {
        let extracted = dir.join(layout.member);
        if extracted.is_file() {
            let bytes = read_small_file(name, &extracted)?;
            return finish(kind, layout.variant, &extracted, &bytes, vec![extracted.clone()]);
        }
        let archive = dir.join(layout.archive);
        if archive.is_file() {
            let Some(bytes) = read_tar_member(name, &archive, true, layout.member)? else {
                return Err(bad(name, &archive, format!("the archive holds no member {}", layout.member)));
            };
            return finish(kind, layout.variant, &archive, &bytes, vec![archive.clone()]);
        }
    }
    Err(missing(name, &[layout.member, layout.archive], dirs))
}

fn finish(
    kind: TestSetKind,
    variant: CifarVariant,
    path: &Path,
    bytes: &[u8],
    sources: Vec<PathBuf>,
) -> Result<TestSet, DedupError> {
    let images = parse_records(kind.name(), path, variant, bytes)?;
    Ok(TestSet { name: kind.name().to_owned(), kind, images, sources })
}

/// The records of one batch file's bytes; `path` names it in errors.
pub fn parse_records(
    name: &str,
    path: &Path,
    variant: CifarVariant,
    bytes: &[u8],
) -> Result<Vec<TestImage>, DedupError> {
    let record_bytes = variant.record_bytes();
    let label_bytes = record_bytes - CIFAR_PIXEL_BYTES;
    if bytes.is_empty() {
        return Err(bad(name, path, "the batch is empty"));
    }
    if !bytes.len().is_multiple_of(record_bytes) {
        let whole = bytes.len() / record_bytes;
        return Err(bad(
            name,
            path,
            format!(
                "{} bytes is not a whole number of {record_bytes}-byte records: record {whole} at byte {} has {} bytes",
                bytes.len(),
                whole * record_bytes,
                bytes.len() % record_bytes
            ),
        ));
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let member_name = match variant {
        CifarVariant::Cifar10 => "test_batch.bin",
        CifarVariant::Cifar100 => "test.bin",
    };
    // Name records after the batch file, also when it was read from inside the archive.
    let batch_name = if file_name.ends_with(".bin") { file_name } else { member_name.to_owned() };
    let mut images = Vec::with_capacity(bytes.len() / record_bytes);
    for (index, record) in bytes.chunks_exact(record_bytes).enumerate() {
        let label = record[label_bytes - 1];
        if label >= variant.num_classes() {
            return Err(bad(
                name,
                path,
                format!(
                    "record {index} at byte {}: label {label} is out of range 0..{}",
                    index * record_bytes,
                    variant.num_classes()
                ),
            ));
        }
        let planes = &record[label_bytes..];
        let (red, rest) = planes.split_at(CIFAR_PIXEL_BYTES / 3);
        let (green, blue) = rest.split_at(CIFAR_PIXEL_BYTES / 3);
        let pixels = red.iter().zip(green).zip(blue).flat_map(|((r, g), b)| [*r, *g, *b]).collect();
        images.push(TestImage {
            index: index as u64,
            label: Some(i64::from(label)),
            name: format!("{batch_name}#{index}"),
            image: TestPixels::Rgb(RgbImage { width: CIFAR_SIDE, height: CIFAR_SIDE, pixels }),
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut record = vec![label];
        record.extend((0..3072u32).map(|i| fill.wrapping_add((i / 1024) as u8)));
        record
    }

    #[test]
    fn records_become_interleaved_rgb() {
        let bytes: Vec<u8> = [record(3, 10), record(9, 20)].concat();
        let images =
            parse_records("cifar10-test", Path::new("test_batch.bin"), CifarVariant::Cifar10, &bytes).expect("parse");
        assert_eq!(images.len(), 2);
        assert_eq!((images[1].index, images[1].label, images[1].name.as_str()), (1, Some(9), "test_batch.bin#1"));
        let TestPixels::Rgb(rgb) = &images[0].image else { panic!("rgb") };
        assert_eq!((rgb.width, rgb.height, rgb.pixels.len()), (32, 32, 3072));
        assert_eq!(&rgb.pixels[..6], &[10, 11, 12, 10, 11, 12]);
    }

    #[test]
    fn bad_sizes_and_labels_name_the_record() {
        let path = Path::new("test_batch.bin");
        let mut bytes = [record(1, 0), record(2, 0)].concat();
        bytes.truncate(3073 + 100);
        let error = parse_records("cifar10-test", path, CifarVariant::Cifar10, &bytes).expect_err("short");
        assert!(error.to_string().contains("record 1 at byte 3073 has 100 bytes"), "{error}");
        let bytes = [record(1, 0), record(10, 0)].concat();
        let error = parse_records("cifar10-test", path, CifarVariant::Cifar10, &bytes).expect_err("label");
        assert!(error.to_string().contains("record 1 at byte 3073: label 10"), "{error}");
        assert!(parse_records("cifar10-test", path, CifarVariant::Cifar10, &[]).is_err());
    }
}
