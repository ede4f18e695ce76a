//! Upstream hashes: every row of a dataset hashed once, cached beside the dataset, keyed by the
//! row's `content_hash` (blake3 of its bytes), so checking another test set later, or the same
//! set after the dataset grew, decodes nothing already hashed.
//!
//! Per row: 3 views (trimmed full frame, centre square, raw frame) x 2 channels (native PDQ,
//! 32x32 CIFAR channel), and the sheared CIFAR channel of the two uncropped views = 8 PDQ
//! hashes with qualities, or the reason the image could not be hashed.
//!
//! Cache file (`pdq-hashes.bin` in the dataset directory by default), little-endian:
//! `b"BKPDQv4\n"`, then records until the end: content hash (32 bytes), status (0 ok, 1 failed),
//! then for ok: 8 x (hash 32 bytes + quality 1 byte) in the order of [`SLOTS`]; for failed:
//! reason length (u16) + UTF-8 reason. Written to a
//! temporary name and renamed; a damaged file is an error naming the byte offset, never a
//! silently shorter cache.
//!
//! `bitkit dedup hash --worker-index I --num-workers N` hashes a contiguous block of rows into
//! `pdq-hashes.bin.part-I-of-N`; the matcher reads the cache and every part beside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bitkit_ingest::dataset::DatasetIndex;
use bitkit_ingest::image::{Decoder, RegionRequest, RgbImage};
use rayon::prelude::*;

use crate::pdq::{luma, with_hasher, Pdq, PdqHash};
use crate::shear::shear;
use crate::views::{area_downsample_rect, view_rects, Channel, Rect, View, CIFAR_SIDE};
use crate::DedupError;

/// Bumped whenever the hashes of the same bytes change (decode scale, views, resampling): a
/// cache of another version is stale, not damaged, and is rebuilt.
const MAGIC: &[u8; 8] = b"BKPDQv4\n";
const MAGIC_FAMILY: &[u8; 6] = b"BKPDQv";

/// The file name of the cache inside a dataset directory.
pub const CACHE_FILE: &str = "pdq-hashes.bin";

/// Images are decoded for hashing at the smallest fast DCT scale (1/8, 1/4, 1/2, 1) that keeps
/// the shorter side at least this long: PDQ samples a 64x64 grid and the CIFAR channel 32x32,
/// so an ImageNet-sized 500x375 JPEG decodes at 1/4 (125x94). Entropy decoding costs the same
/// at any scale, but everything after it (IDCT, colour, luma, the views' filters) scales with
/// the pixels: 1/4 instead of 1/2 (the old 128 px floor) took hashing from 840 to 1,100 images
/// per second per core (`scripts/bench-dedup`).
pub const DECODE_MIN_SIDE: u32 = 64;

/// Candidates are verified on images decoded with the shorter side at least this long: border
/// trimming and the aligned thumbnails need the precision (letterbox copies verified 0.88 of
/// the time at the hashing scale, 0.96 at this one, in `scripts/eval-dedup --upscale 3`).
/// Only candidate rows are decoded again, so the cost does not count.
pub const VERIFY_MIN_SIDE: u32 = 128;

/// Hashes per upstream row.
pub const SLOT_COUNT: usize = 8;

/// The views and channels hashed for every upstream row, in record order. The sheared channel
/// has no centre view: it is for one-axis patterns resized or re-encoded whole.
pub const SLOTS: [(Channel, View); SLOT_COUNT] = [
    (Channel::Native, View::Full),
    (Channel::Native, View::Center),
    (Channel::Native, View::Raw),
    (Channel::Cifar32, View::Full),
    (Channel::Cifar32, View::Center),
    (Channel::Cifar32, View::Raw),
    (Channel::Cifar32Sheared, View::Full),
    (Channel::Cifar32Sheared, View::Raw),
];

