//! WebDataset tar reader: consecutive members sharing a key form one sample (FORMATS.md §4,
//! after `webdataset/tariterators.py`).
//!
//! ```text
//! 000017.jpg  000017.cls  000017.json | 000018.png  000018.seg.png | __meta__ (skipped)
//! '-------- sample "000017" ---------' '------ sample "000018" -----'
//! ```
//!
//! - A member name splits as `^((?:.*/|)[^.]+)[.]([^/]*)$`: key = directory + basename up to
//!   the *first* dot, extension = the rest, lowercased (`seg.png` is one extension, not `png`).
//!   Names without a dot are dropped; non-regular members and `__*__` names at the top level
//!   (or as the first directory) are skipped, as webdataset does. None of them ends a sample.
//! - Only consecutive members group: the same key later in the shard is a new sample.
//! - The image is the member with the first extension of [`IMAGE_EXTENSIONS`] present; the label
//!   the first of [`LABEL_EXTENSIONS`], handed over raw as [`RawLabel::SideFile`].
//! - The record index counts samples; the offset is the header offset of a sample's first member.
//!
//! Memory: only the chosen image and label members are read (each checked against
//! `max_record_bytes` first), other members' data is skipped unread, and a sample records at
//! most [`MAX_MEMBERS_PER_SAMPLE`] extensions.
use crate::tar::{buffered_source, check_member_size, normalize_member_name, MemberHeader, TarSource, TarStream};
use crate::{RawLabel, RawPayload, RawRecord, ReaderConfig, RecordError, RejectKind, ShardReader};
use bytes::Bytes;
use std::io::Read;

/// Image extensions in order of preference: a sample with `jpg` and `png` uses the `jpg`.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm"];

/// Label side files in order of preference; the caller parses them.
pub const LABEL_EXTENSIONS: [&str; 3] = ["cls", "json", "txt"];

/// More members than this under one key is not a WebDataset sample but a broken shard; the
/// cap keeps the per-sample extension list bounded.
pub const MAX_MEMBERS_PER_SAMPLE: usize = 1024;

/// Reader of a WebDataset tar shard; keys are `{shard_stem}/{sample key}`.
pub fn webdataset_reader<R: Read + Send + 'static>(
    stream: R,
    shard_stem: String,
    config: &ReaderConfig,
) -> Box<dyn ShardReader> {
    webdataset_reader_of(buffered_source(stream), shard_stem, config)
}

/// [`webdataset_reader`] over any [`TarSource`] (a mapped shard: images are views of it).
pub(crate) fn webdataset_reader_of<S: TarSource + Send + 'static>(
    source: S,
    shard_stem: String,
    config: &ReaderConfig,
) -> Box<dyn ShardReader> {
    Box::new(WebDatasetReader {
        stream: TarStream::new(source),
        shard_stem,
        max_record_bytes: config.max_record_bytes,
        current: None,
        next_index: 0,
        deferred: None,
    })
}

/// Splits a member name into (sample key, extension) by webdataset's regex
/// `^((?:.*/|)[^.]+)[.]([^/]*)$`; `None` when it does not match.
pub fn split_key(name: &str) -> Option<(&str, &str)> {
    let base_start = name.rfind('/').map_or(0, |slash| slash + 1);
    let base = &name[base_start..];
    let dot = base.find('.')?;
    if dot > 0 {
        return Some((&name[..base_start + dot], &base[dot + 1..]));
    }
    // The basename starts with a dot: the regex's `[^.]+` then backtracks over the last
    // directory separator, so `dir/.x` is key `dir/`, extension `x` (if `dir` has no dot).
    let key = &name[..base_start];
    let parent = key.strip_suffix('/')?;
    let last_dir = &parent[parent.rfind('/').map_or(0, |slash| slash + 1)..];
    if last_dir.contains('.') {
        return None;
    }
    Some((key, &base[1..]))
}

/// webdataset skips metadata members matching `__[^/]*__($|/)` at the start of the name.
fn is_metadata(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or(name);
    first.len() >= 4 && first.starts_with("__") && first.ends_with("__")
}

