//! Slice grids: rows of image panels (input, reconstruction or map, residual, segmentation)
//! with their text drawn by plotters and the panels copied straight into the pixel buffer
//! (integer nearest-neighbour zoom), so that a panel shows every slice pixel as a solid block
//! with no seams. Each column has a window and a colormap ([`ColumnStyle`]).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{ReportError, Result};
use crate::io::write_atomic;
use crate::plot::{FONT, draw_rgb, encode_png, s};

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
pub(crate) const MAGMA: [[u8; 3]; 9] = [
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
pub(crate) const PANEL_MIN: usize = 160;

pub(crate) const GAP: usize = 4;

pub(crate) const HEADER_H: usize = 70;

pub(crate) const GRID_TEXT: RGBColor = RGBColor(40, 40, 40);

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

/// Short text of a window bound.
pub(crate) fn fmt_bound(v: f32) -> String {
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
pub(crate) fn text_width(text: &str, style: &TextStyle<'_>) -> usize {
    crate::plot::register_font();
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
    crate::plot::register_font(); // before any style is built: plotters looks fonts up eagerly
    check_grid(grid, styles)?;
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
        draw_grid_text(root, grid, styles, &windows, &layout, label_style)
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

/// The errors [`write_slice_grid_with`] documents for a grid and its styles, before anything
/// is drawn: its shape, the windows of the styles and the size of every panel's buffer.
fn check_grid(grid: &SliceGrid, styles: &[ColumnStyle]) -> Result<()> {
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
    Ok(())
}

/// The text of a slice grid: its title, each column's name with its display window (`binary`
/// for a fixed `[0, 1]`), and each row's label, right-aligned beside the row.
fn draw_grid_text(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    grid: &SliceGrid,
    styles: &[ColumnStyle],
    windows: &[(f32, f32)],
    layout: &GridLayout,
    label_style: TextStyle<'_>,
) -> std::result::Result<(), String> {
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
}

/// The `(black, white)` window of every column (styles already checked).
pub(crate) fn resolve_windows(grid: &SliceGrid, styles: &[ColumnStyle]) -> Vec<(f32, f32)> {
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
                let mut v: Vec<f64> = grid
                    .rows
                    .iter()
                    .flat_map(|r| {
                        r.panels
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| root[*k] == root[c])
                            .flat_map(|(_, p)| p.data.iter().map(|&x| f64::from(x)))
                    })
                    .filter(|v| v.is_finite())
                    .collect();
                if v.is_empty() {
                    return (0.0, 1.0);
                }
                // sorted once for all four quantiles (the workspace's one, linear)
                v.sort_unstable_by(f64::total_cmp);
                let q = |p: f64| blindspot_metrics::quantile_sorted(&v, p) as f32;
                let (lo, hi) = (q(0.005), q(0.995));
                if hi > lo {
                    (lo, hi)
                } else {
                    // a near-constant column: the full range, or the constant itself
                    (q(0.0), q(1.0))
                }
            }
        })
        .collect()
}

/// Copies `panel`, enlarged `zoom` times (every pixel a solid `zoom` x `zoom` block), into the
/// RGB buffer `buf` of an image `width` pixels wide with its top-left corner at `origin`.
pub(crate) fn blit_panel(
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
        // column 0 spans about [0, 1]; column 1 shares its window, so 0.5 there is mid-gray;
        // column 2 has its own window and shows its maximum as the end of magma
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
        // the 0.5th and 99.5th percentiles, interpolated linearly: columns 0 and 1 pool their
        // pixels (0, 0, 0.5, 1), column 2 has its own (0, 0.2)
        let want = [(0.0, 0.9925), (0.0, 0.9925), (0.001, 0.199)];
        let got = resolve_windows(&grid, &styles);
        assert_eq!(got.len(), 3);
        for ((lo, hi), (wlo, whi)) in got.into_iter().zip(want) {
            assert!(
                (lo - wlo).abs() < 1e-6 && (hi - whi).abs() < 1e-6,
                "{lo} {hi}"
            );
        }
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
}