/// One row's hashes, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub enum RowHashes {
    // Boxed: a failed row is rare, and the cache holds one of these per distinct image.
    Ok(Box<[Pdq; SLOT_COUNT]>),
    Failed(String),
}

impl RowHashes {
    pub fn get(&self, channel: Channel, view: View) -> Option<Pdq> {
        match self {
            RowHashes::Ok(h) => SLOTS.iter().position(|&s| s == (channel, view)).map(|i| h[i]),
            RowHashes::Failed(_) => None,
        }
    }
}

/// Decodes `bytes` (DCT-scaled) and hashes every slot.
pub fn hash_image_bytes(decoder: &mut Decoder, bytes: &[u8], max_pixels: u64, scratch: &mut RgbImage) -> RowHashes {
    match decode_for_hashing(decoder, bytes, max_pixels, scratch) {
        Ok(()) => RowHashes::Ok(Box::new(hash_pixels(scratch))),
        Err(reason) => RowHashes::Failed(reason),
    }
}

/// Whole image, upright, at the hashing scale ([`DECODE_MIN_SIDE`]).
pub fn decode_for_hashing(
    decoder: &mut Decoder,
    bytes: &[u8],
    max_pixels: u64,
    out: &mut RgbImage,
) -> Result<(), String> {
    decode_scaled(decoder, bytes, max_pixels, DECODE_MIN_SIDE, out)
}

/// Whole image, upright, at the smallest fast DCT scale keeping the shorter side at least
/// `min_side` (or whole, if it is shorter).
pub fn decode_scaled(
    decoder: &mut Decoder,
    bytes: &[u8],
    max_pixels: u64,
    min_side: u32,
    out: &mut RgbImage,
) -> Result<(), String> {
    let info = bitkit_ingest::image::probe_image(bytes, max_pixels).map_err(|e| e.to_string())?;
    let (w, h) = info.oriented_size();
    let short = w.min(h).max(1);
    // Both axes scale alike; ask for the size that keeps the shorter side at `min_side`.
    let scale = f64::from(min_side.min(short)) / f64::from(short);
    let request = RegionRequest {
        left: 0.0,
        top: 0.0,
        width: f64::from(w),
        height: f64::from(h),
        min_width: (f64::from(w) * scale).ceil() as u32,
        min_height: (f64::from(h) * scale).ceil() as u32,
    };
    let region =
        decoder.decode_probed_region_into(bytes, info, max_pixels, &request, out).map_err(|e| e.to_string())?;
    // A whole-image request decodes the whole image; anything else is a decoder contract break.
    if region.x0 != 0 || region.y0 != 0 {
        return Err(format!("decoder returned a window at ({}, {}) for a whole-image request", region.x0, region.y0));
    }
    Ok(())
}

/// The slot hashes of decoded pixels, in [`SLOTS`] order: the same as hashing
/// [`canonical`](crate::views::canonical) of every slot, without cutting any view out. Luma
/// is computed once for the whole image and each view hashed as a window of it; the CIFAR
/// channel resamples each view's window straight from the pixels (and the sheared channel
/// permutes that 32x32 image); a view whose rectangle equals an earlier one's (the common
/// case: nothing to trim, so `full` is `raw`) reuses its hashes.
pub fn hash_pixels(image: &RgbImage) -> [Pdq; SLOT_COUNT] {
    let rects = view_rects(image);
    let rect_of = |view: View| rects[View::ALL.iter().position(|&v| v == view).unwrap_or(0)];
    let plane = luma(image);
    let stride = image.width as usize;
    with_hasher(|hasher| {
        let mut out = [Pdq { hash: PdqHash::ZERO, quality: 0 }; SLOT_COUNT];
        // The CIFAR channel's 32x32 image of each distinct rectangle, made once for both CIFAR
        // channels.
        let mut small: Vec<(Rect, RgbImage)> = Vec::new();
        for (at, &(channel, view)) in SLOTS.iter().enumerate() {
            let rect = rect_of(view);
            if let Some(earlier) = SLOTS[..at].iter().position(|&(c, v)| c == channel && rect_of(v) == rect) {
                out[at] = out[earlier];
                continue;
            }
            out[at] = match channel {
                Channel::Native => {
                    let window = (rect.left as usize, rect.top as usize, rect.width as usize, rect.height as usize);
                    hasher.hash_luma_window(&plane, stride, window)
                }
                Channel::Cifar32 | Channel::Cifar32Sheared => {
                    let k = small.iter().position(|(r, _)| *r == rect).unwrap_or_else(|| {
                        small.push((rect, area_downsample_rect(image, rect, CIFAR_SIDE, CIFAR_SIDE)));
                        small.len() - 1
                    });
                    let cifar = &small[k].1;
                    if channel == Channel::Cifar32Sheared {
                        hasher.hash(&shear(cifar))
                    } else {
                        hasher.hash(cifar)
                    }
                }
            };
        }
        out
    })
}

