//! The report: one document model rendered to Markdown and to self-contained HTML, the CSV
//! tables and the plots.

use std::path::{Path, PathBuf};

use crate::document::document;
use crate::error::{ReportError, Result};
use crate::figures::write_plots;
use crate::html::to_html;
use crate::io::{load_results, write_atomic};
use crate::markdown::to_markdown;
use crate::schema::Results;
use crate::tables::write_tables;

/// File name of the results inside a run directory.
pub const RESULTS_FILE: &str = "results.json";

/// The files a rendered report consists of (paths inside the output directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (images embedded, no external references).
    pub html: PathBuf,
    /// The CSV tables under `tables/`.
    pub tables: Vec<PathBuf>,
    /// The PNG plots under `plots/`.
    pub plots: Vec<PathBuf>,
}

/// Renders the report of `results` into `out_dir`: `report.md`, `report.html`, `tables/*.csv`
/// and `plots/*.png`. Slice grids referenced by the results are read from `out_dir` (they are
/// written there by the run). Every file is written atomically.
///
/// # Errors
/// [`ReportError::Invalid`]/[`ReportError::SchemaVersion`] when the results break the
/// schema, [`ReportError::Io`] naming a referenced slice grid that is missing or a file that
/// cannot be written, [`ReportError::Plot`] when a plot cannot be drawn (for example no font).
pub fn render_report(results: &Results, out_dir: &Path) -> Result<ReportFiles> {
    results.validate()?;
    for t in &results.test_sets {
        for g in &t.slice_grids {
            let p = out_dir.join(&g.path);
            if !p.is_file() {
                return Err(ReportError::io(
                    p,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "slice grid referenced by results.json is missing",
                    ),
                ));
            }
        }
    }
    let plots = write_plots(results, out_dir)?;
    let tables = write_tables(results, out_dir)?;
    let doc = document(results, &plots);
    let markdown = out_dir.join("report.md");
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = out_dir.join("report.html");
    write_atomic(
        &html,
        to_html(&results.experiment, &doc, out_dir)?.as_bytes(),
    )?;
    Ok(ReportFiles {
        markdown,
        html,
        tables: tables.into_iter().map(|t| out_dir.join(t)).collect(),
        plots: plots.iter().map(|p| out_dir.join(&p.path)).collect(),
    })
}

/// Loads `dir/results.json` and renders its report into `dir` (the `blindspot report` command).
///
/// # Errors
/// Those of [`load_results`] and [`render_report`].
pub fn rebuild_report(dir: &Path) -> Result<ReportFiles> {
    let results = load_results(&dir.join(RESULTS_FILE))?;
    render_report(&results, dir)
}
