//! PNG plots (plotters, drawn into memory) and slice grids; every file is written atomically.
//!
//! Line plots and histograms are drawn at twice their display size ([`SCALE`]) so that they
//! stay sharp in the HTML report and in print. Slice grids draw their text with plotters and
//! copy the image panels straight into the pixel buffer (integer nearest-neighbour zoom), so a
//! panel shows every slice pixel as a solid block with no seams.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{ReportError, Result};
use crate::io::write_atomic;
use crate::schema::{Curve, Histogram};

/// Colours of successive series (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const FONT: &str = "sans-serif";

/// Plots are drawn at this multiple of their display size (sizes below are display pixels).
const SCALE: i32 = 2;

/// A display size in drawn pixels.
fn px(v: i32) -> i32 {
    v * SCALE
}

/// Display size of the line plots.
const PLOT_SIZE: (u32, u32) = (640, 480);

fn plot_size(display: (u32, u32)) -> (u32, u32) {
    (display.0 * SCALE as u32, display.1 * SCALE as u32)
}

const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);
const REF_COLOR: RGBColor = RGBColor(110, 110, 110);

/// Draws into an in-memory RGB buffer of `size` and returns the buffer.
fn draw_rgb(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<Vec<u8>> {
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        let plot_err = |message: String| ReportError::Plot {
            path: path.to_path_buf(),
            message,
        };
        root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
        draw(&root).map_err(plot_err)?;
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    Ok(buf)
}

/// Draws into an in-memory RGB buffer of `size` and writes it to `path` as PNG.
fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<()> {
    let buf = draw_rgb(path, size, draw)?;
    write_atomic(path, &encode_png(path, &buf, size)?)
}

fn encode_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let png_err = |source| ReportError::Png {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(rgb).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
    }
    Ok(out)
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A tick label: no decimals from 100 on (or for whole numbers from 10 on), otherwise at most four decimals without trailing
/// zeros (but one kept: `0.0`, `0.25`, `0.0001`).
fn fmt_tick(v: &f64) -> String {
    if v.abs() >= 100.0 || (v.abs() >= 10.0 && v.fract() == 0.0) {
        return format!("{v:.0}");
    }
    let t = format!("{v:.4}");
    let t = t.trim_end_matches('0');
    let t = if t.ends_with('.') {
        format!("{t}0")
    } else {
        t.to_string()
    };
    if t == "-0.0" { "0.0".into() } else { t }
}

/// The house style of the axes: light major grid lines only, readable tick and axis labels.
fn draw_mesh(chart: &mut Chart<'_, '_>, x_desc: &str, y_desc: Option<&str>) -> Result<(), String> {
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc)
        .label_style((FONT, px(15)))
        .axis_desc_style((FONT, px(16)))
        .x_labels(6)
        .y_labels(6)
        .max_light_lines(0)
        .bold_line_style(GRID_COLOR.stroke_width(SCALE as u32 / 2))
        .axis_style(RGBColor(80, 80, 80).stroke_width(SCALE as u32 / 2))
        .set_all_tick_mark_size(px(4))
        .x_label_formatter(&fmt_tick)
        .y_label_formatter(&fmt_tick);
    match y_desc {
        Some(y) => {
            mesh.y_desc(y);
        }
        None => {
            mesh.disable_y_mesh().disable_y_axis();
        }
    }
    mesh.draw().map_err(s)
}

/// A straight reference line drawn beside the curves of a [`line_plot`].
pub(crate) struct RefLine {
    pub label: String,
    pub from: (f64, f64),
    pub to: (f64, f64),
}

/// Axis ranges and texts of a [`line_plot`].
pub(crate) struct Axes<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: std::ops::Range<f64>,
    pub y: std::ops::Range<f64>,
    /// The preferred legend corner; another corner is taken when it covers fewer curve points.
    pub legend: SeriesLabelPosition,
}

