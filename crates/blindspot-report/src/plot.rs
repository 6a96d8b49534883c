//! PNG plots (plotters, drawn into memory) and slice grids; every file is written atomically.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

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

/// Size of the line plots, in pixels.
const PLOT_SIZE: (u32, u32) = (640, 480);

/// Draws into an in-memory RGB buffer of `size` and writes it to `path` as PNG.
fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<()> {
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
    let png = encode_png(path, &buf, size)?;
    write_atomic(path, &png)
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
    pub legend: SeriesLabelPosition,
}

/// Curves on shared axes with a legend; reference lines dashed in grey.
pub(crate) fn line_plot(
    path: &Path,
    axes: &Axes<'_>,
    curves: &[Curve],
    refs: &[RefLine],
) -> Result<()> {
    render_png(path, PLOT_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(axes.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(axes.x.clone(), axes.y.clone())
            .map_err(s)?;
        chart
            .configure_mesh()
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .label_style((FONT, 13))
            .x_labels(8)
            .y_labels(8)
            .light_line_style(RGBColor(242, 242, 242))
            .draw()
            .map_err(s)?;
        for r in refs {
            let grey = RGBColor(110, 110, 110);
            chart
                .draw_series(DashedLineSeries::new(
                    [r.from, r.to],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(s)?
                .label(r.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        }
        for (i, c) in curves.iter().enumerate() {
            let col = color(i);
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().map(|p| (p[0], p[1])),
                    col.stroke_width(2),
                ))
                .map_err(s)?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
        }
        if !curves.is_empty() || !refs.is_empty() {
            chart
                .configure_series_labels()
                .position(axes.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .label_font((FONT, 13))
                .draw()
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

/// Overlaid densities of the groups of a histogram (each group normalised to unit area, so
/// groups of different sizes compare); empty groups are left out.
pub(crate) fn histogram_plot(path: &Path, title: &str, h: &Histogram) -> Result<()> {
    let bins = h.edges.len() - 1;
    let densities: Vec<(String, Vec<f64>)> = h
        .groups
        .iter()
        .filter_map(|g| {
            let total: u64 = g.counts.iter().sum();
            (total > 0).then(|| {
                let d = (0..bins)
                    .map(|b| g.counts[b] as f64 / (total as f64 * (h.edges[b + 1] - h.edges[b])))
                    .collect();
                (g.label.clone(), d)
            })
        })
        .collect();
    let ymax = densities
        .iter()
        .flat_map(|(_, d)| d.iter().copied())
        .fold(0.0, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let x = h.edges[0]..h.edges[bins];
    render_png(path, PLOT_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x, 0.0..ymax)
            .map_err(s)?;
        chart
            .configure_mesh()
            .x_desc("score")
            .y_desc("density")
            .label_style((FONT, 13))
            .x_labels(8)
            .y_labels(8)
            .light_line_style(RGBColor(242, 242, 242))
            .draw()
            .map_err(s)?;
        for (i, (label, d)) in densities.iter().enumerate() {
            let col = color(i);
            let mut steps = Vec::with_capacity(2 * bins + 2);
            steps.push((h.edges[0], 0.0));
            for b in 0..bins {
                steps.push((h.edges[b], d[b]));
                steps.push((h.edges[b + 1], d[b]));
            }
            steps.push((h.edges[bins], 0.0));
            chart
                .draw_series(
                    AreaSeries::new(steps, 0.0, col.mix(0.12)).border_style(col.stroke_width(2)),
                )
                .map_err(s)?
                .label(label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], col.filled()));
        }
        if !densities.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .label_font((FONT, 12))
                .draw()
                .map_err(s)?;
        }
        Ok(())
    })
}

/// A grayscale image, row-major with `y` growing downwards.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` values; displayed min-to-max as black-to-white (non-finite as red).
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
    /// Per column, a fixed display range `[black, white]` (for example `[0, 0.5]` for
    /// residuals, so that small residuals stay dark); `None` or a missing entry stretches each
    /// panel from its own minimum to its maximum.
    pub display_ranges: Vec<Option<[f32; 2]>>,
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
}

/// Smallest side, in screen pixels, of a panel (small slices are enlarged by an integer factor).
const PANEL_MIN: usize = 128;
const GAP: usize = 4;
const ROW_LABEL_W: usize = 150;
const HEADER_H: usize = 58;

/// Writes a slice grid as PNG to `path`, atomically. Each panel is shown in its column's
/// display range or, without one, stretched from its own minimum (black) to its maximum
/// (white); a constant panel is black when its value is at most 0 and white otherwise;
/// non-finite pixels are red.
///
/// # Errors
/// [`ReportError::Invalid`] for a grid without rows or columns or a row whose panel count
/// differs from the column count; [`ReportError::ImageSize`] for a panel whose buffer does not
/// match its size; [`ReportError::Plot`]/[`ReportError::Io`] when drawing or writing fails.
pub fn write_slice_grid(grid: &SliceGrid, path: &Path) -> Result<()> {
    if grid.columns.is_empty() || grid.rows.is_empty() {
        return Err(ReportError::Invalid {
            key: format!("slice grid {:?}", grid.title),
            value: format!("{} columns, {} rows", grid.columns.len(), grid.rows.len()),
            allowed: "at least one column and one row",
        });
    }
    if let Some((c, r)) = grid.display_ranges.iter().enumerate().find_map(|(c, r)| {
        r.filter(|r| !(r[0].is_finite() && r[1].is_finite() && r[0] < r[1]))
            .map(|r| (c, r))
    }) {
        return Err(ReportError::Invalid {
            key: format!("slice grid {:?}, display_ranges[{c}]", grid.title),
            value: format!("{r:?}"),
            allowed: "finite [black, white] with black < white",
        });
    }
    let mut cell = (1usize, 1usize);
    for row in &grid.rows {
        if row.panels.len() != grid.columns.len() {
            return Err(ReportError::Invalid {
                key: format!("slice grid {:?}, row {:?}", grid.title, row.label),
                value: format!("{} panels", row.panels.len()),
                allowed: "one panel per column",
            });
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
            cell = (cell.0.max(p.width), cell.1.max(p.height));
        }
    }
    let zoom = PANEL_MIN.div_ceil(cell.0.max(cell.1)).max(1);
    let (cw, ch) = (cell.0 * zoom, cell.1 * zoom);
    let width = ROW_LABEL_W + grid.columns.len() * (cw + GAP) + GAP;
    let height = HEADER_H + grid.rows.len() * (ch + GAP) + GAP;
    render_png(path, (width as u32, height as u32), |root| {
        let title_style = TextStyle::from((FONT, 18).into_font()).color(&BLACK);
        root.draw_text(&grid.title, &title_style, (GAP as i32, 6))
            .map_err(s)?;
        let header = TextStyle::from((FONT, 14).into_font()).color(&RGBColor(60, 60, 60));
        for (c, name) in grid.columns.iter().enumerate() {
            let x = ROW_LABEL_W + c * (cw + GAP) + GAP;
            root.draw_text(name, &header, (x as i32, (HEADER_H - 22) as i32))
                .map_err(s)?;
        }
        let label_style = TextStyle::from((FONT, 13).into_font()).color(&BLACK);
        for (r, row) in grid.rows.iter().enumerate() {
            let y0 = HEADER_H + r * (ch + GAP);
            root.draw_text(
                &row.label,
                &label_style,
                (GAP as i32, (y0 + ch / 2 - 7) as i32),
            )
            .map_err(s)?;
            for (c, panel) in row.panels.iter().enumerate() {
                let x0 = ROW_LABEL_W + c * (cw + GAP) + GAP;
                let (lo, hi) = match grid.display_ranges.get(c).copied().flatten() {
                    Some([lo, hi]) => (lo, hi),
                    None => panel
                        .data
                        .iter()
                        .filter(|v| v.is_finite())
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        }),
                };
                for y in 0..panel.height {
                    for x in 0..panel.width {
                        let v = panel.data[y * panel.width + x];
                        let rgb = if !v.is_finite() {
                            RGBColor(220, 30, 30)
                        } else {
                            let g = if hi > lo {
                                (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8
                            } else if v > 0.0 {
                                255
                            } else {
                                0
                            };
                            RGBColor(g, g, g)
                        };
                        let (px, py) = ((x0 + x * zoom) as i32, (y0 + y * zoom) as i32);
                        root.draw(&Rectangle::new(
                            [(px, py), (px + zoom as i32 - 1, py + zoom as i32 - 1)],
                            rgb.filled(),
                        ))
                        .map_err(s)?;
                    }
                }
            }
        }
        Ok(())
    })
}
