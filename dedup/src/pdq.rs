//! PDQ: Meta's 256-bit perceptual hash, re-implemented from the reference C++
//! (`facebook/ThreatExchange`, `pdq/cpp/hashing/pdqhashing.cpp`, `downscaling/downscaling.cpp`,
//! `hashing/torben.cpp`, `common/pdqhashtypes.{h,cpp}`).
//!
//! Steps, each as the reference does it (all arithmetic in `f32` in the reference's order, so
//! the hex strings are comparable with the C++ tool and the `pdqhash` Python wrapper):
//!
//! 1. luma `Y = 0.299 R + 0.587 G + 0.114 B` (f32 coefficients);
//! 2. unless the image is exactly 64x64: a Jarosz (tent) filter, i.e. two rounds of a 1-D box
//!    filter along rows and then along columns, with windows
//!    `computeJaroszFilterWindowSize(old, 64) = (old + 2*64 - 1) / (2*64)` (the row window comes
//!    from the width, the column window from the height), as running sums including the
//!    reference's shrinking windows at the edges; then decimation to 64x64 by sampling
//!    `in[(int)((i + 0.5) * old / 64)]` (computed in f64);
//! 3. quality: `d = (int)((u - v) * 100 / 255)` over all vertical and horizontal neighbour
//!    pairs of the 64x64 buffer, `sum |d| / 90` (integer division), capped at 100;
//! 4. DCT: `D[i][j] = sqrt(2/64) * cos(pi/128 * (i+1) * (2j+1))`, i in 0..16, j in 0..64
//!    (the DC row is skipped), `B = D A D^T` with only the 16x16 block computed;
//! 5. the median of the 256 coefficients as Torben's algorithm returns it (the lower median,
//!    element 127 of the sorted values, found here by selection), and bit `16 i + j` is set iff
//!    `B[i][j] > median`.
//!
//! Bit `k` lives in `PdqHash.0[k / 64]` at bit `k % 64`, which is the reference's
//! `w[k / 16] bit (k % 16)` over 16-bit words. The reference prints the words `w[15]` first,
//! four hex digits each, i.e. the hash as one 256-bit big-endian number: [`PdqHash::to_hex`]
//! prints the same string.
//!
//! The 8 dihedral variants come from the one 16x16 DCT by sign flips and transposes
//! (`dct16OriginalToRotate90` etc.). The variant for `d` is close to, but not always equal to,
//! the hash of the image transformed by `d` (the decimation grid and even box windows are not
//! symmetric): see [`Dihedral`] for what each variant means in image space.
//!
//! Deliberate deviation: the reference's dihedral entry point runs the (window 1) box filter
//! even on a 64x64 input, while its plain entry point copies 64x64 inputs directly. Here both
//! skip it, so the identity variant of [`pdq_dihedral`] always equals [`pdq`] (the two
//! reference paths differ only by float rounding on 64x64 inputs).

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use bitkit_ingest::image::RgbImage;

/// Images with a side below this get a zero hash and quality 0 (`MIN_HASHABLE_DIM`).
pub const MIN_HASHABLE_SIDE: usize = 5;
/// Side of the downsampled luma the DCT reads.
const SIDE: usize = 64;
/// Side of the kept DCT block.
const DCT_SIDE: usize = 16;
/// Coefficients (= bits).
const BITS: usize = DCT_SIDE * DCT_SIDE;

const LUMA_R: f32 = 0.299;
const LUMA_G: f32 = 0.587;
const LUMA_B: f32 = 0.114;

/// A 256-bit PDQ hash; bit `k` is `self.0[k / 64] >> (k % 64) & 1` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PdqHash(pub [u64; 4]);

impl PdqHash {
    /// All bits clear: the hash of images too small to hash.
    pub const ZERO: PdqHash = PdqHash([0; 4]);

    /// Hamming distance (0..=256).
    #[inline]
    pub fn distance(&self, other: &PdqHash) -> u32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| (a ^ b).count_ones()).sum()
    }

    /// 64 lowercase hex digits, most significant (the reference's word 15) first.
    pub fn to_hex(&self) -> String {
        format!("{:016x}{:016x}{:016x}{:016x}", self.0[3], self.0[2], self.0[1], self.0[0])
    }

    /// Parses [`PdqHash::to_hex`] output (either case); `None` unless exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Option<PdqHash> {
        // `from_str_radix` would also accept a leading '+', so check the digits first.
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut words = [0u64; 4];
        for (k, word) in words.iter_mut().enumerate() {
            let start = (3 - k) * 16;
            *word = u64::from_str_radix(s.get(start..start + 16)?, 16).ok()?;
        }
        Some(PdqHash(words))
    }

    /// Bit `i` (0..256) = coefficient `(i / 16, i % 16)` above the median; false for `i >= 256`.
    #[inline]
    pub fn bit(&self, i: usize) -> bool {
        i < BITS && (self.0[i / 64] >> (i % 64)) & 1 == 1
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

impl fmt::Display for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A hash with its quality (0..=100; below 50 is too unreliable to match on).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pdq {
    pub hash: PdqHash,
    pub quality: u8,
}

/// The 8 dihedral variants in the order of [`Dihedral::ALL`] (the reference's order:
/// original, rotate 90, 180, 270, flip x, flip y, flip +1, flip -1).
///
/// In image space, with `out[r][c]` the transformed image and `in` of `h` rows and `w` columns
/// (derived from the reference's DCT sign patterns; a variant's hash approximates the hash of
/// the image transformed this way):
///
/// | variant | transform | `out[r][c] =` |
/// |---|---|---|
/// | `Identity` | none | `in[r][c]` |
/// | `Rotate90` | 90° counter-clockwise (`numpy.rot90`) | `in[c][w-1-r]` |
/// | `Rotate180` | 180° | `in[h-1-r][w-1-c]` |
/// | `Rotate270` | 90° clockwise | `in[h-1-c][r]` |
/// | `FlipX` | mirror about the horizontal axis (upside down) | `in[h-1-r][c]` |
/// | `FlipY` | mirror about the vertical axis (left-right) | `in[r][w-1-c]` |
/// | `Transpose` | main-diagonal transpose (reference `FlipPlus1`) | `in[c][r]` |
/// | `Transverse` | anti-diagonal transpose (reference `FlipMinus1`) | `in[h-1-c][w-1-r]` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dihedral {
    Identity,
    Rotate90,
    Rotate180,
    Rotate270,
    FlipX,
    FlipY,
    Transpose,
    Transverse,
}

impl Dihedral {
    pub const ALL: [Dihedral; 8] = [
        Dihedral::Identity,
        Dihedral::Rotate90,
        Dihedral::Rotate180,
        Dihedral::Rotate270,
        Dihedral::FlipX,
        Dihedral::FlipY,
        Dihedral::Transpose,
        Dihedral::Transverse,
    ];