/// The legend corner that covers the fewest points of the curves and reference lines, `prefer`
/// on ties. `box_frac` is the legend's size as a fraction of the plotting area.
fn legend_corner(
    axes: &Axes<'_>,
    curves: &[Curve],
    refs: &[RefLine],
    box_frac: (f64, f64),
) -> SeriesLabelPosition {
    use SeriesLabelPosition::*;
    let (w, h) = (axes.x.end - axes.x.start, axes.y.end - axes.y.start);
    let norm = |x: f64, y: f64| ((x - axes.x.start) / w, (y - axes.y.start) / h);
    // every curve point, and the straight lines (curve segments and references) sampled densely
    let mut pts: Vec<(f64, f64)> = Vec::new();
    let mut segment = |a: (f64, f64), b: (f64, f64)| {
        for k in 0..=16 {
            let t = f64::from(k) / 16.0;
            pts.push(norm(a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
        }
    };
    for c in curves {
        for p in c.points.windows(2) {
            segment((p[0][0], p[0][1]), (p[1][0], p[1][1]));
        }
    }
    for r in refs {
        segment(r.from, r.to);
    }
    let (bw, bh) = box_frac;
    let inside = |corner: &SeriesLabelPosition| {
        let (right, upper) = match corner {
            UpperRight => (true, true),
            LowerRight => (true, false),
            UpperLeft => (false, true),
            _ => (false, false),
        };
        pts.iter()
            .filter(|(u, v)| {
                (if right { *u >= 1.0 - bw } else { *u <= bw })
                    && (if upper { *v >= 1.0 - bh } else { *v <= bh })
            })
            .count()
    };
    let mut best = (axes.legend.clone(), inside(&axes.legend));
    for corner in [UpperRight, LowerRight, UpperLeft, LowerLeft] {
        let n = inside(&corner);
        if n < best.1 {
            best = (corner, n);
        }
    }
    best.0
}

/// Curves on shared axes with a legend (left out for a single unlabelled-worthy curve);
/// reference lines dashed in grey.
pub(crate) fn line_plot(
    path: &Path,
    axes: &Axes<'_>,
    curves: &[Curve],
    refs: &[RefLine],
) -> Result<()> {
    let entries = curves.len() + refs.len();
    let show_legend = entries > 1;
    let longest = curves
        .iter()
        .map(|c| c.label.chars().count())
        .chain(refs.iter().map(|r| r.label.chars().count()))
        .max()
        .unwrap_or(0);
    // legend box relative to the plotting area (about 560 x 380 display pixels)
    let box_frac = (
        ((longest as f64 * 8.0 + 50.0) / 560.0).min(0.9),
        ((entries as f64 * 19.0 + 14.0) / 380.0).min(0.9),
    );
    let corner = legend_corner(axes, curves, refs, box_frac);
    render_png(path, plot_size(PLOT_SIZE), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(axes.title, (FONT, px(18)))
            .margin(px(10))
            .margin_right(px(18))
            .x_label_area_size(px(40))
            .y_label_area_size(px(64))
            .build_cartesian_2d(axes.x.clone(), axes.y.clone())
            .map_err(s)?;
        draw_mesh(&mut chart, axes.x_desc, Some(axes.y_desc))?;
        for r in refs {
            chart
                .draw_series(DashedLineSeries::new(
                    [r.from, r.to],
                    px(6),
                    px(4),
                    REF_COLOR.stroke_width(SCALE as u32),
                ))
                .map_err(s)?
                .label(r.label.clone())
                .legend(move |(x, y)| {
                    // dashed in the legend as on the plot
                    let style = REF_COLOR.stroke_width(SCALE as u32);
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (px(8), 0)], style)
                        + PathElement::new(vec![(px(12), 0), (px(20), 0)], style)
                });
        }
        for (i, c) in curves.iter().enumerate() {
            let col = color(i);
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().map(|p| (p[0], p[1])),
                    col.stroke_width(2 * SCALE as u32),
                ))
                .map_err(s)?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + px(20), y)],
                        col.stroke_width(2 * SCALE as u32),
                    )
                });
        }
        if show_legend {
            chart
                .configure_series_labels()
                .position(corner)
                .margin(px(8))
                .legend_area_size(px(26))
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(190, 190, 190))
                .label_font((FONT, px(14)))
                .draw()
                .map_err(s)?;
        }
        Ok(())
    })
}

/// One bar of a [`bar_plot`]: its label, its length and the index of its group (colour).
pub(crate) struct Bar {
    pub label: String,
    pub value: f64,
    pub group: usize,
}

