//! `bitkit dedup`: hash the upstream dataset (cached), index the test sets, search, verify,
//! write the outputs.
//!
//! 1. Upstream: every row's 8 hashes ([`SLOTS`]: 3 views x the native and 32x32 CIFAR
//!    channels, and the sheared CIFAR channel of the 2 uncropped views) from the cache beside
//!    the dataset, hashing only rows whose content hash the cache lacks (all cores,
//!    DCT-scaled decode).
//! 2. Test side: every image of every `--against` set, in its channels (CIFAR sets: the 32x32
//!    channel with 4 inset frames, and the sheared channel for one-axis images; others native
//!    PDQ), every view, all 8 dihedral variants -> Hamming indexes per channel and view set.
//! 3. Search: each upstream row's distinct hashes (identity only) against the indexes of their
//!    channel that share a view, exact range search within the channel's radius.
//! 4. Verify: for each (upstream row, test image) the candidates in order of distance are
//!    compared on aligned grayscale (NCC and SSIM); the first that passes makes the pair a
//!    `duplicate`, otherwise the closest is kept as `rejected`.
//! 5. Outputs in `--out`, each written under a temporary name then renamed, `summary.json` last:
//!    `pairs.parquet`, `exclude.txt`, `errors.jsonl`, `report.html`, `summary.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bitkit_ingest::dataset::manifest::write_atomic;
use bitkit_ingest::dataset::{DatasetIndex, PartFiles};
use bitkit_ingest::image::{Decoder, RgbImage};
use rayon::prelude::*;

use crate::hashes::{
    content_hashes, decode_for_hashing, decode_scaled, hash_missing, HashCache, RowHashes, CACHE_FILE, SLOTS,
    VERIFY_MIN_SIDE,
};
use crate::pairs::{write_pairs, PairRow};
use crate::pdq::{pdq, pdq_dihedral_exact, Dihedral, PdqHash};
use crate::report::{png_thumbnail, render_html, Report, ReportCounts, ReportPair};
use crate::search::HammingIndex;
use crate::shear::{needs_shear, sheared_dihedral_exact};
use crate::testsets::{TestPixels, TestSet};
use crate::verify::{verify, verify_inset, verify_sheared, Verification};
use crate::views::{canonical, inset_frame, Channel, View};
use crate::DedupError;

/// Every setting of a run; thresholds are documented in docs/dedup.md.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DedupConfig {
    pub upstream: PathBuf,
    pub against: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub out: PathBuf,
    /// Hash cache; default `UPSTREAM/pdq-hashes.bin`.
    pub cache: Option<PathBuf>,
    /// Search radius (bits) for native PDQ hashes.
    pub radius: u32,
    /// Search radius for the 32x32 CIFAR channel (a 32x32 image carries less detail).
    pub radius_cifar: u32,
    /// Search radius for the sheared CIFAR channel (one-axis test images only).
    pub radius_sheared: u32,
    /// Verification: a pair is a duplicate when NCC >= this ...
    pub min_ncc: f32,
    /// ... and SSIM >= this,
    pub min_ssim: f32,
    /// ... or SSIM alone >= this: NCC over a whole thumbnail drops when a few border rows are
    /// mis-trimmed (JPEG ringing at letterbox bars), SSIM's local windows do not.
    pub ssim_alone: f32,
    /// PDQ quality below which a hash is unreliable (flat, text-only images): such pairs need
    /// NCC and SSIM both; quality 0 (a flat view) is not searched at all.
    pub min_quality: u8,
    /// Candidates verified per (upstream row, test image), closest first.
    pub max_candidates_per_pair: usize,
    /// Rejected candidates shown in the report.
    pub report_rejected: usize,
    pub max_pixels: u64,
}

impl DedupConfig {
    pub fn new(upstream: PathBuf, against: Vec<String>, out: PathBuf) -> DedupConfig {
        DedupConfig {
            upstream,
            against,
            data_dir: None,
            out,
            cache: None,
            radius: 31,
            radius_cifar: 56,
            radius_sheared: 31,
            min_ncc: 0.90,
            min_ssim: 0.50,
            ssim_alone: 0.92,
            min_quality: 50,
            max_candidates_per_pair: 8,
            report_rejected: 50,
            max_pixels: bitkit_ingest::pipeline::DEFAULT_MAX_PIXELS,
        }
    }

