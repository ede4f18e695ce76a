//! Images: magic-byte sniffing, header probing, the shared decode path, `--max-side` re-encode.
//! (OWNER: helper B.) Stub: signatures only.

pub mod decode;
pub mod probe;
pub mod reencode;
pub mod sniff;

pub use decode::{decode_rgb, DecodeError, RgbImage};
pub use probe::{probe_image, ImageInfo, ProbeError};
pub use reencode::{reencode_max_side, ReencodeConfig};
pub use sniff::{sniff_format, ImageFormat};
