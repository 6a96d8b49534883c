//! The CSV tables of a report (`tables/*.csv`), written by the `csv` crate.

use std::path::Path;

use crate::document::{MODES, test_set_rows};
use crate::error::Result;
use crate::io::write_atomic;
use crate::schema::{GateResult, Results, TestSetResult, WallTime};

/// A CSV table (header, then rows), written by the `csv` crate (a field holding a comma, a
/// quote or a line break is quoted), lines ending in `\n`.
pub(crate) fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // into memory: neither the writes nor the flush can fail
    let written = writer
        .write_record(header)
        .and_then(|()| rows.iter().try_for_each(|r| writer.write_record(r)));
    let bytes = match written {
        Ok(()) => writer.into_inner().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(crate) fn num(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v}"))
}

/// `value,low,high` cells of an optional estimate (empty cells for missing values).
pub(crate) fn est_cells(e: Option<crate::schema::Estimate>) -> [String; 3] {
    [
        num(e.map(|e| e.value)),
        num(e.and_then(|e| e.low)),
        num(e.and_then(|e| e.high)),
    ]
}

/// Every CSV table of the report, written under `dir/tables/`: test sets, pixel metrics, OOD
/// detection, disentangling, the gate's decisions and risk-coverage (when it ran) and wall
/// times. Returns their paths relative to `dir`.
pub(crate) fn write_tables(r: &Results, dir: &Path) -> Result<Vec<String>> {
    let mut tables = vec![
        ("test_sets.csv", test_sets_csv(r)),
        ("pixel.csv", pixel_csv(&r.test_sets)),
        ("ood.csv", ood_csv(&r.test_sets)),
        ("disentangling.csv", disentangling_csv(&r.test_sets)),
    ];
    if let Some(g) = &r.gate {
        tables.push(("gate.csv", gate_csv(g)));
        tables.push(("risk_coverage.csv", risk_coverage_csv(g)));
    }
    tables.push(("wall_times.csv", wall_times_csv(&r.wall_times)));
    let mut written = Vec::new();
    for (name, text) in tables {
        let rel = format!("tables/{name}");
        write_atomic(&dir.join(&rel), text.as_bytes())?;
        written.push(rel);
    }
    Ok(written)
}

/// `test_sets.csv`: each set's role, scans and slice counts.
fn test_sets_csv(r: &Results) -> String {
    csv(
        &[
            "test_set",
            "role",
            "scans",
            "id_slices",
            "healthy_ood_slices",
            "lesional_slices",
        ],
        &test_set_rows(r),
    )
}

/// `pixel.csv`: every method's pixel metrics on every test set, intervals in their own columns.
fn pixel_csv(test_sets: &[TestSetResult]) -> String {
    let mut rows = Vec::new();
    for t in test_sets {
        for p in &t.pixel {
            let mut row = vec![t.name.clone(), p.method.clone(), p.baseline.to_string()];
            for e in [p.auroc, p.ap] {
                row.extend(est_cells(e));
            }
            row.push(num(p.best_dice.map(|b| b.dice)));
            row.push(num(p.best_dice.map(|b| b.threshold)));
            for e in [p.dice_at_threshold, p.healthy_fpr_at_threshold] {
                row.extend(est_cells(e));
            }
            rows.push(row);
        }
    }
    csv(
        &[
            "test_set",
            "method",
            "baseline",
            "auroc",
            "auroc_low",
            "auroc_high",
            "ap",
            "ap_low",
            "ap_high",
            "best_dice",
            "best_dice_threshold",
            "dice_at_threshold",
            "dice_at_threshold_low",
            "dice_at_threshold_high",
            "healthy_fpr",
            "healthy_fpr_low",
            "healthy_fpr_high",
        ],
        &rows,
    )
}

/// `ood.csv`: slice-level OOD detection of every statistic on every test set, in each mode
/// that was measured.
fn ood_csv(test_sets: &[TestSetResult]) -> String {
    let mut rows = Vec::new();
    for t in test_sets {
        for o in &t.ood {
            for (mode, get) in MODES {
                if let Some(d) = get(o) {
                    let mut row = vec![t.name.clone(), o.statistic.clone(), mode.to_string()];
                    for e in [d.auroc, d.auprc, d.fpr_at_95_tpr] {
                        row.extend(est_cells(Some(e)));
                    }
                    rows.push(row);
                }
            }
        }
    }
    csv(
        &[
            "test_set",
            "statistic",
            "mode",
            "auroc",
            "auroc_low",
            "auroc_high",
            "auprc",
            "auprc_low",
            "auprc_high",
            "fpr95",
            "fpr95_low",
            "fpr95_high",
        ],
        &rows,
    )
}

/// `disentangling.csv`: the disentangling AUROC of every statistic on every test set.
fn disentangling_csv(test_sets: &[TestSetResult]) -> String {
    let mut rows = Vec::new();
    for t in test_sets {
        for d in &t.disentangling {
            let mut row = vec![t.name.clone(), d.statistic.clone()];
            row.extend(est_cells(Some(d.auroc)));
            rows.push(row);
        }
    }
    csv(
        &["test_set", "statistic", "auroc", "auroc_low", "auroc_high"],
        &rows,
    )
}

/// `gate.csv`: the gate's decisions on each test set.
fn gate_csv(g: &GateResult) -> String {
    let rows: Vec<Vec<String>> = g
        .per_set
        .iter()
        .map(|s| {
            vec![
                s.test_set.clone(),
                s.scans.to_string(),
                s.in_distribution.to_string(),
                s.lesion_suspected.to_string(),
                s.rejected.to_string(),
            ]
        })
        .collect();
    csv(
        &[
            "test_set",
            "scans",
            "in_distribution",
            "lesion_suspected",
            "rejected",
        ],
        &rows,
    )
}

/// `risk_coverage.csv`: the gate's risk-coverage curve.
fn risk_coverage_csv(g: &GateResult) -> String {
    let rows: Vec<Vec<String>> = g
        .risk_coverage
        .iter()
        .map(|p| vec![p[0].to_string(), p[1].to_string()])
        .collect();
    csv(&["coverage", "risk"], &rows)
}

/// `wall_times.csv`: the wall time of each pipeline step.
fn wall_times_csv(wall_times: &[WallTime]) -> String {
    let rows: Vec<Vec<String>> = wall_times
        .iter()
        .map(|w| vec![w.step.clone(), w.seconds.to_string()])
        .collect();
    csv(&["step", "seconds"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_fields_that_need_it() {
        assert_eq!(
            csv(&["a", "b"], &[vec!["x,y".into(), "q\"".into()]]),
            "a,b\n\"x,y\",\"q\"\"\"\n"
        );
    }
}
