//! `report.html`: a self-contained report of a dedup run (DEDUP.md §10, "Outputs").
//!
//! One file, viewable offline: the CSS is inline, there is no script, and thumbnails are
//! embedded as base64 `data:` URIs (a Content-Security-Policy meta tag forbids anything else).
//! Sections: a summary table in the shape of BiT's Table 7 (per test set: test images,
//! candidates, verified near-duplicates, upstream rows removed), the verified pairs side by
//! side with their numbers, a sample of rejected candidates likewise, and the settings.
//! Every text field is HTML-escaped (upstream keys are arbitrary strings).

use std::fmt::Write as _;

use base64::Engine as _;

/// One candidate pair (upstream image vs test image) shown in the report.
#[derive(Debug, Clone, Copy)]
pub struct ReportPair<'a> {
    pub test_set: &'a str,
    pub test_index: u64,
    pub upstream_key: &'a str,
    /// Which canonical view matched (e.g. "full", "centre").
    pub view: &'a str,
    /// Which dihedral variant of the test image matched (e.g. "id", "hflip").
    pub dihedral: &'a str,
    /// PDQ Hamming distance.
    pub distance: u32,
    pub upstream_quality: u8,
    pub test_quality: u8,
    pub ncc: f32,
    pub ssim: f32,
    pub verdict: &'a str,
    /// PNG (or JPEG) bytes of the upstream thumbnail, e.g. from [`png_thumbnail`].
    pub upstream_thumb: Option<&'a [u8]>,
    pub test_thumb: Option<&'a [u8]>,
}

/// One row of the summary table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportCounts {
    pub test_set: String,
    pub test_images: u64,
    pub candidates: u64,
    pub verified: u64,
    pub upstream_rows_removed: u64,
}

/// Everything `report.html` shows.
#[derive(Debug, Clone, Default)]
pub struct Report<'a> {
    pub title: String,
    /// The upstream dataset's name or path.
    pub upstream: String,
    pub upstream_rows: u64,
    pub counts: Vec<ReportCounts>,
    pub verified: Vec<ReportPair<'a>>,
    pub rejected_sample: Vec<ReportPair<'a>>,
    /// Settings as (name, value), shown in order.
    pub settings: Vec<(String, String)>,
}