    /// The serde name (`identity`, `rotate90`, ..., `flip_x`, `flip_y`, `transpose`, `transverse`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dihedral::Identity => "identity",
            Dihedral::Rotate90 => "rotate90",
            Dihedral::Rotate180 => "rotate180",
            Dihedral::Rotate270 => "rotate270",
            Dihedral::FlipX => "flip_x",
            Dihedral::FlipY => "flip_y",
            Dihedral::Transpose => "transpose",
            Dihedral::Transverse => "transverse",
        }
    }

    /// Inverse of [`Dihedral::as_str`].
    pub fn from_name(name: &str) -> Option<Dihedral> {
        Dihedral::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Position in [`Dihedral::ALL`] (and in [`pdq_dihedral`]'s array).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The transform that undoes this one (rotations by 90° and 270° swap; the rest are
    /// involutions).
    pub fn inverse(self) -> Dihedral {
        match self {
            Dihedral::Rotate90 => Dihedral::Rotate270,
            Dihedral::Rotate270 => Dihedral::Rotate90,
            other => other,
        }
    }

    /// Whether the transform swaps width and height.
    pub fn swaps_sides(self) -> bool {
        matches!(self, Dihedral::Rotate90 | Dihedral::Rotate270 | Dihedral::Transpose | Dihedral::Transverse)
    }

    /// Source `(row, col)` of output `(r, c)` for an input of `h` rows and `w` columns (see the
    /// table on the type). Callers guarantee `h, w >= 1` and `(r, c)` inside the output.
    #[inline]
    fn source(self, r: usize, c: usize, h: usize, w: usize) -> (usize, usize) {
        match self {
            Dihedral::Identity => (r, c),
            Dihedral::Rotate90 => (c, w - 1 - r),
            Dihedral::Rotate180 => (h - 1 - r, w - 1 - c),
            Dihedral::Rotate270 => (h - 1 - c, r),
            Dihedral::FlipX => (h - 1 - r, c),
            Dihedral::FlipY => (r, w - 1 - c),
            Dihedral::Transpose => (c, r),
            Dihedral::Transverse => (h - 1 - c, w - 1 - r),
        }
    }

    /// Applies the transform to a square `side` x `side` grayscale image (row-major). Input
    /// of another length is returned unchanged (copied), as there is no square to transform.
    pub fn apply_gray(self, pixels: &[f32], side: usize) -> Vec<f32> {
        if side == 0 || pixels.len() != side * side {
            return pixels.to_vec();
        }
        let mut out = Vec::with_capacity(pixels.len());
        for r in 0..side {
            for c in 0..side {
                let (sr, sc) = self.source(r, c, side, side);
                out.push(pixels[sr * side + sc]);
            }
        }
        out
    }

    /// Applies the transform to an RGB image of any shape. A malformed image (pixel buffer
    /// not `width * height * 3` bytes, or empty) is returned unchanged (cloned).
    pub fn apply_rgb(self, image: &RgbImage) -> RgbImage {
        let (w, h) = (image.width as usize, image.height as usize);
        if w == 0 || h == 0 || image.pixels.len() != w * h * 3 {
            return image.clone();
        }
        let (ow, oh) = if self.swaps_sides() { (h, w) } else { (w, h) };
        let mut pixels = Vec::with_capacity(image.pixels.len());
        for r in 0..oh {
            for c in 0..ow {
                let (sr, sc) = self.source(r, c, h, w);
                let at = (sr * w + sc) * 3;
                pixels.extend_from_slice(&image.pixels[at..at + 3]);
            }
        }
        RgbImage { width: ow as u32, height: oh as u32, pixels }
    }

    /// The reference's `dct16OriginalTo*`: the 16x16 DCT of the transformed image from the
    /// original's.
    fn transform_dct(self, a: &[f32; BITS], b: &mut [f32; BITS]) {
        // (transpose, negate where i is even, where j is even, where i + j is odd), with i, j
        // the source row and column, from the reference's sign tables.
        let (transpose, even_i, even_j, odd_sum) = match self {
            Dihedral::Identity => (false, false, false, false),
            Dihedral::Rotate90 => (true, false, true, false),
            Dihedral::Rotate180 => (false, false, false, true),
            Dihedral::Rotate270 => (true, true, false, false),
            Dihedral::FlipX => (false, true, false, false),
            Dihedral::FlipY => (false, false, true, false),
            Dihedral::Transpose => (true, false, false, false),
            Dihedral::Transverse => (true, false, false, true),
        };
        for i in 0..DCT_SIDE {
            for j in 0..DCT_SIDE {
                let negate = (even_i && i & 1 == 0) || (even_j && j & 1 == 0) || (odd_sum && (i + j) & 1 == 1);
                let v = a[i * DCT_SIDE + j];
                let at = if transpose { j * DCT_SIDE + i } else { i * DCT_SIDE + j };
                b[at] = if negate { -v } else { v };
            }
        }
    }
}

/// Luma as the reference computes it (`0.299 R + 0.587 G + 0.114 B` in f32), row-major. A
/// malformed image yields the luma of the whole pixels present (at most `width * height`).
pub fn luma(image: &RgbImage) -> Vec<f32> {
    let n = (image.width as usize).saturating_mul(image.height as usize);
    let t = luma_tables();
    image.pixels.chunks_exact(3).take(n).map(|p| luma_of(t, p)).collect()
}

/// `coefficient * value` for every u8 value and each of R, G, B: the same f32 products the
/// reference computes per pixel, looked up instead of converted and multiplied.
type LumaTables = [[f32; 256]; 3];

fn luma_tables() -> &'static LumaTables {
    static TABLES: OnceLock<LumaTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = [[0f32; 256]; 3];
        for (table, coeff) in t.iter_mut().zip([LUMA_R, LUMA_G, LUMA_B]) {
            for (v, entry) in table.iter_mut().enumerate() {
                *entry = coeff * v as f32;
            }
        }
        t
    })
}

/// The reference's sum order: `(r + g) + b`.
#[inline]
fn luma_of(t: &LumaTables, p: &[u8]) -> f32 {
    t[0][usize::from(p[0])] + t[1][usize::from(p[1])] + t[2][usize::from(p[2])]
}

/// The DCT matrix (16 x 64, row-major) and its transpose (64 x 16), built once.
struct DctTables {
    d: [f32; DCT_SIDE * SIDE],
    dt: [f32; SIDE * DCT_SIDE],
}

fn dct_tables() -> &'static DctTables {
    static TABLES: OnceLock<DctTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        // As the reference: a float scale times a double cosine, rounded to float.
        let scale = (2.0f64 / SIDE as f64).sqrt() as f32;
        let mut d = [0f32; DCT_SIDE * SIDE];
        let mut dt = [0f32; SIDE * DCT_SIDE];
        for i in 0..DCT_SIDE {
            for j in 0..SIDE {
                let angle = (std::f64::consts::PI / 2.0 / SIDE as f64) * (i + 1) as f64 * (2 * j + 1) as f64;
                let v = (f64::from(scale) * angle.cos()) as f32;
                d[i * SIDE + j] = v;
                dt[j * DCT_SIDE + i] = v;
            }
        }
        DctTables { d, dt }
    })
}

/// `computeJaroszFilterWindowSize(old, 64)`: `(old + 2*64 - 1) / (2*64)`, i.e. rounded up.
#[inline]
fn jarosz_window(old: usize) -> usize {
    old.div_ceil(2 * SIDE)
}

/// Loop counts of the reference's `box1DFloat` phases for a vector of `len` and a window.
#[derive(Clone, Copy)]
struct BoxPhases {
    /// Adds without writes.
    warmup: usize,
    /// Adds and writes with a growing window.
    growing: usize,
    /// Adds, subtracts and writes with the full window.
    full: usize,
    /// Subtracts and writes with a shrinking window.
    shrinking: usize,
}

impl BoxPhases {
    fn new(len: usize, window: usize) -> BoxPhases {
        let half = (window + 2) / 2; // 7 -> 4, 8 -> 5
        BoxPhases {
            warmup: half - 1,
            growing: window + 1 - half,
            // The window never exceeds the length ((len + 127) / 128 <= len), but be safe.
            full: len.saturating_sub(window),
            shrinking: half - 1,
        }
    }
}

/// `sum / count` as the reference divides, with the same result computed cheaper where that is
/// exact: a window of 1 divides by 1, and a power-of-two window multiplies by its (exact)
/// reciprocal (both round the same real number once). Chosen once per bulk phase.
#[derive(Clone, Copy)]
enum Divide {
    One,
    Mul(f32),
    Div(f32),
}

impl Divide {
    fn new(count: usize) -> Divide {
        match count {
            1 => Divide::One,
            c if c.is_power_of_two() => Divide::Mul(1.0 / c as f32),
            c => Divide::Div(c as f32),
        }
    }
}

