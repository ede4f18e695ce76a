//! Line charts of a training run (loss, learning rate, accuracy against step) as PNG files.
//!
//! A [`Chart`] is a few named [`Series`] of `(x, y)` points. [`render`] draws it into RGB8
//! pixels, [`encode_png`] turns pixels into PNG bytes and [`write_png`] does both and puts the
//! file in place atomically.
//!
//! Everything is drawn here, pixel by pixel, with the 5x7 bitmap font of
//! [`bitkit_loader::font`]: no plotting or font crate, nothing read from the system, no
//! anti-aliasing, so the same chart gives the same bytes on every machine and two runs' charts
//! can be compared by hash.
//!
//! ```text
//!             title
//!      +--------------------[legend]+
//!  2.5 |- - - - - - - - - - - - - - |   y: "nice" ticks (1, 2 or 5 x 10^k), or decades
//!    y |\                           |      when `log_y`
//!    l |  \___                      |
//!  0.5 |- - - - \________ - - - - - |
//!      +----------------------------+
//!      0     100    200    300    400   x: "nice" ticks
//!                   x label
//! ```
//!
//! Invariants: [`render`] returns exactly `width * height * 3` bytes for any chart, never
//! panics (non-finite points, points with `y <= 0` on a log axis, empty or single-point series,
//! identical, huge or subnormal values are all handled), and draws less as the image shrinks
//! (first the title and axis labels go, then the tick labels, down to frame and lines).

use std::path::{Path, PathBuf};

use bitkit_loader::font;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// One named line of a chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Shown in the legend; a series with an empty name has no legend entry.
    pub name: String,
    /// `(x, y)` in drawing order. Points with a non-finite coordinate are skipped, and so are
    /// points with `y <= 0` when the chart's y axis is logarithmic.
    pub points: Vec<(f64, f64)>,
}

/// What [`render`] draws.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    /// Centred above the plot; empty for none.
    pub title: String,
    /// Under the x axis; empty for none.
    pub x_label: String,
    /// Left of the y axis, reading upwards; empty for none.
    pub y_label: String,
    /// A logarithmic y axis with ticks at powers of ten (for learning rates and losses that
    /// span decades).
    pub log_y: bool,
    /// Drawn in order, each in the next colour of [`PALETTE`].
    pub series: Vec<Series>,
}

/// Why a chart could not be encoded or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("a {width}x{height} image: each side must be at least 1 and the area at most {MAX_PIXELS} pixels")]
    Size { width: u32, height: u32 },
    #[error("an RGB {width}x{height} image is {expected} bytes, got {got}")]
    BufferSize { width: u32, height: u32, expected: u64, got: usize },
    #[error("encoding a {width}x{height} PNG")]
    Encode {
        width: u32,
        height: u32,
        #[source]
        source: image::ImageError,
    },
    #[error("writing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("renaming {} to {}", from.display(), to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The largest chart [`encode_png`] and [`write_png`] accept (about 200 MB of RGB): a guard
/// against a width and height swapped for something else, far above any chart's size.
pub const MAX_PIXELS: u64 = 1 << 26;

/// Page colour.
pub const BACKGROUND: [u8; 3] = [255, 255, 255];
/// Text, tick marks.
pub const INK: [u8; 3] = [40, 40, 40];
/// The plot's border.
pub const FRAME: [u8; 3] = [90, 90, 90];
/// Lines at the major ticks.
pub const GRID: [u8; 3] = [222, 222, 222];
/// Lines at 2..9 x 10^k on a log axis.
pub const MINOR_GRID: [u8; 3] = [242, 242, 242];
/// The legend box's border.
pub const LEGEND_BORDER: [u8; 3] = [180, 180, 180];
/// Series colours, in order, repeating after the last (matplotlib's "tab10": distinct for the
/// common kinds of colour blindness and on grey print).
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// At least this wide and high, text is drawn at 2x (a 14 px line), which reads well at the
/// usual 800x500; below it, at 1x.
const DOUBLE_TEXT_FROM: (u32, u32) = (640, 400);
/// More ticks than this on an axis only clutter it.
const MAX_TICKS: usize = 10;

/// Draws `chart` into a `width x height` RGB8 image (row-major, `width * height * 3` bytes).
///
/// The caller picks the size; a size beyond memory fails the allocation like any `Vec`
/// ([`write_png`] refuses more than [`MAX_PIXELS`] before drawing).
pub fn render(chart: &Chart, width: u32, height: u32) -> Vec<u8> {
    let pixels = (width as usize).saturating_mul(height as usize);
    let mut canvas = Canvas { rgb: BACKGROUND.repeat(pixels), width, height };
    if pixels == 0 {
        return canvas.rgb;
    }
    let data = Data::new(chart);
    let layout = layout(chart, &data, width, height);
    draw_grid(&mut canvas, &layout);
    draw_axes(&mut canvas, chart, &layout);
    draw_series(&mut canvas, &data, &layout);
    draw_legend(&mut canvas, chart, &layout);
    canvas.rgb
}

/// Encodes RGB8 pixels as a PNG. The encoder's settings are fixed, so the same pixels give the
/// same bytes.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    check_size(width, height)?;
    let expected = u64::from(width) * u64::from(height) * 3;
    if rgb.len() as u64 != expected {
        return Err(PlotError::BufferSize { width, height, expected, got: rgb.len() });
    }
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(rgb, width, height, ExtendedColorType::Rgb8)
        .map_err(|source| PlotError::Encode { width, height, source })?;
    Ok(png)
}

