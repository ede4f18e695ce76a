//! The built-in 5x7 bitmap font that bitkit draws its captions and chart labels with.
//!
//! A font file or a text-rendering crate would make the pictures depend on what is installed;
//! the characters a caption or an axis label needs are few, and a fixed bitmap gives the same
//! bytes everywhere. Letters are drawn lowercase whatever their case; a character without a
//! glyph is drawn as a box so that it is visibly there.
//!
//! Text is laid out on a grid of [`ADVANCE`]-wide cells: a [`GLYPH_WIDTH`] x [`GLYPH_HEIGHT`]
//! glyph and one blank column. At `scale` k every font pixel becomes a k x k block.

/// Glyph width in font pixels.
pub const GLYPH_WIDTH: u32 = 5;
/// Glyph height in font pixels (short descenders included).
pub const GLYPH_HEIGHT: u32 = 7;
/// Glyph plus one column of spacing: the horizontal step from one character to the next.
pub const ADVANCE: u32 = GLYPH_WIDTH + 1;

/// The ink of `text` as `(column, row)` font pixels from its top-left corner, unscaled:
/// character `i` covers columns `i * ADVANCE .. i * ADVANCE + GLYPH_WIDTH`.
///
/// For callers with their own clipping rules (the contact sheet clips captions at the tile's
/// edge, not the image's); [`draw_text`] is the usual way in.
pub fn ink(text: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    text.chars().enumerate().flat_map(|(i, c)| {
        let x0 = i as u64 * u64::from(ADVANCE);
        glyph(c).into_iter().enumerate().flat_map(move |(row, bits)| {
            (0..GLYPH_WIDTH)
                .filter(move |col| bits & (0b10000 >> col) != 0)
                .map(move |col| (x0 + u64::from(col), row as u64))
        })
    })
}

/// Width in image pixels of the ink of `text` at `scale`: from the left edge of the first glyph
/// to the right edge of the last, without the spacing column after it. 0 for empty text;
/// saturates at `u32::MAX`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    let chars = text.chars().count() as u64;
    if chars == 0 {
        return 0;
    }
    let columns = chars.saturating_mul(u64::from(ADVANCE)) - 1;
    u32::try_from(columns.saturating_mul(u64::from(scale))).unwrap_or(u32::MAX)
}

/// Draws `text` with its top-left corner at `(x, y)` into `rgb`, an RGB8 image of
/// `width x height` pixels, row-major. Everything outside the image is dropped, so any
/// position, scale or text is safe; a buffer shorter than `width * height * 3` only loses
/// the pixels that would fall past its end.
#[allow(clippy::too_many_arguments)] // The flat form both callers use; a struct would only wrap it.
pub fn draw_text(rgb: &mut [u8], width: u32, height: u32, x: i64, y: i64, text: &str, scale: u32, color: [u8; 3]) {
    let step = i64::from(scale);
    let advance = i64::from(ADVANCE).saturating_mul(step);
    for (i, c) in text.chars().enumerate() {
        let gx = x.saturating_add((i as i64).saturating_mul(advance));
        // Every later glyph is further right still.
        if gx >= i64::from(width) {
            break;
        }
        for (row, bits) in glyph(c).into_iter().enumerate() {
            let top = y.saturating_add(row as i64 * step);
            for col in 0..GLYPH_WIDTH {
                if bits & (0b10000 >> col) != 0 {
                    let left = gx.saturating_add(i64::from(col) * step);
                    fill(rgb, width, height, (left, top), step, color);
                }
            }
        }
    }
}

/// Fills the `side x side` square at `corner`, clipped to the image.
fn fill(rgb: &mut [u8], width: u32, height: u32, corner: (i64, i64), side: i64, color: [u8; 3]) {
    let (x0, y0) = (corner.0.max(0), corner.1.max(0));
    let x1 = corner.0.saturating_add(side).min(i64::from(width));
    let y1 = corner.1.saturating_add(side).min(i64::from(height));
    if x0 >= x1 {
        return;
    }
    // All four are now within 0..=u32::MAX, so u128 offsets cannot overflow.
    let offset = |x: i64, y: i64| usize::try_from((y as u128 * u128::from(width) + x as u128) * 3).ok();
    for y in y0..y1 {
        let (Some(start), Some(end)) = (offset(x0, y), offset(x1, y)) else {
            return;
        };
        let Some(span) = rgb.get_mut(start..end) else {
            return;
        };
        for pixel in span.chunks_exact_mut(3) {
            pixel.copy_from_slice(&color);
        }
    }
}