/// Escape text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#222;\
background:#fff}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .7em}td.n{text-align:right;\
font-variant-numeric:tabular-nums}th{background:#f3f3f3}.pairs{display:flex;flex-wrap:wrap;gap:1em}\
.pair{border:1px solid #ccc;padding:.5em;max-width:22em;font-size:.85em}.imgs{display:flex;gap:.5em}\
.imgs figure{margin:0;text-align:center}.imgs img{max-width:10em;max-height:10em;image-rendering:pixelated;\
border:1px solid #eee}.nothumb{width:6em;height:6em;display:flex;align-items:center;justify-content:center;\
background:#eee;color:#777}figcaption{color:#555}.key{word-break:break-all}dl{margin:.4em 0 0;\
display:grid;grid-template-columns:auto 1fr;gap:0 .6em}dt{color:#555}dd{margin:0}";

/// Render the whole report as one HTML document.
pub fn render_html(report: &Report) -> String {
    let mut h = String::with_capacity(
        8192 + (report.verified.len() + report.rejected_sample.len()) * 1024
            + report
                .verified
                .iter()
                .chain(&report.rejected_sample)
                .map(|p| p.upstream_thumb.map_or(0, <[u8]>::len) + p.test_thumb.map_or(0, <[u8]>::len))
                .sum::<usize>()
                * 4
                / 3,
    );
    let title = escape_html(&report.title);
    // `write!` into a `String` cannot fail (its `fmt::Write` impl is infallible), so the
    // results below are ignored with `let _`.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; \
         style-src 'unsafe-inline'\">\n<meta name=\"viewport\" content=\"width=device-width\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n\
         <p>Upstream: <b>{}</b>, {} rows.</p>\n",
        escape_html(&report.upstream),
        report.upstream_rows
    );

    h.push_str("<h2>Summary</h2>\n");
    if report.counts.is_empty() {
        h.push_str("<p>No test sets.</p>\n");
    } else {
        h.push_str(
            "<table>\n<thead><tr><th>Test set</th><th>Test images</th><th>Candidates</th>\
             <th>Verified near-duplicates</th><th>Upstream rows removed</th></tr></thead>\n<tbody>\n",
        );
        for c in &report.counts {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                escape_html(&c.test_set),
                c.test_images,
                c.candidates,
                c.verified,
                c.upstream_rows_removed
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }

    let _ = writeln!(h, "<h2>Verified pairs ({})</h2>", report.verified.len());
    render_pairs(&mut h, &report.verified);
    let _ = writeln!(h, "<h2>A sample of rejected candidates ({})</h2>", report.rejected_sample.len());
    render_pairs(&mut h, &report.rejected_sample);

    h.push_str("<h2>Settings</h2>\n");
    if report.settings.is_empty() {
        h.push_str("<p>None recorded.</p>\n");
    } else {
        h.push_str("<table>\n<tbody>\n");
        for (k, v) in &report.settings {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape_html(k), escape_html(v));
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn render_pairs(h: &mut String, pairs: &[ReportPair]) {
    if pairs.is_empty() {
        h.push_str("<p>None.</p>\n");
        return;
    }
    h.push_str("<div class=\"pairs\">\n");
    for p in pairs {
        let test_set = escape_html(p.test_set);
        let key = escape_html(p.upstream_key);
        h.push_str("<div class=\"pair\">\n<div class=\"imgs\">");
        thumb(h, p.upstream_thumb, &format!("upstream {key}"), "upstream");
        thumb(h, p.test_thumb, &format!("{test_set} #{}", p.test_index), "test");
        h.push_str("</div>\n");
        let _ = writeln!(
            h,
            "<dl><dt>test</dt><dd>{test_set} #{}</dd><dt>upstream</dt><dd class=\"key\">{key}</dd>\
             <dt>view</dt><dd>{} / {}</dd><dt>distance</dt><dd>{}</dd><dt>quality</dt><dd>{} up / {} test</dd>\
             <dt>NCC</dt><dd>{:.3}</dd><dt>SSIM</dt><dd>{:.3}</dd><dt>verdict</dt><dd>{}</dd></dl>\n</div>",
            p.test_index,
            escape_html(p.view),
            escape_html(p.dihedral),
            p.distance,
            p.upstream_quality,
            p.test_quality,
            p.ncc,
            p.ssim,
            escape_html(p.verdict)
        );
    }
    h.push_str("</div>\n");
}

/// One `<figure>`: the image as a data URI, or a placeholder. `alt` is already escaped.
fn thumb(h: &mut String, bytes: Option<&[u8]>, alt: &str, caption: &str) {
    h.push_str("<figure>");
    match bytes {
        Some(bytes) if !bytes.is_empty() => {
            let mime = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) { "image/jpeg" } else { "image/png" };
            let _ = write!(h, "<img alt=\"{alt}\" src=\"data:{mime};base64,");
            base64::engine::general_purpose::STANDARD.encode_string(bytes, h);
            h.push_str("\">");
        }
        _ => h.push_str("<div class=\"nothumb\">no image</div>"),
    }
    let _ = write!(h, "<figcaption>{caption}</figcaption></figure>");
}

/// Downscale an RGB8 image (area averaging) to fit in `max_side` x `max_side` (aspect kept,
/// never upscaled) and encode it as PNG.
///
/// Returns an empty vector if the input is malformed (`width` or `height` zero, or
/// `rgb.len() != width * height * 3`) or encoding fails; the report then shows a placeholder.
pub fn png_thumbnail(rgb: &[u8], width: u32, height: u32, max_side: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || w.checked_mul(h).and_then(|p| p.checked_mul(3)) != Some(rgb.len()) {
        return Vec::new();
    }
    let max_side = max_side.max(1);
    let (tw, th) = if width.max(height) <= max_side {
        (width, height)
    } else {
        let scale = f64::from(max_side) / f64::from(width.max(height));
        let fit = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, max_side);
        (fit(width), fit(height))
    };
    let resized;
    let pixels = if (tw, th) == (width, height) {
        rgb
    } else {
        resized = area_resize_rgb(rgb, w, h, tw as usize, th as usize);
        &resized[..]
    };
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut png);
    match image::ImageEncoder::write_image(encoder, pixels, tw, th, image::ExtendedColorType::Rgb8) {
        Ok(()) => png,
        Err(_) => Vec::new(),
    }
}

/// For each destination index, the source indices it covers and their area weights (sum 1).
fn area_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let lo = i as f64 * ratio;
            let hi = ((i + 1) as f64 * ratio).min(src as f64);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(src);
            (first..last)
                .filter_map(|j| {
                    let overlap = hi.min((j + 1) as f64) - lo.max(j as f64);
                    (overlap > 0.0).then(|| (j, (overlap / (hi - lo)) as f32))
                })
                .collect()
        })
        .collect()
}