    pub fn cache_path(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| self.upstream.join(CACHE_FILE))
    }
}

/// Counts for one test set (BiT Table 7's columns and more).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TestSetSummary {
    pub test_set: String,
    pub test_images: u64,
    pub test_images_failed: u64,
    /// (upstream row, test image) pairs within the radius.
    pub candidates: u64,
    /// Pairs that passed verification.
    pub verified: u64,
    /// Upstream rows with at least one verified duplicate in this set.
    pub upstream_rows_removed: u64,
}

/// What `--json` prints and `summary.json` holds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DedupSummary {
    pub upstream: String,
    pub upstream_rows: u64,
    pub hashed_now: u64,
    pub hashed_from_cache: u64,
    pub upstream_errors: u64,
    pub test_sets: Vec<TestSetSummary>,
    /// Distinct upstream keys in `exclude.txt`.
    pub excluded: u64,
    pub hash_seconds: f64,
    pub hash_images_per_s: f64,
    pub match_seconds: f64,
    pub verify_seconds: f64,
    pub seconds: f64,
}

/// One indexed test-side code: one dihedral variant of one test image, in every view whose
/// hash (and quality) it is. A square test image without borders (every CIFAR image, most
/// others) has the same pixels, so the same hash, in all three views: one entry, not three.
struct TestEntry {
    set: usize,
    image: usize,
    views: ViewSet,
    dihedral: Dihedral,
    quality: u8,
    /// The hash is of the test image's inset frame `INSET_FRAMES[k]` (CIFAR channel only): a
    /// cropped copy matches it, and is verified against it.
    inset: Option<usize>,
}

/// Positions of the test-side inset frames of the CIFAR channel (see
/// [`inset_frame`](crate::views::inset_frame)): the 95% window at a quarter and three quarters
/// of the 5% margin along each axis, so any 5% crop is within 1.25% of one. Only the upright
/// variant is indexed (a cropped copy that is also flipped or rotated is not looked for): 4
/// entries per test image beside the 8 dihedral variants of the whole image.
const INSET_FRAMES: [(f64, f64); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];

/// A set of [`View`]s, bit `i` for `View::ALL[i]`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ViewSet(u8);

impl ViewSet {
    fn of(view: View) -> ViewSet {
        ViewSet(1 << View::ALL.iter().position(|&v| v == view).unwrap_or(0))
    }

    fn with(self, view: View) -> ViewSet {
        ViewSet(self.0 | ViewSet::of(view).0)
    }

    /// The views in both, in `View::ALL` order.
    fn common(self, other: ViewSet) -> impl Iterator<Item = View> {
        let both = self.0 & other.0;
        View::ALL.into_iter().enumerate().filter(move |(i, _)| both >> i & 1 == 1).map(|(_, v)| v)
    }
}

/// PNG thumbnails of a pair (upstream, test), when both decoded.
type Thumbs = Option<(Vec<u8>, Vec<u8>)>;

/// The `verdict` values of `pairs.parquet`.
const DUPLICATE: &str = "duplicate";
const REJECTED: &str = "rejected";

struct Candidate {
    row: usize,
    entry: usize,
    channel: Channel,
    view: View,
    distance: u32,
    upstream_quality: u8,
}

/// Upstream rows of the dataset and their hashes.
pub struct Upstream {
    pub index: DatasetIndex,
    pub contents: Vec<[u8; 32]>,
    pub cache: HashCache,
    pub hashed_now: u64,
    pub hash_seconds: f64,
}