/// A member chosen for a sample's image or label, with its rank in the preference list.
struct Chosen {
    rank: usize,
    extension: String,
    member_name: String,
    bytes: Bytes,
}

/// The sample being gathered.
struct Sample {
    key: String,
    index: u64,
    offset: u64,
    extensions: Vec<String>,
    image: Option<Chosen>,
    label: Option<Chosen>,
    /// The first reason to reject the sample; later members are still consumed.
    problem: Option<RecordError>,
}

impl Sample {
    fn reject(&mut self, kind: RejectKind, reason: String) {
        if self.problem.is_none() {
            self.problem = Some(RecordError::new(kind, reason));
        }
    }
}

struct WebDatasetReader<S> {
    stream: TarStream<S>,
    shard_stem: String,
    max_record_bytes: u64,
    current: Option<Sample>,
    next_index: u64,
    /// A stream error met while starting the next sample, reported after the finished one.
    deferred: Option<RecordError>,
}

impl<S: TarSource> WebDatasetReader<S> {
    fn full_key(&self, key: &str) -> String {
        format!("{}/{key}", self.shard_stem)
    }

    fn finish(&self, sample: Sample) -> Result<RawRecord, RecordError> {
        let key = self.full_key(&sample.key);
        if let Some(problem) = sample.problem {
            return Err(problem.at(sample.index, sample.offset).named(key));
        }
        let Some(image) = sample.image else {
            return Err(RecordError::new(
                RejectKind::MissingField,
                format!(
                    "sample has no image member (extensions found: {}; expected one of {})",
                    sample.extensions.join(", "),
                    IMAGE_EXTENSIONS.join(", ")
                ),
            )
            .at(sample.index, sample.offset)
            .named(key));
        };
        let label = match sample.label {
            Some(label) => RawLabel::SideFile { extension: label.extension, bytes: label.bytes.to_vec() },
            None => RawLabel::Missing,
        };
        Ok(RawRecord {
            index: sample.index,
            offset: sample.offset,
            payload: RawPayload::Image { key, path: Some(image.member_name), bytes: image.bytes, label },
        })
    }

    /// The stream broke while `sample` was open: its remaining members may be lost, so it is
    /// reported with the damage instead of yielded.
    fn damaged(&self, sample: Sample, error: RecordError) -> RecordError {
        RecordError {
            index: Some(sample.index),
            offset: error.offset.or(Some(sample.offset)),
            name: Some(self.full_key(&sample.key)),
            kind: error.kind,
            reason: format!("{}; the sample is dropped as it may be incomplete", error.reason),
        }
    }

    /// Adds one member to `sample`, reading its data only when it becomes the image or label.
    /// Errors are stream errors (the place is lost); sample problems are recorded in `sample`.
    fn add_member(
        stream: &mut TarStream<S>,
        max_record_bytes: u64,
        sample: &mut Sample,
        member: &MemberHeader,
        name: &str,
        extension: String,
    ) -> Result<(), RecordError> {
        if std::str::from_utf8(&member.name).is_err() {
            sample.reject(RejectKind::Malformed, format!("member name {name:?} is not UTF-8"));
        }
        if sample.extensions.contains(&extension) {
            sample.reject(RejectKind::Malformed, format!("duplicate extension '{extension}' (member {name})"));
            return Ok(());
        }
        if sample.extensions.len() >= MAX_MEMBERS_PER_SAMPLE {
            sample.reject(RejectKind::BadLength, format!("more than {MAX_MEMBERS_PER_SAMPLE} members share the key"));
            return Ok(());
        }
        sample.extensions.push(extension.clone());
        if sample.problem.is_some() {
            return Ok(());
        }
        let image_rank = IMAGE_EXTENSIONS.iter().position(|candidate| *candidate == extension);
        let label_rank = LABEL_EXTENSIONS.iter().position(|candidate| *candidate == extension);
        let (slot, rank) = match (image_rank, label_rank) {
            (Some(rank), _) => (&mut sample.image, rank),
            (None, Some(rank)) => (&mut sample.label, rank),
            (None, None) => return Ok(()),
        };
        if slot.as_ref().is_some_and(|chosen| chosen.rank < rank) {
            return Ok(());
        }
        if let Err(error) = check_member_size(member.size, max_record_bytes) {
            sample.reject(error.kind, format!("{} ({name})", error.reason));
            return Ok(());
        }
        let bytes = stream.read_data(member)?;
        *slot = Some(Chosen { rank, extension, member_name: name.to_owned(), bytes });
        Ok(())
    }
}