/// Box filter along the rows of an `R`-row block (`R * cols` values), the reference's
/// `box1DFloat` per row. The `R` rows run in lockstep so their running sums (each a serial
/// chain) overlap; per row the operations and their order are exactly the reference's.
fn box_rows_block<const R: usize>(input: &[f32], output: &mut [f32], cols: usize, window: usize) {
    let phases = BoxPhases::new(cols, window);
    let mut sum = [0f32; R];
    let mut count = 0usize;
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    for _ in 0..phases.warmup {
        for (r, s) in sum.iter_mut().enumerate() {
            *s += input[r * cols + ri];
        }
        count += 1;
        ri += 1;
    }
    for _ in 0..phases.growing {
        count += 1;
        let div = count as f32;
        for (r, s) in sum.iter_mut().enumerate() {
            *s += input[r * cols + ri];
            output[r * cols + oi] = *s / div;
        }
        ri += 1;
        oi += 1;
    }
    // The bulk, monomorphised per division kind so the inner loop carries no branch.
    #[inline(always)]
    fn full<const R: usize>(
        input: &[f32],
        output: &mut [f32],
        cols: usize,
        sum: &mut [f32; R],
        (li, ri, oi): (usize, usize, usize),
        steps: usize,
        div: impl Fn(f32) -> f32,
    ) {
        for k in 0..steps {
            for (r, s) in sum.iter_mut().enumerate() {
                *s += input[r * cols + ri + k];
                *s -= input[r * cols + li + k];
                output[r * cols + oi + k] = div(*s);
            }
        }
    }
    let at = (li, ri, oi);
    match Divide::new(count) {
        Divide::One => full(input, output, cols, &mut sum, at, phases.full, |s| s),
        Divide::Mul(m) => full(input, output, cols, &mut sum, at, phases.full, |s| s * m),
        Divide::Div(d) => full(input, output, cols, &mut sum, at, phases.full, |s| s / d),
    }
    li += phases.full;
    oi += phases.full;
    for _ in 0..phases.shrinking {
        count -= 1;
        let div = count as f32;
        for (r, s) in sum.iter_mut().enumerate() {
            *s -= input[r * cols + li];
            output[r * cols + oi] = *s / div;
        }
        li += 1;
        oi += 1;
    }
}

/// `boxAlongRowsFloat`: `input` and `output` are `rows x cols`.
fn box_rows(input: &[f32], output: &mut [f32], rows: usize, cols: usize, window: usize) {
    const BLOCK: usize = 8;
    let n = rows * cols;
    let full_blocks = rows / BLOCK;
    let split = full_blocks * BLOCK * cols;
    for (inb, outb) in input[..split].chunks_exact(BLOCK * cols).zip(output[..split].chunks_exact_mut(BLOCK * cols)) {
        box_rows_block::<BLOCK>(inb, outb, cols, window);
    }
    for (inr, outr) in input[split..n].chunks_exact(cols).zip(output[split..n].chunks_exact_mut(cols)) {
        box_rows_block::<1>(inr, outr, cols, window);
    }
}