/// Renders `chart` and writes it to `path` as a PNG: first to `<path>.tmp`, then renamed over
/// `path`, so a reader (a person refreshing the picture during training) never sees half a file.
pub fn write_png(chart: &Chart, width: u32, height: u32, path: &Path) -> Result<(), PlotError> {
    check_size(width, height)?;
    let png = encode_png(&render(chart, width, height), width, height)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written =
        std::fs::write(&tmp, &png).map_err(|source| PlotError::Io { path: tmp.clone(), source }).and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|source| PlotError::Rename {
                from: tmp.clone(),
                to: path.to_path_buf(),
                source,
            })
        });
    if written.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn check_size(width: u32, height: u32) -> Result<(), PlotError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 || pixels > MAX_PIXELS {
        return Err(PlotError::Size { width, height });
    }
    Ok(())
}

/// The drawable points of each series and their extent.
struct Data {
    series: Vec<Vec<(f64, f64)>>,
    /// `(min, max)` over all drawable points; `None` when there are none.
    x: Option<(f64, f64)>,
    y: Option<(f64, f64)>,
}

impl Data {
    fn new(chart: &Chart) -> Data {
        let drawable = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!chart.log_y || y > 0.0);
        let series: Vec<Vec<(f64, f64)>> =
            chart.series.iter().map(|s| s.points.iter().copied().filter(drawable).collect()).collect();
        let extent = |coordinate: fn(&(f64, f64)) -> f64| {
            series.iter().flatten().map(coordinate).fold(None, |range: Option<(f64, f64)>, v| match range {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })
        };
        let (x, y) = (extent(|p| p.0), extent(|p| p.1));
        Data { series, x, y }
    }
}

/// Where the plot sits in the image and what is drawn around it.
struct Layout {
    /// Text scale (1 or 2).
    scale: u32,
    detail: Detail,
    /// The frame, inclusive on all four sides; series are drawn inside it and over it.
    plot: Rect,
    x: Axis,
    y: Axis,
}

/// How much of the decoration fits, from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// Title, axis labels, tick labels, legend.
    Full,
    /// Tick labels and legend only.
    Ticks,
    /// Frame, grid and lines only.
    Bare,
}

/// Picks the most detailed layout whose plot is still large enough to read.
fn layout(chart: &Chart, data: &Data, width: u32, height: u32) -> Layout {
    let large = width >= DOUBLE_TEXT_FROM.0 && height >= DOUBLE_TEXT_FROM.1;
    let scale = if large { 2 } else { 1 };
    let tries = [(scale, Detail::Full), (scale, Detail::Ticks), (1, Detail::Full), (1, Detail::Ticks)];
    for (scale, detail) in tries {
        if let Some(layout) = text_layout(chart, data, width, height, scale, detail) {
            return layout;
        }
    }
    // Tiny images: a 2 px margin where there is room for one, then frame and lines.
    let margin = if width >= 8 && height >= 8 { 2 } else { 0 };
    let plot = Rect {
        left: margin,
        top: margin,
        right: i64::from(width) - 1 - margin,
        bottom: i64::from(height) - 1 - margin,
    };
    Layout { scale: 1, detail: Detail::Bare, plot, x: x_axis(data, 2), y: y_axis(chart, data, 2) }
}

/// Text metrics at one scale, in pixels.
struct Metrics {
    /// Gap between text and anything else.
    pad: i64,
    /// Height of a line of text.
    line: i64,
    /// Length of a tick mark outside the frame.
    tick: i64,
}

impl Metrics {
    fn new(scale: u32) -> Metrics {
        let s = i64::from(scale);
        Metrics { pad: 4 * s, line: i64::from(font::GLYPH_HEIGHT) * s, tick: 3 * s }
    }
}

/// The layout with tick labels (and, for [`Detail::Full`], title and axis labels) at `scale`,
/// or `None` when the plot left over would be too small to read.
fn text_layout(chart: &Chart, data: &Data, width: u32, height: u32, scale: u32, detail: Detail) -> Option<Layout> {
    let s = i64::from(scale);
    let Metrics { pad, line, tick } = Metrics::new(scale);
    let full = detail == Detail::Full;
    let title = full && !chart.title.is_empty();
    let x_label = full && !chart.x_label.is_empty();
    let y_label = full && !chart.y_label.is_empty();

    // Half a tick label sticks out above the top tick.
    let top = pad + if title { line + pad } else { 0 } + line / 2;
    let bottom = tick + pad / 2 + line + pad + if x_label { line + pad } else { 0 };
    let plot_height = i64::from(height) - 1 - top - bottom;
    if plot_height < 24 * s {
        return None;
    }
    let y = y_axis(chart, data, tick_target(plot_height, 40 * s));
    let labels_width = y.ticks.iter().map(|t| i64::from(font::text_width(&t.label, scale))).max().unwrap_or(0);
    let left = pad + if y_label { line + pad } else { 0 } + labels_width + pad / 2 + tick;
    // Room for half of the last x label; one that is wider is shifted left to fit.
    let right = 3 * pad;
    let plot_width = i64::from(width) - 1 - left - right;
    if plot_width < 40 * s {
        return None;
    }
    // Fewer x ticks until their labels stop touching.
    let mut target = tick_target(plot_width, 50 * s);
    let x = loop {
        let x = x_axis(data, target);
        let widest = x.ticks.iter().map(|t| i64::from(font::text_width(&t.label, scale))).max().unwrap_or(0);
        let gap = plot_width as f64 * x.spacing();
        if target <= 2 || gap >= (widest + 2 * i64::from(font::ADVANCE) * s) as f64 {
            break x;
        }
        target -= 1;
    };
    let plot = Rect { left, top, right: left + plot_width, bottom: top + plot_height };
    Some(Layout { scale, detail, plot, x, y })
}