/// Step 1: open the dataset and make sure every row (of `rows`) is hashed, saving the cache.
pub fn hash_upstream(
    upstream: &Path,
    cache_path: &Path,
    rows: Option<std::ops::Range<usize>>,
    max_pixels: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Upstream, DedupError> {
    let index = DatasetIndex::open(upstream)?;
    let contents = content_hashes(&index);
    let mut cache = HashCache::load(cache_path)?;
    let started = Instant::now();
    let range = rows.unwrap_or(0..index.len());
    let hashed_now = hash_missing(&index, &contents, range.clone(), &mut cache, max_pixels, progress)?;
    let hash_seconds = started.elapsed().as_secs_f64();
    if hashed_now > 0 {
        let mut seen = HashSet::new();
        let keys: Vec<&[u8; 32]> = contents[range].iter().filter(|k| seen.insert(**k)).collect();
        if let Err(e) = cache.write(cache_path, keys.into_iter()) {
            // A read-only dataset still deduplicates; it just hashes again next time.
            tracing::warn!("could not save the hash cache: {e}");
        }
    }
    Ok(Upstream { index, contents, cache, hashed_now, hash_seconds })
}

/// Runs the whole stage.
pub fn run(config: &DedupConfig, progress: &(dyn Fn(u64) + Sync)) -> Result<DedupSummary, DedupError> {
    let started = Instant::now();
    if config.against.is_empty() {
        return Err(DedupError::Config("--against names no test set".into()));
    }
    // Test sets first: a missing download fails before an hour of hashing.
    let sets: Vec<TestSet> = config
        .against
        .iter()
        .map(|item| crate::testsets::load(item, config.data_dir.as_deref()))
        .collect::<Result<_, _>>()?;
    let upstream = hash_upstream(&config.upstream, &config.cache_path(), None, config.max_pixels, progress)?;
    let rows = upstream.index.len();

    // 2. Test-side hashes and indexes.
    let mut errors: Vec<serde_json::Value> = Vec::new();
    let decoded_tests: Vec<Vec<Option<RgbImage>>> = sets
        .iter()
        .map(|set| {
            set.images
                .par_iter()
                .map_init(Decoder::new, |decoder, image| match (&image.image, decoder) {
                    (TestPixels::Rgb(rgb), _) => Ok(rgb.clone()),
                    (TestPixels::Encoded(bytes), Ok(decoder)) => {
                        let mut out = RgbImage::default();
                        decode_for_hashing(decoder, bytes, config.max_pixels, &mut out).map(|()| out)
                    }
                    (TestPixels::Encoded(_), Err(e)) => Err(e.to_string()),
                })
                .map(|r| r.map_err(|e| e.to_string()))
                .collect::<Vec<Result<RgbImage, String>>>()
        })
        .zip(&sets)
        .map(|(results, set)| {
            results
                .into_iter()
                .zip(&set.images)
                .map(|(r, image)| match r {
                    Ok(rgb) => Some(rgb),
                    Err(reason) => {
                        errors.push(serde_json::json!({"side": "test", "test_set": set.name, "test_index": image.index, "name": image.name, "reason": reason}));
                        None
                    }
                })
                .collect()
        })
        .collect();
    let mut entries: [Vec<TestEntry>; CHANNELS] = std::array::from_fn(|_| Vec::new());
    let mut codes: [Vec<[u64; 4]>; CHANNELS] = std::array::from_fn(|_| Vec::new());
    for (s, set) in sets.iter().enumerate() {
        // CIFAR sets: the 32x32 channel, and the sheared one for their one-axis images.
        let channels: &[Channel] =
            if set.kind.is_cifar() { &[Channel::Cifar32, Channel::Cifar32Sheared] } else { &[Channel::Native] };
        for &channel in channels {
            let c = channel.index();
            index_test_set(s, channel, &decoded_tests[s], &mut entries[c], &mut codes[c]);
        }
    }
    // One index per channel and view set: a query scans only the entries that share a view
    // with it (a `center` query skips the inset entries, a native `full` query the centre
    // squares), `(view set, index, entry ids)`.
    type Group = (ViewSet, HammingIndex, Vec<u32>);
    let groups: Vec<Vec<Group>> = (0..CHANNELS)
        .map(|c| {
            let mut sets: Vec<ViewSet> = entries[c].iter().map(|e| e.views).collect();
            sets.sort_by_key(|v| v.0);
            sets.dedup();
            sets.into_iter()
                .map(|set| {
                    let ids: Vec<u32> =
                        (0..entries[c].len()).filter(|&i| entries[c][i].views == set).map(|i| i as u32).collect();
                    let group_codes = ids.iter().map(|&i| codes[c][i as usize]).collect();
                    (set, HammingIndex::new(group_codes), ids)
                })
                .collect()
        })
        .collect();
    drop(codes);

    // 3. Search: per channel, the distinct (hash, quality) of each row's views are the
    // queries, searched in batches (one cache-blocked scan of an index per batch); a hit is a
    // candidate in every view the query and the entry share.
    let match_started = Instant::now();
    let mut candidates: Vec<Candidate> = Vec::new();
    for channel in Channel::ALL {
        let c = channel.index();
        if groups[c].is_empty() {
            continue;
        }
        let radius = match channel {
            Channel::Native => config.radius,
            Channel::Cifar32 => config.radius_cifar,
            Channel::Cifar32Sheared => config.radius_sheared,
        };
        // (row, views, upstream quality) and the code, per query.
        let mut queries: Vec<(usize, ViewSet, u8)> = Vec::new();
        let mut query_codes: Vec<[u64; 4]> = Vec::new();
        for row in 0..rows {
            let Some(hashes @ RowHashes::Ok(_)) = upstream.cache.by_content.get(&upstream.contents[row]) else {
                continue;
            };
            let first = queries.len();
            for view in View::ALL {
                let Some(pdq) = hashes.get(channel, view).filter(|p| p.quality > 0) else { continue };
                match (first..queries.len()).find(|&k| query_codes[k] == pdq.hash.0 && queries[k].2 == pdq.quality) {
                    Some(k) => queries[k].1 = queries[k].1.with(view),
                    None => {
                        queries.push((row, ViewSet::of(view), pdq.quality));
                        query_codes.push(pdq.hash.0);
                    }
                }
            }
        }
        for (set, index, ids) in &groups[c] {
            let chosen: Vec<usize> =
                (0..queries.len()).filter(|&q| queries[q].1.common(*set).next().is_some()).collect();
            let chosen_codes: Vec<[u64; 4]> = chosen.iter().map(|&q| query_codes[q]).collect();
            const BATCH: usize = 256;
            let found: Vec<Candidate> = chosen_codes
                .par_chunks(BATCH)
                .zip(chosen.par_chunks(BATCH))
                .map_init(Vec::new, |hits, (codes, chosen)| {
                    index.range_batch(codes, radius, hits);
                    let mut out = Vec::new();
                    for &(q, local, distance) in hits.iter() {
                        let (row, views, upstream_quality) = queries[chosen[q as usize]];
                        let entry = ids[local as usize] as usize;
                        for view in views.common(*set) {
                            out.push(Candidate { row, entry, channel, view, distance, upstream_quality });
                        }
                    }
                    out
                })
                .flatten()
                .collect();
            candidates.extend(found);
        }
    }
    let match_seconds = match_started.elapsed().as_secs_f64();

    // 4. Verify, per (row, set, test image), closest first. Each upstream row is decoded once
    // for all the test images it is a candidate of.
    let verify_started = Instant::now();
    // Upstream row -> (test set, test image) -> candidates.
    type TestGroups<'a> = BTreeMap<(usize, usize), Vec<&'a Candidate>>;
    let mut groups: BTreeMap<usize, TestGroups> = BTreeMap::new();
    for candidate in &candidates {
        let e = &entries[candidate.channel.index()][candidate.entry];
        groups.entry(candidate.row).or_default().entry((e.set, e.image)).or_default().push(candidate);
    }
    let rows_to_verify: Vec<(usize, TestGroups)> = groups.into_iter().collect();
    // Encoded test images with a candidate, decoded once more at the verification scale (raw
    // pixels, CIFAR's, are compared as stored).
    let wanted: BTreeSet<(usize, usize)> = rows_to_verify
        .iter()
        .flat_map(|(_, tests)| tests.keys().copied())
        .filter(|&(set, image)| decoded_tests[set][image].is_some())
        .filter(|&(set, image)| matches!(sets[set].images[image].image, TestPixels::Encoded(_)))
        .collect();
    let redecoded: HashMap<(usize, usize), RgbImage> = wanted
        .into_par_iter()
        .map_init(Decoder::new, |decoder, (set, image)| {
            let (Ok(decoder), TestPixels::Encoded(bytes)) = (decoder, &sets[set].images[image].image) else {
                return None;
            };
            let mut out = RgbImage::default();
            decode_scaled(decoder, bytes, config.max_pixels, VERIFY_MIN_SIDE, &mut out)
                .ok()
                .map(|()| ((set, image), out))
        })
        .flatten()
        .collect();
    let verification_image = |set: usize, image: usize| match sets[set].images[image].image {
        TestPixels::Rgb(_) => decoded_tests[set][image].as_ref(),
        TestPixels::Encoded(_) => redecoded.get(&(set, image)),
    };
    let parts = upstream.index.open_parts()?;
    type Judged<'a> = (PairRow, Option<RgbImage>, Option<&'a RgbImage>, usize);
    let judged: Vec<Judged> = rows_to_verify
        .par_iter()
        .map_init(Decoder::new, |decoder, (row, tests)| {
            let upstream_image =
                decoder.as_mut().ok().and_then(|d| decode_row(d, &upstream.index, &parts, *row, config.max_pixels));
            let mut out = Vec::with_capacity(tests.len());
            for (&(set, image), group) in tests {
                let mut group = group.clone();
                // Closest first; ties in view order, then dihedral order.
                group.sort_by_key(|c| {
                    let e = &entries[c.channel.index()][c.entry];
                    (c.distance, ViewSet::of(c.view).0, e.dihedral.index(), c.entry)
                });
                let test = verification_image(set, image);
                let judge = |candidate: &&Candidate| {
                    let e = &entries[candidate.channel.index()][candidate.entry];
                    // `agrees`: a pair found through the sheared channel shows little
                    // two-dimensional structure, which NCC and SSIM cannot tell apart, so it
                    // must also agree in detail or in colour.
                    let (v, agrees) = match (upstream_image.as_ref(), test) {
                        (Some(u), Some(t)) if e.inset.is_some() => {
                            (verify_inset(u, t, candidate.view, e.dihedral, INSET_FRAMES[e.inset.unwrap_or(0)]), true)
                        }
                        (Some(u), Some(t)) if candidate.channel == Channel::Cifar32Sheared => {
                            let (v, agreement) = verify_sheared(u, t, candidate.view, e.dihedral);
                            (v, agreement.passes())
                        }
                        (Some(u), Some(t)) => (verify(u, t, candidate.view, candidate.channel, e.dihedral), true),
                        _ => (Verification { ncc: 0.0, ssim: 0.0 }, false),
                    };
                    // SSIM alone is trusted only on textured images: two near-flat thumbnails
                    // have SSIM ~1 whatever they show.
                    let textured = candidate.upstream_quality >= config.min_quality && e.quality >= config.min_quality;
                    let pass = agrees
                        && ((v.ncc >= config.min_ncc && v.ssim >= config.min_ssim)
                            || (textured && v.ssim >= config.ssim_alone));
                    PairRow {
                        upstream_key: upstream.index.key(*row).to_string(),
                        upstream_row: *row as i64,
                        test_set: sets[set].name.clone(),
                        test_index: sets[set].images[image].index as i64,
                        test_name: sets[set].images[image].name.clone(),
                        view: if e.inset.is_some() {
                            format!("{}_inset", candidate.view.as_str())
                        } else if candidate.channel == Channel::Cifar32Sheared {
                            format!("{}_sheared", candidate.view.as_str())
                        } else {
                            candidate.view.as_str().to_string()
                        },
                        flip: e.dihedral.as_str().to_string(),
                        distance: candidate.distance as i32,
                        upstream_quality: i32::from(candidate.upstream_quality),
                        test_quality: i32::from(e.quality),
                        ncc: v.ncc,
                        ssim: v.ssim,
                        score: v.ncc,
                        verdict: if pass { DUPLICATE } else { REJECTED }.to_string(),
                    }
                };
                // The first candidate that passes, else the closest one.
                let mut pairs = group.iter().take(config.max_candidates_per_pair.max(1)).map(judge);
                let Some(closest) = pairs.next() else { continue };
                let pair = if closest.verdict == DUPLICATE {
                    closest
                } else {
                    pairs.find(|p| p.verdict == DUPLICATE).unwrap_or(closest)
                };
                out.push((pair, test, set));
            }
            (upstream_image, out)
        })
        .flat_map_iter(|(upstream_image, pairs)| {
            // Keep the decoded upstream image only where the report shows it.
            let keep = pairs.iter().any(|(p, _, _)| p.verdict == DUPLICATE);
            let upstream_image = if keep { upstream_image } else { None };
            pairs.into_iter().map(move |(pair, test, set)| {
                let image = if pair.verdict == DUPLICATE { upstream_image.clone() } else { None };
                (pair, image, test, set)
            })
        })
        .collect();
    // Thumbnails for the report: every verified pair and the first rejected ones.
    let mut rejected_shown = 0usize;
    let mut thumb_decoder = Decoder::new().ok();
    let (verdicts, pair_sets): (Vec<(PairRow, Thumbs)>, Vec<usize>) = judged
        .into_iter()
        .map(|(pair, upstream_image, test, set)| {
            let shown = pair.verdict == DUPLICATE || {
                rejected_shown += 1;
                rejected_shown <= config.report_rejected
            };
            let upstream_image = match upstream_image {
                Some(image) => Some(image),
                None if shown => thumb_decoder.as_mut().and_then(|d| {
                    decode_row(d, &upstream.index, &parts, pair.upstream_row as usize, config.max_pixels)
                }),
                None => None,
            };
            let thumbs = match (shown, upstream_image, test) {
                (true, Some(u), Some(t)) => Some((
                    png_thumbnail(&u.pixels, u.width, u.height, 128),
                    png_thumbnail(&t.pixels, t.width, t.height, 128),
                )),
                _ => None,
            };
            ((pair, thumbs), set)
        })
        .unzip();
    let verify_seconds = verify_started.elapsed().as_secs_f64();

    // Summaries.
    let mut per_set: Vec<TestSetSummary> = sets
        .iter()
        .zip(&decoded_tests)
        .map(|(set, decoded)| TestSetSummary {
            test_set: set.name.clone(),
            test_images: set.images.len() as u64,
            test_images_failed: decoded.iter().filter(|d| d.is_none()).count() as u64,
            ..TestSetSummary::default()
        })
        .collect();
    let mut removed: Vec<HashSet<i64>> = vec![HashSet::new(); sets.len()];
    let mut excluded: HashSet<&str> = HashSet::new();
    for ((pair, _), &set) in verdicts.iter().zip(&pair_sets) {
        per_set[set].candidates += 1;
        if pair.verdict == DUPLICATE {
            per_set[set].verified += 1;
            removed[set].insert(pair.upstream_row);
            excluded.insert(pair.upstream_key.as_str());
        }
    }
    for (summary, rows) in per_set.iter_mut().zip(&removed) {
        summary.upstream_rows_removed = rows.len() as u64;
    }
    let mut upstream_errors = 0u64;
    for row in 0..rows {
        if let Some(RowHashes::Failed(reason)) = upstream.cache.by_content.get(&upstream.contents[row]) {
            upstream_errors += 1;
            errors.push(
                serde_json::json!({"side": "upstream", "key": upstream.index.key(row), "row": row, "reason": reason}),
            );
        }
    }

    // 5. Outputs.
    std::fs::create_dir_all(&config.out).map_err(|source| DedupError::Io { path: config.out.clone(), source })?;
    let pairs: Vec<PairRow> = verdicts.iter().map(|(p, _)| p.clone()).collect();
    write_pairs(&config.out.join("pairs.parquet"), &pairs)?;
    let mut keys: Vec<&str> = excluded.into_iter().collect();
    keys.sort_unstable();
    let exclude_text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    write_atomic(&config.out.join("exclude.txt"), exclude_text.as_bytes())?;
    let errors_text: String = errors.iter().map(|e| format!("{e}\n")).collect();
    write_atomic(&config.out.join("errors.jsonl"), errors_text.as_bytes())?;

    fn to_report((pair, thumbs): &(PairRow, Thumbs)) -> ReportPair<'_> {
        ReportPair {
            test_set: &pair.test_set,
            test_index: pair.test_index as u64,
            upstream_key: &pair.upstream_key,
            view: &pair.view,
            dihedral: &pair.flip,
            distance: pair.distance as u32,
            upstream_quality: pair.upstream_quality as u8,
            test_quality: pair.test_quality as u8,
            ncc: pair.ncc,
            ssim: pair.ssim,
            verdict: &pair.verdict,
            upstream_thumb: thumbs.as_ref().map(|t| t.0.as_slice()),
            test_thumb: thumbs.as_ref().map(|t| t.1.as_slice()),
        }
    }
    let report = Report {
        title: format!("bitkit dedup: {}", config.upstream.display()),
        upstream: config.upstream.display().to_string(),
        upstream_rows: rows as u64,
        counts: per_set
            .iter()
            .map(|s| ReportCounts {
                test_set: s.test_set.clone(),
                test_images: s.test_images,
                candidates: s.candidates,
                verified: s.verified,
                upstream_rows_removed: s.upstream_rows_removed,
            })
            .collect(),
        verified: verdicts.iter().filter(|(p, _)| p.verdict == DUPLICATE).map(to_report).collect(),
        rejected_sample: verdicts
            .iter()
            .filter(|(p, _)| p.verdict != DUPLICATE)
            .take(config.report_rejected)
            .map(to_report)
            .collect(),
        settings: vec![
            ("radius (native PDQ)".into(), config.radius.to_string()),
            ("radius (32x32 CIFAR channel)".into(), config.radius_cifar.to_string()),
            ("radius (sheared CIFAR channel)".into(), config.radius_sheared.to_string()),
            ("min NCC".into(), config.min_ncc.to_string()),
            ("min SSIM".into(), config.min_ssim.to_string()),
            ("SSIM alone (both qualities >= min quality)".into(), config.ssim_alone.to_string()),
            ("min quality".into(), config.min_quality.to_string()),
            ("test sets".into(), config.against.join(", ")),
        ],
    };
    write_atomic(&config.out.join("report.html"), render_html(&report).as_bytes())?;

    let hashed_now = upstream.hashed_now;
    let summary = DedupSummary {
        upstream: config.upstream.display().to_string(),
        upstream_rows: rows as u64,
        hashed_now,
        hashed_from_cache: rows as u64 - hashed_now.min(rows as u64),
        upstream_errors,
        test_sets: per_set,
        excluded: keys.len() as u64,
        hash_seconds: upstream.hash_seconds,
        hash_images_per_s: if upstream.hash_seconds > 0.0 { hashed_now as f64 / upstream.hash_seconds } else { 0.0 },
        match_seconds,
        verify_seconds,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| DedupError::Config(e.to_string()))?;
    write_atomic(&config.out.join("summary.json"), &json)?;
    Ok(summary)
}