/// Hashes of a dataset, by content hash.
#[derive(Debug, Default, Clone)]
pub struct HashCache {
    pub by_content: HashMap<[u8; 32], RowHashes>,
}

impl HashCache {
    /// Reads `path` (absent: empty) and every `path.part-*` beside it.
    pub fn load(path: &Path) -> Result<HashCache, DedupError> {
        let mut cache = HashCache::default();
        let mut files = vec![path.to_path_buf()];
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            let prefix = format!("{name}.part-");
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            if let Ok(entries) = std::fs::read_dir(dir) {
                let mut parts: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
                    .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
                    .collect();
                parts.sort();
                files.extend(parts);
            }
        }
        for file in files {
            match std::fs::read(&file) {
                Ok(bytes) => cache.parse_into(&file, &bytes)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DedupError::Io { path: file, source }),
            }
        }
        Ok(cache)
    }

    fn parse_into(&mut self, path: &Path, bytes: &[u8]) -> Result<(), DedupError> {
        let bad = |offset: usize, reason: &str| DedupError::BadCache {
            path: path.to_path_buf(),
            reason: format!("at byte {offset}: {reason}"),
        };
        if bytes.get(..8) != Some(MAGIC) {
            if bytes.get(..6) == Some(MAGIC_FAMILY) && bytes.get(7) == Some(&b'\n') {
                tracing::warn!("{}: PDQ hashes of another bitkit version, recomputing them", path.display());
                return Ok(());
            }
            return Err(bad(0, "not a bitkit PDQ hash file (bad magic)"));
        }
        let mut pos = 8;
        let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
            let slice = bytes.get(*pos..pos.checked_add(n)?)?;
            *pos += n;
            Some(slice)
        };
        while pos < bytes.len() {
            let start = pos;
            let key: [u8; 32] =
                take(&mut pos, 32).and_then(|k| k.try_into().ok()).ok_or_else(|| bad(start, "truncated record"))?;
            let status = take(&mut pos, 1).ok_or_else(|| bad(start, "truncated record"))?[0];
            let row = match status {
                0 => {
                    let mut hashes = [Pdq { hash: PdqHash([0; 4]), quality: 0 }; SLOT_COUNT];
                    for slot in &mut hashes {
                        let raw = take(&mut pos, 33).ok_or_else(|| bad(start, "truncated record"))?;
                        let mut words = [0u64; 4];
                        for (w, chunk) in words.iter_mut().zip(raw[..32].chunks_exact(8)) {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(chunk);
                            *w = u64::from_le_bytes(b);
                        }
                        *slot = Pdq { hash: PdqHash(words), quality: raw[32] };
                    }
                    RowHashes::Ok(Box::new(hashes))
                }
                1 => {
                    let len = take(&mut pos, 2).ok_or_else(|| bad(start, "truncated record"))?;
                    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
                    let text = take(&mut pos, len).ok_or_else(|| bad(start, "truncated reason"))?;
                    RowHashes::Failed(String::from_utf8_lossy(text).into_owned())
                }
                other => return Err(bad(start + 32, &format!("unknown status {other}"))),
            };
            self.by_content.insert(key, row);
        }
        Ok(())
    }

    /// Serialises the records for `keys` (in that order) that the cache holds.
    pub fn encode<'a>(&self, keys: impl Iterator<Item = &'a [u8; 32]>) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for key in keys {
            let Some(row) = self.by_content.get(key) else { continue };
            out.extend_from_slice(key);
            match row {
                RowHashes::Ok(hashes) => {
                    out.push(0);
                    for h in hashes.iter() {
                        for w in h.hash.0 {
                            out.extend_from_slice(&w.to_le_bytes());
                        }
                        out.push(h.quality);
                    }
                }
                RowHashes::Failed(reason) => {
                    out.push(1);
                    let text = &reason.as_bytes()[..reason.len().min(usize::from(u16::MAX))];
                    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
                    out.extend_from_slice(text);
                }
            }
        }
        out
    }

    /// Writes the records of `keys` to `path` atomically.
    pub fn write<'a>(&self, path: &Path, keys: impl Iterator<Item = &'a [u8; 32]>) -> Result<(), DedupError> {
        Ok(bitkit_ingest::dataset::manifest::write_atomic(path, &self.encode(keys))?)
    }
}