/// 5x7 glyphs, one byte per row from the top, bit 4 = leftmost column. Letters are lowercase
/// forms (HD44780-style); `g`, `j`, `p`, `q`, `y` sit in the 7 rows with short descenders.
/// Anything else is a box.
pub fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_lowercase() {
        ' ' => [0; 7],
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        'a' => [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111],
        'b' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110],
        'c' => [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110],
        'd' => [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111],
        'e' => [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
        'f' => [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000],
        'g' => [0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'h' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'i' => [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110],
        'j' => [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100],
        'k' => [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010],
        'l' => [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'm' => [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001],
        'n' => [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'o' => [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110],
        'p' => [0b00000, 0b00000, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000],
        'q' => [0b00000, 0b00000, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001],
        'r' => [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000],
        's' => [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110],
        't' => [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110],
        'u' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101],
        'v' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'w' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010],
        'x' => [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001],
        'y' => [0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'z' => [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111],
        '_' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111],
        '-' => [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000],
        ':' => [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000],
        '.' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100],
        '=' => [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000],
        '/' => [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000],
        '(' => [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
        ')' => [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
        '#' => [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010],
        ',' => [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000],
        _ => [0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INK: [u8; 3] = [255, 255, 255];

    /// The inked pixels of an image, in row-major order.
    fn inked(rgb: &[u8], width: u32) -> Vec<(u32, u32)> {
        rgb.chunks_exact(3)
            .enumerate()
            .filter(|(_, p)| *p == INK)
            .map(|(i, _)| (i as u32 % width, i as u32 / width))
            .collect()
    }

    #[test]
    fn every_listed_character_has_a_glyph() {
        let boxed = glyph('\u{2603}');
        for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-:.=/()#,".chars() {
            assert_ne!(glyph(c), boxed, "{c:?}");
            assert!(glyph(c).iter().any(|&row| row != 0), "{c:?}");
        }
        assert_eq!(glyph('Q'), glyph('q'));
        assert_eq!(glyph(' '), [0; 7]);
        assert_eq!(glyph('?'), boxed);
    }

    #[test]
    fn draw_text_matches_ink_at_scale() {
        let (width, height) = (40, 20);
        let mut rgb = vec![0u8; 40 * 20 * 3];
        draw_text(&mut rgb, width, height, 3, 2, "1.e", 2, INK);
        let mut expected: Vec<(u32, u32)> = ink("1.e")
            .flat_map(|(c, r)| (0..4).map(move |k| (3 + c as u32 * 2 + k % 2, 2 + r as u32 * 2 + k / 2)))
            .collect();
        expected.sort_by_key(|&(x, y)| (y, x));
        assert_eq!(inked(&rgb, width), expected);
        // "1" at 2x: its top row is the single column 2, doubled.
        assert_eq!(inked(&rgb, width)[..2], [(7, 2), (8, 2)]);
    }

    #[test]
    fn draw_text_clips_at_every_border() {
        let (width, height) = (12, 9);
        let mut rgb = vec![0u8; 12 * 9 * 3];
        draw_text(&mut rgb, width, height, -3, -2, "#8#8", 1, INK);
        let mut whole = vec![0u8; 30 * 20 * 3];
        draw_text(&mut whole, 30, 20, 10, 10, "#8#8", 1, INK);
        let shifted: Vec<(u32, u32)> = inked(&whole, 30)
            .into_iter()
            .filter_map(|(x, y)| Some((x.checked_sub(13)?, y.checked_sub(12)?)))
            .filter(|&(x, y)| x < width && y < height)
            .collect();
        assert!(!shifted.is_empty());
        assert_eq!(inked(&rgb, width), shifted);
        // Far outside, huge scales, empty images and short buffers draw nothing and do not panic.
        for (x, y) in [(i64::MIN, 0), (i64::MAX, i64::MAX), (0, i64::MIN), (12, 0), (0, 9)] {
            let mut blank = vec![0u8; 12 * 9 * 3];
            draw_text(&mut blank, width, height, x, y, "abc", 1, INK);
            assert!(inked(&blank, width).is_empty(), "({x}, {y})");
        }
        draw_text(&mut rgb, width, height, 0, 0, "x", u32::MAX, INK);
        draw_text(&mut rgb, width, height, -5, -5, "xyz", 0, INK);
        draw_text(&mut [], 0, 0, 0, 0, "abc", 3, INK);
        draw_text(&mut [0u8; 5], 100, 100, 0, 0, "###", 3, INK);
    }

    #[test]
    fn text_width_spans_the_ink() {
        assert_eq!(text_width("", 3), 0);
        assert_eq!(text_width("a", 1), 5);
        assert_eq!(text_width("ab", 1), 11);
        assert_eq!(text_width("1.2k", 2), 46);
        assert_eq!(text_width("ab", u32::MAX), u32::MAX);
        let right = ink("x#").map(|(c, _)| c).max();
        assert_eq!(right, Some(u64::from(text_width("x#", 1)) - 1));
    }
}