/// Horizontal bars on `[0, 1]`, one row per bar (labels at the left, each followed by its
/// group's name, the value at the bar's end), coloured by group, and vertical dashed reference
/// lines at the `refs` positions (named in the caption, not in a legend that would cover bars).
pub(crate) fn bar_plot(
    path: &Path,
    title: &str,
    x_desc: &str,
    bars: &[Bar],
    groups: &[&str],
    refs: &[f64],
) -> Result<()> {
    let named: Vec<String> = bars
        .iter()
        .map(|b| match groups.get(b.group) {
            Some(g) => format!("{} ({g})", b.label),
            None => b.label.clone(),
        })
        .collect();
    let n = bars.len().max(1) as f64;
    let label_width = named.iter().map(|l| l.chars().count()).max().unwrap_or(0) as i32;
    let height = (120 + 34 * bars.len() as u32).max(240);
    render_png(path, plot_size((PLOT_SIZE.0, height)), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, px(18)))
            .margin(px(10))
            .margin_right(px(40))
            .x_label_area_size(px(40))
            .y_label_area_size(px(12 + 8 * label_width))
            .build_cartesian_2d(0.0..1.0, 0.0..n)
            .map_err(s)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .label_style((FONT, px(15)))
            .axis_desc_style((FONT, px(16)))
            .x_labels(6)
            .y_labels(0)
            .disable_y_mesh()
            .max_light_lines(0)
            .bold_line_style(GRID_COLOR.stroke_width(SCALE as u32 / 2))
            .axis_style(RGBColor(80, 80, 80).stroke_width(SCALE as u32 / 2))
            .x_label_formatter(&fmt_tick)
            .draw()
            .map_err(s)?;
        for (i, b) in bars.iter().enumerate() {
            // the first bar at the top
            let y = n - 1.0 - i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.2), (b.value.clamp(0.0, 1.0), y + 0.8)],
                    color(b.group).filled(),
                )))
                .map_err(s)?;
            let (px_end, py) = chart.backend_coord(&(b.value.clamp(0.0, 1.0), y + 0.5));
            root.draw(&Text::new(
                format!("{:.0}%", 100.0 * b.value),
                (px_end + px(4), py - px(8)),
                (FONT, px(14)),
            ))
            .map_err(s)?;
            root.draw(&Text::new(
                named[i].clone(),
                (px(12), py - px(8)),
                (FONT, px(14)),
            ))
            .map_err(s)?;
        }
        for x in refs {
            chart
                .draw_series(DashedLineSeries::new(
                    [(*x, 0.0), (*x, n)],
                    px(6),
                    px(4),
                    REF_COLOR.stroke_width(SCALE as u32),
                ))
                .map_err(s)?;
        }
        Ok(())
    })
}

/// The range `[min, max]` of the values, padded by 5 %; `(0, 1)` when there are none.
pub(crate) fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    (lo - pad)..(hi + pad)
}

/// The bins `first..=last` that hold the central `1 - 2 * tail` of all the histogram's counts
/// (pooled over groups), and the number of counts outside them.
fn central_bins(h: &Histogram, tail: f64) -> (usize, usize, u64) {
    let bins = h.edges.len() - 1;
    let pooled: Vec<u64> = (0..bins)
        .map(|b| h.groups.iter().map(|g| g.counts[b]).sum())
        .collect();
    let total: u64 = pooled.iter().sum();
    if total == 0 {
        return (0, bins - 1, 0);
    }
    let cut = (tail * total as f64).floor() as u64;
    let mut first = 0;
    let mut below = 0;
    while first + 1 < bins && below + pooled[first] <= cut {
        below += pooled[first];
        first += 1;
    }
    let mut last = bins - 1;
    let mut above = 0;
    while last > first && above + pooled[last] <= cut {
        above += pooled[last];
        last -= 1;
    }
    (first, last, below + above)
}

/// One strip per non-empty group (the groups stacked top to bottom on a shared score axis),
/// each the group's share of slices per bin scaled to the strip's height; the first group
/// (in-distribution) is repeated as a dashed grey outline in every other strip for comparison. The
/// axis spans the bins holding the central 99 % of all slices; returns how many slices lie
/// outside it.
pub(crate) fn histogram_plot(path: &Path, title: &str, h: &Histogram) -> Result<u64> {
    let (first, last, hidden) = central_bins(h, 0.005);
    let fractions: Vec<(usize, String, Vec<f64>)> = h
        .groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let total: u64 = g.counts.iter().sum();
            (total > 0).then(|| {
                let f = g.counts.iter().map(|&c| c as f64 / total as f64).collect();
                (i, g.label.clone(), f)
            })
        })
        .collect();
    let n = fractions.len().max(1);
    let reference = fractions.first().map(|(_, l, f)| (l.clone(), f.clone()));
    let x = h.edges[first]..h.edges[last + 1];
    let strip = 34;
    let size = plot_size((640, (strip * n as u32 + 110).max(200)));
    render_png(path, size, |root| {
        let label_style = TextStyle::from((FONT, px(15)).into_font())
            .color(&RGBColor(40, 40, 40))
            .pos(Pos::new(HPos::Right, VPos::Center));
        let label_w = fractions
            .iter()
            .map(|(_, l, _)| {
                root.estimate_text_size(l, &label_style)
                    .map_or(0, |(w, _)| w)
            })
            .max()
            .unwrap_or(0) as i32;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, px(18)))
            .margin(px(10))
            .margin_right(px(18))
            .x_label_area_size(px(40))
            .y_label_area_size(label_w + px(14))
            .build_cartesian_2d(x.clone(), 0.0..n as f64)
            .map_err(s)?;
        draw_mesh(&mut chart, "score", None)?;
        let steps = |f: &[f64], base: f64, scale: f64| {
            let mut pts = Vec::with_capacity(2 * (last - first) + 4);
            pts.push((h.edges[first], base));
            for b in first..=last {
                pts.push((h.edges[b], base + f[b] * scale));
                pts.push((h.edges[b + 1], base + f[b] * scale));
            }
            pts.push((h.edges[last + 1], base));
            pts
        };
        let row_max = |f: &[f64]| f[first..=last].iter().copied().fold(0.0, f64::max);
        for (row, (i, label, f)) in fractions.iter().enumerate() {
            let base = (n - 1 - row) as f64;
            let col = color(*i);
            let peak = reference
                .as_ref()
                .filter(|_| row > 0)
                .map_or(0.0, |(_, r)| row_max(r))
                .max(row_max(f));
            let scale = if peak > 0.0 { 0.9 / peak } else { 0.0 };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x.start, base), (x.end, base)],
                    GRID_COLOR.stroke_width(SCALE as u32 / 2),
                )))
                .map_err(s)?;
            chart
                .draw_series(
                    AreaSeries::new(steps(f, base, scale), base, col.mix(0.3))
                        .border_style(col.stroke_width(SCALE as u32)),
                )
                .map_err(s)?;
            if let Some((_, r)) = reference.as_ref().filter(|_| row > 0) {
                chart
                    .draw_series(DashedLineSeries::new(
                        steps(r, base, scale),
                        px(4),
                        px(3),
                        REF_COLOR.stroke_width(SCALE as u32),
                    ))
                    .map_err(s)?;
            }
            let (lx, ly) = chart.backend_coord(&(x.start, base + 0.4));
            root.draw_text(label, &label_style, (lx - px(8), ly))
                .map_err(s)?;
        }
        Ok(())
    })?;
    Ok(hidden)
}