/// How many ticks fit along `length` pixels at one per `spacing`.
fn tick_target(length: i64, spacing: i64) -> usize {
    usize::try_from(length / spacing.max(1)).unwrap_or(0).clamp(2, MAX_TICKS)
}

fn x_axis(data: &Data, target: usize) -> Axis {
    let (lo, hi) = data.x.unwrap_or((0.0, 1.0));
    linear_axis(lo, hi, target)
}

fn y_axis(chart: &Chart, data: &Data, target: usize) -> Axis {
    match (chart.log_y, data.y) {
        (true, Some((lo, hi))) => log_axis(lo, hi, target),
        (true, None) => log_axis(1.0, 10.0, target),
        (false, range) => {
            let (lo, hi) = range.unwrap_or((0.0, 1.0));
            linear_axis(lo, hi, target)
        }
    }
}

/// An axis: its range in axis units (the value, or its log10 on a log axis) and its ticks.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<Tick>,
    /// Unlabelled grid lines (2..9 x 10^k on a log axis), in axis units.
    minor: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Tick {
    /// In axis units.
    at: f64,
    label: String,
}

impl Axis {
    /// Where `value` (data units) falls between the axis's ends, 0 to 1; `None` for a value the
    /// axis cannot show.
    fn fraction(&self, value: f64) -> Option<f64> {
        let at = if self.log {
            if value <= 0.0 {
                return None;
            }
            value.log10()
        } else {
            value
        };
        at.is_finite().then(|| self.fraction_at(at))
    }

    /// [`Self::fraction`] of a position in axis units. Halving first keeps `hi - lo` finite
    /// for a range spanning most of the f64 line.
    fn fraction_at(&self, at: f64) -> f64 {
        (at / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
    }

    /// The smallest distance between neighbouring ticks, as a fraction of the axis.
    fn spacing(&self) -> f64 {
        self.ticks.windows(2).map(|w| self.fraction_at(w[1].at) - self.fraction_at(w[0].at)).fold(1.0, f64::min)
    }
}

/// A linear axis over data in `[lo, hi]` with at most about `target` intervals between ticks
/// at multiples of a "nice" step (1, 2 or 5 x 10^k), its ends rounded out to ticks.
fn linear_axis(lo: f64, hi: f64, target: usize) -> Axis {
    let (lo, hi) = widen(lo, hi);
    nice_linear_axis(lo, hi, target).unwrap_or_else(|| {
        // A range near the ends of f64, where steps and tick counts overflow: label the ends.
        let ticks = [lo, hi].map(|at| Tick { at, label: scientific_label(at, exponent_of(at) - 2) }).to_vec();
        Axis { log: false, lo, hi, ticks, minor: Vec::new() }
    })
}

/// A range with room between its ends: identical values (or ones too close for f64 to tell
/// apart on an axis) become +-10% around them, or -1..1 around zero.
fn widen(lo: f64, hi: f64) -> (f64, f64) {
    let magnitude = lo.abs().max(hi.abs());
    if hi - lo > magnitude * 1e-9 {
        return (lo, hi);
    }
    let middle = lo / 2.0 + hi / 2.0;
    if middle == 0.0 {
        return (-1.0, 1.0);
    }
    // MIN_POSITIVE: 10% of a subnormal value can round to nothing.
    let delta = (middle.abs() * 0.1).max(f64::MIN_POSITIVE);
    ((middle - delta).max(-f64::MAX), (middle + delta).min(f64::MAX))
}

fn nice_linear_axis(lo: f64, hi: f64, target: usize) -> Option<Axis> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return None;
    }
    let (step, exponent) = nice_step(span / target.max(1) as f64)?;
    let (first, last) = ((lo / step).floor(), (hi / step).ceil());
    let intervals = last - first;
    if !(first.is_finite() && last.is_finite() && intervals >= 1.0 && intervals <= 4.0 * MAX_TICKS as f64) {
        return None;
    }
    // `first + k` is an exact integer (|first| is far below 2^53 after `widen`), so the tick at
    // zero is exactly 0 and every tick is the same multiple of `step` each time.
    let values: Vec<f64> = (0..=intervals as u32).map(|k| (first + f64::from(k)) * step).collect();
    let (axis_lo, axis_hi) = (values.first().copied()?, values.last().copied()?);
    if !(axis_lo.is_finite() && axis_hi.is_finite() && axis_hi > axis_lo) {
        return None;
    }
    let labels = linear_labels(&values, exponent);
    let ticks = values.into_iter().zip(labels).map(|(at, label)| Tick { at, label }).collect();
    Some(Axis { log: false, lo: axis_lo, hi: axis_hi, ticks, minor: Vec::new() })
}

