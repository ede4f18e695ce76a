//! Exact Hamming range search over 256-bit codes (DEDUP.md §6, §10).
//!
//! The test side is indexed once ([`HammingIndex::new`]); every upstream hash is a query
//! ([`HammingIndex::range`]) that returns *all* test entries within a radius, sorted by
//! (distance, id). Two exact strategies are available:
//!
//! - **Flat scan** ([`HammingIndex::range_flat`]): XOR + popcount over one contiguous
//!   `Vec<Code>`. On x86-64 the loop is compiled a second time with the `popcnt` target feature
//!   and that copy is chosen at run time (the build targets baseline x86-64, where `count_ones`
//!   would otherwise be a bit-trick sequence).
//! - **Multi-index hashing** ([`HammingIndex::range_mih`], Norouzi et al.; Meta's PDQ MIH
//!   layout): the 256 bits are split into 16 chunks of 16 bits and each chunk has a table
//!   mapping chunk value -> ids, stored CSR-style (65,537 offsets into one ids array per
//!   table). If `hamming(q, c) <= r`, the 16 chunk distances sum to at most `r`, so by the
//!   pigeonhole principle at least one chunk differs in at most `s = floor(r / 16)` bits.
//!   Probing every table with all keys within `s` bit flips of the query's chunk therefore
//!   finds every result; each candidate is then verified on the full 256 bits.
//!
//! **Dedupe without scratch.** A code can be a candidate in several tables. Instead of a
//! per-query stamp array, a verified hit found in table `j` is kept only if table `j` is the
//! *first* table in which it is a candidate, i.e. its chunk distance to the query is `> s` in
//! every table `i < j` (in table `i` it would have been probed, since every key within `s`
//! flips is probed, and each id sits in exactly one bucket per table and each key is probed
//! once). This is exact, needs no per-query state, so `range` allocates nothing beyond growing
//! `out` and the index is trivially `Send + Sync` for concurrent rayon queries.
//!
//! **Choosing flat vs MIH** ([`HammingIndex::range`]): a cost model in tenths of a
//! nanosecond, fitted to the release timing test `timing_mih_vs_flat_160k` (2-vCPU AMD EPYC,
//! baseline x86-64 + runtime `popcnt`, uniform codes):
//!
//! | quantity | measured | constant |
//! |---|---|---|
//! | flat scan, per code | 1.15-1.2 ns (8.6e8 comparisons/s) | [`COST_FLAT`] = 12 |
//! | MIH probe (two offset loads, empty bucket) | ~4-5 ns | [`COST_PROBE`] = 45 |
//! | MIH candidate (id, random code, verify), N <= 16k / 32k / >= 64k | 20 / 37 / 50-65 ns | [`cand_cost`] |
//!
//! 1. no tables (index shorter than [`MIH_MIN_LEN`]) or `r >= 256` -> flat;
//! 2. `probes = 16 * sum_{i <= s} C(16, i)` (16 / 272 / 2,192 / 11,152 for s = 0..3); if
//!    `probes * COST_PROBE >= N * COST_FLAT`, flat without further work (rules out `s = 1`
//!    below ~1k codes, `s = 2` below ~8k, `s >= 3` below ~42k);
//! 3. otherwise count the candidates by walking the probed offsets (the same offsets are
//!    re-read from cache when verifying) and use MIH iff
//!    `probes * COST_PROBE + candidates * cand_cost(N) < N * COST_FLAT`. This step also sends
//!    skewed queries to the flat scan (real PDQ hashes of near-flat images crowd a few buckets).
//!
//! Measured crossover (uniform codes): `r <= 15` (s = 0): MIH always wins once tables exist;
//! `r <= 31` (s = 1): flat 1,552 ns vs MIH 1,604 ns per query at N = 1,000, MIH ahead from
//! N = 2,000 (2.3 vs 3.0 us), 4x at 160k; `32 <= r <= 63` (s = 2, 3): flat wins at every N
//! measured up to 160k (r = 47 at 160k: MIH 348 us vs flat 190 us), because a candidate costs
//! 20-60x a flat comparison. Hence [`MIH_MIN_LEN`] = 2,048 and, for uniform codes, MIH only
//! for `r <= 31`.

use std::fmt;

use crate::blocked::BlockedCodes;

