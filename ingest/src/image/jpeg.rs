//! JPEG header walk: dimensions, components and EXIF orientation without decoding.
//!
//! A JPEG is a sequence of marker segments (ITU T.81 annex B). The walk starts after SOI,
//! skips each segment by its length, and stops at SOS (the entropy-coded data starts
//! there), so its cost does not depend on the image size:
//!
//! ```text
//! FF D8 | FF E0 len "JFIF"... | FF E1 len "Exif\0\0" TIFF... | FF DB len DQT | FF C0 len SOF | ... | FF DA len SOS | entropy data | FF D9
//!  SOI    APP0                  APP1 (orientation)             tables          frame header        start of scan                  EOI
//! SOF payload: precision u8 | height u16 | width u16 | Nf u8 | Nf x (id u8, H<<4|V u8, Tq u8)
//! ```
//!
//! Tolerated as libjpeg and Pillow tolerate them: fill bytes (`FF FF ...`) before a marker,
//! junk bytes between segments, standalone markers (RSTn, TEM). Rejected: a missing or
//! second SOF, SOS or EOI before SOF, a segment length below 2 or past the end of the data
//! before SOF, zero width or height (a DNL-defined height, which libjpeg-turbo refuses), and
//! what neither libjpeg-turbo nor Pillow can decode (precision other than 8 bits, component
//! counts other than 1/3/4, hierarchical SOF5-7/13-15). Data cut off *after* a complete SOF
//! still yields the header: probing is not validation of the scan data.

use super::exif::{exif_orientation, Orientation};

/// What the frame header (SOFn) says about a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JpegInfo {
    /// The SOF marker's second byte (`0xC0` baseline, `0xC1` extended, `0xC2` progressive, ...).
    pub sof_marker: u8,
    /// 1 (grayscale), 3 (YCbCr or RGB) or 4 (CMYK or YCCK).
    pub components: u8,
    /// Progressive DCT (SOF2, SOF10): the whole image is held as coefficients while decoding.
    pub progressive: bool,
    /// Lossless (SOF3, SOF11): libjpeg-turbo cannot DCT-scale these.
    pub lossless: bool,
    /// Arithmetic entropy coding (SOF9-11).
    pub arithmetic: bool,
    /// Per component `H << 4 | V` sampling factors as stored in SOF; 0 past `components`.
    /// 4:2:0 is `[0x22, 0x11, 0x11, 0]`, 4:4:4 is `[0x11, 0x11, 0x11, 0]`.
    pub sampling_factors: [u8; 4],
}

impl JpegInfo {
    /// Size in pixels of one MCU (`8 * max H`, `8 * max V`): the alignment unit of
    /// libjpeg-turbo's partial decode at scale 1.
    pub fn mcu_size(&self) -> (u32, u32) {
        let mut max_h = 1;
        let mut max_v = 1;
        for &hv in &self.sampling_factors[..usize::from(self.components.min(4))] {
            max_h = max_h.max(u32::from(hv >> 4));
            max_v = max_v.max(u32::from(hv & 0x0F));
        }
        (8 * max_h, 8 * max_v)
    }
}

/// The result of [`parse_jpeg_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegHeader {
    pub width: u16,
    pub height: u16,
    pub info: JpegInfo,
    /// From the first APP1 `Exif` segment before SOS (Pillow keeps the first too).
    pub orientation: Orientation,
    /// Offset of the first SOS marker; `None` when the data ended before it.
    pub scan_offset: Option<usize>,
}

