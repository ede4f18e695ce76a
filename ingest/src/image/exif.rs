//! EXIF orientation: reading tag 0x0112 from a TIFF structure and applying it to pixels.
//!
//! Cameras store the sensor's pixel grid and record how to display it in the EXIF
//! `Orientation` tag (EXIF 2.32 section 4.6.4, values 1-8). Pillow's `ImageOps.exif_transpose`
//! (which Hugging Face `datasets` calls on every decoded image) rotates the pixels upright;
//! bitkit's decode path does the same so dedup, the loader and a Python reader of the same
//! Parquet file all see the same upright image. Width and height stored at ingest stay the
//! header's, as Pillow's `Image.size` reports them before transposing.
//!
//! The TIFF reader here is shared by the EXIF parser (an APP1 `Exif\0\0` payload is a TIFF
//! file) and by the TIFF header probe. It reads only scalar SHORT/LONG entries of IFD0,
//! checks every offset against the buffer and allocates nothing.
//!
//! ```text
//! TIFF header (8 bytes)              IFD (at ifd0_offset)
//! +----+----+----------------+       +-------+-----------------------+-----+-----------------+
//! |II/MM| 42 | ifd0_offset u32|       | count | count x 12-byte entry | ... | next IFD offset |
//! +----+----+----------------+       +-------+-----------------------+-----+-----------------+
//! entry: tag u16 | type u16 (3 = SHORT, 4 = LONG) | count u32 | value (if <= 4 bytes) or offset
//! ```

use super::RgbImage;

/// How the stored pixels must be transformed for display (EXIF tag 0x0112).
///
/// The variant names say what [`apply_orientation`] does to the stored image; the
/// discriminant is the EXIF value. Pillow's `exif_transpose` uses the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Orientation {
    /// 1: already upright.
    #[default]
    Normal = 1,
    /// 2: mirror left-right.
    FlipHorizontal = 2,
    /// 3: rotate 180 degrees.
    Rotate180 = 3,
    /// 4: mirror top-bottom.
    FlipVertical = 4,
    /// 5: mirror along the main diagonal (Pillow `TRANSPOSE`).
    Transpose = 5,
    /// 6: rotate 90 degrees clockwise (Pillow `ROTATE_270`, which counts counter-clockwise).
    Rotate90 = 6,
    /// 7: mirror along the anti-diagonal (Pillow `TRANSVERSE`).
    Transverse = 7,
    /// 8: rotate 90 degrees counter-clockwise (Pillow `ROTATE_90`).
    Rotate270 = 8,
}

impl Orientation {
    /// The orientation for an EXIF value; `None` outside 1..=8 (Pillow then leaves the
    /// image alone, and so do we).
    pub fn from_exif(value: u32) -> Option<Orientation> {
        Some(match value {
            1 => Orientation::Normal,
            2 => Orientation::FlipHorizontal,
            3 => Orientation::Rotate180,
            4 => Orientation::FlipVertical,
            5 => Orientation::Transpose,
            6 => Orientation::Rotate90,
            7 => Orientation::Transverse,
            8 => Orientation::Rotate270,
            _ => return None,
        })
    }

    /// The EXIF value, 1..=8.
    pub fn exif_value(self) -> u16 {
        self as u16
    }

    /// Whether applying this orientation swaps width and height (values 5-8).
    pub fn swaps_dimensions(self) -> bool {
        matches!(
            self,
            Orientation::Transpose | Orientation::Rotate90 | Orientation::Transverse | Orientation::Rotate270
        )
    }

    /// `(width, height)` of a `width x height` stored image once displayed upright.
    pub fn oriented_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_dimensions() {
            (height, width)
        } else {
            (width, height)
        }
    }
}

/// TIFF tag numbers read by bitkit (TIFF 6.0 section 8, EXIF 2.32 table 4).
pub(crate) const TAG_IMAGE_WIDTH: u16 = 0x0100;
pub(crate) const TAG_IMAGE_LENGTH: u16 = 0x0101;
pub(crate) const TAG_ORIENTATION: u16 = 0x0112;

/// A TIFF byte stream whose header has been checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tiff<'a> {
    data: &'a [u8],
    big_endian: bool,
    ifd0_offset: usize,
}