impl<S: TarSource + Send> ShardReader for WebDatasetReader<S> {
    fn next_record(&mut self) -> Option<Result<RawRecord, RecordError>> {
        if let Some(error) = self.deferred.take() {
            return Some(Err(error));
        }
        loop {
            let member = match self.stream.next_member() {
                Ok(Some(member)) => member,
                Ok(None) => return self.current.take().map(|sample| self.finish(sample)),
                Err(error) => {
                    return Some(Err(match self.current.take() {
                        Some(sample) => self.damaged(sample, error),
                        None => error,
                    }))
                }
            };
            if !member.is_file() {
                continue;
            }
            // Non-UTF-8 names group by their lossy form and reject their sample.
            let lossy = member.name_lossy().into_owned();
            let name = normalize_member_name(&lossy);
            if is_metadata(name) {
                continue;
            }
            let Some((key, extension)) = split_key(name) else {
                continue;
            };
            let extension = extension.to_lowercase();
            let finished = match &self.current {
                Some(sample) if sample.key == key => None,
                _ => self.current.take(),
            };
            let sample = self.current.get_or_insert_with(|| {
                let index = self.next_index;
                self.next_index += 1;
                Sample {
                    key: key.to_owned(),
                    index,
                    offset: member.header_offset,
                    extensions: Vec::new(),
                    image: None,
                    label: None,
                    problem: None,
                }
            });
            let added = Self::add_member(&mut self.stream, self.max_record_bytes, sample, &member, &lossy, extension);
            if let Err(error) = added {
                let error = match self.current.take() {
                    Some(sample) => self.damaged(sample, error),
                    None => error,
                };
                return Some(match finished {
                    Some(finished) => {
                        self.deferred = Some(error);
                        self.finish(finished)
                    }
                    None => Err(error),
                });
            }
            if let Some(finished) = finished {
                return Some(self.finish(finished));
            }
        }
    }