/// `boxAlongColsFloat`: `input` and `output` are `rows x cols`. The columns are independent, so
/// they are processed a row at a time (vectorised) with one running sum per column; per column
/// the operations and their order are exactly the reference's.
fn box_cols(input: &[f32], output: &mut [f32], rows: usize, cols: usize, window: usize, sums: &mut Vec<f32>) {
    let phases = BoxPhases::new(rows, window);
    sums.clear();
    sums.resize(cols, 0.0);
    let row = |i: usize| &input[i * cols..(i + 1) * cols];
    let mut count = 0usize;
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    for _ in 0..phases.warmup {
        for (s, x) in sums.iter_mut().zip(row(ri)) {
            *s += x;
        }
        count += 1;
        ri += 1;
    }
    for _ in 0..phases.growing {
        count += 1;
        let div = count as f32;
        let out = &mut output[oi * cols..(oi + 1) * cols];
        for ((s, x), o) in sums.iter_mut().zip(row(ri)).zip(out) {
            *s += x;
            *o = *s / div;
        }
        ri += 1;
        oi += 1;
    }
    #[inline(always)]
    fn full_row(sums: &mut [f32], add: &[f32], sub: &[f32], out: &mut [f32], div: impl Fn(f32) -> f32) {
        for (((s, x), y), o) in sums.iter_mut().zip(add).zip(sub).zip(out) {
            *s += x;
            *s -= y;
            *o = div(*s);
        }
    }
    let divide = Divide::new(count);
    for _ in 0..phases.full {
        let out = &mut output[oi * cols..(oi + 1) * cols];
        match divide {
            Divide::One => full_row(sums, row(ri), row(li), out, |s| s),
            Divide::Mul(m) => full_row(sums, row(ri), row(li), out, |s| s * m),
            Divide::Div(d) => full_row(sums, row(ri), row(li), out, |s| s / d),
        }
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..phases.shrinking {
        count -= 1;
        let div = count as f32;
        let out = &mut output[oi * cols..(oi + 1) * cols];
        for ((s, y), o) in sums.iter_mut().zip(row(li)).zip(out) {
            *s -= y;
            *o = *s / div;
        }
        li += 1;
        oi += 1;
    }
}

/// `decimateFloat`'s sample index: `(int)(((out + 0.5) * old) / 64)` in double.
#[inline]
fn decimate_index(out: usize, old: usize) -> usize {
    let at = (((out as f64 + 0.5) * old as f64) / SIDE as f64) as usize;
    at.min(old - 1)
}

/// `pdqImageDomainQualityMetric`: `int d = ((u - v) * 100) / 255` in float, truncated, summed
/// as `|d|` over vertical and horizontal neighbours, `/ 90`, at most 100.
///
/// Each `|d|` is a whole number (at most 100 for 0..255 luma) and every partial sum stays far
/// below 2^24, so adding them as f32 is exact in any order: the sums run in independent lanes
/// (one per column) that vectorise, with `trunc` for the C cast, and give the reference's
/// integer (the integer loop was 10.7 of the 17 µs of a 32x32 hash).
#[inline(always)]
fn quality_metric(a: &[f32]) -> u8 {
    #[inline(always)]
    fn grad(u: f32, v: f32) -> f32 {
        (((u - v) * 100.0) / 255.0).trunc().abs()
    }
    let mut lanes = [0f32; SIDE];
    for (upper, lower) in a.chunks_exact(SIDE).zip(a.chunks_exact(SIDE).skip(1)) {
        for ((s, &u), &v) in lanes.iter_mut().zip(upper).zip(lower) {
            *s += grad(u, v);
        }
    }
    for row in a.chunks_exact(SIDE) {
        for ((s, &u), &v) in lanes.iter_mut().zip(row).zip(&row[1..]) {
            *s += grad(u, v);
        }
    }
    // Saturates (as the reference's clamp does) for luma far outside 0..255.
    let sum = lanes.iter().sum::<f32>() as i64;
    (sum / 90).clamp(0, 100) as u8
}

/// Reusable PDQ state: scratch buffers grow to the largest image seen and are reused, so
/// hashing allocates nothing once warm. Not shared between threads (one per worker).
pub struct PdqHasher {
    buf1: Vec<f32>,
    buf2: Vec<f32>,
    sums: Vec<f32>,
    cols1: Vec<f32>,
    cols2: Vec<f32>,
    a64: Vec<f32>,
    t: Vec<f32>,
    dct: [f32; BITS],
    aux: [f32; BITS],
    select: [f32; BITS],
}

impl Default for PdqHasher {
    fn default() -> Self {
        PdqHasher::new()
    }
}

impl PdqHasher {
    pub fn new() -> PdqHasher {
        PdqHasher {
            buf1: Vec::new(),
            buf2: Vec::new(),
            sums: Vec::new(),
            cols1: Vec::new(),
            cols2: Vec::new(),
            a64: vec![0.0; SIDE * SIDE],
            t: vec![0.0; DCT_SIDE * SIDE],
            dct: [0.0; BITS],
            aux: [0.0; BITS],
            select: [0.0; BITS],
        }
    }

    /// The identity hash of `image` (see [`pdq`]).
    pub fn hash(&mut self, image: &RgbImage) -> Pdq {
        match self.load_rgb(image) {
            Some((rows, cols)) => self.finish(rows, cols),
            None => Pdq { hash: PdqHash::ZERO, quality: 0 },
        }
    }

    /// All 8 dihedral hashes of `image` (see [`pdq_dihedral`]).
    pub fn hash_dihedral(&mut self, image: &RgbImage) -> ([PdqHash; 8], u8) {
        match self.load_rgb(image) {
            Some((rows, cols)) => self.finish_dihedral(rows, cols),
            None => ([PdqHash::ZERO; 8], 0),
        }
    }

    /// The identity hash of a row-major `width x height` luma image (0..255 scale), as the
    /// reference's `pdqHash256FromFloatLuma`. Wrong lengths or sides below 5 give quality 0
    /// and a zero hash.
    pub fn hash_luma(&mut self, luma: &[f32], width: usize, height: usize) -> Pdq {
        if !self.load_luma(luma, width, height) {
            return Pdq { hash: PdqHash::ZERO, quality: 0 };
        }
        self.finish(height, width)
    }

    /// All 8 dihedral hashes of a luma image (see [`PdqHasher::hash_luma`]).
    pub fn hash_luma_dihedral(&mut self, luma: &[f32], width: usize, height: usize) -> ([PdqHash; 8], u8) {
        if !self.load_luma(luma, width, height) {
            return ([PdqHash::ZERO; 8], 0);
        }
        self.finish_dihedral(height, width)
    }

    /// The identity hash of the `width x height` window at `(left, top)` of a row-major luma
    /// plane `stride` values wide: the same as [`PdqHasher::hash_luma`] of the window cut out.
    /// A window outside the plane gives quality 0 and a zero hash.
    pub fn hash_luma_window(
        &mut self,
        luma: &[f32],
        stride: usize,
        (left, top, width, height): (usize, usize, usize, usize),
    ) -> Pdq {
        if !self.load_luma_window(luma, stride, (left, top, width, height)) {
            return Pdq { hash: PdqHash::ZERO, quality: 0 };
        }
        self.finish(height, width)
    }

    fn load_luma(&mut self, luma: &[f32], width: usize, height: usize) -> bool {
        luma.len() == width.saturating_mul(height) && self.load_luma_window(luma, width, (0, 0, width, height))
    }

    /// The window of a luma plane into `buf1`, if it lies inside and is hashable.
    fn load_luma_window(
        &mut self,
        luma: &[f32],
        stride: usize,
        (left, top, width, height): (usize, usize, usize, usize),
    ) -> bool {
        let fits = left.checked_add(width).is_some_and(|right| right <= stride)
            && top.checked_add(height).and_then(|bottom| bottom.checked_mul(stride)).is_some_and(|n| n <= luma.len());
        if !fits || width < MIN_HASHABLE_SIDE || height < MIN_HASHABLE_SIDE {
            return false;
        }
        self.buf1.clear();
        for r in top..top + height {
            let start = r * stride + left;
            self.buf1.extend_from_slice(&luma[start..start + width]);
        }
        true
    }

    /// Luma into `buf1`; `(rows, cols)` if hashable.
    fn load_rgb(&mut self, image: &RgbImage) -> Option<(usize, usize)> {
        let (cols, rows) = (image.width as usize, image.height as usize);
        let n = rows.checked_mul(cols)?;
        if cols < MIN_HASHABLE_SIDE || rows < MIN_HASHABLE_SIDE || image.pixels.len() != n.checked_mul(3)? {
            return None;
        }
        self.buf1.clear();
        let t = luma_tables();
        self.buf1.extend(image.pixels.chunks_exact(3).map(|p| luma_of(t, p)));
        Some((rows, cols))
    }

    fn finish(&mut self, rows: usize, cols: usize) -> Pdq {
        let quality = self.dct16(rows, cols);
        let hash = threshold(&self.dct, &mut self.select);
        Pdq { hash, quality }
    }

    fn finish_dihedral(&mut self, rows: usize, cols: usize) -> ([PdqHash; 8], u8) {
        let quality = self.dct16(rows, cols);
        let mut hashes = [PdqHash::ZERO; 8];
        for (slot, d) in hashes.iter_mut().zip(Dihedral::ALL) {
            d.transform_dct(&self.dct, &mut self.aux);
            *slot = threshold(&self.aux, &mut self.select);
        }
        (hashes, quality)
    }

    /// Luma in `buf1` (`rows x cols`, both >= 5) -> 64x64 -> quality, and the 16x16 DCT in
    /// `self.dct`.
    fn dct16(&mut self, rows: usize, cols: usize) -> u8 {
        self.downsample(rows, cols);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2, the only requirement of the function.
            return unsafe { self.quality_and_dct_avx2() };
        }
        self.quality_and_dct()
    }

    /// [`quality_metric`] of `a64` and [`dct64_to_16`](Self::dct64_to_16).
    #[inline(always)]
    fn quality_and_dct(&mut self) -> u8 {
        let quality = quality_metric(&self.a64);
        self.dct64_to_16();
        quality
    }

    /// [`quality_and_dct`](Self::quality_and_dct) compiled for AVX2: the 64-float rows of the
    /// DCT's accumulator fit in 8 registers instead of spilling 16. The same IEEE operations
    /// in the same order (Rust never fuses a multiply and an add), so the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn quality_and_dct_avx2(&mut self) -> u8 {
        self.quality_and_dct()
    }

    /// Jarosz filter and decimation of `buf1` into `a64` (a plain copy for 64x64 input).
    fn downsample(&mut self, rows: usize, cols: usize) {
        let n = rows * cols;
        if rows == SIDE && cols == SIDE {
            self.a64.copy_from_slice(&self.buf1[..n]);
            return;
        }
        let along_rows = jarosz_window(cols);
        let along_cols = jarosz_window(rows);
        self.buf2.resize(n, 0.0);
        // Round 1 of 2, in full.
        box_rows(&self.buf1, &mut self.buf2, rows, cols, along_rows);
        box_cols(&self.buf2, &mut self.buf1, rows, cols, along_cols, &mut self.sums);
        // Round 2: the row pass in full, the column pass only on the 64 columns the decimation
        // samples (columns are independent, so their values are the same as in a full pass).
        box_rows(&self.buf1, &mut self.buf2, rows, cols, along_rows);
        let mut col_at = [0usize; SIDE];
        for (j, at) in col_at.iter_mut().enumerate() {
            *at = decimate_index(j, cols);
        }
        self.cols1.clear();
        for r in 0..rows {
            let row = &self.buf2[r * cols..(r + 1) * cols];
            self.cols1.extend(col_at.iter().map(|&c| row[c]));
        }
        self.cols2.resize(rows * SIDE, 0.0);
        box_cols(&self.cols1, &mut self.cols2, rows, SIDE, along_cols, &mut self.sums);
        for (i, out) in self.a64.chunks_exact_mut(SIDE).enumerate() {
            let r = decimate_index(i, rows);
            out.copy_from_slice(&self.cols2[r * SIDE..(r + 1) * SIDE]);
        }
    }

    /// `dct64To16`: `B = D A D^T`, each sum accumulated in f32 in the reference's order
    /// (k = 0..64), vectorised across the independent outputs. Each output row is summed in a
    /// local array so the compiler keeps it in registers (with AVX2, 8 of them) instead of
    /// loading and storing it at every step.
    #[inline(always)]
    fn dct64_to_16(&mut self) {
        let tables = dct_tables();
        // T = D A (16 x 64).
        for (drow, trow) in tables.d.chunks_exact(SIDE).zip(self.t.chunks_exact_mut(SIDE)) {
            let mut acc = [0f32; SIDE];
            for (&dik, arow) in drow.iter().zip(self.a64.chunks_exact(SIDE)) {
                for (t, a) in acc.iter_mut().zip(arow) {
                    *t += dik * a;
                }
            }
            trow.copy_from_slice(&acc);
        }
        // B = T D^T (16 x 16).
        for (trow, brow) in self.t.chunks_exact(SIDE).zip(self.dct.chunks_exact_mut(DCT_SIDE)) {
            let mut acc = [0f32; DCT_SIDE];
            for (&tik, dcol) in trow.iter().zip(tables.dt.chunks_exact(DCT_SIDE)) {
                for (b, d) in acc.iter_mut().zip(dcol) {
                    *b += tik * d;
                }
            }
            brow.copy_from_slice(&acc);
        }
    }
}

/// `pdqBuffer16x16ToBits`: bit `k` set iff coefficient `k` exceeds the median as Torben returns
/// it for 256 values (the 128th smallest).
fn threshold(coefs: &[f32; BITS], scratch: &mut [f32; BITS]) -> PdqHash {
    scratch.copy_from_slice(coefs);
    let (_, median, _) = scratch.select_nth_unstable_by(BITS / 2 - 1, f32::total_cmp);
    let median = *median;
    let mut words = [0u64; 4];
    for (k, &c) in coefs.iter().enumerate() {
        if c > median {
            words[k / 64] |= 1 << (k % 64);
        }
    }
    PdqHash(words)
}

thread_local! {
    static HASHER: RefCell<PdqHasher> = RefCell::new(PdqHasher::new());
}

/// Runs `f` with this thread's hasher (or a fresh one if it is already borrowed).
pub(crate) fn with_hasher<T>(f: impl FnOnce(&mut PdqHasher) -> T) -> T {
    HASHER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut hasher) => f(&mut hasher),
        Err(_) => f(&mut PdqHasher::new()),
    })
}