/// Walks the markers of `bytes` (which must start with SOI) up to SOS.
/// The error is a reason naming the offending marker and its byte offset.
pub(crate) fn parse_jpeg_header(bytes: &[u8]) -> Result<JpegHeader, String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("missing SOI marker FF D8 at byte 0".into());
    }
    let mut pos = 2;
    let mut frame: Option<(u16, u16, JpegInfo)> = None;
    let mut orientation: Option<Orientation> = None;
    loop {
        let Some((marker, marker_at)) = next_marker(bytes, &mut pos) else {
            return finish(frame, orientation, None, || {
                format!("no SOF marker before the end of the data at byte {}", bytes.len())
            });
        };
        match marker {
            // SOS: the scan data starts; everything a header can say has been said.
            0xDA => {
                return finish(frame, orientation, Some(marker_at), || {
                    format!("SOS marker at byte {marker_at} before any SOF marker")
                })
            }
            0xD9 => {
                return finish(frame, orientation, None, || {
                    format!("EOI marker at byte {marker_at} before any SOF marker")
                })
            }
            0xD8 => return Err(format!("second SOI marker at byte {marker_at}")),
            // Standalone markers carry no length (T.81 B.1.1.3).
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(length_bytes) = bytes.get(pos..pos + 2) else {
            return finish(frame, orientation, None, || {
                format!("marker FF {marker:02X} at byte {marker_at}: length cut off at the end of the data")
            });
        };
        let length = usize::from(u16::from_be_bytes([length_bytes[0], length_bytes[1]]));
        if length < 2 {
            return Err(format!("marker FF {marker:02X} at byte {marker_at}: segment length {length} < 2"));
        }
        let Some(payload) = bytes.get(pos + 2..pos + length) else {
            return finish(frame, orientation, None, || {
                format!(
                    "marker FF {marker:02X} at byte {marker_at}: segment of {length} bytes runs past the end of the data ({} bytes)",
                    bytes.len()
                )
            });
        };
        if is_sof(marker) {
            if frame.is_some() {
                return Err(format!("second SOF marker FF {marker:02X} at byte {marker_at}"));
            }
            frame = Some(
                parse_sof(marker, payload)
                    .map_err(|why| format!("SOF marker FF {marker:02X} at byte {marker_at}: {why}"))?,
            );
        } else if marker == 0xE1 && orientation.is_none() {
            if let Some(tiff) = payload.strip_prefix(b"Exif\0\0") {
                orientation = Some(exif_orientation(tiff).unwrap_or_default());
            }
        }
        pos += length;
    }
}

/// The header when a frame was seen, else the error `why` builds; the closure keeps the
/// success path free of allocation.
fn finish(
    frame: Option<(u16, u16, JpegInfo)>,
    orientation: Option<Orientation>,
    scan_offset: Option<usize>,
    why: impl FnOnce() -> String,
) -> Result<JpegHeader, String> {
    match frame {
        Some((width, height, info)) => {
            Ok(JpegHeader { width, height, info, orientation: orientation.unwrap_or_default(), scan_offset })
        }
        None => Err(why()),
    }
}

/// Whether an EOI marker (`FF D9`) follows the first SOS, i.e. the file was not cut off.
///
/// Pillow decodes until it reads EOI and reports "image file is truncated" otherwise, while
/// libjpeg-turbo's memory source invents an EOI and only warns; this check restores
/// Pillow's rule. Entropy-coded data cannot contain `FF D9` (an FF there is followed by 00
/// or RSTn), and thumbnails inside APP1 lie before SOS. The search runs backwards from the
/// end, so a complete file, whose EOI is its last two bytes or close to them, costs O(1).
pub(crate) fn has_eoi_after_scan(bytes: &[u8]) -> bool {
    let Ok(JpegHeader { scan_offset: Some(start), .. }) = parse_jpeg_header(bytes) else {
        return false;
    };
    let mut end = bytes.len();
    while end >= start + 2 {
        match bytes[start..end - 1].iter().rposition(|&b| b == 0xFF) {
            Some(i) if bytes[start + i + 1] == 0xD9 => return true,
            Some(i) => end = start + i + 1,
            None => return false,
        }
    }
    false
}

/// SOF0-3, 5-7, 9-11, 13-15; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF)
}

/// Finds the next marker at or after `*pos` as libjpeg's `next_marker` does: bytes other
/// than FF are skipped (junk), a run of FF is fill, `FF 00` is a stuffed byte (junk).
/// Returns the marker code and the offset of its FF, with `*pos` just past the code.
fn next_marker(bytes: &[u8], pos: &mut usize) -> Option<(u8, usize)> {
    loop {
        let start = *pos + bytes.get(*pos..)?.iter().position(|&b| b == 0xFF)?;
        let code_at = start + bytes[start..].iter().position(|&b| b != 0xFF)?;
        *pos = code_at + 1;
        if bytes[code_at] != 0x00 {
            return Some((bytes[code_at], code_at - 1));
        }
    }
}