impl<'a> Tiff<'a> {
    /// Checks the 8-byte header; the error names what is wrong and where.
    pub(crate) fn parse(data: &'a [u8]) -> Result<Tiff<'a>, String> {
        let big_endian = match data {
            [b'I', b'I', 0x2A, 0x00, ..] => false,
            [b'M', b'M', 0x00, 0x2A, ..] => true,
            _ if data.len() < 4 => return Err(format!("TIFF header cut off at {} bytes", data.len())),
            _ => return Err(format!("bad TIFF byte-order mark {:02x?}", &data[..4])),
        };
        let mut tiff = Tiff { data, big_endian, ifd0_offset: 0 };
        let offset = tiff.u32_at(4).ok_or_else(|| format!("IFD0 offset cut off at {} bytes", data.len()))?;
        tiff.ifd0_offset = usize::try_from(offset).map_err(|_| format!("IFD0 offset {offset} out of range"))?;
        Ok(tiff)
    }

    fn u16_at(&self, pos: usize) -> Option<u16> {
        let bytes: [u8; 2] = self.data.get(pos..pos.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) })
    }

    fn u32_at(&self, pos: usize) -> Option<u32> {
        let bytes: [u8; 4] = self.data.get(pos..pos.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian { u32::from_be_bytes(bytes) } else { u32::from_le_bytes(bytes) })
    }

    /// Looks up scalar (count 1, SHORT or LONG) entries of IFD0, one result per tag in
    /// `tags`; `None` for a tag that is absent. A tag present with another type or count
    /// is an error, as is an IFD that runs past the end of the data.
    pub(crate) fn ifd0_scalars<const N: usize>(&self, tags: [u16; N]) -> Result<[Option<u32>; N], String> {
        let ifd = self.ifd0_offset;
        let count = self
            .u16_at(ifd)
            .ok_or_else(|| format!("IFD0 at byte {ifd} lies past the end of the data ({} bytes)", self.data.len()))?;
        let mut found = [None; N];
        for index in 0..usize::from(count) {
            // 2 + 12 * 65535 cannot overflow; the addition to `ifd` is checked.
            let entry =
                ifd.checked_add(2 + 12 * index).ok_or_else(|| format!("IFD0 entry {index} offset overflows"))?;
            let (Some(tag), Some(kind), Some(n)) = (self.u16_at(entry), self.u16_at(entry + 2), self.u32_at(entry + 4))
            else {
                return Err(format!("IFD0 entry {index} at byte {entry} cut off (IFD0 declares {count} entries)"));
            };
            let Some(slot) = tags.iter().position(|&t| t == tag) else {
                continue;
            };
            if n != 1 {
                return Err(format!("tag {tag:#06x} at byte {entry} has count {n}, expected 1"));
            }
            let value = match kind {
                3 => self.u16_at(entry + 8).map(u32::from),
                4 => self.u32_at(entry + 8),
                other => {
                    return Err(format!("tag {tag:#06x} at byte {entry} has type {other}, expected SHORT or LONG"))
                }
            };
            found[slot] = Some(value.ok_or_else(|| format!("tag {tag:#06x} value at byte {} cut off", entry + 8))?);
        }
        Ok(found)
    }
}

/// The orientation recorded in an EXIF payload (the bytes after the `Exif\0\0` of a JPEG
/// APP1 segment, i.e. a TIFF structure). `None` when the payload is malformed or has no
/// valid orientation tag: broken metadata never makes an image unusable.
pub fn exif_orientation(tiff_bytes: &[u8]) -> Option<Orientation> {
    let tiff = Tiff::parse(tiff_bytes).ok()?;
    let [value] = tiff.ifd0_scalars([TAG_ORIENTATION]).ok()?;
    Orientation::from_exif(value?)
}

