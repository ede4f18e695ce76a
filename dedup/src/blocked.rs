//! The flat scan for many queries at once: codes transposed into blocks of 8 and scanned a
//! cache-sized slab at a time for a tile of queries.
//!
//! One query against a 10,000-image CIFAR index (x 8 dihedral variants = 80,000 codes,
//! 2.5 MB) streams the whole index from L3 or memory, and thousands of queries do that
//! thousands of times; reading a 32 KiB slab once per tile of queries keeps it in L1.
//! Within a block the 8 codes are stored word by word (`words[w][lane]`), so one AVX-512
//! register holds word `w` of 8 codes: XOR with the broadcast query word, `vpopcntq`, three
//! adds and one compare give 8 distances and the mask of hits. Without AVX-512 VPOPCNTDQ
//! (checked at run time) the same blocks are scanned with scalar `popcnt`.
//!
//! Measured on the 2-vCPU AMD EPYC development machine (release, 80,000 uniform codes, r = 56,
//! `timing_batch_vs_flat` in `search.rs`): one query at a time with scalar `popcnt` 1.2 ns per
//! code; blocked with AVX-512 see [`crate::search::COST_FLAT_BATCH_AVX512`].

use crate::search::Code;

/// Codes per block (one 512-bit register per word).
pub(crate) const LANES: usize = 8;

/// Blocks per slab: 128 x 256 B = 32 KiB, an L1 data cache.
const SLAB_BLOCKS: usize = 128;

/// Queries scanned over one slab before moving to the next.
const QUERY_TILE: usize = 32;

/// 8 codes, word-major: `words[w][lane]` is word `w` of code `8 * block + lane`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block {
    words: [[u64; LANES]; 4],
}

/// The codes of an index in blocks of 8; the lanes past the last code are zero and never
/// reported.
pub(crate) struct BlockedCodes {
    blocks: Vec<Block>,
    len: usize,
    avx512: bool,
}

impl BlockedCodes {
    /// The blocks of `codes`, scanned with AVX-512 when the CPU has it.
    pub(crate) fn new(codes: &[Code]) -> BlockedCodes {
        Self::with_avx512(codes, true)
    }

    /// Like [`new`](Self::new), but AVX-512 only if `allow` (tests of the scalar kernel).
    pub(crate) fn with_avx512(codes: &[Code], allow: bool) -> BlockedCodes {
        let mut blocks = vec![Block { words: [[0; LANES]; 4] }; codes.len().div_ceil(LANES)];
        for (i, code) in codes.iter().enumerate() {
            for (w, &word) in code.iter().enumerate() {
                blocks[i / LANES].words[w][i % LANES] = word;
            }
        }
        BlockedCodes { blocks, len: codes.len(), avx512: allow && has_avx512_popcnt() }
    }

    /// Whether scans use the AVX-512 kernel.
    pub(crate) fn uses_avx512(&self) -> bool {
        self.avx512
    }

    /// Every `(query position, id, distance)` with `distance <= radius`, appended to `out` in
    /// no particular order.
    pub(crate) fn scan(&self, queries: &[(u32, Code)], radius: u32, out: &mut Vec<(u32, u32, u32)>) {
        for slab_start in (0..self.blocks.len()).step_by(SLAB_BLOCKS) {
            let slab = &self.blocks[slab_start..(slab_start + SLAB_BLOCKS).min(self.blocks.len())];
            for tile in queries.chunks(QUERY_TILE) {
                for &(q, ref code) in tile {
                    let hits = Hits { query: q, first_id: slab_start * LANES, len: self.len, out: &mut *out };
                    #[cfg(target_arch = "x86_64")]
                    if self.avx512 {
                        // SAFETY: `self.avx512` is true only if the running CPU reported both
                        // `avx512f` and `avx512vpopcntdq`, the kernel's only requirements.
                        unsafe { scan_avx512(slab, code, radius, hits) };
                        continue;
                    }
                    scan_scalar(slab, code, radius, hits);
                }
            }
        }
    }
}

/// Where a kernel reports its hits.
struct Hits<'a> {
    query: u32,
    /// Id of lane 0 of the slab's first block.
    first_id: usize,
    /// Ids at or past this are padding.
    len: usize,
    out: &'a mut Vec<(u32, u32, u32)>,
}

