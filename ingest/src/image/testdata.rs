//! In-memory test images of every format and JPEG flavour, made at test time (STYLE 6:
//! fixtures are generated, never committed). JPEGs come from libjpeg-turbo's compressor,
//! which can write progressive, grayscale, CMYK and YCCK files; other formats from the
//! `image` crate; hostile headers are crafted byte by byte.

use std::io::{Cursor, Write as _};

use super::ImageFormat;

/// JPEG flavours the decoder must handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JpegKind {
    Baseline420,
    Baseline444,
    Progressive,
    Gray,
    /// Adobe YCCK (libjpeg's default for CMYK input), stored inverted as Photoshop does.
    Cmyk,
    /// Adobe CMYK without colour transform.
    CmykNoTransform,
}

/// A smooth gradient, so scaled decodes and resizes have something to average.
fn gradient(width: u32, height: u32) -> Vec<[u8; 3]> {
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height {
        for x in 0..width {
            out.push([(x * 255 / width.max(2)) as u8, (y * 255 / height.max(2)) as u8, ((x + y) % 256) as u8]);
        }
    }
    out
}

fn solid(width: u32, height: u32, rgb: [u8; 3]) -> Vec<[u8; 3]> {
    vec![rgb; width as usize * height as usize]
}

fn encode_jpeg(width: u32, height: u32, kind: JpegKind, rgb: &[[u8; 3]]) -> Vec<u8> {
    use turbojpeg::{Colorspace, PixelFormat, Subsamp};
    let mut compressor = turbojpeg::Compressor::new().expect("tj3Init");
    compressor.set_quality(95).expect("quality");
    let (format, pixels): (PixelFormat, Vec<u8>) = match kind {
        JpegKind::Gray => {
            compressor.set_subsamp(Subsamp::Gray).expect("subsamp");
            (
                PixelFormat::GRAY,
                rgb.iter().map(|p| ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as u8).collect(),
            )
        }
        JpegKind::Cmyk | JpegKind::CmykNoTransform => {
            compressor.set_subsamp(Subsamp::None).expect("subsamp");
            if kind == JpegKind::CmykNoTransform {
                compressor.set_colorspace(Colorspace::CMYK).expect("colorspace");
            }
            // Inverted storage with no black ink: stored (C, M, Y, K) = (R, G, B, 255)
            // decodes to about (R, G, B) under Pillow's conversion.
            (PixelFormat::CMYK, rgb.iter().flat_map(|p| [p[0], p[1], p[2], 255]).collect())
        }
        JpegKind::Baseline444 => {
            compressor.set_subsamp(Subsamp::None).expect("subsamp");
            (PixelFormat::RGB, rgb.iter().flatten().copied().collect())
        }
        JpegKind::Baseline420 | JpegKind::Progressive => {
            compressor.set_subsamp(Subsamp::Sub2x2).expect("subsamp");
            compressor.set_progressive(kind == JpegKind::Progressive).expect("progressive");
            (PixelFormat::RGB, rgb.iter().flatten().copied().collect())
        }
    };
    compress(&mut compressor, &pixels, width, height, format)
}

/// Packed `pixels` of `format` through a configured compressor.
pub(crate) fn compress(
    compressor: &mut turbojpeg::Compressor,
    pixels: &[u8],
    width: u32,
    height: u32,
    format: turbojpeg::PixelFormat,
) -> Vec<u8> {
    let image = turbojpeg::Image {
        pixels,
        width: width as usize,
        pitch: width as usize * format.size(),
        height: height as usize,
        format,
    };
    compressor.compress_to_vec(image).expect("compresses")
}

/// A gradient JPEG of the given flavour.
pub(crate) fn jpeg(width: u32, height: u32, kind: JpegKind) -> Vec<u8> {
    encode_jpeg(width, height, kind, &gradient(width, height))
}

/// A single-colour JPEG of the given flavour.
pub(crate) fn jpeg_solid(width: u32, height: u32, kind: JpegKind, rgb: [u8; 3]) -> Vec<u8> {
    encode_jpeg(width, height, kind, &solid(width, height, rgb))
}

/// Left half pure red, right half pure blue (4:4:4, so no chroma bleeding at the seam).
pub(crate) fn jpeg_halves(width: u32, height: u32) -> Vec<u8> {
    let mut pixels = Vec::new();
    for _ in 0..height {
        for x in 0..width {
            pixels.push(if x < width / 2 { [255, 0, 0] } else { [0, 0, 255] });
        }
    }
    encode_jpeg(width, height, JpegKind::Baseline444, &pixels)
}

/// `jpeg` with an APP1 `Exif` segment (big-endian TIFF, IFD0 = one Orientation SHORT)
/// inserted right after SOI, where cameras put it.
pub(crate) fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, no next IFD
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&(2 + 6 + tiff.len() as u16).to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    [&jpeg[..2], &segment[..], &jpeg[2..]].concat()
}