/// A 256-bit code (PDQ hash bits), four little-endian 64-bit words.
pub type Code = [u64; 4];

/// Number of MIH chunks (tables).
const CHUNKS: usize = 16;
/// Bits per chunk.
const CHUNK_BITS: u32 = 16;
/// Buckets per table.
const BUCKETS: usize = 1 << CHUNK_BITS;

/// Indexes shorter than this never build MIH tables (4 MiB of offsets would dwarf the codes,
/// and the flat scan over < 2k codes costs about as much as the 272 probes of `s = 1`).
pub const MIH_MIN_LEN: usize = 2048;

/// Cost of one flat-scan comparison (sequential 32-byte load + 4 popcounts), 0.1 ns units.
pub const COST_FLAT: u64 = 12;
/// Cost of one comparison of [`HammingIndex::range_batch`]'s blocked scan with AVX-512
/// VPOPCNTDQ, 0.1 ns units (see `timing_batch_vs_flat`).
pub const COST_FLAT_BATCH_AVX512: u64 = 2;
/// The same without AVX-512 (scalar `popcnt` on the blocks, still cache-blocked).
pub const COST_FLAT_BATCH_SCALAR: u64 = 10;

/// Cost of one MIH probe (two offset loads from a 256 KiB table), 0.1 ns units.
pub const COST_PROBE: u64 = 45;

/// Cost of one MIH candidate (id load, dependent random 32-byte code load, verify), 0.1 ns
/// units; it grows as the index (codes + 64 B/code of ids + 4 MiB offsets) leaves the cache.
pub const fn cand_cost(n: usize) -> u64 {
    if n <= 16_384 {
        250
    } else if n <= 49_152 {
        400
    } else {
        600
    }
}

/// Hamming distance between two codes (portable; the index's scans use a `popcnt` build).
#[inline]
pub fn hamming(a: &Code, b: &Code) -> u32 {
    hamming_inline(a, b)
}

#[inline(always)]
fn hamming_inline(a: &Code, b: &Code) -> u32 {
    (a[0] ^ b[0]).count_ones() + (a[1] ^ b[1]).count_ones() + (a[2] ^ b[2]).count_ones() + (a[3] ^ b[3]).count_ones()
}

/// Chunk `k` (0..16) of a code: bits `16k .. 16k + 16`.
#[inline(always)]
fn chunk(code: &Code, k: usize) -> usize {
    ((code[k >> 2] >> ((k & 3) as u32 * CHUNK_BITS)) & 0xFFFF) as usize
}

/// Number of 16-bit keys within `s` flips of a key: `sum_{i <= s} C(16, i)`.
fn keys_within(s: u32) -> u64 {
    let mut total = 0u64;
    let mut binom = 1u64; // C(16, i)
    for i in 0..=s.min(CHUNK_BITS) as u64 {
        total += binom;
        binom = binom * (16 - i) / (i + 1);
    }
    total
}

/// Calls `f(mask)` for every 16-bit mask with at most `s` bits set (Gosper's hack per weight).
#[inline(always)]
fn for_each_mask(s: u32, mut f: impl FnMut(usize)) {
    for weight in 0..=s.min(CHUNK_BITS) {
        if weight == 0 {
            f(0);
            continue;
        }
        let mut v: u32 = (1u32 << weight) - 1;
        while v < (1u32 << CHUNK_BITS) {
            f(v as usize);
            // Next larger integer with the same popcount; v != 0 here, so trailing_zeros < 32.
            let t = v | (v - 1);
            let next_low = ((!t & t.wrapping_add(1)).wrapping_sub(1)) >> (v.trailing_zeros() + 1);
            v = t.wrapping_add(1) | next_low;
        }
    }
}

/// The test-side index: N codes, id = position.
///
/// `Send + Sync`: it holds only immutable vectors, so one index can serve every rayon thread.
pub struct HammingIndex {
    /// The codes by id, 32-byte aligned so a random access (MIH verification) touches one
    /// cache line, never two.
    codes: Vec<AlignedCode>,
    /// MIH tables, absent for small indexes.
    tables: Option<MihTables>,
    /// Whether the CPU has `popcnt` (detected once at construction).
    popcnt: bool,
    /// The codes again, transposed for [`range_batch`](Self::range_batch)'s blocked scan.
    blocked: BlockedCodes,
}

/// A code aligned to its size.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct AlignedCode(Code);