/// Rotates/flips `image` in place so it displays upright, as Pillow's
/// `ImageOps.exif_transpose`. Flips and 180 degrees swap pixels in place; the four
/// transposing orientations write into `scratch`, which is then swapped with the image's
/// buffer (so a caller that keeps `scratch` allocates nothing in steady state).
pub fn apply_orientation(image: &mut RgbImage, orientation: Orientation, scratch: &mut Vec<u8>) {
    let width = image.width as usize;
    let height = image.height as usize;
    let row_bytes = width * 3;
    debug_assert_eq!(image.pixels.len(), row_bytes * height, "RgbImage invariant");
    if width == 0 || height == 0 || image.pixels.len() != row_bytes * height {
        return;
    }
    match orientation {
        Orientation::Normal => {}
        Orientation::FlipHorizontal => {
            for row in image.pixels.chunks_exact_mut(row_bytes) {
                reverse_pixels(row);
            }
        }
        Orientation::FlipVertical => flip_rows(&mut image.pixels, row_bytes),
        Orientation::Rotate180 => {
            // Reversing the pixel sequence mirrors both axes at once.
            reverse_pixels(&mut image.pixels);
        }
        Orientation::Transpose | Orientation::Rotate90 | Orientation::Transverse | Orientation::Rotate270 => {
            scratch.clear();
            scratch.resize(image.pixels.len(), 0);
            // Each arm maps a source pixel (sx, sy) to its output position (ox, oy) in an
            // output `height` wide and `width` tall.
            let (w, h) = (width, height);
            match orientation {
                Orientation::Transpose => transpose_into(image, scratch, |sx, sy| (sy, sx)),
                Orientation::Rotate90 => transpose_into(image, scratch, |sx, sy| (h - 1 - sy, sx)),
                Orientation::Transverse => transpose_into(image, scratch, |sx, sy| (h - 1 - sy, w - 1 - sx)),
                _ => transpose_into(image, scratch, |sx, sy| (sy, w - 1 - sx)),
            }
            std::mem::swap(&mut image.pixels, scratch);
            image.width = height as u32;
            image.height = width as u32;
        }
    }
}

/// Writes each source pixel of `image` to `map(sx, sy)` in `out` (an image `image.height`
/// wide). Generic over `map` so each orientation gets its own inlined loop; walking the
/// source row by row keeps reads sequential.
fn transpose_into(image: &RgbImage, out: &mut [u8], map: impl Fn(usize, usize) -> (usize, usize)) {
    let row_bytes = image.width as usize * 3;
    let out_width = image.height as usize;
    for (sy, row) in image.pixels.chunks_exact(row_bytes).enumerate() {
        for (sx, pixel) in row.chunks_exact(3).enumerate() {
            let (ox, oy) = map(sx, sy);
            let at = (oy * out_width + ox) * 3;
            out[at..at + 3].copy_from_slice(pixel);
        }
    }
}

/// Reverses the order of the RGB triples in `pixels` (length a multiple of 3).
fn reverse_pixels(pixels: &mut [u8]) {
    let count = pixels.len() / 3;
    for i in 0..count / 2 {
        let j = count - 1 - i;
        let (head, tail) = pixels.split_at_mut(j * 3);
        head[i * 3..i * 3 + 3].swap_with_slice(&mut tail[..3]);
    }
}