/// A grayscale image, row-major with `y` growing downwards.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` values, shown through their column's [`ColumnStyle`].
    pub data: Vec<f32>,
}

/// One row of a [`SliceGrid`]: one example slice.
#[derive(Debug, Clone, PartialEq)]
pub struct GridRow {
    /// The row's label (for example the scan and slice index).
    pub label: String,
    /// One image per column.
    pub panels: Vec<GrayImage>,
}

/// A grid of example slices: one row per example, one column per view of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceGrid {
    /// Drawn above the grid.
    pub title: String,
    /// Column headers; every row has one panel per column.
    pub columns: Vec<String>,
    /// The examples.
    pub rows: Vec<GridRow>,
    /// Per column, a fixed display window `[black, white]` (for example `[0, 1]` for masks);
    /// `None` or a missing entry is [`Window::Auto`]. [`write_slice_grid`] shows every column
    /// in gray through these windows; [`write_slice_grid_with`] takes full [`ColumnStyle`]s.
    pub display_ranges: Vec<Option<[f32; 2]>>,
}

/// The display window of a slice-grid column: the values shown as the two ends of its
/// [`Colormap`] (values outside are clamped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// From the 0.5th to the 99.5th percentile of the finite values of all the column's
    /// panels (every row shares it, so the rows compare), together with the panels of the
    /// columns that name it in [`Window::SameAs`].
    Auto,
    /// A fixed `[black, white]`, with `black < white`.
    Fixed([f32; 2]),
    /// The window of an earlier column (by index): an input and its reconstruction share one
    /// window so that their intensities compare.
    SameAs(usize),
}

/// The colours a slice-grid column's window maps onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colormap {
    /// Black to white; non-finite values red.
    #[default]
    Gray,
    /// A perceptually ordered black-purple-orange-yellow map (after matplotlib's *magma*),
    /// for residuals and anomaly scores; non-finite values cyan.
    Magma,
}

/// Anchors of [`Colormap::Magma`], evenly spaced, interpolated linearly in between.
const MAGMA: [[u8; 3]; 9] = [
    [0, 0, 4],
    [28, 16, 68],
    [79, 18, 123],
    [129, 37, 129],
    [181, 54, 122],
    [229, 80, 100],
    [251, 135, 97],
    [254, 194, 135],
    [252, 253, 191],
];

impl Colormap {
    /// The colour of `t` in `[0, 1]` (clamped).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = t.clamp(0.0, 1.0);
        match self {
            Self::Gray => {
                let g = (t * 255.0).round() as u8;
                [g, g, g]
            }
            Self::Magma => {
                let pos = t * (MAGMA.len() - 1) as f32;
                let i = (pos.floor() as usize).min(MAGMA.len() - 2);
                let f = pos - i as f32;
                let (a, b) = (MAGMA[i], MAGMA[i + 1]);
                std::array::from_fn(|k| {
                    (f32::from(a[k]) + f * (f32::from(b[k]) - f32::from(a[k]))).round() as u8
                })
            }
        }
    }

    /// The colour of non-finite values, outside the map.
    pub fn non_finite(self) -> [u8; 3] {
        match self {
            Self::Gray => [220, 30, 30],
            Self::Magma => [0, 200, 255],
        }
    }
}

