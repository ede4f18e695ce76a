//! The PNG contact sheet of `bitkit loader inspect`: rendered samples in a grid, each with a
//! caption (label, class name, flip) under it, so a person can check crops, flips and labels
//! by eye.
//!
//! The captions use the built-in 5x7 bitmap font of [`crate::font`], so the picture does not
//! depend on what is installed.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::font::{self, GLYPH_HEIGHT};
use crate::LoaderError;

/// One sample of the grid.
#[derive(Debug, Clone)]
pub struct Tile<'a> {
    /// `size * size * 3` bytes, RGB, HWC.
    pub pixels: &'a [u8],
    /// Side of the square tile.
    pub size: u32,
    /// Drawn under the tile, clipped to its width.
    pub caption: String,
}

/// Pixels between tiles and around the sheet.
pub const GAP: u32 = 4;
/// Sheet background (dark grey, so black and white tiles both show their edges).
pub const BACKGROUND: [u8; 3] = [32, 32, 32];
/// Caption ink.
pub const INK: [u8; 3] = [255, 255, 255];
/// Tiles at least this wide get their captions at 2x.
pub const DOUBLE_CAPTION_FROM: u32 = 128;

/// Space between a tile and its caption, and under the caption (unscaled pixels).
const CAPTION_PAD: u32 = 2;

/// The largest sheet written, in pixels (about 1.5 GB of RGB): a guard against a caller
/// asking for millions of tiles, not a limit anyone should reach.
const MAX_SHEET_PIXELS: u64 = 1 << 29;

