#![doc = include_str!("../README.md")]
//!
//! A run writes one [`Results`] value to `runs/<name>/results.json` ([`save_results`]); the
//! report ([`render_report`], or [`rebuild_report`] from a saved file) is rebuilt from it
//! alone, so `blindspot report` can re-render an old run. This crate needs no tensors and
//! never depends on burn (an architecture invariant checked by `cargo xtask validate`).
//!
//! # The `results.json` schema (`schema_version` 1)
//!
//! JSON, one object; unknown fields are rejected, optional fields may be `null` or absent.
//! An *estimate* is `{"value": v, "low": l, "high": h}` where `low`/`high` (the bootstrap
//! interval) are absent when no bootstrap was run.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema_version` | integer | [`SCHEMA_VERSION`]; a reader refuses any other |
//! | `experiment` | string | the run's name |
//! | `config` | object | the resolved configuration, every default filled in |
//! | `wall_times` | `[{step, seconds}]` | wall time of each pipeline step |
//! | `threshold` | `{value, target_fpr, calibrated_on}` | the pixel threshold and how it was set |
//! | `bootstrap` | `{resamples, level, unit, seed}` or null | how intervals were computed |
//! | `statistics` | `[{name, label, prior_knowledge}]` | slice statistics, display order |
//! | `test_sets` | `[TestSet]` | one per test set, ID first |
//! | `histograms` | `[{statistic, edges, groups: [{label, counts}]}]` | score histograms on shared bins |
//! | `gate` | `Gate` or null | the OOD gate's outcome |
//!
//! A `TestSet` ([`TestSetResult`]) holds `name`, `role` (`in_distribution` or
//! `out_of_distribution`), `scans`, `slices` (`{id, healthy_ood, lesional}`), and:
//! - `pixel`: per method (`method`, `baseline`: true for the intensity-threshold baseline)
//!   the estimates `auroc`, `ap`, `dice_at_threshold`, `healthy_fpr_at_threshold` (pixel FPR
//!   on healthy brain pixels at the healthy-calibrated threshold) and `best_dice`
//!   (`{dice, threshold}`);
//! - `ood`: per `statistic`, detection against ID slices in three modes `all`, `lesional`,
//!   `healthy`, each `{auroc, auprc, fpr_at_95_tpr}` of estimates (or null);
//! - `disentangling`: per `statistic`, the `auroc` estimate of lesional against healthy
//!   (ID and healthy-OOD) slices;
//! - `curves`: `roc`, `pr`, `fpr_vs_threshold`, each a list of `{label, points: [[x, y]]}`,
//!   thinned ([`Curve::thinned`]);
//! - `slice_grids`: `[{kind, path, caption}]`, PNGs relative to the results directory,
//!   `kind` one of `in_distribution`, `lesional`, `out_of_distribution`.
//!
//! `Gate` ([`GateResult`]): `per_set` (`[{test_set, scans, in_distribution,
//! lesion_suspected, rejected}]`), `fraction_rejected`, the estimates `dice_accepted`,
//! `dice_all` and `aurc`, and `risk_coverage` (`[[coverage, risk]]`, risk = 1 - Dice).
//!
//! Every number is finite; AUROC, AP, Dice, FPR and fractions lie in [0, 1]
//! ([`Results::validate`] checks this on save and on load).
//!
//! # The report
//!
//! [`render_report`] writes into the run directory: `report.md`, `report.html` (one file,
//! plots embedded as data URIs), `tables/*.csv` (test sets, pixel metrics, OOD detection in
//! the three modes, disentangling, gate, risk-coverage, wall times) and `plots/*.png` (healthy
//! FPR against threshold, ROC and PR per test set, score histograms, risk-coverage). The four
//! [`findings`](mod@findings) of the quickstart open the report. Slice grids are drawn by the run with
//! [`write_slice_grid_with`] (per-column display windows and colormaps; the paper's layout is
//! [`SliceGrid::paper_styles`]) and referenced from the results. Every file is written atomically
//! ([`write_atomic`]).

mod document;
pub mod error;
mod figures;
pub mod findings;
pub mod grid;
mod html;
pub mod io;
mod markdown;
pub mod plot;
pub mod render;
pub mod schema;
mod tables;

pub use error::{ReportError, Result};
pub use figures::slug;
pub use findings::{Finding, Verdict, findings};
pub use grid::{
    Colormap, ColumnStyle, GrayImage, GridRow, SliceGrid, Window, write_slice_grid,
    write_slice_grid_with,
};
pub use io::{load_results, save_results, write_atomic};
pub use render::{RESULTS_FILE, ReportFiles, rebuild_report, render_report};
pub use schema::*;