/// Separable area (box) downsampling of RGB8; the caller checked the dimensions.
fn area_resize_rgb(rgb: &[u8], w: usize, h: usize, tw: usize, th: usize) -> Vec<u8> {
    let wx = area_weights(w, tw);
    let wy = area_weights(h, th);
    // Horizontal pass: h rows of tw pixels.
    let mut tmp = vec![0f32; h * tw * 3];
    for (src_row, tmp_row) in rgb.chunks_exact(w * 3).zip(tmp.chunks_exact_mut(tw * 3)) {
        for (x, taps) in wx.iter().enumerate() {
            let mut acc = [0f32; 3];
            for &(sx, wgt) in taps {
                for c in 0..3 {
                    acc[c] += wgt * f32::from(src_row[sx * 3 + c]);
                }
            }
            tmp_row[x * 3..x * 3 + 3].copy_from_slice(&acc);
        }
    }
    // Vertical pass.
    let mut out = vec![0u8; th * tw * 3];
    for (out_row, taps) in out.chunks_exact_mut(tw * 3).zip(&wy) {
        for (i, px) in out_row.iter_mut().enumerate() {
            let v: f32 = taps.iter().map(|&(sy, wgt)| wgt * tmp[sy * tw * 3 + i]).sum();
            *px = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&[(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 128]);
            }
        }
        v
    }

    fn pair<'a>(key: &'a str, up: Option<&'a [u8]>, test: Option<&'a [u8]>) -> ReportPair<'a> {
        ReportPair {
            test_set: "cifar10",
            test_index: 4242,
            upstream_key: key,
            view: "full",
            dihedral: "hflip",
            distance: 17,
            upstream_quality: 90,
            test_quality: 100,
            ncc: 0.9876,
            ssim: 0.912,
            verdict: "verified",
            upstream_thumb: up,
            test_thumb: test,
        }
    }

    /// Every `data:image/png;base64,...` payload in the document, decoded.
    fn data_uris(html: &str) -> Vec<Vec<u8>> {
        let marker = "data:image/png;base64,";
        let mut found = Vec::new();
        let mut rest = html;
        while let Some(pos) = rest.find(marker) {
            let after = &rest[pos + marker.len()..];
            let end = after.find('"').unwrap_or(after.len());
            found.push(base64::engine::general_purpose::STANDARD.decode(&after[..end]).unwrap_or_default());
            rest = &after[end..];
        }
        found
    }

    #[test]
    fn report_escapes_every_text_field() {
        let evil = "<script>alert('x')</script>&\"";
        let p = ReportPair { test_set: evil, view: evil, dihedral: evil, verdict: evil, ..pair(evil, None, None) };
        let report = Report {
            title: evil.to_string(),
            upstream: evil.to_string(),
            upstream_rows: 1,
            counts: vec![ReportCounts { test_set: evil.to_string(), ..Default::default() }],
            verified: vec![p],
            rejected_sample: vec![p],
            settings: vec![(evil.to_string(), evil.to_string())],
        };
        let html = render_html(&report);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("'x'"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        assert_eq!(escape_html("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&#39;c");
        // No external resources.
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn report_counts_appear() {
        let report = Report {
            title: "BiT dedup".into(),
            upstream: "imagenet21k".into(),
            upstream_rows: 14_197_122,
            counts: vec![
                ReportCounts {
                    test_set: "cifar10".into(),
                    test_images: 10_000,
                    candidates: 1234,
                    verified: 687,
                    upstream_rows_removed: 701,
                },
                ReportCounts {
                    test_set: "flowers102".into(),
                    test_images: 6149,
                    candidates: 3,
                    verified: 0,
                    upstream_rows_removed: 2,
                },
            ],
            settings: vec![("radius".into(), "31".into())],
            ..Default::default()
        };
        let html = render_html(&report);
        for needle in [
            "14197122",
            "<td>cifar10</td><td class=\"n\">10000</td><td class=\"n\">1234</td><td class=\"n\">687</td>\
             <td class=\"n\">701</td>",
            "<td>flowers102</td><td class=\"n\">6149</td><td class=\"n\">3</td><td class=\"n\">0</td>",
            "Verified near-duplicates",
            "Upstream rows removed",
            "<tr><th>radius</th><td>31</td></tr>",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        let summary = html.find("Summary").unwrap_or(usize::MAX);
        let verified = html.find("Verified pairs").unwrap_or(0);
        let rejected = html.find("A sample of rejected candidates").unwrap_or(0);
        let settings = html.find("<h2>Settings").unwrap_or(0);
        assert!(summary < verified && verified < rejected && rejected < settings);
    }

    #[test]
    fn report_images_embedded_and_decodable() {
        let up = png_thumbnail(&gradient(300, 200), 300, 200, 96);
        let test = png_thumbnail(&gradient(32, 32), 32, 32, 96);
        assert!(up.starts_with(&PNG_SIGNATURE) && test.starts_with(&PNG_SIGNATURE));
        let report = Report {
            title: "t".into(),
            verified: vec![pair("n01440764/a.JPEG", Some(&up), Some(&test))],
            rejected_sample: vec![pair("k", Some(&test), None)],
            ..Default::default()
        };
        let html = render_html(&report);
        let uris = data_uris(&html);
        assert_eq!(uris.len(), 3);
        assert_eq!(uris[0], up);
        assert_eq!(uris[1], test);
        for bytes in &uris {
            assert!(bytes.starts_with(&PNG_SIGNATURE));
            assert!(image::load_from_memory_with_format(bytes, image::ImageFormat::Png).is_ok());
        }
        assert!(html.contains("no image"));
        assert!(html.contains("<dd>17</dd>") && html.contains("<dd>0.988</dd>") && html.contains("<dd>0.912</dd>"));
    }

    #[test]
    fn report_empty_renders() {
        let html = render_html(&Report::default());
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert!(html.contains("Verified pairs (0)") && html.contains("None."));
        assert!(html.contains("No test sets."));
    }

    #[test]
    fn report_thumbnail_sizes_and_area_average() {
        let decode =
            |png: &[u8]| image::load_from_memory_with_format(png, image::ImageFormat::Png).map(|i| i.to_rgb8());
        let big = decode(&png_thumbnail(&gradient(300, 200), 300, 200, 96));
        assert_eq!(big.as_ref().map(|i| i.dimensions()).ok(), Some((96, 64)));
        let tall = decode(&png_thumbnail(&gradient(10, 1000), 10, 1000, 50));
        assert_eq!(tall.as_ref().map(|i| i.dimensions()).ok(), Some((1, 50)));
        // Smaller than max_side: kept as is, pixel-exact.
        let small = gradient(32, 32);
        let same = decode(&png_thumbnail(&small, 32, 32, 96));
        assert_eq!(same.map(|i| i.into_raw()).ok(), Some(small));
        // 2x2 -> 1x1 averages.
        let avg = decode(&png_thumbnail(&[0, 0, 0, 255, 255, 255, 100, 0, 0, 100, 0, 0], 2, 2, 1));
        assert_eq!(avg.map(|i| i.into_raw()).ok(), Some(vec![114, 64, 64]));
        // Malformed input: empty output, no panic.
        assert!(png_thumbnail(&[1, 2, 3], 2, 2, 8).is_empty());
        assert!(png_thumbnail(&[], 0, 0, 8).is_empty());
        assert!(png_thumbnail(&[], u32::MAX, u32::MAX, 8).is_empty());
        assert!(!png_thumbnail(&[1, 2, 3], 1, 1, 0).is_empty());
    }
}