impl Hits<'_> {
    #[inline(always)]
    fn push(&mut self, block: usize, lane: usize, distance: u32) {
        let id = self.first_id + block * LANES + lane;
        if id < self.len {
            // `id < len <= u32::MAX` (checked by the index at construction).
            self.out.push((self.query, id as u32, distance));
        }
    }
}

fn scan_scalar(slab: &[Block], query: &Code, radius: u32, mut hits: Hits<'_>) {
    for (b, block) in slab.iter().enumerate() {
        for lane in 0..LANES {
            let d = (block.words[0][lane] ^ query[0]).count_ones()
                + (block.words[1][lane] ^ query[1]).count_ones()
                + (block.words[2][lane] ^ query[2]).count_ones()
                + (block.words[3][lane] ^ query[3]).count_ones();
            if d <= radius {
                hits.push(b, lane, d);
            }
        }
    }
}

/// [`scan_scalar`] on 8 codes per step.
///
/// # Safety
/// The running CPU must support `avx512f` and `avx512vpopcntdq`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn scan_avx512(slab: &[Block], query: &Code, radius: u32, mut hits: Hits<'_>) {
    use std::arch::x86_64::*;
    // The casts reinterpret the words' bits; nothing is converted.
    let q = query.map(|w| _mm512_set1_epi64(w as i64));
    let limit = _mm512_set1_epi64(i64::from(radius));
    for (b, block) in slab.iter().enumerate() {
        let mut distance = _mm512_setzero_si512();
        for (w, qw) in q.iter().enumerate() {
            // SAFETY: `block.words[w]` is 8 contiguous u64 = 64 bytes, 64-byte aligned (`Block`
            // is `align(64)` and each word row is 64 bytes), and lives as long as `slab`.
            let codes = unsafe { _mm512_load_si512(block.words[w].as_ptr().cast()) };
            distance = _mm512_add_epi64(distance, _mm512_popcnt_epi64(_mm512_xor_si512(codes, *qw)));
        }
        let mut mask = _mm512_cmple_epu64_mask(distance, limit);
        if mask != 0 {
            let mut lanes = [0u64; LANES];
            // SAFETY: `lanes` is 64 writable bytes; the unaligned store needs no alignment.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), distance) };
            while mask != 0 {
                let lane = mask.trailing_zeros() as usize;
                // A distance is at most 256.
                hits.push(b, lane, lanes[lane] as u32);
                mask &= mask - 1;
            }
        }
    }
}

fn has_avx512_popcnt() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn both_kernels_find_exactly_the_codes_within_the_radius() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Not a multiple of 8, and more than one slab.
        let base: [u64; 4] = rng.random();
        let codes: Vec<Code> = (0..SLAB_BLOCKS * LANES * 2 + 5)
            .map(|i| {
                let mut c = base;
                // Every 3rd code near the base (distances 0..~40), the rest uniform.
                if i % 3 == 0 {
                    for _ in 0..i % 41 {
                        let bit = rng.random_range(0..256usize);
                        c[bit / 64] ^= 1 << (bit % 64);
                    }
                    c
                } else {
                    rng.random()
                }
            })
            .collect();
        let queries: Vec<(u32, Code)> = vec![(0, base), (1, codes[7]), (2, rng.random()), (3, codes[codes.len() - 1])];
        for radius in [0, 1, 20, 56, 128, 255, 256] {
            let mut want: Vec<(u32, u32, u32)> = Vec::new();
            for &(q, ref query) in &queries {
                for (id, code) in codes.iter().enumerate() {
                    let d: u32 = code.iter().zip(query).map(|(a, b)| (a ^ b).count_ones()).sum();
                    if d <= radius {
                        want.push((q, id as u32, d));
                    }
                }
            }
            for allow in [false, true] {
                let blocked = BlockedCodes::with_avx512(&codes, allow);
                let mut got = Vec::new();
                blocked.scan(&queries, radius, &mut got);
                got.sort_unstable();
                assert_eq!(got, want, "radius {radius}, avx512 {}", blocked.uses_avx512());
            }
        }
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let blocked = BlockedCodes::new(&[]);
        let mut got = Vec::new();
        blocked.scan(&[(0, [0; 4])], 256, &mut got);
        assert!(got.is_empty());
    }
}