/// SOI + a 3-component SOF0 claiming `width x height` + EOI: nothing to decode.
pub(crate) fn jpeg_header_only(width: u16, height: u16) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    out
}

fn with_image_crate(image: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encodes");
    out.into_inner()
}

fn rgb_image(width: u32, height: u32, pixels: &[[u8; 3]]) -> image::DynamicImage {
    let raw = pixels.iter().flatten().copied().collect();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(width, height, raw).expect("sized"))
}

fn all_formats(width: u32, height: u32, pixels: &[[u8; 3]]) -> Vec<(ImageFormat, Vec<u8>)> {
    let rgb = rgb_image(width, height, pixels);
    vec![
        (ImageFormat::Jpeg, encode_jpeg(width, height, JpegKind::Baseline420, pixels)),
        (ImageFormat::Png, with_image_crate(rgb.clone(), image::ImageFormat::Png)),
        (ImageFormat::Gif, with_image_crate(image::DynamicImage::ImageRgba8(rgb.to_rgba8()), image::ImageFormat::Gif)),
        (ImageFormat::Bmp, with_image_crate(rgb.clone(), image::ImageFormat::Bmp)),
        (ImageFormat::Webp, with_image_crate(rgb.clone(), image::ImageFormat::WebP)),
        (ImageFormat::Tiff, with_image_crate(rgb, image::ImageFormat::Tiff)),
    ]
}

/// One gradient image per supported format.
pub(crate) fn every_format(width: u32, height: u32) -> Vec<(ImageFormat, Vec<u8>)> {
    all_formats(width, height, &gradient(width, height))
}

/// One single-colour image per supported format.
pub(crate) fn every_format_solid(width: u32, height: u32, rgb: [u8; 3]) -> Vec<(ImageFormat, Vec<u8>)> {
    all_formats(width, height, &solid(width, height, rgb))
}

pub(crate) fn png_rgb(width: u32, height: u32) -> Vec<u8> {
    with_image_crate(rgb_image(width, height, &gradient(width, height)), image::ImageFormat::Png)
}

pub(crate) fn png_rgba16_solid(width: u32, height: u32, rgba: [u16; 4]) -> Vec<u8> {
    let raw = vec![rgba; width as usize * height as usize].concat();
    let buffer = image::ImageBuffer::<image::Rgba<u16>, _>::from_raw(width, height, raw).expect("sized");
    with_image_crate(image::DynamicImage::ImageRgba16(buffer), image::ImageFormat::Png)
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

fn ihdr(width: u32, height: u32, depth: u8, colour: u8) -> Vec<u8> {
    [&width.to_be_bytes()[..], &height.to_be_bytes(), &[depth, colour, 0, 0, 0]].concat()
}

/// Signature, a valid IHDR (correct CRC) claiming `width x height` RGB8, and IEND: a
/// decompression bomb's header with no data behind it.
pub(crate) fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut out = super::sniff::PNG_SIGNATURE.to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr(width, height, 8, 2));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// An 8-bit palette PNG (red, green) with a tRNS chunk making red fully transparent;
/// pixels alternate red, green.
pub(crate) fn png_palette_with_transparency(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for _ in 0..height {
        raw.push(0); // filter type None
        raw.extend((0..width).map(|x| (x % 2) as u8));
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&raw).expect("in-memory write");
    let idat = zlib.finish().expect("in-memory write");
    let mut out = super::sniff::PNG_SIGNATURE.to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr(width, height, 8, 3));
    png_chunk(&mut out, b"PLTE", &[255, 0, 0, 0, 255, 0]);
    png_chunk(&mut out, b"tRNS", &[0]);
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A 14-byte file header and a DIB header of `header_size` bytes claiming `width x height`.
pub(crate) fn bmp_header_only(header_size: u32, width: i32, height: i32) -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&(14 + header_size).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(14 + header_size).to_le_bytes());
    out.extend_from_slice(&header_size.to_le_bytes());
    if header_size == 12 {
        out.extend_from_slice(&(width as u16).to_le_bytes());
        out.extend_from_slice(&(height as u16).to_le_bytes());
        out.extend_from_slice(&[1, 0, 24, 0]);
    } else {
        out.extend_from_slice(&width.to_le_bytes());
        out.extend_from_slice(&height.to_le_bytes());
        out.extend_from_slice(&[1, 0, 24, 0]);
        out.resize(14 + header_size as usize, 0);
    }
    out
}

/// RIFF/WEBP with a lossy `VP8 ` key-frame header claiming `width x height`.
pub(crate) fn webp_vp8_header(width: u16, height: u16) -> Vec<u8> {
    let mut out = b"RIFF\x16\0\0\0WEBPVP8 \x0A\0\0\0".to_vec();
    out.extend_from_slice(&[0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]);
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out
}