/// How one column of a [`SliceGrid`] is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnStyle {
    /// The values mapped to the ends of the colormap.
    pub window: Window,
    /// The colours.
    pub colormap: Colormap,
}

impl ColumnStyle {
    /// A gray column in `window`.
    pub fn gray(window: Window) -> Self {
        Self {
            window,
            colormap: Colormap::Gray,
        }
    }
}

impl SliceGrid {
    /// The columns of the paper's figures: input, reconstruction, residual, lesion mask and
    /// the thresholded map.
    pub const PAPER_COLUMNS: [&'static str; 5] = [
        "input",
        "reconstruction",
        "residual",
        "lesion mask",
        "thresholded",
    ];

    /// The styles of [`SliceGrid::PAPER_COLUMNS`]: input and reconstruction in gray sharing
    /// one automatic window, the residual in [`Colormap::Magma`] with its own automatic
    /// window, the two masks binary (`[0, 1]`).
    pub fn paper_styles() -> [ColumnStyle; 5] {
        let binary = ColumnStyle::gray(Window::Fixed([0.0, 1.0]));
        [
            ColumnStyle::gray(Window::Auto),
            ColumnStyle::gray(Window::SameAs(0)),
            ColumnStyle {
                window: Window::Auto,
                colormap: Colormap::Magma,
            },
            binary,
            binary,
        ]
    }

    /// The styles [`write_slice_grid`] uses: gray, [`Window::Fixed`] where `display_ranges`
    /// gives a range and [`Window::Auto`] elsewhere.
    pub fn column_styles(&self) -> Vec<ColumnStyle> {
        (0..self.columns.len())
            .map(|c| {
                ColumnStyle::gray(match self.display_ranges.get(c).copied().flatten() {
                    Some(r) => Window::Fixed(r),
                    None => Window::Auto,
                })
            })
            .collect()
    }
}

/// Smallest side, in screen pixels, of a panel (small slices are enlarged by an integer factor).
const PANEL_MIN: usize = 160;
const GAP: usize = 4;
const HEADER_H: usize = 70;
const GRID_TEXT: RGBColor = RGBColor(40, 40, 40);

/// Where the parts of a slice grid go, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GridLayout {
    /// Width of the row-label column.
    label_w: usize,
    /// Integer enlargement of every panel.
    zoom: usize,
    /// Size of a cell (the largest panel, enlarged).
    cell: (usize, usize),
    /// Size of the whole image.
    size: (usize, usize),
}

impl GridLayout {
    fn new(grid: &SliceGrid, label_w: usize) -> Self {
        let (w, h) = grid
            .rows
            .iter()
            .flat_map(|r| &r.panels)
            .fold((1, 1), |(w, h), p| (w.max(p.width), h.max(p.height)));
        let zoom = PANEL_MIN.div_ceil(w.max(h)).max(1);
        let cell = (w * zoom, h * zoom);
        let size = (
            label_w + grid.columns.len() * (cell.0 + GAP) + GAP,
            HEADER_H + grid.rows.len() * (cell.1 + GAP) + GAP,
        );
        Self {
            label_w,
            zoom,
            cell,
            size,
        }
    }

    /// Top-left pixel of the cell of `row`, `col`.
    fn origin(&self, row: usize, col: usize) -> (usize, usize) {
        (
            self.label_w + col * (self.cell.0 + GAP) + GAP,
            HEADER_H + row * (self.cell.1 + GAP),
        )
    }
}

/// The value at quantile `q` of `v` (nearest rank); `v` must not be empty.
fn quantile(v: &mut [f32], q: f64) -> f32 {
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    *v.select_nth_unstable_by(k, f32::total_cmp).1
}

/// Short text of a window bound.
fn fmt_bound(v: f32) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(0, 4) as usize;
        format!("{v:.digits$}")
    }
}

/// The width of `text` in pixels (8 pixels a character when no font is found: drawing the
/// text then reports the failure).
fn text_width(text: &str, style: &TextStyle<'_>) -> usize {
    let mut one = [255u8; 3];
    let area = BitMapBackend::with_buffer(&mut one, (1, 1)).into_drawing_area();
    area.estimate_text_size(text, style)
        .map_or(8 * text.chars().count(), |(w, _)| w as usize)
}

