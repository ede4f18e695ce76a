//! Stub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    Bmp,
    Webp,
    Tiff,
}

impl ImageFormat {
    /// The `format` column value: `jpeg`, `png`, `gif`, `bmp`, `webp`, `tiff`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Webp => "webp",
            ImageFormat::Tiff => "tiff",
        }
    }
}

pub fn sniff_format(_bytes: &[u8]) -> Option<ImageFormat> {
    None
}