/// 16 CSR tables: `offsets[k * (BUCKETS + 1) + key] .. offsets[.. + key + 1]` index into
/// `ids[k * N ..][..N]`; ids within a bucket are ascending.
struct MihTables {
    offsets: Vec<u32>,
    ids: Vec<u32>,
}

impl fmt::Debug for HammingIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HammingIndex")
            .field("len", &self.codes.len())
            .field("mih_tables", &self.tables.is_some())
            .field("popcnt", &self.popcnt)
            .finish()
    }
}

/// Which strategy [`HammingIndex::range`] picked (see the module docs), for logging and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Flat,
    Mih,
}

impl HammingIndex {
    /// Index `codes`; ids are positions `0..N`. Builds MIH tables when `N >= MIH_MIN_LEN`.
    ///
    /// # Panics
    /// If `codes.len() > u32::MAX` (ids are `u32`; that is 128 GiB of codes, a caller bug,
    /// whereas the test-side index this is built for holds ~1.3M entries).
    pub fn new(codes: Vec<Code>) -> HammingIndex {
        let mih = codes.len() >= MIH_MIN_LEN;
        Self::with_mih(codes, mih)
    }

    /// Like [`new`](Self::new), but build the MIH tables iff `mih` (tests and benchmarks).
    ///
    /// # Panics
    /// If `codes.len() > u32::MAX`, as [`new`](Self::new).
    pub fn with_mih(codes: Vec<Code>, mih: bool) -> HammingIndex {
        assert!(u32::try_from(codes.len()).is_ok(), "HammingIndex holds at most u32::MAX codes");
        let tables = if mih && !codes.is_empty() { Some(MihTables::build(&codes)) } else { None };
        let blocked = BlockedCodes::new(&codes);
        let codes = codes.into_iter().map(AlignedCode).collect();
        HammingIndex { codes, tables, popcnt: has_popcnt(), blocked }
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The indexed codes, by id.
    pub fn codes(&self) -> &[Code] {
        // SAFETY: `AlignedCode` is `repr(C)` with the single field `Code` at offset 0 and size 32
        // (align 32 adds no padding to a 32-byte field), so `[AlignedCode]` has the layout of
        // `[Code]` with the same length and stride; `Code`'s alignment (8) is weaker than 32.
        unsafe { std::slice::from_raw_parts(self.codes.as_ptr().cast::<Code>(), self.codes.len()) }
    }

    /// Whether MIH tables were built.
    pub fn has_mih(&self) -> bool {
        self.tables.is_some()
    }

    /// Every `(id, distance)` with `distance <= radius`, sorted by `(distance, id)`. Exact.
    ///
    /// `out` is cleared first. Picks flat scan or MIH per query by the module-level cost model.
    /// Allocates nothing except when `out` must grow.
    pub fn range(&self, query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
        self.range_with(query, radius, out);
    }

    /// [`range`](Self::range), also returning the strategy it chose.
    pub fn range_with(&self, query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) -> Strategy {
        out.clear();
        let strategy = match &self.tables {
            Some(tables)
                if radius < 256 && tables.mih_is_cheaper(query, radius / CHUNK_BITS, self.codes.len(), COST_FLAT) =>
            {
                Strategy::Mih
            }
            _ => Strategy::Flat,
        };
        match strategy {
            Strategy::Mih => self.mih_dispatch(query, radius, out),
            Strategy::Flat => self.flat_dispatch(query, radius, out),
        }
        sort_hits(out);
        strategy
    }

    /// [`range`](Self::range) for many queries: every `(query position, id, distance)` with
    /// `distance <= radius`, sorted by `(query position, distance, id)`; `out` is cleared
    /// first. Exact: per query the same hits as `range`. Queries for which MIH is cheaper (by
    /// the cost model, against the blocked scan's lower per-code cost) take MIH; the rest share
    /// one cache-blocked scan of the index.
    ///
    /// # Panics
    /// If `queries.len() > u32::MAX` (positions are `u32`; callers pass bounded chunks).
    pub fn range_batch(&self, queries: &[Code], radius: u32, out: &mut Vec<(u32, u32, u32)>) {
        assert!(u32::try_from(queries.len()).is_ok(), "range_batch takes at most u32::MAX queries");
        out.clear();
        let flat_cost = if self.blocked.uses_avx512() { COST_FLAT_BATCH_AVX512 } else { COST_FLAT_BATCH_SCALAR };
        let mut flat = Vec::with_capacity(queries.len());
        let mut single = Vec::new();
        for (q, code) in queries.iter().enumerate() {
            let q = q as u32;
            match &self.tables {
                Some(tables)
                    if radius < 256
                        && tables.mih_is_cheaper(code, radius / CHUNK_BITS, self.codes.len(), flat_cost) =>
                {
                    single.clear();
                    self.mih_dispatch(code, radius, &mut single);
                    out.extend(single.iter().map(|&(id, d)| (q, id, d)));
                }
                _ => flat.push((q, *code)),
            }
        }
        self.blocked.scan(&flat, radius, out);
        out.sort_unstable_by_key(|&(q, id, d)| (u128::from(q) << 64) | (u128::from(d) << 32) | u128::from(id));
    }

    /// Whether [`range_batch`](Self::range_batch) scans with AVX-512.
    pub fn batch_uses_avx512(&self) -> bool {
        self.blocked.uses_avx512()
    }

    /// The flat scan: every `(id, distance)` with `distance <= radius`, sorted by
    /// `(distance, id)`; `out` is cleared first.
    pub fn range_flat(&self, query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
        out.clear();
        self.flat_dispatch(query, radius, out);
        sort_hits(out);
    }

    /// MIH regardless of cost (any radius; `radius >= 256` and indexes without tables fall
    /// back to the flat scan). Same contract as [`range`](Self::range).
    pub fn range_mih(&self, query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
        out.clear();
        if self.tables.is_some() && radius < 256 {
            self.mih_dispatch(query, radius, out);
        } else {
            self.flat_dispatch(query, radius, out);
        }
        sort_hits(out);
    }

    fn flat_dispatch(&self, query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
        #[cfg(target_arch = "x86_64")]
        if self.popcnt {
            // SAFETY: `self.popcnt` is true only if `is_x86_feature_detected!("popcnt")` said the
            // running CPU supports the instruction, which is the sole requirement of this fn.
            unsafe { flat_popcnt(&self.codes, query, radius, out) };
            return;
        }
        flat_scan(&self.codes, query, radius, out);
    }

    fn mih_dispatch(&self, query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
        let Some(tables) = &self.tables else {
            self.flat_dispatch(query, radius, out);
            return;
        };
        #[cfg(target_arch = "x86_64")]
        if self.popcnt {
            // SAFETY: as in `flat_dispatch`: the CPU was detected to support `popcnt`.
            unsafe { mih_popcnt(tables, &self.codes, query, radius, out) };
            return;
        }
        mih_search(tables, &self.codes, query, radius, out);
    }
}

fn has_popcnt() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Sort by (distance, id) without allocating (`sort_unstable` is in place; keys are unique).
fn sort_hits(out: &mut [(u32, u32)]) {
    out.sort_unstable_by_key(|&(id, d)| (u64::from(d) << 32) | u64::from(id));
}

impl MihTables {
    /// Counting sort per table: stable, so ids within a bucket stay ascending.
    fn build(codes: &[Code]) -> MihTables {
        let n = codes.len();
        let mut offsets = vec![0u32; CHUNKS * (BUCKETS + 1)];
        let mut ids = vec![0u32; CHUNKS * n];
        let mut cursor = vec![0u32; BUCKETS];
        for k in 0..CHUNKS {
            let offs = &mut offsets[k * (BUCKETS + 1)..(k + 1) * (BUCKETS + 1)];
            for code in codes {
                offs[chunk(code, k) + 1] += 1;
            }
            for key in 0..BUCKETS {
                offs[key + 1] += offs[key];
            }
            cursor.copy_from_slice(&offs[..BUCKETS]);
            let table_ids = &mut ids[k * n..(k + 1) * n];
            for (id, code) in codes.iter().enumerate() {
                let slot = &mut cursor[chunk(code, k)];
                // `id < n <= u32::MAX` (checked in `with_mih`), so the cast is lossless.
                table_ids[*slot as usize] = id as u32;
                *slot += 1;
            }
        }
        MihTables { offsets, ids }
    }