    fn bytes_read(&self) -> u64 {
        self.stream.position()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::tests::{arb_tar, err, image, ok, patch_size, read_all, Format, TestTar};
    use proptest::prelude::*;
    use std::io;

    fn wds(bytes: Vec<u8>) -> Vec<Result<RawRecord, RecordError>> {
        wds_with(bytes, &ReaderConfig::default())
    }

    fn wds_with(bytes: Vec<u8>, config: &ReaderConfig) -> Vec<Result<RawRecord, RecordError>> {
        read_all(webdataset_reader(io::Cursor::new(bytes), "shard-000001".into(), config))
    }

    fn side(extension: &str, bytes: &[u8]) -> RawLabel {
        RawLabel::SideFile { extension: extension.into(), bytes: bytes.to_vec() }
    }

    #[test]
    fn split_key_follows_the_webdataset_regex() {
        assert_eq!(split_key("000017.jpg"), Some(("000017", "jpg")));
        assert_eq!(split_key("a.b/c.seg.png"), Some(("a.b/c", "seg.png")));
        assert_eq!(split_key("dir/x.tar.gz"), Some(("dir/x", "tar.gz")));
        assert_eq!(split_key("dir/noext"), None);
        assert_eq!(split_key("a.b/c"), None);
        assert_eq!(split_key(".hidden"), None);
        assert_eq!(split_key("dir/.x"), Some(("dir/", "x")));
        assert_eq!(split_key("d.ir/.x"), None);
        assert_eq!(split_key("a."), Some(("a", "")));
        assert!(is_metadata("__key__"));
        assert!(is_metadata("__meta__/info.json"));
        assert!(!is_metadata("___"));
        assert!(!is_metadata("dir/__key__"));
    }

    #[test]
    fn groups_consecutive_members_into_samples() {
        let tar = TestTar::new(Format::Gnu)
            .file("__key__", b"k")
            .file("000017.jpg", b"J17")
            .file("000017.cls", b"3")
            .file("000017.JSON", b"{}")
            .dir("dir/")
            .file("000018.png", b"P18")
            .file("000018.seg.png", b"SEG")
            .file("README", b"no dot: dropped without ending the sample")
            .file("000018.txt", b"cat")
            .file("sub/000019.jpeg", b"J19")
            .file("sub/000019.webp", b"W19")
            .file("000017.jpg", b"again");
        let starts = tar.group_starts.clone();
        let results = wds(tar.finish());
        let got: Vec<_> = results
            .iter()
            .map(|result| {
                let record = ok(result);
                let (key, path, bytes, label) = image(record);
                (record.index, record.offset, key.to_owned(), path.map(str::to_owned), bytes.to_vec(), label.clone())
            })
            .collect();
        let path = |name: &str| Some(name.to_owned());
        assert_eq!(
            got,
            [
                (0, starts[1], "shard-000001/000017".into(), path("000017.jpg"), b"J17".to_vec(), side("cls", b"3")),
                (1, starts[5], "shard-000001/000018".into(), path("000018.png"), b"P18".to_vec(), side("txt", b"cat")),
                (
                    2,
                    starts[9],
                    "shard-000001/sub/000019".into(),
                    path("sub/000019.jpeg"),
                    b"J19".to_vec(),
                    RawLabel::Missing
                ),
                (3, starts[11], "shard-000001/000017".into(), path("000017.jpg"), b"again".to_vec(), RawLabel::Missing),
            ]
        );
    }

    #[test]
    fn preference_order_holds_whatever_the_member_order() {
        let results = wds(TestTar::new(Format::Ustar)
            .file("a.txt", b"t")
            .file("a.png", b"P")
            .file("a.json", b"{\"label\": 1}")
            .file("a.jpg", b"J")
            .file("a.gif", b"G")
            .finish());
        assert_eq!(results.len(), 1);
        let (_, path, bytes, label) = image(ok(&results[0]));
        assert_eq!((path, bytes), (Some("a.jpg"), &b"J"[..]));
        assert_eq!(label, &side("json", b"{\"label\": 1}"));
    }

    #[test]
    fn sample_without_image_is_missing_field_and_reading_goes_on() {
        let tar = TestTar::new(Format::Gnu).file("a.cls", b"1").file("a.seg.png", b"S").file("b.jpg", b"B");
        let starts = tar.group_starts.clone();
        let results = wds(tar.finish());
        assert_eq!(results.len(), 2);
        let error = err(&results[0]);
        assert_eq!((error.kind, error.index, error.offset), (RejectKind::MissingField, Some(0), Some(starts[0])));
        assert_eq!(error.name.as_deref(), Some("shard-000001/a"));
        assert!(error.reason.contains("extensions found: cls, seg.png"), "{}", error.reason);
        assert_eq!(ok(&results[1]).index, 1);
    }

    #[test]
    fn duplicate_extension_is_malformed() {
        let results = wds(TestTar::new(Format::Gnu)
            .file("a.jpg", b"1")
            .file("a.JPG", b"2")
            .file("a.cls", b"0")
            .file("b.jpg", b"B")
            .finish());
        assert_eq!(results.len(), 2);
        let error = err(&results[0]);
        assert_eq!((error.kind, error.index), (RejectKind::Malformed, Some(0)));
        assert!(error.reason.contains("duplicate extension 'jpg'"), "{}", error.reason);
        assert_eq!(image(ok(&results[1])).0, "shard-000001/b");
    }

    #[test]
    fn over_limit_image_rejects_the_sample_unread() {
        let config = ReaderConfig { max_record_bytes: 100, ..Default::default() };
        let results = wds_with(
            TestTar::new(Format::Gnu)
                .file("a.jpg", &[1; 101])
                .file("a.cls", b"1")
                .file("a.npy", &[9; 5000])
                .file("b.jpg", &[2; 100])
                .finish(),
            &config,
        );
        assert_eq!(results.len(), 2);
        let error = err(&results[0]);
        assert_eq!((error.kind, error.index), (RejectKind::BadLength, Some(0)));
        assert!(error.reason.contains("101 bytes") && error.reason.contains("a.jpg"), "{}", error.reason);
        assert_eq!(image(ok(&results[1])).2, &[2; 100][..], "a big non-image member is skipped, not rejected");
    }

    #[test]
    fn truncation_mid_sample_yields_the_previous_sample_then_the_damage() {
        let tar = TestTar::new(Format::Gnu).file("a.jpg", b"A").file("b.jpg", &[5; 2000]).file("b.cls", b"1");
        let starts = tar.group_starts.clone();
        let bytes = tar.finish();
        let cut = usize::try_from(starts[1]).expect("small") + 512 + 100;
        let results = wds(bytes[..cut].to_vec());
        assert_eq!(results.len(), 2);
        assert_eq!(image(ok(&results[0])).0, "shard-000001/a");
        let error = err(&results[1]);
        assert_eq!((error.kind, error.index), (RejectKind::Truncated, Some(1)));
        assert_eq!(error.name.as_deref(), Some("shard-000001/b"));
        assert!(error.reason.starts_with("member b.jpg declares 2000 bytes, only 100 present"), "{}", error.reason);

        // Cut in the header of b's label: b may be incomplete, so it is reported, not yielded.
        let cut = usize::try_from(starts[2]).expect("small") + 10;
        let results = wds(bytes[..cut].to_vec());
        assert_eq!(results.len(), 2);
        let error = err(&results[1]);
        assert_eq!((error.kind, error.index), (RejectKind::Truncated, Some(1)));
    }

    #[test]
    fn corrupt_header_after_a_complete_sample() {
        let tar = TestTar::new(Format::Gnu).file("a.jpg", b"A").file("a.cls", b"1").file("b.jpg", b"B");
        let starts = tar.group_starts.clone();
        let mut bytes = tar.finish();
        // A lie in a.cls's size makes the next header land in data.
        patch_size(&mut bytes, usize::try_from(starts[1]).expect("small"), 600);
        let results = wds(bytes);
        assert_eq!(results.len(), 1);
        let error = err(&results[0]);
        assert_eq!(
            (error.kind, error.index, error.offset),
            (RejectKind::BadChecksum, Some(0), Some(starts[2] + 512)),
            "{error}"
        );
    }

    #[test]
    fn bytes_read_reaches_the_end() {
        let bytes = TestTar::new(Format::Gnu).file("a.jpg", b"A").file("a.npy", &[0; 3000]).finish();
        let total = bytes.len() as u64;
        let mut reader = webdataset_reader(io::Cursor::new(bytes), "s".into(), &ReaderConfig::default());
        while reader.next_record().is_some() {}
        assert_eq!(reader.bytes_read(), total);
    }

    /// A WebDataset-shaped archive: samples of 1-3 members with random extensions.
    fn arb_wds() -> impl Strategy<Value = Vec<u8>> {
        let extensions = prop::sample::select(vec!["jpg", "png", "cls", "json", "txt", "seg.png", "npy"]);
        let member = (extensions, 0usize..700, any::<u8>());
        proptest::collection::vec(proptest::collection::vec(member, 1..4), 0..6).prop_map(|samples| {
            let mut tar = TestTar::new(Format::Gnu);
            for (number, members) in samples.into_iter().enumerate() {
                for (extension, size, seed) in members {
                    tar = tar.file(&format!("{number:06}.{extension}"), &vec![seed; size]);
                }
            }
            tar.finish()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Cuts and byte flips: no panic, the reader ends, a cut alone gives at most one error.
        #[test]
        fn damaged_shards_never_panic(
            bytes in prop_oneof![arb_wds(), arb_tar()],
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        ) {
            let full = wds(bytes.clone());
            let mut damaged = bytes;
            damaged.truncate(cut.index(damaged.len() + 1));
            let truncated = wds(damaged.clone());
            prop_assert!(truncated.iter().filter(|result| result.is_err()).count() <= full.iter().filter(|result| result.is_err()).count() + 1);
            if !damaged.is_empty() {
                for (at, mask) in &flips {
                    let at = at.index(damaged.len());
                    damaged[at] ^= mask;
                }
            }
            let _ = wds(damaged);
        }
    }
}