/// The smallest 1, 2 or 5 x 10^k at least `raw`, with its k.
fn nice_step(raw: f64) -> Option<(f64, i32)> {
    if !(raw.is_finite() && raw > 0.0) {
        return None;
    }
    let exponent = raw.log10().floor() as i32;
    let norm = raw / pow10(exponent);
    // The slack keeps a `raw` of exactly 5e-5 from becoming 1e-4 through `norm` = 5.000000001.
    let (mantissa, exponent) = match norm / (1.0 + 1e-9) {
        n if n <= 1.0 => (1.0, exponent),
        n if n <= 2.0 => (2.0, exponent),
        n if n <= 5.0 => (5.0, exponent),
        _ => (1.0, exponent + 1),
    };
    let step = mantissa * pow10(exponent);
    (step.is_finite() && step > 0.0).then_some((step, exponent))
}

/// 10^exponent, correctly rounded (`powi` is not), 0 or infinity beyond f64's range.
fn pow10(exponent: i32) -> f64 {
    format!("1e{exponent}").parse().unwrap_or(f64::NAN)
}

/// The decimal exponent of `value` in scientific notation (0 for 0).
fn exponent_of(value: f64) -> i32 {
    let formatted = format!("{value:e}");
    formatted.split_once('e').and_then(|(_, exponent)| exponent.parse().ok()).unwrap_or(0)
}

/// A log axis over data in `[lo, hi]` (both > 0), from the decade at or below `lo` to the one
/// at or above `hi`, a tick every 1, 2, 5, 10, ... decades so that at most about `target` fit.
fn log_axis(lo: f64, hi: f64, target: usize) -> Axis {
    // f64 spans 10^-324 to 10^309, so these casts are exact.
    let mut first = lo.log10().floor() as i32;
    let mut last = hi.log10().ceil() as i32;
    if last <= first {
        last = first + 1;
    }
    let decades = last - first;
    let stride = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
        .into_iter()
        .find(|&stride| decades.div_euclid(stride) <= target.max(1) as i32)
        .unwrap_or(1000);
    first = first.div_euclid(stride) * stride;
    last = -((-last).div_euclid(stride) * stride);
    let ticks =
        (first..=last).step_by(stride as usize).map(|e| Tick { at: f64::from(e), label: decade_label(e) }).collect();
    let minor = if stride == 1 {
        (first..last).flat_map(|e| (2..10).map(move |m| f64::from(e) + f64::from(m).log10())).collect()
    } else {
        Vec::new()
    };
    Axis { log: true, lo: f64::from(first), hi: f64::from(last), ticks, minor }
}

/// Labels for ticks that are multiples of 10^`exponent`, in one notation for the whole axis:
/// scientific when every tick is below 0.001 or some tick reaches 10^15, else plain decimals
/// with k/M/G/T from 1000 on. Each label has just the digits that tell it from its neighbours.
fn linear_labels(values: &[f64], exponent: i32) -> Vec<String> {
    let largest = values.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
    let scientific = largest > 0.0 && !(1e-3..1e15).contains(&largest);
    values.iter().map(|&v| if scientific { scientific_label(v, exponent) } else { plain_label(v, exponent) }).collect()
}

/// `1200` -> "1.2k", `0.003` -> "0.003", `-5` -> "-5".
fn plain_label(value: f64, exponent: i32) -> String {
    for (power, suffix) in [(12, "T"), (9, "G"), (6, "M"), (3, "k")] {
        if value.abs() >= pow10(power) {
            return format!("{}{suffix}", fixed(value / pow10(power), exponent - power));
        }
    }
    fixed(value, exponent)
}

/// `value` with the decimals a multiple of 10^`exponent` needs, trailing zeros dropped.
fn fixed(value: f64, exponent: i32) -> String {
    let decimals = exponent.saturating_neg().clamp(0, 17) as usize;
    tidy(format!("{value:.decimals$}"))
}

/// `3e-5` -> "3e-05", `1.5e20` -> "1.5e+20" (C's two-digit exponent, a fixed sign, so labels
/// line up).
fn scientific_label(value: f64, exponent: i32) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let decimals = (exponent_of(value) - exponent).clamp(0, 16) as usize;
    let formatted = format!("{value:.decimals$e}");
    let Some((mantissa, power)) = formatted.split_once('e') else {
        return formatted;
    };
    let power: i32 = power.parse().unwrap_or(0);
    let sign = if power < 0 { '-' } else { '+' };
    format!("{}e{sign}{:02}", tidy(mantissa.to_string()), power.unsigned_abs())
}

/// Drops trailing zeros after a decimal point, the point if nothing follows it, and the sign
/// of a zero.
fn tidy(mut number: String) -> String {
    if number.contains('.') {
        number.truncate(number.trim_end_matches('0').trim_end_matches('.').len());
    }
    if number == "-0" {
        number.remove(0);
    }
    number
}

/// The label of 10^`exponent`: "0.001" to "100", "1k" to "100T", else "1e-04", "1e+15".
fn decade_label(exponent: i32) -> String {
    match exponent {
        -3..=14 => plain_label(pow10(exponent), exponent),
        // Not through f64: 10^exponent may be beyond its range.
        _ => format!("1e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs()),
    }
}

/// An inclusive pixel rectangle; may lie partly or wholly outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl Rect {
    /// The column at fraction `t` of the way from left to right.
    fn x_at(&self, t: f64) -> i64 {
        self.left + (t.clamp(0.0, 1.0) * (self.right - self.left) as f64).round() as i64
    }

    /// The row at fraction `t` of the way from bottom to top.
    fn y_at(&self, t: f64) -> i64 {
        self.bottom - (t.clamp(0.0, 1.0) * (self.bottom - self.top) as f64).round() as i64
    }

    fn intersect(&self, other: &Rect) -> Rect {
        Rect {
            left: self.left.max(other.left),
            top: self.top.max(other.top),
            right: self.right.min(other.right),
            bottom: self.bottom.min(other.bottom),
        }
    }

    fn width(&self) -> i64 {
        self.right - self.left + 1
    }

    fn height(&self) -> i64 {
        self.bottom - self.top + 1
    }
}

