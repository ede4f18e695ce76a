//! Images: magic-byte sniffing, header probing, the shared decode path, `--max-side` re-encode.
//!
//! - [`sniff_format`] names the container from its first bytes ([`ImageFormat`], the
//!   `format` column), never from a file name.
//! - [`probe_image`] reads width, height, EXIF orientation and JPEG frame details from the
//!   header alone ([`ImageInfo`]), rejecting bombs by pixel count before anything is
//!   allocated. Ingest runs it on every record.
//! - [`Decoder`] (per thread) and the [`decode_rgb`] / [`decode_rgb_scaled`] conveniences
//!   are the only place bitkit turns bytes into pixels: upright RGB8 as Pillow would give,
//!   JPEG through libjpeg-turbo with optional DCT-domain downscaling ([`DctScale`]).
//! - [`reencode_max_side`] / [`Reencoder`] shrink images whose shorter side exceeds
//!   `--max-side` into 4:2:0 baseline JPEGs at ingest.
//!
//! Every parser here takes hostile bytes: errors are [`ProbeError`] / [`DecodeError`]
//! values naming the byte offset or the codec's reason, never panics.

pub mod decode;
pub mod exif;
mod jpeg;
pub mod probe;
pub mod reencode;
pub mod sniff;
mod turbo;

#[cfg(test)]
pub(crate) mod testdata;

pub use decode::{decode_rgb, decode_rgb_scaled, DecodeError, DecodedRegion, Decoder, RegionRequest, RgbImage};
pub use exif::Orientation;
pub use jpeg::JpegInfo;
pub use probe::{probe_image, ImageInfo, ProbeError};
pub use reencode::{
    max_side_target, reencode_max_side, ReencodeConfig, Reencoder, DEFAULT_REENCODE_MAX_SIDE, DEFAULT_REENCODE_QUALITY,
};
pub use sniff::{sniff_format, ImageFormat};
pub use turbo::DctScale;