/// The identity PDQ hash and quality of `image`, with this thread's [`PdqHasher`].
///
/// Images with a side below 5 (the reference's `MIN_HASHABLE_DIM`), and malformed images whose
/// pixel buffer is not `width * height * 3` bytes, get quality 0 and a zero hash.
pub fn pdq(image: &RgbImage) -> Pdq {
    with_hasher(|h| h.hash(image))
}

/// All 8 dihedral hashes (in the order of [`Dihedral::ALL`]) from one DCT, and the quality
/// (shared: it is computed before the DCT). Small or malformed images as [`pdq`].
pub fn pdq_dihedral(image: &RgbImage) -> ([PdqHash; 8], u8) {
    with_hasher(|h| h.hash_dihedral(image))
}

/// The 8 dihedral hashes computed by hashing each transformed image ([`Dihedral::apply_rgb`])
/// instead of deriving them from one DCT: 8 times the work, but variant `d` then equals
/// `pdq(d.apply_rgb(image))` exactly, where [`pdq_dihedral`]'s variants differ from it by up to
/// ~30-40 bits on some sizes (even Jarosz windows and the decimation grid are not symmetric).
/// Meant for the small test side of a search. Quality is the identity's.
pub fn pdq_dihedral_exact(image: &RgbImage) -> ([PdqHash; 8], u8) {
    with_hasher(|h| {
        let mut hashes = [PdqHash::ZERO; 8];
        let mut quality = 0;
        for (slot, d) in hashes.iter_mut().zip(Dihedral::ALL) {
            let p = if d == Dihedral::Identity { h.hash(image) } else { h.hash(&d.apply_rgb(image)) };
            if d == Dihedral::Identity {
                quality = p.quality;
            }
            *slot = p.hash;
        }
        (hashes, quality)
    })
}