    #[inline(always)]
    fn bucket(&self, k: usize, key: usize) -> (usize, usize) {
        let base = k * (BUCKETS + 1);
        (self.offsets[base + key] as usize, self.offsets[base + key + 1] as usize)
    }

    /// The cost model of the module docs: is MIH with `s` flips cheaper than a flat scan?
    fn mih_is_cheaper(&self, query: &Code, s: u32, n: usize, flat_cost: u64) -> bool {
        let flat = (n as u64).saturating_mul(flat_cost);
        let probes = CHUNKS as u64 * keys_within(s);
        let probe_cost = probes.saturating_mul(COST_PROBE);
        if probe_cost >= flat {
            return false;
        }
        // Remaining budget in candidates; stop counting as soon as it is exceeded.
        let budget = (flat - probe_cost) / cand_cost(n);
        self.count_candidates(query, s, budget) < budget
    }

    /// Candidates (with multiplicity across tables) of an `s`-flip probe, counted per table
    /// until the count reaches `limit`.
    fn count_candidates(&self, query: &Code, s: u32, limit: u64) -> u64 {
        let mut candidates = 0u64;
        for k in 0..CHUNKS {
            let q = chunk(query, k);
            for_each_mask(s, |mask| {
                let (lo, hi) = self.bucket(k, q ^ mask);
                candidates += (hi - lo) as u64;
            });
            if candidates >= limit {
                break;
            }
        }
        candidates
    }
}

#[inline(always)]
fn flat_impl(codes: &[AlignedCode], query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
    for (id, code) in codes.iter().enumerate() {
        let d = hamming_inline(&code.0, query);
        if d <= radius {
            // `id < len <= u32::MAX` (checked at construction).
            out.push((id as u32, d));
        }
    }
}

#[inline(always)]
fn mih_impl(tables: &MihTables, codes: &[AlignedCode], query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
    let n = codes.len();
    let s = radius / CHUNK_BITS;
    for k in 0..CHUNKS {
        let q = chunk(query, k);
        let ids = &tables.ids[k * n..(k + 1) * n];
        for_each_mask(s, |mask| {
            let (lo, hi) = tables.bucket(k, q ^ mask);
            for &id in &ids[lo..hi] {
                let code = &codes[id as usize].0;
                let d = hamming_inline(code, query);
                // Keep the hit only in the first table where it is a candidate (module docs).
                if d <= radius && (0..k).all(|i| ((chunk(code, i) ^ chunk(query, i)) as u32).count_ones() > s) {
                    out.push((id, d));
                }
            }
        });
    }
}

fn flat_scan(codes: &[AlignedCode], query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
    flat_impl(codes, query, radius, out);
}

fn mih_search(tables: &MihTables, codes: &[AlignedCode], query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
    mih_impl(tables, codes, query, radius, out);
}

/// [`flat_impl`] compiled with `popcnt`.
///
/// # Safety
/// The running CPU must support `popcnt` (checked with `is_x86_feature_detected!`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn flat_popcnt(codes: &[AlignedCode], query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
    flat_impl(codes, query, radius, out);
}