/// Content hash of every row.
pub fn content_hashes(index: &DatasetIndex) -> Vec<[u8; 32]> {
    (0..index.len()).map(|r| index.content_hash(r)).collect()
}

/// Hashes the rows `rows` of the dataset that `cache` lacks, with all cores; returns how
/// many were hashed now.
pub fn hash_missing(
    index: &DatasetIndex,
    contents: &[[u8; 32]],
    rows: std::ops::Range<usize>,
    cache: &mut HashCache,
    max_pixels: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, DedupError> {
    let parts = index.open_parts()?;
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<usize> =
        rows.filter(|&r| !cache.by_content.contains_key(&contents[r]) && seen.insert(contents[r])).collect();
    let done = std::sync::atomic::AtomicU64::new(0);
    let results: Vec<([u8; 32], RowHashes)> = todo
        .par_iter()
        .map_init(
            || (Decoder::new().ok(), Vec::new(), RgbImage::default()),
            |(decoder, bytes, image), &row| {
                let hashes = match decoder.as_mut() {
                    None => RowHashes::Failed("could not create a libjpeg-turbo handle".into()),
                    Some(decoder) => match index.read_image(&parts, row, bytes) {
                        Ok(()) => hash_image_bytes(decoder, bytes, max_pixels, image),
                        Err(e) => RowHashes::Failed(e.to_string()),
                    },
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(1024) {
                    progress(n);
                }
                (contents[row], hashes)
            },
        )
        .collect();
    let hashed = results.len() as u64;
    cache.by_content.extend(results);
    Ok(hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_pixels_equals_hashing_each_canonical_view() {
        use crate::pdq::{pdq, testimg::photo};
        use crate::views::canonical;
        // `photo` pasted on a bigger canvas of `colour` at (left, top).
        let pad = |w: u32, h: u32, left: u32, top: u32, colour: u8| {
            let inner = photo(w - 2 * left, h - 2 * top, 3);
            let mut pixels = vec![colour; (w * h * 3) as usize];
            for r in 0..inner.height {
                let src = (r * inner.width * 3) as usize;
                let dst = (((top + r) * w + left) * 3) as usize;
                let n = (inner.width * 3) as usize;
                pixels[dst..dst + n].copy_from_slice(&inner.pixels[src..src + n]);
            }
            RgbImage { width: w, height: h, pixels }
        };
        let images = [
            RgbImage { width: 90, height: 60, pixels: (0..90 * 60 * 3).map(|i| ((i * 7) % 251) as u8).collect() },
            photo(250, 188, 1),
            photo(61, 97, 2),
            photo(32, 32, 4),
            photo(5, 9, 5),
            pad(200, 160, 0, 20, 0),
            pad(180, 180, 20, 0, 255),
            pad(150, 150, 10, 15, 0),
            RgbImage { width: 40, height: 40, pixels: vec![9; 100] },
        ];
        for image in &images {
            let expected = SLOTS.map(|(channel, view)| pdq(&canonical(image, view, channel)));
            assert_eq!(hash_pixels(image), expected, "{}x{}", image.width, image.height);
        }
    }

    #[test]
    fn cache_round_trips_and_damage_is_located() {
        let mut cache = HashCache::default();
        let pdq = |q| Pdq { hash: PdqHash([1, 2, 3, u64::MAX]), quality: q };
        cache.by_content.insert([1; 32], RowHashes::Ok(Box::new(std::array::from_fn(|k| pdq(10 * (k as u8 + 1))))));
        cache.by_content.insert([2; 32], RowHashes::Failed("not an image".into()));
        let keys = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let bytes = cache.encode(keys.iter());
        let mut back = HashCache::default();
        back.parse_into(Path::new("x"), &bytes).expect("parses");
        assert_eq!(back.by_content, cache.by_content);
        for cut in 9..bytes.len() {
            let mut partial = HashCache::default();
            if partial.parse_into(Path::new("x"), &bytes[..cut]).is_ok() {
                // Only cuts at record boundaries parse.
                assert!(cut == 8 + 32 + 1 + SLOT_COUNT * 33 || cut == bytes.len(), "{cut}");
            }
        }
        let error = back.parse_into(Path::new("x"), b"garbage!").expect_err("bad magic").to_string();
        assert!(error.contains("bad magic"), "{error}");
        // A cache of another version is stale, not damaged: nothing is read from it, so every
        // row is hashed again and the file rewritten.
        let mut stale = HashCache::default();
        let mut old = bytes.clone();
        old[..8].copy_from_slice(b"BKPDQv2\n");
        stale.parse_into(Path::new("x"), &old).expect("an older version is not an error");
        assert!(stale.by_content.is_empty());
    }

    /// Release timing: `cargo test -p bitkit-dedup --release --lib timing_hash_pixels -- --ignored --nocapture`.
    /// Microseconds per call of the hashing steps after the decode, for a 500x375 photo as
    /// decoded for hashing (125x94).
    #[test]
    #[ignore]
    #[allow(clippy::print_stdout)]
    fn timing_hash_pixels() {
        use crate::pdq::{pdq, testimg::photo};
        use crate::views::area_downsample;
        // The fastest of 20 batches: this shared machine's noise only ever adds time.
        fn micros(n: usize, mut f: impl FnMut()) -> f64 {
            (0..20)
                .map(|_| {
                    let start = std::time::Instant::now();
                    for _ in 0..n / 20 {
                        f();
                    }
                    start.elapsed().as_secs_f64() / (n / 20) as f64 * 1e6
                })
                .fold(f64::INFINITY, f64::min)
        }
        let (image, small) = (photo(125, 94, 3), photo(32, 32, 3));
        let n = 4000;
        let all = micros(n, || {
            std::hint::black_box(hash_pixels(std::hint::black_box(&image)));
        });
        let pdq_small = micros(n, || {
            std::hint::black_box(pdq(std::hint::black_box(&small)));
        });
        let pdq_image = micros(n, || {
            std::hint::black_box(pdq(std::hint::black_box(&image)));
        });
        let area = micros(n, || {
            std::hint::black_box(area_downsample(std::hint::black_box(&image), 32, 32));
        });
        println!(
            "hash_pixels 125x94 {all:.1} us; pdq 32x32 {pdq_small:.1} us, 125x94 {pdq_image:.1} us; \
             area 125x94 -> 32x32 {area:.1} us"
        );
    }
}