fn flip_rows(pixels: &mut [u8], row_bytes: usize) {
    let rows = pixels.len() / row_bytes;
    for top in 0..rows / 2 {
        let bottom = rows - 1 - top;
        let (head, tail) = pixels.split_at_mut(bottom * row_bytes);
        head[top * row_bytes..(top + 1) * row_bytes].swap_with_slice(&mut tail[..row_bytes]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian or big-endian TIFF with one IFD0 entry (tag, type, count, value).
    fn tiff_with_entry(big_endian: bool, tag: u16, kind: u16, count: u32, value: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let u16b = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        out.extend_from_slice(if big_endian { b"MM\0*" } else { b"II*\0" });
        out.extend_from_slice(&u32b(8));
        out.extend_from_slice(&u16b(1));
        out.extend_from_slice(&u16b(tag));
        out.extend_from_slice(&u16b(kind));
        out.extend_from_slice(&u32b(count));
        if kind == 3 {
            // A SHORT sits in the first two bytes of the value field.
            out.extend_from_slice(&u16b(value as u16));
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&u32b(value));
        }
        out.extend_from_slice(&u32b(0)); // no next IFD
        out
    }

    #[test]
    fn orientation_is_read_in_both_byte_orders_and_types() {
        for big_endian in [false, true] {
            for value in 1..=8u32 {
                let tiff = tiff_with_entry(big_endian, TAG_ORIENTATION, 3, 1, value);
                assert_eq!(exif_orientation(&tiff).map(|o| u32::from(o.exif_value())), Some(value));
            }
            let long = tiff_with_entry(big_endian, TAG_ORIENTATION, 4, 1, 6);
            assert_eq!(exif_orientation(&long), Some(Orientation::Rotate90));
        }
    }

    #[test]
    fn bad_or_missing_orientation_is_none() {
        assert_eq!(exif_orientation(&tiff_with_entry(false, TAG_ORIENTATION, 3, 1, 0)), None);
        assert_eq!(exif_orientation(&tiff_with_entry(false, TAG_ORIENTATION, 3, 1, 9)), None);
        assert_eq!(exif_orientation(&tiff_with_entry(false, TAG_ORIENTATION, 3, 2, 6)), None);
        assert_eq!(exif_orientation(&tiff_with_entry(false, TAG_ORIENTATION, 2, 1, 6)), None);
        assert_eq!(exif_orientation(&tiff_with_entry(false, 0x010F, 3, 1, 6)), None);
        assert_eq!(exif_orientation(b""), None);
        assert_eq!(exif_orientation(b"XX*\0\x08\0\0\0"), None);
        // IFD0 offset pointing far past the end.
        assert_eq!(exif_orientation(b"II*\0\xFF\xFF\xFF\xFF"), None);
    }

    #[test]
    fn truncated_tiff_never_panics() {
        let tiff = tiff_with_entry(true, TAG_ORIENTATION, 3, 1, 6);
        for cut in 0..tiff.len() {
            let got = exif_orientation(&tiff[..cut]);
            // The SHORT value ends at byte 20; anything shorter cannot hold it.
            if cut < 20 {
                assert_eq!(got, None, "cut at {cut}");
            }
        }
        assert_eq!(exif_orientation(&tiff), Some(Orientation::Rotate90));
    }

    #[test]
    fn ifd0_reports_type_errors_with_location() {
        let tiff = tiff_with_entry(false, TAG_IMAGE_WIDTH, 5, 1, 6);
        let got = Tiff::parse(&tiff).and_then(|t| t.ifd0_scalars([TAG_IMAGE_WIDTH]));
        assert_eq!(got, Err("tag 0x0100 at byte 10 has type 5, expected SHORT or LONG".to_string()));
    }

    fn numbered(width: u32, height: u32) -> RgbImage {
        let pixels = (0..width * height).flat_map(|i| [i as u8, (i >> 8) as u8, 7]).collect();
        RgbImage { width, height, pixels }
    }

    /// Every orientation agrees with the `image` crate's implementation of the EXIF table.
    #[test]
    fn apply_orientation_matches_image_crate() {
        for (width, height) in [(3, 2), (1, 4), (5, 5), (4, 1)] {
            for value in 1..=8u8 {
                let source = numbered(width, height);
                let mut ours = source.clone();
                let orientation = Orientation::from_exif(u32::from(value)).expect("1..=8 are valid");
                apply_orientation(&mut ours, orientation, &mut Vec::new());

                let buffer = image::RgbImage::from_raw(width, height, source.pixels.clone()).expect("sized");
                let mut theirs = image::DynamicImage::ImageRgb8(buffer);
                theirs.apply_orientation(image::metadata::Orientation::from_exif(value).expect("1..=8 are valid"));
                let theirs = theirs.into_rgb8();
                assert_eq!((ours.width, ours.height), theirs.dimensions(), "value {value}");
                assert_eq!(ours.pixels, theirs.into_raw(), "{width}x{height}, value {value}");
                assert_eq!(orientation.oriented_size(width, height), (ours.width, ours.height), "value {value}");
            }
        }
    }

    #[test]
    fn rotate90_moves_the_bottom_left_pixel_to_the_top_left() {
        // 2x2: [a b / c d] rotated clockwise is [c a / d b].
        let mut image = RgbImage { width: 2, height: 2, pixels: vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4] };
        apply_orientation(&mut image, Orientation::Rotate90, &mut Vec::new());
        assert_eq!(image.pixels, [3, 3, 3, 1, 1, 1, 4, 4, 4, 2, 2, 2]);
    }
}