/// Synthetic "photos" and helpers shared by the tests of this crate's pixel modules.
#[cfg(test)]
pub(crate) mod testimg {
    use bitkit_ingest::image::RgbImage;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A smooth, photo-like picture: a colour gradient, random Gaussian blobs, a few
    /// hard-edged rectangles, a low-frequency ripple and mild noise; different per seed.
    pub fn photo(width: u32, height: u32, seed: u64) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (w, h) = (width as f32, height as f32);
        let base: [f32; 3] =
            [rng.random_range(40.0..200.0), rng.random_range(40.0..200.0), rng.random_range(40.0..200.0)];
        let grad: [f32; 3] =
            [rng.random_range(-80.0..80.0), rng.random_range(-80.0..80.0), rng.random_range(-80.0..80.0)];
        let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        let blobs: Vec<([f32; 2], f32, [f32; 3])> = (0..24)
            .map(|_| {
                let centre = [rng.random_range(0.0..1.0), rng.random_range(0.0..1.0)];
                let radius = rng.random_range(0.02..0.25);
                let colour =
                    [rng.random_range(-120.0..120.0), rng.random_range(-120.0..120.0), rng.random_range(-120.0..120.0)];
                (centre, radius, colour)
            })
            .collect();
        let rects: Vec<([f32; 4], [f32; 3])> = (0..6)
            .map(|_| {
                let x0: f32 = rng.random_range(0.0..0.8);
                let y0: f32 = rng.random_range(0.0..0.8);
                let bounds = [x0, y0, x0 + rng.random_range(0.1..0.4), y0 + rng.random_range(0.1..0.4)];
                let colour =
                    [rng.random_range(-70.0..70.0), rng.random_range(-70.0..70.0), rng.random_range(-70.0..70.0)];
                (bounds, colour)
            })
            .collect();
        let ripple_f: f32 = rng.random_range(2.0..6.0);
        let ripple_a: f32 = rng.random_range(5.0..25.0);
        let mut pixels = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                let (u, v) = ((x as f32 + 0.5) / w, (y as f32 + 0.5) / h);
                let along = u * angle.cos() + v * angle.sin();
                let ripple = ripple_a * (std::f32::consts::TAU * ripple_f * (u + 0.5 * v)).sin();
                let mut rgb = [0f32; 3];
                for (c, value) in rgb.iter_mut().enumerate() {
                    *value = base[c] + grad[c] * along + ripple;
                }
                for (centre, radius, colour) in &blobs {
                    let (du, dv) = (u - centre[0], v - centre[1]);
                    let weight = (-(du * du + dv * dv) / (2.0 * radius * radius)).exp();
                    for (value, c) in rgb.iter_mut().zip(colour) {
                        *value += c * weight;
                    }
                }
                for (b, colour) in &rects {
                    if u >= b[0] && u < b[2] && v >= b[1] && v < b[3] {
                        for (value, c) in rgb.iter_mut().zip(colour) {
                            *value += c;
                        }
                    }
                }
                for value in rgb {
                    let noise: f32 = rng.random_range(-3.0..3.0);
                    pixels.push((value + noise).clamp(0.0, 255.0).round() as u8);
                }
            }
        }
        RgbImage { width, height, pixels }
    }

    fn to_image(img: &RgbImage) -> image::RgbImage {
        image::RgbImage::from_raw(img.width, img.height, img.pixels.clone()).expect("valid test image")
    }

    fn from_image(img: image::RgbImage) -> RgbImage {
        RgbImage { width: img.width(), height: img.height(), pixels: img.into_raw() }
    }

    /// Resized with a triangle (bilinear) filter.
    pub fn resize(img: &RgbImage, width: u32, height: u32) -> RgbImage {
        from_image(image::imageops::resize(&to_image(img), width, height, image::imageops::FilterType::Triangle))
    }

    /// Encoded as a JPEG at `quality` and decoded with the shared decoder.
    pub fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
            .encode(&img.pixels, img.width, img.height, image::ExtendedColorType::Rgb8)
            .expect("encode jpeg");
        bitkit_ingest::image::decode_rgb(&bytes, 1 << 28).expect("decode jpeg")
    }

    /// A single-colour image.
    pub fn flat(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage { width, height, pixels: rgb.repeat((width * height) as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::testimg::{flat, jpeg, photo, resize};
    use super::*;

    #[test]
    fn hex_round_trips_and_orders_words_as_the_reference() {
        let h = PdqHash([0x0123_4567_89ab_cdef, 1, 2, 0xf000_0000_0000_0001]);
        let hex = h.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(&hex[..16], "f000000000000001");
        assert_eq!(&hex[48..], "0123456789abcdef");
        assert_eq!(PdqHash::from_hex(&hex), Some(h));
        assert_eq!(PdqHash::from_hex(&hex.to_uppercase()), Some(h));
        // Reference layout: bit k is bit k % 16 of 16-bit word k / 16, words printed 15 first.
        let mut one = PdqHash::ZERO;
        one.0[0] = 1 << 17; // bit 17 = word 1, bit 1
        assert!(one.bit(17) && !one.bit(16) && !one.bit(300));
        assert_eq!(&one.to_hex()[56..], "00020000");
        let bridge = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        assert_eq!(PdqHash::from_hex(bridge).map(|h| h.to_hex()).as_deref(), Some(bridge));
        for bad in ["", "zz", &hex[1..], &format!("+{}", &hex[1..]), &format!("{hex}0")] {
            assert_eq!(PdqHash::from_hex(bad), None, "{bad:?}");
        }
        assert_eq!(h.distance(&h), 0);
        assert_eq!(PdqHash::ZERO.distance(&PdqHash([u64::MAX; 4])), 256);
    }

    #[test]
    fn dct_table_matches_the_formula() {
        let t = dct_tables();
        let want = (2.0f64 / 64.0).sqrt() * (std::f64::consts::PI / 128.0 * 3.0 * 11.0).cos();
        assert!((f64::from(t.d[2 * 64 + 5]) - want).abs() < 1e-6);
        assert_eq!(t.d[2 * 64 + 5], t.dt[5 * 16 + 2]);
    }

    #[test]
    fn jarosz_window_sizes_are_the_reference() {
        assert_eq!(jarosz_window(64), 1);
        assert_eq!(jarosz_window(128), 1);
        assert_eq!(jarosz_window(129), 2);
        assert_eq!(jarosz_window(1024), 8);
        assert_eq!(jarosz_window(1600), 13);
    }

    #[test]
    fn box_filter_matches_the_reference_comment_example() {
        // downscaling.cpp's worked example: window 7 over 0..16 gives these sums (divided by
        // the current window size); window 8 likewise.
        let input: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut out = vec![0f32; 16];
        box_rows(&input, &mut out, 1, 16, 7);
        let sums7 = [6, 10, 15, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 75, 65, 54];
        let sizes7 = [4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 5, 4];
        for k in 0..16 {
            assert_eq!(out[k], sums7[k] as f32 / sizes7[k] as f32, "window 7, {k}");
        }
        box_rows(&input, &mut out, 1, 16, 8);
        let sums8 = [10, 15, 21, 28, 36, 44, 52, 60, 68, 76, 84, 92, 84, 75, 65, 54];
        let sizes8 = [5, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 7, 6, 5, 4];
        for k in 0..16 {
            assert_eq!(out[k], sums8[k] as f32 / sizes8[k] as f32, "window 8, {k}");
        }
        // Columns give the same as rows on the transposed data; blocks of 8 rows as single rows.
        let mut col_out = vec![0f32; 16];
        box_cols(&input, &mut col_out, 16, 1, 8, &mut Vec::new());
        assert_eq!(col_out, out);
        let many: Vec<f32> = (0..9 * 16).map(|v| ((v * 37) % 101) as f32).collect();
        let mut block = vec![0f32; many.len()];
        box_rows(&many, &mut block, 9, 16, 3);
        for r in 0..9 {
            let mut single = vec![0f32; 16];
            box_rows(&many[r * 16..(r + 1) * 16], &mut single, 1, 16, 3);
            assert_eq!(&block[r * 16..(r + 1) * 16], &single[..]);
        }
    }

    #[test]
    fn sampled_column_pass_equals_full_filter_then_decimation() {
        // Reference order written plainly: 2 x (rows, cols) in full, then decimate.
        let img = photo(300, 200, 4);
        let (rows, cols) = (200, 300);
        let mut a = luma(&img);
        let mut b = vec![0f32; a.len()];
        let mut sums = Vec::new();
        for _ in 0..2 {
            box_rows(&a, &mut b, rows, cols, jarosz_window(cols));
            box_cols(&b, &mut a, rows, cols, jarosz_window(rows), &mut sums);
        }
        let mut want = vec![0f32; 64 * 64];
        for i in 0..64 {
            for j in 0..64 {
                want[i * 64 + j] = a[decimate_index(i, rows) * cols + decimate_index(j, cols)];
            }
        }
        let mut hasher = PdqHasher::new();
        assert!(hasher.load_rgb(&img).is_some());
        hasher.downsample(rows, cols);
        assert_eq!(hasher.a64, want);
    }

    #[test]
    fn first_harmonic_image_sets_the_first_coefficient() {
        // A pure horizontal (or vertical) gradient has all its energy in frequency 0 along
        // the other axis, which PDQ drops, so its hash is rounding noise. The separable image
        // A[y][x] = 128 + 100 cos(pi (y + 0.5) / 64) cos(pi (x + 0.5) / 64) is, up to u8
        // rounding, a constant plus a multiple of d0 d0^T with d0 = D's first row (frequency
        // 1): as D's rows are orthonormal and orthogonal to the constant, B[0][0] = 3200 and
        // every other coefficient is rounding noise (|B| < 1).
        let (w, h) = (64u32, 64u32);
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                // Decreasing in both x and y: cos-like first harmonic in both directions.
                let fy = (std::f32::consts::PI * (y as f32 + 0.5) / 64.0).cos();
                let fx = (std::f32::consts::PI * (x as f32 + 0.5) / 64.0).cos();
                let v = (128.0 + 100.0 * fy * fx).round() as u8;
                pixels.extend_from_slice(&[v, v, v]);
            }
        }
        let img = RgbImage { width: w, height: h, pixels };
        let p = pdq(&img);
        // D's row 0 is the first harmonic cos(pi (2x+1) / 128) = cos(pi (x + 0.5) / 64): the
        // image is (close to) 100 * d0 d0^T / scale^2 plus a constant, so B[0][0] is large and
        // positive and every other coefficient is small; B[0][0] is above the median.
        assert!(p.hash.bit(0), "{}", p.hash);
        // The image is symmetric under rot180 (fy, fx both odd about the centre: product even),
        // so the rot180 variant (negate i + j odd) keeps B[0][0].
        let (all, q) = pdq_dihedral(&img);
        assert_eq!(all[0], p.hash);
        assert_eq!(q, p.quality);
        assert!(all[Dihedral::Rotate180.index()].bit(0));
        // A vertical flip negates the even rows, B[0][0] included.
        assert!(!all[Dihedral::FlipX.index()].bit(0));
        assert!(!all[Dihedral::FlipY.index()].bit(0));
        // Negating the image negates B[0][0]. (The other coefficients are ~0, many exactly
        // tied by the image's symmetry, so the rest of the hash is not simply complemented.)
        let inverted = RgbImage { pixels: img.pixels.iter().map(|v| 255 - v).collect(), ..img.clone() };
        assert!(!pdq(&inverted).hash.bit(0));
    }

    #[test]
    fn deterministic_and_reusable() {
        let img = photo(200, 150, 1);
        let a = pdq(&img);
        let mut hasher = PdqHasher::new();
        let other = photo(80, 300, 2);
        let _ = hasher.hash(&other);
        assert_eq!(hasher.hash(&img), a);
        assert_eq!(pdq(&img), a);
        assert_eq!(hasher.hash_luma(&luma(&img), 200, 150), a);
        let (all, q) = hasher.hash_dihedral(&img);
        assert_eq!((all[0], q), (a.hash, a.quality));
        assert_eq!(hasher.hash_luma_dihedral(&luma(&img), 200, 150), (all, q));
        // About half the bits are set (the median threshold).
        assert!((120..=128).contains(&a.hash.count_ones()), "{}", a.hash.count_ones());
        assert!(a.quality >= 50, "{}", a.quality);
    }

    #[test]
    fn tiny_and_malformed_images_hash_to_zero() {
        let tiny = photo(4, 100, 1);
        assert_eq!(pdq(&tiny), Pdq { hash: PdqHash::ZERO, quality: 0 });
        assert_eq!(pdq_dihedral(&tiny), ([PdqHash::ZERO; 8], 0));
        let mut broken = photo(20, 20, 1);
        broken.pixels.pop();
        assert_eq!(pdq(&broken).quality, 0);
        assert_eq!(PdqHasher::new().hash_luma(&[0.0; 10], 5, 5).quality, 0);
        // Five is enough.
        let five = photo(5, 5, 1);
        assert!(pdq(&five).hash.count_ones() > 0);
    }

    #[test]
    fn flat_images_have_low_quality() {
        for rgb in [[0, 0, 0], [128, 128, 128], [250, 10, 40]] {
            assert_eq!(pdq(&flat(100, 80, rgb)).quality, 0);
        }
        // A faint ramp is still "flat" for PDQ.
        let mut pixels = Vec::new();
        for _y in 0..100 {
            for x in 0..100u32 {
                let v = (100 + x / 10) as u8;
                pixels.extend_from_slice(&[v, v, v]);
            }
        }
        assert!(pdq(&RgbImage { width: 100, height: 100, pixels }).quality < 50);
    }

    #[test]
    fn resize_and_jpeg_keep_the_hash_unrelated_images_do_not() {
        let mut worst_same = 0;
        let mut best_unrelated = 256;
        for seed in 0..6 {
            let img = photo(400, 300, seed);
            let h = pdq(&img).hash;
            for variant in
                [resize(&img, 200, 150), resize(&img, 128, 96), jpeg(&img, 50), jpeg(&resize(&img, 300, 225), 75)]
            {
                worst_same = worst_same.max(h.distance(&pdq(&variant).hash));
            }
            for other in 0..6 {
                if other != seed {
                    best_unrelated = best_unrelated.min(h.distance(&pdq(&photo(400, 300, 100 + other)).hash));
                }
            }
        }
        // Measured: worst 20 (the 2x downscale: the Jarosz windows 4 vs 2 and the decimation
        // grid sample about a pixel apart), closest unrelated pair 110.
        assert!(worst_same <= 26, "same image: {worst_same}");
        assert!(best_unrelated >= 80, "unrelated: {best_unrelated}");
    }

    #[test]
    fn dihedral_variants_approximate_hashing_the_transformed_image() {
        // Worst distance per image size between a DCT-derived variant and the hash of the
        // transformed image. Not exact: an even box window is centred half a pixel off and the
        // decimation grid is not symmetric, so a flip or rotation moves the samples by about
        // a pixel. 64x64 skips both and is exact.
        for ((w, h), bound) in [((64, 64), 0), ((320, 240), 31), ((150, 210), 44)] {
            let mut worst = 0;
            for seed in 0..5 {
                let img = photo(w, h, seed);
                let (all, _) = pdq_dihedral(&img);
                for d in Dihedral::ALL {
                    let direct = pdq(&d.apply_rgb(&img)).hash;
                    worst = worst.max(all[d.index()].distance(&direct));
                    assert_eq!(pdq_dihedral_exact(&img).0[d.index()], direct);
                    // The wrong variant is far.
                    if d != Dihedral::Identity {
                        assert!(all[0].distance(&direct) > 60, "{d:?} {seed} {w}x{h}");
                    }
                }
            }
            // Measured: 0, 26, 40.
            assert!(worst <= bound, "{w}x{h}: {worst}");
        }
    }

    #[test]
    fn dihedral_apply_matches_its_table_and_inverse() {
        let img = photo(7, 5, 3);
        let px = |im: &RgbImage, r: usize, c: usize| {
            let at = (r * im.width as usize + c) * 3;
            [im.pixels[at], im.pixels[at + 1], im.pixels[at + 2]]
        };
        let (h, w) = (5usize, 7usize);
        let rot = Dihedral::Rotate90.apply_rgb(&img);
        assert_eq!((rot.width, rot.height), (5, 7));
        // Counter-clockwise: the top-right corner goes to the top-left.
        assert_eq!(px(&rot, 0, 0), px(&img, 0, w - 1));
        assert_eq!(px(&Dihedral::Rotate270.apply_rgb(&img), 0, 0), px(&img, h - 1, 0));
        assert_eq!(px(&Dihedral::FlipY.apply_rgb(&img), 1, 0), px(&img, 1, w - 1));
        assert_eq!(px(&Dihedral::FlipX.apply_rgb(&img), 0, 2), px(&img, h - 1, 2));
        assert_eq!(px(&Dihedral::Transverse.apply_rgb(&img), 0, 0), px(&img, h - 1, w - 1));
        for d in Dihedral::ALL {
            assert_eq!(d.inverse().apply_rgb(&d.apply_rgb(&img)), img, "{d:?}");
            assert_eq!(Dihedral::from_name(d.as_str()), Some(d));
            assert_eq!(serde_json::to_string(&d).ok(), Some(format!("\"{}\"", d.as_str())));
            let gray = luma(&photo(6, 6, 9));
            assert_eq!(d.inverse().apply_gray(&d.apply_gray(&gray, 6), 6), gray);
        }
        // The gray version agrees with the RGB one on a square.
        let sq = photo(6, 6, 9);
        for d in Dihedral::ALL {
            assert_eq!(d.apply_gray(&luma(&sq), 6), luma(&d.apply_rgb(&sq)), "{d:?}");
        }
        assert_eq!(Dihedral::Rotate90.apply_gray(&[1.0, 2.0, 3.0], 2), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    #[ignore = "timing; run with --release -- --ignored"]
    #[allow(clippy::print_stderr)]
    fn pdq_timing() {
        let mut hasher = PdqHasher::new();
        for (w, h) in [(128u32, 128u32), (128, 96), (64, 64), (32, 32), (500, 375), (1600, 1004)] {
            let img = photo(w, h, 1);
            let n = if w * h > 200_000 { 50 } else { 2000 };
            let _ = hasher.hash(&img);
            let start = std::time::Instant::now();
            let mut acc = 0u32;
            for _ in 0..n {
                acc ^= hasher.hash(&img).hash.0[0] as u32;
            }
            let per = start.elapsed() / n;
            let start = std::time::Instant::now();
            for _ in 0..n {
                acc ^= hasher.hash_dihedral(&img).0[3].0[1] as u32;
            }
            let per_d = start.elapsed() / n;
            eprintln!("pdq {w}x{h}: {per:?} per hash, {per_d:?} per dihedral set ({acc})");
        }
        // Stage split on 128x128.
        let img = photo(128, 128, 1);
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let _ = hasher.load_rgb(&img);
        }
        let load = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            hasher.downsample(128, 128);
        }
        let down = t.elapsed() / n;
        let t = std::time::Instant::now();
        let mut q = 0u32;
        for _ in 0..n {
            q += u32::from(quality_metric(&hasher.a64));
        }
        let qual = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            hasher.dct64_to_16();
        }
        let dct = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            q ^= threshold(&hasher.dct, &mut hasher.select).0[0] as u32;
        }
        let thr = t.elapsed() / n;
        eprintln!("128x128 stages: luma {load:?}, jarosz+decimate {down:?}, quality {qual:?}, dct {dct:?}, bits {thr:?} ({q})");
    }

    /// Hashes of Meta's C++ PDQ (through the `pdqhash` package), printed by
    /// `scripts/pdq_reference_vectors.py` for the images of [`reference_image`]: `(width, height,
    /// seed, quality, the 8 dihedral hashes in the reference's order)`.
    #[rustfmt::skip]
    const REFERENCE: [(u32, u32, u64, u8, [&str; 8]); 10] = [
        (5, 9, 1, 100, [
            "c6f1348dc6733b0e390ecb726e5b318c93a4348dc671c673398ccb723b0ec372",
            "a4b559ca5b4aa6351e0e1d8f34b7e270c1c859caa4b559ca5b4aa6353e171d8f",
            "93a49e27932691a46c5b61d83b0e9b26c6f19e2793246cd96cd961d86e5b69d8",
            "f1e0f3600e1f0c9f4b5bb72561e248da949df360f1e0f3600e1f0c9f6b42b725",
            "c4f1cb72c673c4f1390e348d6c5bce7393a4cb72c671398c398c348d3b0e3c8d",
            "91a461d893266e5b6c5b9e27390e64d9c6f161d8932493266cd99e276e5b9627",
            "a4b5a6355b4a59ca1e0ee270b6b71d8fc1c8a635a4b5a6355b4a59ca3e17e270",
            "f1e00c9f0e1ff3604b5b48dae3e2b725949d0c9ff1e00c9f0e1ff3606b4248da",
        ]),
        (32, 32, 2, 100, [
            "80fdf7225d42dcc54b4b249739573957c49a5b68b624223aa73cc0fd7f828716",
            "d4ad97b9473b8c9d3b468b54487b95b4948644bbc07c786288dc68d26f9360fb",
            "d5a85d880817766f1e1e8e3d6c0292fd91cff1c2c3718890f2696a572ad72dbc",
            "85f82d13126f26376e1721fe1d2e3f1ec1d3ee119529d2c8dd89c2783ac6ca51",
            "80fd08dd5d42233a4b4bdb683957c7a8849aa497b624ddc5a73c3f027f8278e9",
            "d5a8a2770817c9901e1ef1c26c026d02d1cf0e3de371776ff2699da82ad7f243",
            "d0ad78c6473a73623b4274ab487b6b4b9486bb44c07c879d88dc972d6f939f04",
            "85f8d26c124fd9c86e17de011d2ec0e1c1d311ee95292d37dd893d873ac635ae",
        ]),
        (32, 32, 3, 100, [
            "ef93552ec84d132dc85eacd430f074f08f5d4b0f132d4ecb532a2f1337328cc7",
            "bc8116a78706acd5acd53a68b0fe3f198711d07e532a707978f8c31ec85f4f0a",
            "bac6ff809d1839879d0b067e65a5de5ada08e1a54678e461067f85b96267266d",
            "f9d4bc0dd253067ff98090c2c5ab85bbd2447ac4067fdad32dad29b49d0ae5a0",
            "ef93aad1c84decd2c85e532b30f08b0f8f5db4f0132db134532ad0ec37327338",
            "bac6007f9f18c7789d0bf98165a521a5da081e5a46781bde077f7a466267d992",
            "ac81e9588706532aacd5c59790fed0ee87112f91532a8f8678f87ce1c85fb0f5",
            "e9d443f2d253f980f9806f3dc5ab7a44d244853b067f252c2dad964b9d0a1a5f",
        ]),
        (61, 97, 4, 100, [
            "cc8430f3c5d9f8e45a6a3266ff01b70103fe48dba594479b1e278f0c136e76a3",
            "b32445ae572120f49b4c5cc20f9fdc49f0f1833d5c8b9f0f28d66b514cdb9ca6",
            "99d19a59b08c524e0f3f99ccaa541dab57abe271f0c1ed316b7225a6463bdc09",
            "e671ef0402748a5ece19f6685aca76e3a5a4299709de35a57d83c1fb198e360c",
            "dc84cf0cc5d9071b5a6acd99ff0140fe03feb724a594b8641e2770f3136e895c",
            "89d165a6908cadb10f3f6733aa54ea5456ab1d8ef0c112ce4b72da59463b23f6",
            "b324ba5157215f0b9a4ca33d0f9f23b6f0f17cc25c8b60f028d694ae4cdb6359",
            "e67110fb227cf5a1cf1909975aca8d9ca5a4d66809deca5a7d833e04198ec9f3",
        ]),
        (64, 64, 5, 100, [
            "98ea6273bb454c9bc8dab0e4972e572eb8c14b1baf15b364443a1f8caf14cb58",
            "aeb326b664b2586b38e7ecd123779c889484136ec718a7949b4d58c9db488f1f",
            "85bbc8d9ee10c6319d0f1a4ec27bfd84ed94e1b1fa4019ce116f3526fa4161f2",
            "fbe60c1c31e7f2c1edb2467b36227622c9d1b9c4924d0d3ece1872638e1d25b5",
            "98ea9d8cbb45b364c8da4f1b972ea8d1b8c1b4e4af154c9b443ae073af1434a7",
            "85bb3426ee1019ce9d0fe5b1c27b027bed941e4efa40e631116f4ad9fa419e0d",
            "aeb3594964b2a794b8e7132e637723779c84ec91c718586b9b4d2736db4870e0",
            "fbe273e321e70d3e6db2b984362289ddc1d1463b924df2c1ce180d9c8e1dda4a",
        ]),
        (125, 94, 6, 100, [
            "0378a4a48e5cc49864b987bc4b1f4b5fb4e478c37a423b47f321437bdc8bda29",
            "7c8b6490c8f8ff042373837da73d78c25cc25e0bcc8d00fbbf07986f0376f4a0",
            "362d0e1edb096e32b1ec2d161e4ac1f5e1b1d2692e1791eda674e9d189de7083",
            "29dece3a9cad55ae762629d7f268d2690997f4a199d8aa51ea5232c556235e0a",
            "63785b4b8e5c3b67e4b978434b1f94a0b4e4873c7b42c4b8f321bc84dc8b25d6",
            "362df1e1db0991cdb1ecd2e91e4a1e0ae1b12d962e176e12a674162e89de8e7c",
            "748b1b6f48f800fb23737c82a73d871c5cc2a1f4cc8dbf04bf07679003760b5f",
            "29de31c59cadaa517626d628f2682d9609970b5e99d855aeea52cd3a5623a1f5",
        ]),
        (94, 125, 7, 100, [
            "d70a64d084bd7362b4a164a2637843789c8f8f0d4b5e8c9d6b52172fb0f7ec99",
            "a8d328d65e0b677900f9132a936c6c936c93acd53f069cc4a3f5df0994aed728",
            "825fce7ad1e8d9c8e1f4ce08362da9d2c9da21a71e0b26373e07bd85e5a24633",
            "7d84827c0b5e8dd315acb980c639463939c6067f6a53366cf6a075a3c1fb7d82",
            "560a832f84bd8c9db4a19b5d6378bc879c8f70f24b5e73626b52e8d030e71366",
            "825f3185d1e82637e1f431f7362d162dc9dada581e0bd9c83e07427ae5a2b9cc",
            "a8d3d7295e0b988600f9ecd5936c936c6c93532a3f06633ba3f520f694ae28d7",
            "fd867c830b5e322c55ac463fc63939c639c6f9806a53c991f6a08a5cc1fb827d",
        ]),
        (250, 188, 8, 100, [
            "6633526ab5a5d628a63569f2d6290a5f29d6960d59ca29d74a5aad9591ec827d",
            "3a4729d7ac948d9d05fc45bbdb49db4924b6aa44fe037262536bd628c5b854aa",
            "3366f8c0e0f07cc2f360c358837ca0f57c8334a70c9f837d1f0f073fc4b928d7",
            "6f12837df9c1273750e9ef118e1c71e371e310eeab56d8c8063e7c8290edfe00",
            "6633ad95b5a529d7a635960dd629f5a029d669f259cad6284a5a526a91ec7d82",
            "3366073fe0f0833df3603ca7837c5f0a7c83cb580c9f7c821f0ff8c0c4b9d728",
            "3a47d628ac94726205bcba44db4924b624b645bbfe038d9d536b29d7c5b8ab55",
            "6f127c82f9c1d8c850a910ee8e1c8e1c71e3ff11ab562737063e837d90ed01ff",
        ]),
        (500, 375, 9, 100, [
            "0d1aed924b5225b674a30c9fcf19ce1930e6f3e18a5cda4994ad126df0e5f1e1",
            "537b94ac58c3f720e73020f723740dbedccbdf0818cf08df873ceb51fc80f0a0",
            "58cf47381e070f1c21f6a6359a4c64b365b3594bdf0970e3c1f8b8c7a5b05b4b",
            "562e3e060d965d8ab2658a5df621af14899e75a24d9aa275d269c1fba9d55e0a",
            "0f9e926d4b52da4975a3f361cf1931e630e60c1e8a5c25b694aded92f0e50e1e",
            "58cfb8c71e07f0e321f659ca9a4c9b4c65b3a6b4df098f1cc1f84738a5b0a4b4",
            "437b6b5358c308dfe730df082374f2415ccb20f718cff720873c14aefc800f5f",
            "062ec1f90d96a275b26575a2762158eb899e8a5d4d9a5d8ad269be04a9d5a5f5",
        ]),
        (1024, 768, 10, 100, [
            "2b522a57263649dbc63811ee64b3aa549b4cee1139c7b624d9c9d5a996ada9d4",
            "09df65b3e371fb41d1e9d5a9e9d26b52162f2a562e1604be1c8e9a4cf620ad90",
            "3e0780fd5363e371936dbb4431e600fece1944bb6c921c8e8c9c7f03c3f8037e",
            "5c8acf19b62451eb84bc7f03bc87c1f8437a80fc7b43ae1449db30e6a375073a",
            "6b52d5a82636b624c638ee1164b355ab9b4c11ee39c749dbd9c92a5696ad562a",
            "3e077f0273631c8e936d44bb31e6ff01ce19bb446c92e3718c9c80fcc3f8fc80",
            "09df1a4ce37104bed1e92a56e9d294ad162fd5a92e16fb411c8e65b3f620526e",
            "5c8a30e69624ae1484bc80fcbc873e07437a7f037b4351eb49dbcf19a375f8c4",
        ]),
    ];

    /// The script's test image, from integers only, and its luma as `pdqhash` computes it:
    /// `float32(R * 0.299 + G * 0.587 + B * 0.114)` in float64, with R = G = B.
    fn reference_image(width: u32, height: u32, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        let grid: Vec<u64> = (0..81)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s % 200
            })
            .collect();
        let (w, h) = (u64::from(width), u64::from(height));
        let mut out = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                let v = (grid[((y * 9 / h) * 9 + x * 9 / w) as usize] + (x * 7 + y * 13 + seed * 5) % 56) % 256;
                let v = v as f64;
                out.push((v * 0.299 + v * 0.587 + v * 0.114) as f32);
            }
        }
        out
    }

    /// Bit-exact against the reference implementation, identity and the 8 variants from one
    /// DCT, at sizes that exercise every Jarosz window and decimation path (5 px to 1024 px).
    #[test]
    fn hashes_equal_metas_reference_implementation() {
        let mut hasher = PdqHasher::new();
        for (width, height, seed, quality, expected) in REFERENCE {
            let luma = reference_image(width, height, seed);
            let (w, h) = (width as usize, height as usize);
            let p = hasher.hash_luma(&luma, w, h);
            assert_eq!((p.hash.to_hex().as_str(), p.quality), (expected[0], quality), "{width}x{height}");
            let (variants, q) = hasher.hash_luma_dihedral(&luma, w, h);
            assert_eq!(q, quality);
            for ((hash, want), d) in variants.iter().zip(expected).zip(Dihedral::ALL) {
                assert_eq!(hash.to_hex(), want, "{width}x{height} {d:?}");
            }
        }
    }
}