/// Channels, each with its own test-side entries and indexes.
const CHANNELS: usize = Channel::ALL.len();

/// The test-side hashes of one image in `channel`: per view the channel hashes (those of
/// [`SLOTS`], the upstream side's), the 8 exact dihedral variants and the quality. The sheared
/// channel hashes only images [`needs_shear`] picks (one-axis patterns).
fn test_view_hashes(image: &RgbImage, channel: Channel) -> Vec<(View, [PdqHash; 8], u8)> {
    // The sheared channel hashes (its variants of) the CIFAR channel's images.
    let images: Vec<(View, RgbImage)> = SLOTS
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|&(_, view)| (view, canonical(image, view, channel.verified_as())))
        .collect();
    if channel == Channel::Cifar32Sheared && !images.iter().any(|(v, i)| *v == View::Full && needs_shear(i)) {
        return Vec::new();
    }
    images
        .into_iter()
        .map(|(view, image)| {
            let (hashes, quality) = match channel {
                Channel::Cifar32Sheared => sheared_dihedral_exact(&image),
                _ => pdq_dihedral_exact(&image),
            };
            (view, hashes, quality)
        })
        .collect()
}

/// Adds the entries of test set `s` in `channel` (its decoded images, `None` where decoding
/// failed) to that channel's `entries` and `codes`.
fn index_test_set(
    s: usize,
    channel: Channel,
    images: &[Option<RgbImage>],
    entries: &mut Vec<TestEntry>,
    codes: &mut Vec<[u64; 4]>,
) {
    let hashed: Vec<Vec<(View, [PdqHash; 8], u8)>> = images
        .par_iter()
        .map(|image| image.as_ref().map(|image| test_view_hashes(image, channel)).unwrap_or_default())
        .collect();
    // CIFAR channel: also the inset frames of the full view, `(frame, hash, quality)`.
    let insets: Vec<Vec<(usize, PdqHash, u8)>> = images
        .par_iter()
        .map(|image| match image {
            Some(image) if channel == Channel::Cifar32 => INSET_FRAMES
                .iter()
                .enumerate()
                .map(|(k, &at)| {
                    let p = pdq(&inset_frame(image, at));
                    (k, p.hash, p.quality)
                })
                .filter(|(_, _, quality)| *quality > 0)
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    for (i, views) in hashed.into_iter().enumerate() {
        // A quality-0 view (flat, or too small) hashes to all zeros: it would "match" every
        // other flat image at distance 0, so it is not indexed (DEDUP.md §8: never match on
        // unreliable hashes).
        let views: Vec<_> = views.into_iter().filter(|v| v.2 > 0).collect();
        for (d, dihedral) in Dihedral::ALL.into_iter().enumerate() {
            let first = entries.len();
            for (view, hashes, quality) in &views {
                let same = (first..entries.len()).find(|&k| codes[k] == hashes[d].0 && entries[k].quality == *quality);
                match same {
                    Some(k) => entries[k].views = entries[k].views.with(*view),
                    None => {
                        let views = ViewSet::of(*view);
                        let inset = None;
                        entries.push(TestEntry { set: s, image: i, views, dihedral, quality: *quality, inset });
                        codes.push(hashes[d].0);
                    }
                }
            }
        }
        for &(k, hash, quality) in &insets[i] {
            // Paired with the upstream views whose frame the inset is cut from.
            let views = ViewSet::of(View::Full).with(View::Raw);
            let (dihedral, inset) = (Dihedral::Identity, Some(k));
            entries.push(TestEntry { set: s, image: i, views, dihedral, quality, inset });
            codes.push(hash.0);
        }
    }
}

fn decode_row(
    decoder: &mut Decoder,
    index: &DatasetIndex,
    parts: &PartFiles,
    row: usize,
    max_pixels: u64,
) -> Option<RgbImage> {
    let mut bytes = Vec::new();
    index.read_image(parts, row, &mut bytes).ok()?;
    let mut out = RgbImage::default();
    decode_scaled(decoder, &bytes, max_pixels, VERIFY_MIN_SIDE, &mut out).ok()?;
    Some(out)
}

/// Keys of `exclude.txt` as a set (for `--write-clean` and tests).
pub fn excluded_keys(out: &Path) -> Result<HashSet<String>, DedupError> {
    let path = out.join("exclude.txt");
    let text = std::fs::read_to_string(&path).map_err(|source| DedupError::Io { path, source })?;
    Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// `--write-clean`: a new dataset holding every row of `upstream` whose key is not in
/// `excluded`, in order, with the upstream's classes; the manifest records what was removed.
pub fn write_clean(upstream: &Path, excluded: &HashSet<String>, out: &Path) -> Result<u64, DedupError> {
    use bitkit_ingest::dataset::{part_file_name, DatasetReader, Manifest, PartWriter, Row, WriterSettings};
    let reader = DatasetReader::open(upstream)?;
    let manifest = reader.manifest().clone();
    if out.join(bitkit_ingest::dataset::MANIFEST_FILE).exists() {
        return Err(DedupError::Config(format!("{} already holds a dataset", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|source| DedupError::Io { path: out.to_path_buf(), source })?;
    let with_original = manifest.config.get("reencode").is_some_and(|v| !v.is_null());
    let settings = WriterSettings::default();
    let mut parts = Vec::new();
    let mut writer: Option<PartWriter> = None;
    let mut kept = 0u64;
    let classes = manifest.classes.clone();
    for row in reader.rows() {
        let row = row?;
        if excluded.contains(&row.key) {
            continue;
        }
        let format = bitkit_ingest::image::sniff_format(&row.image_bytes).map_or("unknown", |f| f.as_str());
        let w = match writer.as_mut() {
            Some(w) => w,
            None => writer.insert(PartWriter::create(
                out,
                &part_file_name(parts.len()),
                classes.as_deref(),
                row.original_hash.is_some() || with_original,
                settings,
            )?),
        };
        w.write_row(Row {
            key: row.key,
            image_bytes: bytes::Bytes::from(row.image_bytes),
            image_path: row.image_path,
            labels: row.labels,
            width: row.width,
            height: row.height,
            format,
            content_hash: row.content_hash,
            source: std::sync::Arc::from(row.source.as_str()),
            source_index: row.source_index,
            original_hash: row.original_hash,
        })?;
        kept += 1;
        if w.is_full() {
            if let Some(w) = writer.take() {
                parts.push(w.finish()?);
            }
        }
    }
    if let Some(w) = writer {
        parts.push(w.finish()?);
    }
    let config = serde_json::json!({
        "derived_from": upstream.display().to_string(),
        "removed_by": "bitkit dedup --write-clean",
        "removed_rows": excluded.len(),
        "upstream_config": manifest.config,
    });
    Manifest::write_complete(out, classes, parts, manifest.sources.clone(), &[], config)?;
    Ok(kept)
}