/// [`mih_impl`] compiled with `popcnt`.
///
/// # Safety
/// The running CPU must support `popcnt` (checked with `is_x86_feature_detected!`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn mih_popcnt(tables: &MihTables, codes: &[AlignedCode], query: &Code, radius: u32, out: &mut Vec<(u32, u32)>) {
    mih_impl(tables, codes, query, radius, out);
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const RADII: [u32; 13] = [0, 1, 15, 16, 31, 32, 40, 47, 48, 64, 128, 255, 256];

    fn brute(codes: &[Code], q: &Code, r: u32) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = codes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let d = hamming(c, q);
                (d <= r).then_some((i as u32, d))
            })
            .collect();
        v.sort_by_key(|&(i, d)| (d, i));
        v
    }

    fn random_code(rng: &mut impl Rng) -> Code {
        [rng.random(), rng.random(), rng.random(), rng.random()]
    }

    /// Flip `bits` distinct random bits of `c`.
    fn perturb(rng: &mut impl Rng, c: &Code, bits: u32) -> Code {
        let mut out = *c;
        let mut flipped = 0u32;
        while flipped < bits.min(256) {
            let b = rng.random_range(0..256usize);
            if (out[b / 64] ^ c[b / 64]) >> (b % 64) & 1 == 0 {
                out[b / 64] ^= 1 << (b % 64);
                flipped += 1;
            }
        }
        out
    }

    /// Many codes near a few centres, exact duplicates, and a few uniform ones.
    fn clustered(rng: &mut impl Rng, n: usize) -> (Vec<Code>, Vec<Code>) {
        let centres: Vec<Code> = (0..4).map(|_| random_code(rng)).collect();
        let mut codes = Vec::with_capacity(n);
        while codes.len() < n {
            let c = &centres[rng.random_range(0..centres.len())];
            match rng.random_range(0..10) {
                0 => codes.push(*c),
                1 => codes.push(random_code(rng)),
                2 if !codes.is_empty() => codes.push(codes[rng.random_range(0..codes.len())]),
                _ => {
                    let bits = rng.random_range(0..60);
                    codes.push(perturb(rng, c, bits));
                }
            }
        }
        let mut queries: Vec<Code> = centres.clone();
        for _ in 0..6 {
            let c = &centres[rng.random_range(0..centres.len())];
            let bits = rng.random_range(0..50);
            queries.push(perturb(rng, c, bits));
        }
        queries.push(random_code(rng));
        queries.push(codes[0]);
        (codes, queries)
    }

    fn check_all(index: &HammingIndex, queries: &[Code], radii: &[u32]) {
        let mut out = Vec::new();
        for q in queries {
            for &r in radii {
                let want = brute(index.codes(), q, r);
                index.range(q, r, &mut out);
                assert_eq!(out, want, "range r={r}");
                index.range_flat(q, r, &mut out);
                assert_eq!(out, want, "range_flat r={r}");
                index.range_mih(q, r, &mut out);
                assert_eq!(out, want, "range_mih r={r}");
            }
        }
        let mut batch = Vec::new();
        for &r in radii {
            let want: Vec<(u32, u32, u32)> = queries
                .iter()
                .enumerate()
                .flat_map(|(q, code)| brute(index.codes(), code, r).into_iter().map(move |(id, d)| (q as u32, id, d)))
                .collect();
            index.range_batch(queries, r, &mut batch);
            assert_eq!(batch, want, "range_batch r={r}");
        }
    }

    #[test]
    fn keys_within_matches_enumeration() {
        for s in 0..=17 {
            let mut count = 0u64;
            let mut seen = vec![false; BUCKETS];
            for_each_mask(s, |m| {
                assert!(!seen[m], "mask {m:#x} twice");
                assert!(m.count_ones() <= s);
                seen[m] = true;
                count += 1;
            });
            assert_eq!(count, keys_within(s), "s={s}");
        }
        assert_eq!(keys_within(1), 17);
        assert_eq!(keys_within(2), 137);
        assert_eq!(keys_within(3), 697);
        assert_eq!(keys_within(16), 65536);
    }

    #[test]
    fn search_uniform_fixed_seeds() {
        for seed in [1u64, 2, 3] {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut codes: Vec<Code> = (0..600).map(|_| random_code(&mut rng)).collect();
            // Plant near neighbours of the queries so small radii have hits.
            let mut queries: Vec<Code> = (0..5).map(|_| random_code(&mut rng)).collect();
            for q in &queries {
                for bits in [0, 1, 3, 15, 16, 17, 31, 32, 33, 40, 47, 48, 49, 64] {
                    codes.push(perturb(&mut rng, q, bits));
                }
            }
            queries.push(codes[7]);
            let index = HammingIndex::with_mih(codes, true);
            check_all(&index, &queries, &RADII);
        }
    }

    #[test]
    fn search_clustered_fixed_seeds() {
        for seed in [10u64, 11] {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (codes, queries) = clustered(&mut rng, 800);
            let index = HammingIndex::with_mih(codes, true);
            check_all(&index, &queries, &RADII);
        }
    }

    #[test]
    fn search_auto_strategy_large_index() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut codes: Vec<Code> = (0..20_000).map(|_| random_code(&mut rng)).collect();
        let q = random_code(&mut rng);
        for bits in [0, 5, 20, 31, 40, 47, 60] {
            codes.push(perturb(&mut rng, &q, bits));
        }
        let index = HammingIndex::new(codes);
        assert!(index.has_mih());
        let mut out = Vec::new();
        for r in [0, 16, 31, 47, 64] {
            let strategy = index.range_with(&q, r, &mut out);
            assert_eq!(out, brute(index.codes(), &q, r), "r={r}");
            let want = if r <= 31 { Strategy::Mih } else { Strategy::Flat };
            assert_eq!(strategy, want, "r={r}");
        }
        // Skewed: every code identical -> the candidate count sends the query to the flat scan.
        let same = HammingIndex::new(vec![q; 5000]);
        assert_eq!(same.range_with(&q, 31, &mut out), Strategy::Flat);
        assert_eq!(out.len(), 5000);
    }

    #[test]
    fn search_empty_index() {
        for mih in [false, true] {
            let index = HammingIndex::with_mih(Vec::new(), mih);
            assert!(index.is_empty());
            assert_eq!(index.len(), 0);
            let mut out = vec![(1, 2)];
            for r in [0, 31, 256, u32::MAX] {
                index.range(&[0; 4], r, &mut out);
                assert!(out.is_empty());
                index.range_mih(&[0; 4], r, &mut out);
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn search_radius_beyond_256() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut codes: Vec<Code> = (0..50).map(|_| random_code(&mut rng)).collect();
        codes.push([u64::MAX; 4]);
        codes.push([0; 4]);
        let index = HammingIndex::with_mih(codes, true);
        let mut out = Vec::new();
        for r in [256, 257, 1000, u32::MAX] {
            index.range(&[0; 4], r, &mut out);
            assert_eq!(out.len(), 52);
            assert_eq!(out[0], (51, 0));
            assert_eq!(out[51], (50, 256));
            assert_eq!(out, brute(index.codes(), &[0; 4], r));
        }
    }

    #[test]
    fn search_hamming_basics() {
        assert_eq!(hamming(&[0; 4], &[u64::MAX; 4]), 256);
        assert_eq!(hamming(&[1, 0, 0, 0], &[0, 0, 0, 1 << 63]), 2);
        let index = HammingIndex::new(vec![[0; 4]]);
        assert!(!index.has_mih());
    }

    #[test]
    fn search_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HammingIndex>();
    }

    fn code_strategy() -> impl proptest::strategy::Strategy<Value = Code> {
        any::<[u64; 4]>()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Codes derived from a few bases by flipping few bits (so all radii have hits).
        #[test]
        fn search_prop_matches_brute_force(
            bases in proptest::collection::vec(code_strategy(), 1..4),
            flips in proptest::collection::vec(
                (any::<prop::sample::Index>(), proptest::collection::vec(0usize..256, 0..70)),
                0..120,
            ),
            query_base in any::<prop::sample::Index>(),
            query_flips in proptest::collection::vec(0usize..256, 0..60),
            radius_pick in any::<prop::sample::Index>(),
        ) {
            let codes: Vec<Code> = flips
                .iter()
                .map(|(b, bits)| {
                    let mut c = *b.get(&bases);
                    for &bit in bits {
                        c[bit / 64] ^= 1 << (bit % 64);
                    }
                    c
                })
                .collect();
            let mut q = *query_base.get(&bases);
            for &bit in &query_flips {
                q[bit / 64] ^= 1 << (bit % 64);
            }
            let r = *radius_pick.get(&RADII[..RADII.len() - 2]); // r <= 128 (s <= 8) keeps MIH quick
            let index = HammingIndex::with_mih(codes, true);
            let want = brute(index.codes(), &q, r);
            let mut out = Vec::new();
            index.range_mih(&q, r, &mut out);
            prop_assert_eq!(&out, &want);
            index.range(&q, r, &mut out);
            prop_assert_eq!(&out, &want);
            index.range_flat(&q, r, &mut out);
            prop_assert_eq!(&out, &want);
            let mut batch = Vec::new();
            index.range_batch(&[q, q], r, &mut batch);
            let twice: Vec<(u32, u32, u32)> =
                [0u32, 1].iter().flat_map(|&k| want.iter().map(move |&(id, d)| (k, id, d))).collect();
            prop_assert_eq!(&batch, &twice);
        }
    }

    /// Release timing: `cargo test -p bitkit-dedup --release --lib timing_batch_vs_flat -- --ignored --nocapture`.
    /// Per-code cost of the one-query flat scan and of the blocked batch scan at 80,000 uniform
    /// codes (a 10,000-image CIFAR index x 8 variants), r = 56: the source of
    /// `COST_FLAT_BATCH_*`.
    #[test]
    #[ignore]
    #[allow(clippy::print_stdout)]
    fn timing_batch_vs_flat() {
        use std::time::Instant;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let codes: Vec<Code> = (0..80_000).map(|_| random_code(&mut rng)).collect();
        let queries: Vec<Code> = (0..2_000).map(|_| random_code(&mut rng)).collect();
        let index = HammingIndex::with_mih(codes, false);
        let mut out = Vec::new();
        let start = Instant::now();
        for q in &queries {
            index.range_flat(q, 56, &mut out);
        }
        let one = start.elapsed().as_secs_f64() / (queries.len() * index.len()) as f64;
        let mut batch = Vec::new();
        let start = Instant::now();
        index.range_batch(&queries, 56, &mut batch);
        let blocked = start.elapsed().as_secs_f64() / (queries.len() * index.len()) as f64;
        println!(
            "one query at a time {:.3} ns/code, blocked batch {:.3} ns/code (avx512: {})",
            one * 1e9,
            blocked * 1e9,
            index.batch_uses_avx512()
        );
    }

    /// Release timing: `cargo test -p bitkit-dedup --release --lib timing_mih_vs_flat_160k -- --ignored --nocapture`.
    /// Prints queries/s at 160k uniform codes and the per-probe / per-candidate / per-code costs
    /// that the cost model's constants come from.
    #[test]
    #[ignore]
    #[allow(clippy::print_stdout)]
    fn timing_mih_vs_flat_160k() {
        use std::time::{Duration, Instant};
        /// Queries/s of `f` over `queries`, cycling until ~`secs` have passed.
        fn rate(queries: &[Code], secs: f64, mut f: impl FnMut(&Code)) -> f64 {
            let start = Instant::now();
            let mut done = 0usize;
            while start.elapsed() < Duration::from_secs_f64(secs) {
                for q in queries.iter().take(256) {
                    f(q);
                }
                done += queries.len().min(256);
            }
            done as f64 / start.elapsed().as_secs_f64()
        }
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let all: Vec<Code> = (0..160_000).map(|_| random_code(&mut rng)).collect();
        let queries: Vec<Code> = (0..256).map(|_| random_code(&mut rng)).collect();
        let mut out = Vec::new();
        let mut hits = 0usize;
        let start = Instant::now();
        let index = HammingIndex::new(all.clone());
        println!("build 160k: {:.1} ms, popcnt={}", start.elapsed().as_secs_f64() * 1e3, index.popcnt);
        for r in [31u32, 47] {
            let mih = rate(&queries, 1.0, |q| {
                index.range_mih(q, r, &mut out);
                hits += out.len();
            });
            let auto = rate(&queries, 1.0, |q| {
                index.range(q, r, &mut out);
                hits += out.len();
            });
            let flat = rate(&queries, 1.0, |q| {
                index.range_flat(q, r, &mut out);
                hits += out.len();
            });
            println!(
                "160k uniform r={r}: MIH {mih:.0} q/s, range(auto) {auto:.0} q/s, flat {flat:.0} q/s \
                 ({:.2e} cmp/s), MIH/flat {:.1}x",
                flat * 160_000.0,
                mih / flat
            );
        }
        println!("fit: n r probes cands/q mih_ns/q flat_ns/q flat_ns/code");
        for n in [1000usize, 2000, 4000, 8000, 16_000, 32_000, 64_000, 160_000] {
            let index = HammingIndex::with_mih(all[..n].to_vec(), true);
            let Some(tables) = &index.tables else { return };
            for r in [15u32, 31, 47, 63] {
                let s = r / CHUNK_BITS;
                let cands: u64 =
                    queries.iter().map(|q| tables.count_candidates(q, s, u64::MAX)).sum::<u64>() / queries.len() as u64;
                let mih = rate(&queries, 0.15, |q| {
                    index.range_mih(q, r, &mut out);
                    hits += out.len();
                });
                let flat = rate(&queries, 0.15, |q| {
                    index.range_flat(q, r, &mut out);
                    hits += out.len();
                });
                println!(
                    "fit: {n} {r} {} {cands} {:.0} {:.0} {:.3}",
                    CHUNKS as u64 * keys_within(s),
                    1e9 / mih,
                    1e9 / flat,
                    1e9 / flat / n as f64
                );
            }
        }
        println!("(hits {hits})");
    }
}