fn parse_sof(marker: u8, payload: &[u8]) -> Result<(u16, u16, JpegInfo), String> {
    let [precision, h0, h1, w0, w1, components, ref specs @ ..] = *payload else {
        return Err(format!("segment of {} bytes is shorter than the 6-byte frame header", payload.len()));
    };
    if specs.len() != 3 * usize::from(components) {
        return Err(format!(
            "{components} components need {} bytes of component specs, the segment has {}",
            3 * usize::from(components),
            specs.len()
        ));
    }
    let height = u16::from_be_bytes([h0, h1]);
    let width = u16::from_be_bytes([w0, w1]);
    if width == 0 || height == 0 {
        return Err(format!("{width}x{height} image (a zero or DNL-defined size is not supported)"));
    }
    if precision != 8 {
        return Err(format!("{precision}-bit samples (only 8-bit JPEG is decodable, as in Pillow)"));
    }
    if matches!(marker, 0xC5..=0xC7 | 0xCD..=0xCF) {
        return Err("hierarchical JPEG is not supported by libjpeg-turbo or Pillow".into());
    }
    if !matches!(components, 1 | 3 | 4) {
        return Err(format!("{components} components (only 1, 3 or 4 are supported)"));
    }
    let mut sampling_factors = [0u8; 4];
    for (index, spec) in specs.chunks_exact(3).enumerate() {
        let hv = spec[1];
        if !(1..=4).contains(&(hv >> 4)) || !(1..=4).contains(&(hv & 0x0F)) {
            return Err(format!("component {index} has sampling factors {}x{} (must be 1-4)", hv >> 4, hv & 0x0F));
        }
        sampling_factors[index] = hv;
    }
    let info = JpegInfo {
        sof_marker: marker,
        components,
        progressive: matches!(marker, 0xC2 | 0xCA),
        lossless: matches!(marker, 0xC3 | 0xCB),
        arithmetic: matches!(marker, 0xC9..=0xCB),
        sampling_factors,
    };
    Ok((width, height, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, optional extra segments, a SOF, SOS, two bytes of "scan", EOI.
    fn jpeg_with(before_sof: &[u8], sof: &[u8]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        out.extend_from_slice(before_sof);
        out.extend_from_slice(sof);
        out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x12, 0x34, 0xFF, 0xD9]);
        out
    }

    fn sof(marker: u8, precision: u8, width: u16, height: u16, sampling: &[u8]) -> Vec<u8> {
        let length = 8 + 3 * sampling.len() as u16;
        let mut out = vec![0xFF, marker];
        out.extend_from_slice(&length.to_be_bytes());
        out.push(precision);
        out.extend_from_slice(&height.to_be_bytes());
        out.extend_from_slice(&width.to_be_bytes());
        out.push(sampling.len() as u8);
        for (id, &hv) in sampling.iter().enumerate() {
            out.extend_from_slice(&[id as u8 + 1, hv, 0]);
        }
        out
    }

    #[test]
    fn reads_size_and_frame_details() {
        let bytes = jpeg_with(&[0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB], &sof(0xC2, 8, 640, 480, &[0x22, 0x11, 0x11]));
        let header = parse_jpeg_header(&bytes).expect("valid header");
        assert_eq!((header.width, header.height), (640, 480));
        assert!(header.info.progressive && !header.info.lossless && !header.info.arithmetic);
        assert_eq!(header.info.components, 3);
        assert_eq!(header.info.sampling_factors, [0x22, 0x11, 0x11, 0]);
        assert_eq!(header.info.mcu_size(), (16, 16));
        assert_eq!(header.orientation, Orientation::Normal);
    }

    #[test]
    fn fill_bytes_junk_and_standalone_markers_are_skipped() {
        // FF FF FF fill before APP0, junk bytes, a stuffed FF 00 and RST0 between segments.
        let before = [0xFF, 0xFF, 0xFF, 0xE0, 0x00, 0x02, 0x13, 0x37, 0xFF, 0x00, 0xFF, 0xD0];
        let header = parse_jpeg_header(&jpeg_with(&before, &sof(0xC0, 8, 3, 5, &[0x11]))).expect("valid");
        assert_eq!((header.width, header.height, header.info.components), (3, 5, 1));
    }

    #[test]
    fn exif_orientation_is_picked_up() {
        let mut app1 = vec![0xFF, 0xE1, 0x00, 0x00];
        app1.extend_from_slice(b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0");
        let length = (app1.len() - 2) as u16;
        app1[2..4].copy_from_slice(&length.to_be_bytes());
        let header = parse_jpeg_header(&jpeg_with(&app1, &sof(0xC0, 8, 30, 20, &[0x11, 0x11, 0x11]))).expect("valid");
        assert_eq!(header.orientation, Orientation::Rotate90);
    }

    #[test]
    fn bad_frames_are_rejected_with_location() {
        let cases: [(Vec<u8>, &str); 7] = [
            (
                sof(0xC0, 8, 0, 10, &[0x11]),
                "SOF marker FF C0 at byte 2: 0x10 image (a zero or DNL-defined size is not supported)",
            ),
            (
                sof(0xC0, 8, 10, 0, &[0x11]),
                "SOF marker FF C0 at byte 2: 10x0 image (a zero or DNL-defined size is not supported)",
            ),
            (
                sof(0xC1, 12, 10, 10, &[0x11]),
                "SOF marker FF C1 at byte 2: 12-bit samples (only 8-bit JPEG is decodable, as in Pillow)",
            ),
            (
                sof(0xC5, 8, 10, 10, &[0x11]),
                "SOF marker FF C5 at byte 2: hierarchical JPEG is not supported by libjpeg-turbo or Pillow",
            ),
            (
                sof(0xC0, 8, 10, 10, &[0x11, 0x11]),
                "SOF marker FF C0 at byte 2: 2 components (only 1, 3 or 4 are supported)",
            ),
            (
                sof(0xC0, 8, 10, 10, &[0x11, 0x51, 0x11]),
                "SOF marker FF C0 at byte 2: component 1 has sampling factors 5x1 (must be 1-4)",
            ),
            (
                vec![0xFF, 0xC0, 0x00, 0x0B, 8, 0, 1, 0, 1, 3, 1],
                "SOF marker FF C0 at byte 2: 3 components need 9 bytes of component specs, the segment has 3",
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(parse_jpeg_header(&jpeg_with(&[], &frame)), Err(expected.to_string()));
        }
    }

    #[test]
    fn structure_errors_are_rejected_with_location() {
        let ok_sof = sof(0xC0, 8, 10, 10, &[0x11]);
        let two_sofs = [ok_sof.clone(), ok_sof.clone()].concat();
        assert_eq!(parse_jpeg_header(&jpeg_with(&[], &two_sofs)), Err("second SOF marker FF C0 at byte 15".into()));
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xD9]),
            Err("EOI marker at byte 2 before any SOF marker".into())
        );
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]),
            Err("SOS marker at byte 2 before any SOF marker".into())
        );
        assert_eq!(parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xD8]), Err("second SOI marker at byte 2".into()));
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]),
            Err("marker FF E0 at byte 2: segment length 1 < 2".into())
        );
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x00]),
            Err("marker FF E0 at byte 2: segment of 16 bytes runs past the end of the data (7 bytes)".into())
        );
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0xFF]),
            Err("no SOF marker before the end of the data at byte 3".into())
        );
    }

    #[test]
    fn eoi_after_the_scan_is_found() {
        let bytes = jpeg_with(&[], &sof(0xC0, 8, 7, 9, &[0x11]));
        assert!(has_eoi_after_scan(&bytes));
        assert!(has_eoi_after_scan(&[&bytes[..], b"\0\0trailing \xFF\x00 junk"].concat()));
        assert!(!has_eoi_after_scan(&bytes[..bytes.len() - 1]));
        assert!(!has_eoi_after_scan(&bytes[..bytes.len() - 2]));
        // An EOI before SOS (inside an APP1 thumbnail) does not count.
        let thumbnail = [0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD8, 0xFF, 0xD9];
        let cut = jpeg_with(&thumbnail, &sof(0xC0, 8, 7, 9, &[0x11]));
        assert!(!has_eoi_after_scan(&cut[..cut.len() - 2]));
        assert!(!has_eoi_after_scan(b"\xFF\xD8\xFF\xD9"));
    }

    #[test]
    fn truncation_after_a_complete_sof_still_yields_the_header() {
        let bytes = jpeg_with(&[], &sof(0xC0, 8, 7, 9, &[0x11, 0x11, 0x11]));
        let sof_end = 2 + 2 + 17;
        for cut in 0..bytes.len() {
            let got = parse_jpeg_header(&bytes[..cut]);
            if cut < sof_end {
                assert!(got.is_err(), "cut at {cut}");
            } else {
                assert_eq!(got.map(|h| (h.width, h.height)), Ok((7, 9)), "cut at {cut}");
            }
        }
    }
}