/// Writes a slice grid as PNG to `path`, atomically, each column in gray through its
/// `display_ranges` window ([`SliceGrid::column_styles`]); see [`write_slice_grid_with`].
///
/// # Errors
/// Those of [`write_slice_grid_with`].
pub fn write_slice_grid(grid: &SliceGrid, path: &Path) -> Result<()> {
    write_slice_grid_with(grid, &grid.column_styles(), path)
}

/// Writes a slice grid as PNG to `path`, atomically: a title, the column names with their
/// display windows, and one row per example whose panels are enlarged by the same integer
/// factor (nearest neighbour, at least 160 pixels a side) and coloured through their column's
/// style (`grid.display_ranges` is not used). A window whose two ends coincide (a constant
/// column) shows values above 0 as the colormap's end and the others as its start.
///
/// # Errors
/// [`ReportError::Invalid`] for a grid without rows or columns, a row whose panel count
/// differs from the column count, a style count that differs from it, a fixed window that is
/// not finite with black < white, or a [`Window::SameAs`] that does not name an earlier
/// column; [`ReportError::ImageSize`] for a panel whose buffer does not match its size;
/// [`ReportError::Plot`]/[`ReportError::Io`] when drawing or writing fails.
pub fn write_slice_grid_with(grid: &SliceGrid, styles: &[ColumnStyle], path: &Path) -> Result<()> {
    let invalid = |key: String, value: String, allowed| ReportError::Invalid {
        key,
        value,
        allowed,
    };
    if grid.columns.is_empty() || grid.rows.is_empty() {
        return Err(invalid(
            format!("slice grid {:?}", grid.title),
            format!("{} columns, {} rows", grid.columns.len(), grid.rows.len()),
            "at least one column and one row",
        ));
    }
    if styles.len() != grid.columns.len() {
        return Err(invalid(
            format!("slice grid {:?}, styles", grid.title),
            format!("{} styles for {} columns", styles.len(), grid.columns.len()),
            "one style per column",
        ));
    }
    for (c, st) in styles.iter().enumerate() {
        let ok = match st.window {
            Window::Auto => true,
            Window::Fixed(r) => r[0].is_finite() && r[1].is_finite() && r[0] < r[1],
            Window::SameAs(k) => k < c,
        };
        if !ok {
            return Err(invalid(
                format!("slice grid {:?}, column {c} window", grid.title),
                format!("{:?}", st.window),
                "a finite fixed window [black, white] with black < white, or SameAs an earlier column",
            ));
        }
    }
    for row in &grid.rows {
        if row.panels.len() != grid.columns.len() {
            return Err(invalid(
                format!("slice grid {:?}, row {:?}", grid.title, row.label),
                format!("{} panels", row.panels.len()),
                "one panel per column",
            ));
        }
        for (p, name) in row.panels.iter().zip(&grid.columns) {
            if p.width == 0 || p.height == 0 || p.data.len() != p.width * p.height {
                return Err(ReportError::ImageSize {
                    label: format!("{} / {name}", row.label),
                    width: p.width,
                    height: p.height,
                    expected: p.width * p.height,
                    got: p.data.len(),
                });
            }
        }
    }
    let windows = resolve_windows(grid, styles);

    let label_style = TextStyle::from((FONT, 13).into_font()).color(&GRID_TEXT);
    let label_w = grid
        .rows
        .iter()
        .map(|r| text_width(&r.label, &label_style))
        .max()
        .unwrap_or(0)
        + 3 * GAP;
    let layout = GridLayout::new(grid, label_w);
    let size = (layout.size.0 as u32, layout.size.1 as u32);
    let mut buf = draw_rgb(path, size, |root| {
        let title_style = TextStyle::from((FONT, 18).into_font()).color(&BLACK);
        root.draw_text(&grid.title, &title_style, (GAP as i32, 8))
            .map_err(s)?;
        let header = TextStyle::from((FONT, 14).into_font()).color(&GRID_TEXT);
        let sub = TextStyle::from((FONT, 12).into_font()).color(&RGBColor(110, 110, 110));
        for (c, name) in grid.columns.iter().enumerate() {
            let (x, _) = layout.origin(0, c);
            root.draw_text(name, &header, (x as i32, (HEADER_H - 36) as i32))
                .map_err(s)?;
            let (lo, hi) = windows[c];
            let text = if styles[c].window == Window::Fixed([0.0, 1.0]) {
                "binary".to_string()
            } else {
                format!("window [{}, {}]", fmt_bound(lo), fmt_bound(hi))
            };
            root.draw_text(&text, &sub, (x as i32, (HEADER_H - 18) as i32))
                .map_err(s)?;
        }
        let label_style = label_style.pos(Pos::new(HPos::Right, VPos::Center));
        for (r, row) in grid.rows.iter().enumerate() {
            let (x0, y0) = layout.origin(r, 0);
            root.draw_text(
                &row.label,
                &label_style,
                ((x0 - 2 * GAP) as i32, (y0 + layout.cell.1 / 2) as i32),
            )
            .map_err(s)?;
        }
        Ok(())
    })?;
    for (r, row) in grid.rows.iter().enumerate() {
        for (c, panel) in row.panels.iter().enumerate() {
            blit_panel(
                &mut buf,
                layout.size.0,
                layout.origin(r, c),
                layout.zoom,
                panel,
                windows[c],
                styles[c].colormap,
            );
        }
    }
    write_atomic(path, &encode_png(path, &buf, size)?)
}

