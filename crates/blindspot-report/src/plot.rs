//! PNG charts (plotters, drawn into memory): line plots, bar plots and histograms, and the PNG
//! helpers the slice grids ([`crate::grid`]) share; every file is written atomically.
//!
//! Charts are drawn at twice their display size (`SCALE`) so that they stay sharp in the HTML
//! report and in print.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{ReportError, Result};
use crate::io::write_atomic;
use crate::schema::{Curve, Histogram};

/// Colours of successive series (Tableau 10).
pub(crate) const PALETTE: [RGBColor; 10] = [
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

pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(crate) const FONT: &str = "sans-serif";

/// Plots are drawn at this multiple of their display size (sizes below are display pixels).
pub(crate) const SCALE: i32 = 2;

/// A display size in drawn pixels.
pub(crate) fn px(v: i32) -> i32 {
    v * SCALE
}

/// Display size of the line plots.
pub(crate) const PLOT_SIZE: (u32, u32) = (640, 480);

pub(crate) fn plot_size(display: (u32, u32)) -> (u32, u32) {
    (display.0 * SCALE as u32, display.1 * SCALE as u32)
}

pub(crate) const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);

pub(crate) const REF_COLOR: RGBColor = RGBColor(110, 110, 110);

/// The one font of every plot and grid, shipped in the crate (DejaVu Sans, licence in
/// `fonts/LICENSE-DejaVu.txt`) and drawn by plotters' pure-Rust `ab_glyph` renderer: the same
/// run draws the same pixels on every machine, and no system font library is needed.
static FONT_FILE: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Registers [`FONT_FILE`] as [`FONT`] (normal and bold) once per process. Every drawing
/// function calls it first: plotters looks a font up when a style is built, not when it draws.
pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // a valid font file compiled in: this cannot fail
            let _ = plotters::style::register_font(FONT, style, FONT_FILE);
        }
    });
}

/// Draws into an in-memory RGB buffer of `size` and returns the buffer.
pub(crate) fn draw_rgb(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<Vec<u8>> {
    register_font();
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
pub(crate) fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<()> {
    let buf = draw_rgb(path, size, draw)?;
    write_atomic(path, &encode_png(path, &buf, size)?)
}

pub(crate) fn encode_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
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

pub(crate) fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A tick label: no decimals from 100 on (or for whole numbers from 10 on), otherwise at most four decimals without trailing
/// zeros (but one kept: `0.0`, `0.25`, `0.0001`).
pub(crate) fn fmt_tick(v: &f64) -> String {
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
pub(crate) fn draw_mesh(
    chart: &mut Chart<'_, '_>,
    x_desc: &str,
    y_desc: Option<&str>,
) -> Result<(), String> {
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
pub(crate) fn legend_corner(
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
    register_font(); // before any style is built: plotters looks fonts up eagerly
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
    register_font(); // before any style is built: plotters looks fonts up eagerly
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
pub(crate) fn central_bins(h: &Histogram, tail: f64) -> (usize, usize, u64) {
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
    register_font(); // before any style is built: plotters looks fonts up eagerly
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

#[cfg(test)]
mod tests {
    use super::*;

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