/// An RGB8 image that clips every drawing call to itself.
struct Canvas {
    rgb: Vec<u8>,
    width: u32,
    height: u32,
}

impl Canvas {
    fn fill(&mut self, area: Rect, color: [u8; 3]) {
        let image = Rect { left: 0, top: 0, right: i64::from(self.width) - 1, bottom: i64::from(self.height) - 1 };
        let area = area.intersect(&image);
        if area.left > area.right {
            return;
        }
        let width = self.width as usize;
        // Inside the image, so every coordinate is a valid usize index.
        let (left, right) = (area.left as usize, area.right as usize);
        for y in area.top..=area.bottom {
            let row = y as usize * width;
            if let Some(span) = self.rgb.get_mut((row + left) * 3..(row + right + 1) * 3) {
                for pixel in span.chunks_exact_mut(3) {
                    pixel.copy_from_slice(&color);
                }
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, text: &str, scale: u32) {
        font::draw_text(&mut self.rgb, self.width, self.height, x, y, text, scale, INK);
    }

    /// Text turned a quarter left, reading upwards from `(x, bottom)`: the y axis label.
    fn text_up(&mut self, x: i64, bottom: i64, text: &str, scale: u32) {
        let s = i64::from(scale);
        for (column, row) in font::ink(text) {
            // Columns count along the text (up), rows across it (right); both are small.
            let (column, row) = (column as i64, row as i64);
            let left = x + row * s;
            let top = bottom - (column + 1) * s;
            self.fill(Rect { left, top, right: left + s - 1, bottom: top + s - 1 }, INK);
        }
    }
}

fn draw_grid(canvas: &mut Canvas, layout: &Layout) {
    let Layout { plot, x, y, .. } = layout;
    // Minor lines only where a decade has room for eight of them.
    let decade = plot.height() as f64 / (y.hi - y.lo);
    if decade >= 40.0 {
        for &at in &y.minor {
            let row = plot.y_at(y.fraction_at(at));
            canvas.fill(Rect { top: row, bottom: row, ..*plot }, MINOR_GRID);
        }
    }
    for tick in &y.ticks {
        let row = plot.y_at(y.fraction_at(tick.at));
        canvas.fill(Rect { top: row, bottom: row, ..*plot }, GRID);
    }
    for tick in &x.ticks {
        let column = plot.x_at(x.fraction_at(tick.at));
        canvas.fill(Rect { left: column, right: column, ..*plot }, GRID);
    }
}

/// Frame, tick marks and labels, title, axis labels.
fn draw_axes(canvas: &mut Canvas, chart: &Chart, layout: &Layout) {
    let Layout { scale, detail, plot, x, y } = layout;
    let plot = *plot;
    for edge in [
        Rect { bottom: plot.top, ..plot },
        Rect { top: plot.bottom, ..plot },
        Rect { right: plot.left, ..plot },
        Rect { left: plot.right, ..plot },
    ] {
        canvas.fill(edge, FRAME);
    }
    if *detail == Detail::Bare {
        return;
    }
    let scale = *scale;
    let Metrics { pad, line, tick } = Metrics::new(scale);
    let image_width = i64::from(canvas.width);
    let width_of = |text: &str| i64::from(font::text_width(text, scale));
    // A label centred on `x`, shifted just enough to stay inside the image.
    let centred = |x: i64, text: &str| (x - width_of(text) / 2).min(image_width - width_of(text)).max(0);

    for t in &x.ticks {
        let column = plot.x_at(x.fraction_at(t.at));
        canvas.fill(Rect { left: column, right: column, top: plot.bottom + 1, bottom: plot.bottom + tick }, INK);
        canvas.text(centred(column, &t.label), plot.bottom + 1 + tick + pad / 2, &t.label, scale);
    }
    for t in &y.ticks {
        let row = plot.y_at(y.fraction_at(t.at));
        canvas.fill(Rect { left: plot.left - tick, right: plot.left - 1, top: row, bottom: row }, INK);
        let label_x = plot.left - tick - pad / 2 - width_of(&t.label);
        canvas.text(label_x, row - line / 2, &t.label, scale);
    }
    if *detail != Detail::Full {
        return;
    }
    let middle = plot.left + plot.width() / 2;
    if !chart.title.is_empty() {
        canvas.text(centred(middle, &chart.title), pad, &chart.title, scale);
    }
    if !chart.x_label.is_empty() {
        let row = plot.bottom + 1 + tick + pad / 2 + line + pad;
        canvas.text(centred(middle, &chart.x_label), row, &chart.x_label, scale);
    }
    if !chart.y_label.is_empty() {
        // Centred on the plot, shifted down if longer than the image is high.
        let length = width_of(&chart.y_label);
        let bottom = (plot.top + plot.height() / 2 + length / 2).max(length.min(i64::from(canvas.height) - 1));
        canvas.text_up(pad, bottom, &chart.y_label, scale);
    }
}

/// Each series as a polyline in its colour, clipped to the frame; a series that lands on one
/// pixel is a small square so that it shows.
fn draw_series(canvas: &mut Canvas, data: &Data, layout: &Layout) {
    let Layout { detail, plot, x, y, .. } = layout;
    let thickness = if *detail == Detail::Bare { 1 } else { 2 };
    for (index, points) in data.series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let mut pixels: Vec<(i64, i64)> = points
            .iter()
            .filter_map(|&(px, py)| Some((plot.x_at(x.fraction(px)?), plot.y_at(y.fraction(py)?))))
            .collect();
        pixels.dedup();
        match pixels.as_slice() {
            [] => {}
            [(cx, cy)] => {
                let side = 3 * thickness;
                let (left, top) = (cx - (side - 1) / 2, cy - (side - 1) / 2);
                let square = Rect { left, top, right: left + side - 1, bottom: top + side - 1 };
                canvas.fill(square.intersect(plot), color);
            }
            _ => {
                for pair in pixels.windows(2) {
                    draw_segment(canvas, pair[0], pair[1], thickness, *plot, color);
                }
            }
        }
    }
}

/// Bresenham's line from `from` to `to`, a `thickness`-wide square at each step.
fn draw_segment(canvas: &mut Canvas, from: (i64, i64), to: (i64, i64), thickness: i64, clip: Rect, color: [u8; 3]) {
    let (dx, dy) = ((to.0 - from.0).abs(), -(to.1 - from.1).abs());
    let (step_x, step_y) = (if from.0 < to.0 { 1 } else { -1 }, if from.1 < to.1 { 1 } else { -1 });
    let (mut x, mut y) = from;
    let mut error = dx + dy;
    loop {
        let (left, top) = (x - (thickness - 1) / 2, y - (thickness - 1) / 2);
        let square = Rect { left, top, right: left + thickness - 1, bottom: top + thickness - 1 };
        canvas.fill(square.intersect(&clip), color);
        if (x, y) == to {
            break;
        }
        let doubled = 2 * error;
        if doubled >= dy {
            error += dy;
            x += step_x;
        }
        if doubled <= dx {
            error += dx;
            y += step_y;
        }
    }
}

/// Names and colours in a box at the top right of the plot, left out when it would not fit.
fn draw_legend(canvas: &mut Canvas, chart: &Chart, layout: &Layout) {
    let Layout { scale, detail, plot, .. } = layout;
    let entries: Vec<(usize, &str)> = chart
        .series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.name.is_empty())
        .map(|(i, s)| (i, s.name.as_str()))
        .collect();
    if entries.is_empty() || *detail == Detail::Bare {
        return;
    }
    let scale = *scale;
    let Metrics { pad, line, .. } = Metrics::new(scale);
    let s = i64::from(scale);
    let swatch = 14 * s;
    let row = line + 3 * s;
    let names = entries.iter().map(|(_, name)| i64::from(font::text_width(name, scale))).max().unwrap_or(0);
    let count = entries.len() as i64;
    let (box_width, box_height) = (pad + swatch + pad + names + pad, 2 * pad + count * row - 3 * s);
    if box_width > plot.width() - 2 * pad || box_height > plot.height() - 2 * pad {
        return;
    }
    let right = plot.right - pad;
    let frame =
        Rect { left: right - box_width + 1, top: plot.top + pad, right, bottom: plot.top + pad + box_height - 1 };
    canvas.fill(frame, LEGEND_BORDER);
    canvas.fill(
        Rect { left: frame.left + 1, top: frame.top + 1, right: frame.right - 1, bottom: frame.bottom - 1 },
        BACKGROUND,
    );
    for (k, (index, name)) in entries.iter().enumerate() {
        let top = frame.top + pad + k as i64 * row;
        let middle = top + line / 2;
        let left = frame.left + pad;
        let color = PALETTE[index % PALETTE.len()];
        canvas.fill(Rect { left, top: middle - 1, right: left + swatch - 1, bottom: middle }, color);
        canvas.text(left + swatch + pad, top, name, scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series { name: name.into(), points: points.to_vec() }
    }

    fn chart(log_y: bool, series: Vec<Series>) -> Chart {
        Chart { title: "loss".into(), x_label: "step".into(), y_label: "value".into(), log_y, series }
    }

    fn pixel(rgb: &[u8], width: u32, x: i64, y: i64) -> [u8; 3] {
        let at = (y as usize * width as usize + x as usize) * 3;
        [rgb[at], rgb[at + 1], rgb[at + 2]]
    }

    /// A loss curve falling over 500 steps and a warmup + step-decay learning rate.
    fn training_run() -> (Chart, Chart) {
        let loss = (0..=500)
            .map(|step| {
                let t = f64::from(step);
                (t, 2.3 * (-t / 120.0).exp() + 0.25 + 0.04 * (t * 0.7).sin())
            })
            .collect::<Vec<_>>();
        let eval =
            (0..=5).map(|k| (f64::from(k) * 100.0, 2.0 * (-f64::from(k) / 1.5).exp() + 0.35)).collect::<Vec<_>>();
        let lr = (0..=500)
            .map(|step| {
                let lr = 0.003
                    * match step {
                        s if s < 50 => f64::from(s + 1) / 50.0,
                        s if s < 200 => 1.0,
                        s if s < 350 => 0.1,
                        s if s < 450 => 0.01,
                        _ => 0.001,
                    };
                (f64::from(step), lr)
            })
            .collect::<Vec<_>>();
        let losses = chart(false, vec![series("train loss", &loss), series("eval loss", &eval)]);
        let rates = Chart {
            title: "learning rate".into(),
            x_label: "step".into(),
            y_label: "lr".into(),
            log_y: true,
            series: vec![series("lr", &lr)],
        };
        (losses, rates)
    }

    #[test]
    fn degenerate_charts_do_not_panic() {
        let big = f64::MAX;
        let point_sets: Vec<Vec<(f64, f64)>> = vec![
            vec![],
            vec![(3.0, 4.0)],
            vec![(1.0, 1.0); 5],
            vec![(0.0, 0.0), (0.0, 0.0)],
            vec![(f64::NAN, 1.0), (1.0, f64::INFINITY), (f64::NEG_INFINITY, f64::NAN)],
            vec![(f64::NAN, 1.0), (2.0, 3.0), (4.0, f64::NAN)],
            vec![(-big, -big), (big, big)],
            vec![(0.0, big), (1.0, big)],
            vec![(-big, 1.0), (big, 2.0)],
            vec![(1e300, 1e-300), (1e301, 1e300)],
            vec![(5e-324, 5e-324), (1e-323, 1e-323)],
            vec![(1e-310, -1e-310), (2e-310, 3e-310)],
            vec![(1e16, 1e16), (1e16 + 2.0, 1e16 + 4.0)],
            vec![(0.0, -5.0), (1.0, -7.0), (2.0, 0.0)],
            (0..10_000).map(|i| (f64::from(i), f64::from(i % 97) - 48.0)).collect(),
        ];
        let sizes =
            [(0, 0), (0, 10), (10, 0), (1, 1), (2, 3), (7, 7), (8, 8), (50, 30), (120, 80), (400, 300), (800, 500)];
        let mut charts = vec![Chart::default(), chart(false, vec![]), chart(true, vec![])];
        for log_y in [false, true] {
            for points in &point_sets {
                charts.push(chart(log_y, vec![series("a", points)]));
            }
            charts
                .push(chart(log_y, point_sets.iter().enumerate().map(|(i, p)| series(&format!("s{i}"), p)).collect()));
        }
        charts.push(Chart {
            title: "a very long title ".repeat(40),
            x_label: "x ".repeat(500),
            y_label: "\u{2603}".repeat(500),
            log_y: false,
            series: vec![series(&"n".repeat(300), &[(0.0, 1.0), (1.0, 2.0)]), series("", &[(0.5, 1.5)])],
        });
        for chart in &charts {
            for (width, height) in sizes {
                let rgb = render(chart, width, height);
                assert_eq!(rgb.len(), width as usize * height as usize * 3, "{width}x{height} {chart:?}");
            }
        }
    }

    #[test]
    fn diagonal_line_stays_inside_the_frame() {
        let chart = chart(false, vec![series("", &[(0.0, 0.0), (10.0, 10.0)])]);
        let (width, height) = (400, 300);
        let rgb = render(&chart, width, height);
        let plot = layout(&chart, &Data::new(&chart), width, height).plot;
        // The axis is exactly 0..10 (both ends are ticks), so the line runs corner to corner.
        let (w, h) = ((plot.right - plot.left) as f64, (plot.bottom - plot.top) as f64);
        for k in 0..=20 {
            let t = f64::from(k) / 20.0;
            let (x, y) = (plot.left + (t * w).round() as i64, plot.bottom - (t * h).round() as i64);
            let mut near = (-2..=2).flat_map(|dx| (-2..=2).map(move |dy| (x + dx, y + dy)));
            let hit = near.any(|(x, y)| x >= 0 && y >= 0 && pixel(&rgb, width, x, y) == PALETTE[0]);
            assert!(hit, "no line near ({x}, {y}) at t = {t}");
        }
        let mut coloured = 0;
        for y in 0..i64::from(height) {
            for x in 0..i64::from(width) {
                if pixel(&rgb, width, x, y) == PALETTE[0] {
                    coloured += 1;
                    let inside = (plot.left..=plot.right).contains(&x) && (plot.top..=plot.bottom).contains(&y);
                    assert!(inside, "line pixel ({x}, {y}) outside the frame {plot:?}");
                    // Near the diagonal, too: within 3 px of it along x.
                    let t = (plot.bottom - y) as f64 / h;
                    assert!((x as f64 - (plot.left as f64 + t * w)).abs() <= 3.0 * w / h + 3.0, "({x}, {y})");
                }
            }
        }
        assert!(coloured as f64 >= 2.0 * w.max(h), "{coloured} line pixels");
        // Grid lines and tick labels are there too.
        assert!(rgb.chunks_exact(3).any(|p| p == GRID));
        assert!(rgb.chunks_exact(3).any(|p| p == INK));
    }

    #[test]
    fn log_ticks_are_decades() {
        let axis = log_axis(3e-5, 0.2, 10);
        let labels: Vec<&str> = axis.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["1e-05", "1e-04", "0.001", "0.01", "0.1", "1"]);
        assert_eq!(axis.ticks.iter().map(|t| t.at).collect::<Vec<_>>(), [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0]);
        assert_eq!((axis.lo, axis.hi), (-5.0, 0.0));
        assert_eq!(axis.minor.len(), 5 * 8);
        assert_eq!(axis.fraction(1e-3), Some(0.4));
        assert_eq!(axis.fraction(0.0), None);
        // Many decades: every second, fifth, ... decade.
        let wide = log_axis(1e-30, 1e30, 10);
        assert_eq!(wide.ticks.len(), 7);
        assert_eq!(wide.ticks[0].label, "1e-30");
        assert_eq!(wide.ticks[3].label, "1");
        assert_eq!(wide.ticks[4].label, "10G");
        assert!(wide.minor.is_empty());
        // One value, exactly a power of ten: one decade above it.
        let single = log_axis(100.0, 100.0, 5);
        assert_eq!(single.ticks.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(), ["100", "1k"]);
        assert_eq!(
            log_axis(f64::MIN_POSITIVE / 1e10, f64::MAX, 10).ticks.last().map(|t| t.label.as_str()),
            Some("1e+400")
        );
    }

