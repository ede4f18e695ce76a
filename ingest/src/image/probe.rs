//! Stub.
use super::ImageFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("empty image (0 bytes)")]
    Empty,
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("bad {format} header: {reason}")]
    BadHeader { format: &'static str, reason: String },
    #[error("{width}x{height} = {pixels} pixels exceeds the limit of {max_pixels}")]
    TooManyPixels { width: u32, height: u32, pixels: u64, max_pixels: u64 },
}

/// Reads format and dimensions from the header only; rejects more than `max_pixels`.
pub fn probe_image(_bytes: &[u8], _max_pixels: u64) -> Result<ImageInfo, ProbeError> {
    Err(ProbeError::Empty)
}