/// Lays `tiles` out `columns` to a row, left to right then top to bottom, each with its caption
/// under it, and writes the sheet to `path` as an RGB PNG. The file is written under a temporary
/// name in the same directory and renamed into place, so `path` is never left half-written.
///
/// Cells are as large as the largest tile; smaller tiles sit in the top-left corner of theirs.
pub fn grid_png(tiles: &[Tile<'_>], columns: usize, path: &Path) -> Result<(), LoaderError> {
    let fail = |reason: String| LoaderError::Write { path: path.to_path_buf(), reason };
    let (canvas, width, height) = compose(tiles, columns).map_err(fail)?;
    write_png_atomic(&canvas, width, height, path).map_err(fail)
}

/// The sheet's RGB bytes and its size.
fn compose(tiles: &[Tile<'_>], columns: usize) -> Result<(Vec<u8>, u32, u32), String> {
    if tiles.is_empty() {
        return Err("no tiles to draw".into());
    }
    if columns == 0 {
        return Err("a grid needs at least one column".into());
    }
    for (i, tile) in tiles.iter().enumerate() {
        let s = u64::from(tile.size);
        let need = s * s * 3;
        if tile.size == 0 || tile.pixels.len() as u64 != need {
            return Err(format!(
                "tile {i} ({:?}) has {} bytes for a {s}x{s} RGB tile, needs {need}",
                tile.caption,
                tile.pixels.len()
            ));
        }
    }
    let columns = columns.min(tiles.len());
    let rows = tiles.len().div_ceil(columns);
    let cell = tiles.iter().map(|t| t.size).max().unwrap_or(0);
    let band = tiles.iter().map(|t| caption_band(caption_scale(t.size))).max().unwrap_or(0);
    let (cell_w, cell_h) = (u64::from(cell) + u64::from(GAP), u64::from(cell) + u64::from(band) + u64::from(GAP));
    let width = u64::from(GAP) + columns as u64 * cell_w;
    let height = u64::from(GAP) + rows as u64 * cell_h;
    if width * height > MAX_SHEET_PIXELS {
        return Err(format!("a {width}x{height} sheet is larger than {MAX_SHEET_PIXELS} pixels"));
    }
    // Both fit in u32 and the byte count in usize: width * height <= 2^29.
    let (width, height) = (width as u32, height as u32);
    let mut sheet = Sheet { pixels: BACKGROUND.repeat(width as usize * height as usize), width };
    for (k, tile) in tiles.iter().enumerate() {
        let x0 = GAP + (k % columns) as u32 * cell_w as u32;
        let y0 = GAP + (k / columns) as u32 * cell_h as u32;
        sheet.blit(tile.pixels, tile.size, x0, y0);
        let scale = caption_scale(tile.size);
        sheet.text(&tile.caption, x0, y0 + tile.size + CAPTION_PAD * scale, x0 + tile.size, scale);
    }
    Ok((sheet.pixels, width, height))
}

fn caption_scale(tile_size: u32) -> u32 {
    if tile_size >= DOUBLE_CAPTION_FROM {
        2
    } else {
        1
    }
}

/// Height of the caption strip under a tile.
fn caption_band(scale: u32) -> u32 {
    (CAPTION_PAD + GLYPH_HEIGHT + CAPTION_PAD) * scale
}

/// An RGB8 canvas; every drawing call stays inside it by construction of the layout.
struct Sheet {
    pixels: Vec<u8>,
    width: u32,
}

impl Sheet {
    fn offset(&self, x: u32, y: u32) -> usize {
        (y as usize * self.width as usize + x as usize) * 3
    }

    /// Copies a `size x size` RGB tile with its top-left corner at `(x0, y0)`.
    fn blit(&mut self, tile: &[u8], size: u32, x0: u32, y0: u32) {
        let row_len = size as usize * 3;
        for (y, row) in tile.chunks_exact(row_len).enumerate() {
            let at = self.offset(x0, y0 + y as u32);
            if let Some(dst) = self.pixels.get_mut(at..at + row_len) {
                dst.copy_from_slice(row);
            }
        }
    }

    /// Draws `text` from `(x0, y0)` at `scale`, dropping pixels at or right of `x_end` (the
    /// tile's edge, not the sheet's, so [`font::draw_text`]'s clipping is not enough).
    fn text(&mut self, text: &str, x0: u32, y0: u32, x_end: u32, scale: u32) {
        for (col, row) in font::ink(text) {
            for dy in 0..scale {
                for dx in 0..scale {
                    let x = u64::from(x0) + col * u64::from(scale) + u64::from(dx);
                    if x < u64::from(x_end) {
                        self.put(x as u32, y0 + row as u32 * scale + dy, INK);
                    }
                }
            }
        }
    }

    fn put(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        let at = self.offset(x, y);
        if let Some(px) = self.pixels.get_mut(at..at + 3) {
            px.copy_from_slice(&rgb);
        }
    }
}

/// Encodes to `<file name>.<pid>.tmp` beside `path`, then renames over `path`: readers never
/// see a partial PNG, and two processes writing the same sheet do not share a temporary file.
fn write_png_atomic(rgb: &[u8], width: u32, height: u32, path: &Path) -> Result<(), String> {
    let name = path.file_name().ok_or_else(|| "the path has no file name".to_string())?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let written = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let mut out = BufWriter::new(file);
        PngEncoder::new(&mut out)
            .write_image(rgb, width, height, ExtendedColorType::Rgb8)
            .map_err(|e| format!("encoding a {width}x{height} PNG: {e}"))?;
        out.flush().map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("renaming {} into place: {e}", tmp.display()))
    })();
    if written.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(size: u32, seed: u8) -> Vec<u8> {
        (0..size * size * 3).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    fn read(path: &Path) -> image::RgbImage {
        image::open(path).expect("decodes").to_rgb8()
    }

    #[test]
    fn layout_dimensions_and_exact_tiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("grid.png");
        let pixels: Vec<Vec<u8>> = (0..5).map(|i| ramp(16, i * 40)).collect();
        let tiles: Vec<Tile> =
            pixels.iter().enumerate().map(|(i, p)| Tile { pixels: p, size: 16, caption: format!("{i}") }).collect();
        grid_png(&tiles, 3, &path).expect("writes");
        let img = read(&path);
        // 3 columns of 16 + gaps; 2 rows of 16 + an 11 px caption band (2 + 7 + 2) + gaps.
        assert_eq!(img.dimensions(), (4 + 3 * (16 + 4), 4 + 2 * (16 + 11 + 4)));
        for (k, p) in pixels.iter().enumerate() {
            let (x0, y0) = (4 + (k as u32 % 3) * 20, 4 + (k as u32 / 3) * 31);
            for y in 0..16 {
                for x in 0..16 {
                    let at = ((y * 16 + x) * 3) as usize;
                    assert_eq!(img.get_pixel(x0 + x, y0 + y).0, p[at..at + 3], "tile {k} ({x}, {y})");
                }
            }
        }
        // The unused sixth cell is background; no temporary file is left behind.
        assert_eq!(img.get_pixel(4 + 2 * 20 + 8, 4 + 31 + 8).0, BACKGROUND);
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("lists").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("grid.png")]);
    }

    #[test]
    fn captions_are_drawn_under_the_tile_and_clipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sheet.png");
        let small = vec![0u8; 8 * 8 * 3];
        let big = vec![0u8; 128 * 128 * 3];
        let tiles = [
            Tile { pixels: &small, size: 8, caption: "Label_7 (flip) #3, x=1/2: ok.-?".into() },
            Tile { pixels: &small, size: 8, caption: String::new() },
            Tile { pixels: &big, size: 128, caption: "42 dog flip".into() },
        ];
        grid_png(&tiles, 3, &path).expect("writes");
        let img = read(&path);
        let cell = 128 + 4;
        let band = caption_band(2);
        assert_eq!(img.dimensions(), (4 + 3 * cell, 4 + 128 + band + 4));
        let ink_in = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).filter(|&(x, y)| img.get_pixel(x, y).0 == INK).count()
        };
        // Tile 0: ink in its 8 px wide caption strip, none to the right of it (clipped).
        assert!(ink_in(4, 12, 12, 4 + cell) > 0);
        assert_eq!(ink_in(12, 4 + cell, 0, img.height()), 0);
        // Tile 1: empty caption, no ink.
        assert_eq!(ink_in(4 + cell, 4 + 2 * cell, 0, img.height()), 0);
        // Tile 2 (128 px): a 2x caption under the tile, and its first glyph "4" at 2x has
        // its vertical stroke ("00010" on rows 0-3) as a 2x2 block at column 3.
        let (x0, y0) = (4 + 2 * cell, 4 + 128 + 2 * 2);
        assert!(ink_in(x0, x0 + 128, y0, y0 + 14) > 100);
        for (dx, dy) in [(6, 0), (7, 0), (6, 1), (7, 1)] {
            assert_eq!(img.get_pixel(x0 + dx, y0 + dy).0, INK);
        }
        assert_eq!(img.get_pixel(x0, y0).0, BACKGROUND);
        // Tiles themselves stay untouched (black).
        assert!((0..128).all(|x| img.get_pixel(x0 + x, 4 + 127).0 == [0, 0, 0]));
    }

    #[test]
    fn bad_requests_are_write_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.png");
        let reason = |tiles: &[Tile<'_>], columns, path: &Path| match grid_png(tiles, columns, path) {
            Err(LoaderError::Write { path: p, reason }) => {
                assert_eq!(p, path);
                reason
            }
            other => panic!("expected a write error, got {other:?}"),
        };
        let px = vec![0u8; 4 * 4 * 3];
        let tile = Tile { pixels: &px, size: 4, caption: "a".into() };
        assert_eq!(reason(&[], 2, &path), "no tiles to draw");
        assert_eq!(reason(std::slice::from_ref(&tile), 0, &path), "a grid needs at least one column");
        let short = Tile { pixels: &px[1..], size: 4, caption: "b".into() };
        assert_eq!(
            reason(&[tile.clone(), short], 2, &path),
            "tile 1 (\"b\") has 47 bytes for a 4x4 RGB tile, needs 48"
        );
        let missing = dir.path().join("no/such/dir/g.png");
        assert!(reason(std::slice::from_ref(&tile), 1, &missing).starts_with("creating "));
        assert!(!path.exists());
        // More columns than tiles: the sheet is as wide as the tiles need.
        grid_png(&[tile], 10, &path).expect("writes");
        assert_eq!(read(&path).dimensions(), (4 + 8, 4 + 4 + 11 + 4));
    }
}