    #[test]
    fn linear_ticks_are_nice_and_compact() {
        let labels = |axis: Axis| axis.ticks.into_iter().map(|t| t.label).collect::<Vec<_>>();
        assert_eq!(labels(linear_axis(0.0, 500.0, 5)), ["0", "100", "200", "300", "400", "500"]);
        assert_eq!(labels(linear_axis(0.31, 2.4, 5)), ["0", "0.5", "1", "1.5", "2", "2.5"]);
        assert_eq!(labels(linear_axis(0.0, 0.003, 3)), ["0", "0.001", "0.002", "0.003"]);
        assert_eq!(labels(linear_axis(0.0, 3e-5, 3)), ["0", "1e-05", "2e-05", "3e-05"]);
        assert_eq!(labels(linear_axis(0.0, 12_000.0, 6)), ["0", "2k", "4k", "6k", "8k", "10k", "12k"]);
        assert_eq!(labels(linear_axis(1000.0, 1500.0, 5)), ["1k", "1.1k", "1.2k", "1.3k", "1.4k", "1.5k"]);
        assert_eq!(labels(linear_axis(-1.0, 1.0, 4)), ["-1", "-0.5", "0", "0.5", "1"]);
        assert_eq!(labels(linear_axis(0.0, 2.5e6, 5)), ["0", "500k", "1M", "1.5M", "2M", "2.5M"]);
        assert_eq!(labels(linear_axis(0.0, 3e20, 3)), ["0", "1e+20", "2e+20", "3e+20"]);
        assert_eq!(labels(linear_axis(0.0, 1.5e-4, 3)), ["0", "5e-05", "1e-04", "1.5e-04"]);
        // Identical values: +-10% around them, or -1..1 around zero.
        let around = linear_axis(5.0, 5.0, 4);
        assert!(around.lo < 5.0 && around.hi > 5.0, "{around:?}");
        assert_eq!((linear_axis(0.0, 0.0, 2).lo, linear_axis(0.0, 0.0, 2).hi), (-1.0, 1.0));
        // The whole f64 line: only the ends, in scientific notation.
        assert_eq!(labels(linear_axis(-f64::MAX, f64::MAX, 5)), ["-1.8e+308", "1.8e+308"]);
    }