/// The `(black, white)` window of every column (styles already checked).
fn resolve_windows(grid: &SliceGrid, styles: &[ColumnStyle]) -> Vec<(f32, f32)> {
    // every column's root: itself, or the root of the column it shares
    let mut root = Vec::with_capacity(styles.len());
    for (c, st) in styles.iter().enumerate() {
        root.push(match st.window {
            Window::SameAs(k) => root[k],
            _ => c,
        });
    }
    (0..styles.len())
        .map(|c| match styles[root[c]].window {
            Window::Fixed([lo, hi]) => (lo, hi),
            _ => {
                let mut v: Vec<f32> = grid
                    .rows
                    .iter()
                    .flat_map(|r| {
                        r.panels
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| root[*k] == root[c])
                            .flat_map(|(_, p)| p.data.iter().copied())
                    })
                    .filter(|v| v.is_finite())
                    .collect();
                if v.is_empty() {
                    return (0.0, 1.0);
                }
                let (lo, hi) = (quantile(&mut v, 0.005), quantile(&mut v, 0.995));
                if hi > lo {
                    (lo, hi)
                } else {
                    // a near-constant column: the full range, or the constant itself
                    (quantile(&mut v, 0.0), quantile(&mut v, 1.0))
                }
            }
        })
        .collect()
}

