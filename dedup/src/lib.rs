//! bitkit-dedup: find (near-)duplicates of downstream test images inside an upstream dataset,
//! as BiT did before pre-training (its Table 7).
//!
//! - [`pdq`]: the PDQ-style 256-bit DCT hash with its quality score and the 8 dihedral
//!   variants from one DCT.
//! - [`views`]: canonical views of an image (border trimming, full frame, centre square, the
//!   32x32 CIFAR channel) and the aligned grayscale thumbnails verification compares.
//! - [`shear`]: the sheared CIFAR channel, which makes one-axis patterns (stripes, wood
//!   grain) hashable: PDQ's DCT block has no energy for them.
//! - [`verify`]: pixel-level verification of a candidate pair (NCC and SSIM).
//! - [`search`]: exact Hamming range search over the test-side index (multi-index hashing
//!   and a flat scan; `blocked`: the cache-blocked, AVX-512 scan of many queries at once).
//! - [`testsets`]: the registry of downstream test sets and readers of their official
//!   downloads (CIFAR binaries, ILSVRC-2012 val tar, Oxford-IIIT Pet, Flowers-102 + MAT v5).
//! - [`report`]: the HTML report with thumbnails.

mod blocked;
pub mod error;
pub mod hashes;
pub mod pairs;
pub mod pdq;
pub mod report;
pub mod run;
pub mod search;
pub mod shear;
pub mod testsets;
pub mod verify;
pub mod views;

pub use error::DedupError;