    #[test]
    fn rendering_is_deterministic() {
        let (losses, rates) = training_run();
        for chart in [&losses, &rates] {
            let first = render(chart, 800, 500);
            assert_eq!(first, render(chart, 800, 500));
            let png = encode_png(&first, 800, 500).expect("encodes");
            assert_eq!(png, encode_png(&render(chart, 800, 500), 800, 500).expect("encodes"));
        }
        assert_ne!(render(&losses, 800, 500), render(&rates, 800, 500));
    }

    #[test]
    fn png_decodes_to_the_rendered_pixels() {
        let (losses, _) = training_run();
        let rgb = render(&losses, 320, 200);
        let png = encode_png(&rgb, 320, 200).expect("encodes");
        let decoded = image::load_from_memory(&png).expect("decodes").to_rgb8();
        assert_eq!(decoded.dimensions(), (320, 200));
        assert_eq!(decoded.into_raw(), rgb);
    }

    #[test]
    fn write_png_replaces_the_file_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("loss.png");
        std::fs::write(&path, b"old").expect("writes");
        let (losses, rates) = training_run();
        write_png(&losses, 300, 200, &path).expect("writes");
        assert_eq!(image::open(&path).expect("decodes").to_rgb8().dimensions(), (300, 200));
        write_png(&rates, 301, 201, &path).expect("writes");
        assert_eq!(image::open(&path).expect("decodes").to_rgb8().dimensions(), (301, 201));
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("lists").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("loss.png")]);

        let missing = dir.path().join("no/such/dir/loss.png");
        let err = write_png(&losses, 30, 20, &missing).expect_err("no directory");
        assert!(matches!(&err, PlotError::Io { path, .. } if path.ends_with("loss.png.tmp")), "{err:?}");
        assert_eq!(err.to_string(), format!("writing {}.tmp", missing.display()));
    }

    #[test]
    fn bad_sizes_and_buffers_are_errors() {
        let err = encode_png(&[0; 11], 2, 2).expect_err("short");
        assert_eq!(err.to_string(), "an RGB 2x2 image is 12 bytes, got 11");
        for (width, height) in [(0, 5), (5, 0), (1 << 14, 1 << 14)] {
            let err = encode_png(&[], width, height).expect_err("size");
            assert!(matches!(err, PlotError::Size { .. }), "{err:?}");
        }
        let err = write_png(&Chart::default(), 0, 0, Path::new("unused.png")).expect_err("size");
        assert_eq!(err.to_string(), "a 0x0 image: each side must be at least 1 and the area at most 67108864 pixels");
        assert!(encode_png(&render(&Chart::default(), 1, 1), 1, 1).is_ok());
    }
}