/// Copies `panel`, enlarged `zoom` times (every pixel a solid `zoom` x `zoom` block), into the
/// RGB buffer `buf` of an image `width` pixels wide with its top-left corner at `origin`.
fn blit_panel(
    buf: &mut [u8],
    width: usize,
    origin: (usize, usize),
    zoom: usize,
    panel: &GrayImage,
    (lo, hi): (f32, f32),
    cmap: Colormap,
) {
    for y in 0..panel.height {
        for x in 0..panel.width {
            let v = panel.data[y * panel.width + x];
            let rgb = if !v.is_finite() {
                cmap.non_finite()
            } else if hi > lo {
                cmap.rgb((v - lo) / (hi - lo))
            } else {
                cmap.rgb(if v > 0.0 { 1.0 } else { 0.0 })
            };
            for dy in 0..zoom {
                let row = (origin.1 + y * zoom + dy) * width;
                for dx in 0..zoom {
                    let i = 3 * (row + origin.0 + x * zoom + dx);
                    buf[i..i + 3].copy_from_slice(&rgb);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoded RGB pixels and width of a PNG.
    fn decode(path: &Path) -> (Vec<u8>, usize) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (buf, info.width as usize)
    }

    fn one_panel_grid(panel: GrayImage) -> SliceGrid {
        SliceGrid {
            title: "t".into(),
            columns: vec!["input".into()],
            rows: vec![GridRow {
                label: "r".into(),
                panels: vec![panel],
            }],
            display_ranges: vec![Some([0.0, 5.0])],
        }
    }

    #[test]
    fn panel_pixels_are_solid_blocks_without_gaps() {
        // 3 x 2 pixels with values 0..5 in a [0, 5] window: grays 0, 51, 102, 153, 204, 255
        let panel = GrayImage {
            width: 3,
            height: 2,
            data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        };
        let grid = one_panel_grid(panel.clone());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        write_slice_grid(&grid, &path).unwrap();
        let (rgb, width) = decode(&path);

        let label_w = text_width("r", &TextStyle::from((FONT, 13).into_font())) + 3 * GAP;
        let layout = GridLayout::new(&grid, label_w);
        assert_eq!(width, layout.size.0);
        assert_eq!(layout.zoom, PANEL_MIN.div_ceil(3));
        let (x0, y0) = layout.origin(0, 0);
        let px = |x: usize, y: usize| {
            let i = 3 * (y * width + x);
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        // every screen pixel of the enlarged panel, edges included, has its slice pixel's gray
        for y in 0..2 * layout.zoom {
            for x in 0..3 * layout.zoom {
                let v = panel.data[(y / layout.zoom) * 3 + x / layout.zoom];
                let g = (v / 5.0 * 255.0).round() as u8;
                assert_eq!(px(x0 + x, y0 + y), [g, g, g], "screen pixel ({x}, {y})");
            }
        }
        // and nothing spills over: the gap after the panel is background
        assert_eq!(px(x0 + 3 * layout.zoom, y0), [255, 255, 255]);
        assert_eq!(px(x0, y0 + 2 * layout.zoom + GAP - 1), [255, 255, 255]);
    }

    #[test]
    fn shared_auto_window_and_colormap() {
        // column 0 spans [0, 1]; column 1 shares its window, so 0.5 there is mid-gray; column
        // 2 has its own window and shows its maximum as the end of magma
        let ramp = |hi: f32| GrayImage {
            width: 2,
            height: 1,
            data: vec![0.0, hi],
        };
        let grid = SliceGrid {
            title: "t".into(),
            columns: vec!["a".into(), "b".into(), "c".into()],
            rows: vec![GridRow {
                label: "r".into(),
                panels: vec![ramp(1.0), ramp(0.5), ramp(0.2)],
            }],
            display_ranges: vec![],
        };
        let styles = [
            ColumnStyle::gray(Window::Auto),
            ColumnStyle::gray(Window::SameAs(0)),
            ColumnStyle {
                window: Window::Auto,
                colormap: Colormap::Magma,
            },
        ];
        assert_eq!(
            resolve_windows(&grid, &styles),
            vec![(0.0, 1.0), (0.0, 1.0), (0.0, 0.2)]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        write_slice_grid_with(&grid, &styles, &path).unwrap();
        let (rgb, width) = decode(&path);
        let label_w = text_width("r", &TextStyle::from((FONT, 13).into_font())) + 3 * GAP;
        let layout = GridLayout::new(&grid, label_w);
        let right_pixel = |c: usize| {
            let (x0, y0) = layout.origin(0, c);
            let i = 3 * (y0 * width + x0 + layout.zoom);
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        assert_eq!(right_pixel(0), [255, 255, 255]);
        assert_eq!(right_pixel(1), [128, 128, 128]);
        assert_eq!(right_pixel(2), MAGMA[MAGMA.len() - 1]);

        // a window shared with a later column is refused
        let bad = [styles[1], styles[0], styles[2]];
        assert!(matches!(
            write_slice_grid_with(&grid, &bad, &path).unwrap_err(),
            ReportError::Invalid { .. }
        ));
    }

    #[test]
    fn magma_runs_from_its_first_to_its_last_anchor() {
        assert_eq!(Colormap::Magma.rgb(0.0), MAGMA[0]);
        assert_eq!(Colormap::Magma.rgb(1.0), MAGMA[8]);
        assert_eq!(Colormap::Magma.rgb(0.5), MAGMA[4]);
        assert_eq!(Colormap::Magma.rgb(-3.0), MAGMA[0]);
        // monotone in lightness (sum of channels) along the map
        let light = |t: f32| {
            Colormap::Magma
                .rgb(t)
                .iter()
                .map(|&c| u32::from(c))
                .sum::<u32>()
        };
        assert!((1..=100).all(|k| light(k as f32 / 100.0) >= light((k - 1) as f32 / 100.0)));
    }

    #[test]
    fn tick_labels_are_short() {
        for (v, text) in [
            (0.0, "0.0"),
            (0.2, "0.2"),
            (1.0, "1.0"),
            (0.00025, "0.0003"),
            (1500.0, "1500"),
            (-600.0, "-600"),
            (-20.0, "-20"),
            (12.5, "12.5"),
            (-0.00001, "0.0"),
        ] {
            assert_eq!(fmt_tick(&v), text, "{v}");
        }
    }

    #[test]
    fn central_bins_drop_the_tails() {
        let h = Histogram {
            statistic: "s".into(),
            edges: (0..=5).map(f64::from).collect(),
            groups: vec![crate::schema::HistogramGroup {
                label: "a".into(),
                counts: vec![1, 100, 100, 100, 1],
            }],
        };
        assert_eq!(central_bins(&h, 0.005), (1, 3, 2));
        assert_eq!(central_bins(&h, 0.0), (0, 4, 0));
    }

    #[test]
    fn legend_goes_where_the_curves_are_not() {
        // a curve hugging the top edge: the legend moves to a lower corner
        let axes = Axes {
            title: "t",
            x_desc: "x",
            y_desc: "y",
            x: 0.0..1.0,
            y: 0.0..1.0,
            legend: SeriesLabelPosition::UpperRight,
        };
        let top = Curve {
            label: "c".into(),
            points: vec![[0.0, 0.95], [1.0, 0.95]],
        };
        let corner = legend_corner(&axes, &[top], &[], (0.3, 0.2));
        assert!(matches!(
            corner,
            SeriesLabelPosition::LowerRight | SeriesLabelPosition::LowerLeft
        ));
    }
}
