//! Stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// Interleaved RGB8, row-major, `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decode: {0}")]
pub struct DecodeError(pub String);

pub fn decode_rgb(_bytes: &[u8], _max_pixels: u64) -> Result<RgbImage, DecodeError> {
    Err(DecodeError("not implemented".into()))
}
