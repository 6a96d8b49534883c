//! Renders a report from a small hand-built results value and checks every output, and that
//! bad input gives a clear error.

mod sample;

use std::path::Path;

use blindspot_report::*;

fn decode_png(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert!(buf.iter().any(|&b| b != 255), "{} is blank", path.display());
    (info.width, info.height)
}

#[test]
fn report_renders_every_file_and_results_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let results = sample::sample_results(dir.path());
    let path = dir.path().join(RESULTS_FILE);
    save_results(&results, &path).unwrap();
    assert_eq!(load_results(&path).unwrap(), results);

    let files = rebuild_report(dir.path()).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    let html = std::fs::read_to_string(&files.html).unwrap();
    // the findings with their numbers
    for needle in [
        "The blind spot",
        "47.0% [37.6%, 56.4%] on T1 (9.4x)",
        "Residual entropy H_l1 0.820",
        "Dice on accepted lesional scans 0.520 [0.440, 0.580]",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}");
    }
    assert!(md.contains("intensity threshold (baseline)"));
    // self-contained: every image is embedded, nothing is fetched
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    let images = html.matches("<img ").count();
    assert_eq!(images, html.matches("src=\"data:image/png;base64,").count());
    assert_eq!(
        images,
        files.plots.len() + 4,
        "plots plus the four slice grids"
    );
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(
        html.contains("<td class=\"num\">0.890 <span class=\"ci\">[0.860, 0.910]</span></td>"),
        "CI in the pixel table"
    );
    // figures are numbered in both documents, in order
    assert!(md.contains("*Figure 1. ") && html.contains("<b>Figure 1.</b>"));
    assert!(html.contains(&format!("<b>Figure {images}.</b>")));
    assert!(!html.contains(&format!("<b>Figure {}.</b>", images + 1)));

    // 1 FPR plot + ROC and PR for the 4 lesional sets + 1 histogram + disentangling by size +
    // gate acceptance + the gate's lesion-score ROC + risk-coverage
    assert_eq!(files.plots.len(), 14);
    // the gate's goals, its whole decision and the per-set FPR before and after it
    for needle in [
        "The gate's goals",
        "1a. in-distribution scans accepted",
        "3. harmful shifts rejected",
        "The whole decision",
        "in distribution, lesional",
        "FPR, accepted scans",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}");
    }
    for p in files.plots.iter().chain(
        std::fs::read_dir(dir.path().join("grids"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        let (w, h) = decode_png(p);
        assert!(w >= 200 && h >= 100, "{}: {w}x{h}", p.display());
        assert!(
            md.contains(p.strip_prefix(dir.path()).unwrap().to_str().unwrap()),
            "report.md links {}",
            p.display()
        );
    }

    let ood = std::fs::read_to_string(dir.path().join("tables/ood.csv")).unwrap();
    let header: Vec<&str> = ood.lines().next().unwrap().split(',').collect();
    assert_eq!(header[..4], ["test_set", "statistic", "mode", "auroc"]);
    let t1_rec_all: Vec<&str> = ood
        .lines()
        .find(|l| l.starts_with("T1,rec_err,all,"))
        .expect("row")
        .split(',')
        .collect();
    assert_eq!(t1_rec_all.len(), header.len());
    assert_eq!(t1_rec_all[3].parse::<f64>().unwrap(), 0.97);
    for t in &files.tables {
        let text = std::fs::read_to_string(t).unwrap();
        let cols = text.lines().next().unwrap().split(',').count();
        assert!(
            text.lines().skip(1).all(|l| l.split(',').count() == cols),
            "{} is ragged",
            t.display()
        );
    }

    // no temporary files are left behind
    for sub in ["", "plots", "tables"] {
        for e in std::fs::read_dir(dir.path().join(sub)).unwrap() {
            let name = e.unwrap().file_name();
            assert!(
                !name.to_string_lossy().starts_with(".tmp-"),
                "left over {name:?}"
            );
        }
    }
}

#[test]
fn findings_follow_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = sample::sample_results(dir.path());
    let f = findings(&r);
    assert_eq!(
        f.iter().map(|f| f.verdict).collect::<Vec<_>>(),
        [Verdict::Holds; 4]
    );
    // lower every OOD-set FPR to the target: the blind spot no longer shows
    for t in &mut r.test_sets {
        for p in &mut t.pixel {
            p.healthy_fpr_at_threshold = Some(Estimate::point(0.05));
        }
    }
    r.gate = None;
    let f = findings(&r);
    assert_eq!(f[0].verdict, Verdict::DoesNotHold);
    assert_eq!(f[3].verdict, Verdict::NotMeasured);
}

/// Findings 2 and 3 judge the paper's plain scores; another plain statistic that misses the
/// criterion (here a copy of `rec_err` that disentangles perfectly) is reported beside them.
#[test]
fn findings_judge_the_papers_scores() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = sample::sample_results(dir.path());
    let rec = r
        .statistics
        .iter()
        .find(|s| s.name == "rec_err")
        .unwrap()
        .clone();
    r.statistics.push(StatisticInfo {
        name: "neg_elbo".into(),
        label: "negative ELBO".into(),
        ..rec
    });
    for t in &mut r.test_sets {
        let extra: Vec<_> = t
            .disentangling
            .iter()
            .filter(|d| d.statistic == "rec_err")
            .map(|d| {
                let mut d = d.clone();
                d.statistic = "neg_elbo".into();
                d.auroc = Estimate::point(0.99);
                d
            })
            .collect();
        t.disentangling.extend(extra);
        let extra: Vec<_> = t
            .ood
            .iter()
            .filter(|o| o.statistic == "rec_err")
            .map(|o| {
                let mut o = o.clone();
                o.statistic = "neg_elbo".into();
                o
            })
            .collect();
        t.ood.extend(extra);
    }
    let f = findings(&r);
    assert_eq!(f[1].verdict, Verdict::Holds, "{}", f[1].text);
    assert!(
        f[1].text
            .contains("not part of the criterion: negative ELBO"),
        "{}",
        f[1].text
    );
    assert_eq!(f[2].verdict, Verdict::Holds, "{}", f[2].text);
    assert!(f[2].text.contains("per lesional set"), "{}", f[2].text);
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = rebuild_report(dir.path()).unwrap_err();
    assert!(matches!(err, ReportError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(RESULTS_FILE), "{err}");
}

#[test]
fn wrong_or_missing_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RESULTS_FILE);
    let results = sample::sample_results(dir.path());
    let mut value = serde_json::to_value(&results).unwrap();
    value["schema_version"] = serde_json::json!(99);
    std::fs::write(&path, value.to_string()).unwrap();
    let err = load_results(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ReportError::SchemaVersion {
                found: 99,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("schema_version 99"), "{err}");

    value.as_object_mut().unwrap().remove("schema_version");
    std::fs::write(&path, value.to_string()).unwrap();
    assert!(matches!(
        load_results(&path).unwrap_err(),
        ReportError::SchemaVersion { found: 0, .. }
    ));
}

#[test]
fn malformed_and_out_of_range_results_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RESULTS_FILE);
    std::fs::write(&path, "{ not json").unwrap();
    assert!(matches!(
        load_results(&path).unwrap_err(),
        ReportError::Json { .. }
    ));

    let mut results = sample::sample_results(dir.path());
    let mut value = serde_json::to_value(&results).unwrap();
    value["surprise"] = serde_json::json!(1);
    std::fs::write(&path, value.to_string()).unwrap();
    let err = load_results(&path).unwrap_err();
    assert!(err.to_string().contains("surprise"), "{err}");

    results.test_sets[1].pixel[0].auroc = Some(Estimate::point(1.5));
    let err = save_results(&results, &path).unwrap_err();
    assert!(
        err.to_string().contains("test_sets[1].pixel[0].auroc")
            && err.to_string().contains("[0, 1]"),
        "{err}"
    );

    let mut results = sample::sample_results(dir.path());
    results.test_sets[0].slice_grids[0].path = "../escape.png".into();
    assert!(matches!(
        results.validate().unwrap_err(),
        ReportError::Invalid { .. }
    ));

    let mut results = sample::sample_results(dir.path());
    results.test_sets[2].name = results.test_sets[1].name.clone();
    let err = results.validate().unwrap_err();
    assert!(err.to_string().contains("unique"), "{err}");
}

#[test]
fn missing_slice_grid_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let results = sample::sample_results(dir.path());
    std::fs::remove_file(dir.path().join(&results.test_sets[0].slice_grids[0].path)).unwrap();
    let err = render_report(&results, dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("slice grid") && err.to_string().contains("site-a-t2.png"),
        "{err}"
    );
}

#[test]
fn slice_grid_checks_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.png");
    let panel = GrayImage {
        width: 4,
        height: 4,
        data: vec![0.5; 15],
    };
    let grid = SliceGrid {
        title: "t".into(),
        columns: vec!["input".into()],
        rows: vec![GridRow {
            label: "r".into(),
            panels: vec![panel],
        }],
        display_ranges: vec![],
    };
    assert!(matches!(
        write_slice_grid(&grid, &path).unwrap_err(),
        ReportError::ImageSize {
            expected: 16,
            got: 15,
            ..
        }
    ));
    let grid = SliceGrid {
        rows: vec![GridRow {
            label: "r".into(),
            panels: vec![],
        }],
        ..grid
    };
    assert!(matches!(
        write_slice_grid(&grid, &path).unwrap_err(),
        ReportError::Invalid { .. }
    ));
    assert!(!path.exists());
}

#[test]
fn slice_grid_refuses_bad_windows() {
    // pixel-exact rendering is tested beside the drawing code (it needs the layout)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.png");
    let panel = GrayImage {
        width: 8,
        height: 8,
        data: (0..64).map(|i| i as f32).collect(),
    };
    let grid = SliceGrid {
        title: "t".into(),
        columns: vec!["input".into(), "reconstruction".into()],
        rows: vec![GridRow {
            label: "r".into(),
            panels: vec![panel.clone(), panel],
        }],
        display_ranges: vec![Some([1.0, 1.0])],
    };
    assert!(matches!(
        write_slice_grid(&grid, &path).unwrap_err(),
        ReportError::Invalid { .. }
    ));
    let gray = ColumnStyle::gray(Window::Auto);
    for styles in [
        vec![gray],
        vec![ColumnStyle::gray(Window::SameAs(1)), gray],
        vec![gray, ColumnStyle::gray(Window::Fixed([0.0, f32::NAN]))],
    ] {
        let err = write_slice_grid_with(&grid, &styles, &path).unwrap_err();
        assert!(matches!(err, ReportError::Invalid { .. }), "{err}");
    }
    assert!(!path.exists());
    write_slice_grid_with(&grid, &[gray, ColumnStyle::gray(Window::SameAs(0))], &path).unwrap();
    assert!(path.is_file());
}

#[test]
fn histogram_bins_every_finite_value_once() {
    let a = [0.0, 0.5, 1.0, f64::NAN];
    let b = [0.25, 0.75];
    let h = Histogram::from_values("s", &[("a", &a), ("b", &b)], 4);
    assert_eq!(h.edges, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(h.groups[0].counts, vec![1, 0, 1, 1]);
    assert_eq!(h.groups[1].counts, vec![0, 1, 0, 1]);
    let constant = Histogram::from_values("s", &[("a", &[2.0, 2.0])], 3);
    assert_eq!(constant.groups[0].counts.iter().sum::<u64>(), 2);
    assert!(constant.edges[0] < 2.0 && 2.0 < constant.edges[3]);
}

#[test]
fn thinning_keeps_the_ends() {
    let points: Vec<[f64; 2]> = (0..1000).map(|i| [i as f64, (i * i) as f64]).collect();
    let c = Curve::thinned("c", &points, 50);
    assert_eq!(c.points.len(), 50);
    assert_eq!(c.points[0], points[0]);
    assert_eq!(*c.points.last().unwrap(), points[999]);
    assert_eq!(Curve::thinned("c", &points[..10], 50).points.len(), 10);
}

#[test]
fn names_that_share_a_slug_get_distinct_plots() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = sample::sample_results(dir.path());
    let mut twin = r.test_sets[2].clone();
    twin.name = "t1".into();
    twin.slice_grids.clear();
    r.test_sets.push(twin);
    let files = render_report(&r, dir.path()).unwrap();
    let names: std::collections::HashSet<_> = files.plots.iter().collect();
    assert_eq!(names.len(), files.plots.len(), "{:?}", files.plots);
    assert!(
        files
            .plots
            .iter()
            .any(|p| p.ends_with("plots/roc-t1-2.png"))
    );
}

/// A model below the adequacy criterion makes every measured finding not interpretable; the
/// numbers stay in the text, and the report says so in its adequacy section.
#[test]
fn findings_of_an_inadequate_model_are_not_interpretable() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = sample::sample_results(dir.path());
    let member = |m: usize, adequacy: f64| MemberAdequacy {
        member: m,
        e_model: 0.6 - 0.2 * adequacy,
        adequacy,
    };
    r.adequacy = Some(AdequacyResult {
        e_mean: 0.6,
        e_blur: 0.4,
        slices: 100,
        criterion: 0.5,
        members: vec![member(0, 0.7), member(1, 0.55)],
    });
    assert!(findings(&r).iter().all(|f| f.verdict == Verdict::Holds));
    r.adequacy.as_mut().unwrap().members[1] = member(1, 0.3);
    r.gate = None;
    let f = findings(&r);
    assert_eq!(f[3].verdict, Verdict::NotMeasured);
    for f in &f[..3] {
        assert_eq!(f.verdict, Verdict::NotInterpretable, "{}", f.title);
        assert!(
            f.text.contains("0.30 is below the criterion 0.50"),
            "{}",
            f.text
        );
    }
    let files = render_report(&r, dir.path()).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("not interpretable: the model did not learn the anatomy"));
    assert!(md.contains("Not met: the findings below are not interpretable"));
}

/// With the pooled experiments, findings 2 and 3 are judged on intervals: an interval on one
/// side of the criterion decides, one that reaches both sides makes the finding inconclusive;
/// finding 4 is judged on the gate's goal (FPR on accepted scans, acceptance of ID scans).
#[test]
fn pooled_findings_are_judged_on_their_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = sample::sample_results(dir.path());
    let pooled = |name: &str, ood: Estimate, dis: Estimate| PooledStatistic {
        statistic: name.into(),
        ood_auroc: Some(ood),
        disentangling_auroc: Some(dis),
    };
    let detects = Estimate::with_ci(0.85, 0.78, 0.9);
    let chance = Estimate::with_ci(0.55, 0.45, 0.62);
    r.pooled = ["rec_err", "coded_elbo", "waic", "dose"]
        .iter()
        .map(|n| pooled(n, detects, chance))
        .chain([pooled(
            "entropy",
            detects,
            Estimate::with_ci(0.8, 0.72, 0.86),
        )])
        .collect();
    r.prior_comparison = Some(PriorComparison {
        prior: "entropy".into(),
        plain: "coded_elbo".into(),
        difference: Estimate::with_ci(0.25, 0.15, 0.33),
    });
    let f = findings(&r);
    assert_eq!(f[1].verdict, Verdict::Holds, "{}", f[1].text);
    assert!(f[1].text.contains("0.850 [0.780, 0.900]"), "{}", f[1].text);
    assert_eq!(f[2].verdict, Verdict::Holds, "{}", f[2].text);
    assert!(f[2].text.contains("0.250 [0.150, 0.330]"), "{}", f[2].text);
    assert_eq!(f[3].verdict, Verdict::Holds, "{}", f[3].text);

    // a disentangling interval reaching past chance + 0.15: inconclusive
    r.pooled[2].disentangling_auroc = Some(Estimate::with_ci(0.6, 0.5, 0.7));
    assert_eq!(findings(&r)[1].verdict, Verdict::Inconclusive);
    // one entirely above the band: does not hold
    r.pooled[2].disentangling_auroc = Some(Estimate::with_ci(0.8, 0.7, 0.85));
    assert_eq!(findings(&r)[1].verdict, Verdict::DoesNotHold);
    // a plain score that cannot detect the shift: does not hold either
    r.pooled[2].disentangling_auroc = Some(chance);
    r.pooled[0].ood_auroc = Some(Estimate::with_ci(0.52, 0.44, 0.6));
    assert_eq!(findings(&r)[1].verdict, Verdict::DoesNotHold);

    // finding 3: large but uncertain, small and certain, clearly none
    for (d, want) in [
        (Estimate::with_ci(0.2, -0.05, 0.4), Verdict::Inconclusive),
        (Estimate::with_ci(0.05, 0.01, 0.08), Verdict::DoesNotHold),
        (Estimate::with_ci(0.05, -0.1, 0.2), Verdict::Inconclusive),
        (Estimate::with_ci(-0.2, -0.3, -0.1), Verdict::DoesNotHold),
    ] {
        r.prior_comparison.as_mut().unwrap().difference = d;
        assert_eq!(findings(&r)[2].verdict, want, "{d:?}");
    }

    // finding 4, judged on the gate's goals: one set's accepted FPR clearly above 1.5x the
    // target fails it, an interval reaching both sides leaves it open
    let saved = r.gate.clone();
    let g = r.gate.as_mut().unwrap();
    g.per_set[0].healthy_fpr_accepted = Some(Estimate::with_ci(0.09, 0.08, 0.1));
    assert_eq!(findings(&r)[3].verdict, Verdict::DoesNotHold);
    let g = r.gate.as_mut().unwrap();
    g.per_set[0].healthy_fpr_accepted = Some(Estimate::with_ci(0.07, 0.06, 0.08));
    assert_eq!(findings(&r)[3].verdict, Verdict::Inconclusive);
    // rejecting lesional ID scans fails it
    r.gate = saved.clone();
    r.gate
        .as_mut()
        .unwrap()
        .goals
        .as_mut()
        .unwrap()
        .lesional_acceptance = Some(Estimate::with_ci(0.6, 0.4, 0.8));
    let f = findings(&r);
    assert_eq!(f[3].verdict, Verdict::DoesNotHold);
    assert!(f[3].text.contains("1b. lesional"), "{}", f[3].text);
    // a harmful shift that passes fails it
    r.gate = saved.clone();
    let g = r.gate.as_mut().unwrap();
    let ood = g
        .per_set
        .iter()
        .position(|s| s.healthy_fpr_all.unwrap().value > 0.075)
        .unwrap();
    g.per_set[ood].rejection = Some(Estimate::with_ci(0.5, 0.2, 0.8));
    assert_eq!(findings(&r)[3].verdict, Verdict::DoesNotHold);
    r.gate = saved;
    assert_eq!(findings(&r)[3].verdict, Verdict::Holds);
    // results written before the goals: the pooled FPR and the ID acceptance decide
    let g = r.gate.as_mut().unwrap();
    (g.criteria, g.goals) = (None, None);
    g.healthy_fpr_accepted = Some(0.09);
    assert_eq!(findings(&r)[3].verdict, Verdict::DoesNotHold);
    let g = r.gate.as_mut().unwrap();
    g.healthy_fpr_accepted = Some(0.07);
    g.id_acceptance = Some(0.8);
    assert_eq!(findings(&r)[3].verdict, Verdict::DoesNotHold);
    r.gate.as_mut().unwrap().id_acceptance = Some(0.95);
    assert_eq!(findings(&r)[3].verdict, Verdict::Holds);

    // the blind spot: the worst shifted set's interval must clear the target
    for t in &mut r.test_sets {
        for p in t.pixel.iter_mut().filter(|p| !p.baseline) {
            if t.role == TestSetRole::OutOfDistribution {
                p.healthy_fpr_at_threshold = Some(Estimate::with_ci(0.11, 0.04, 0.2));
            }
        }
    }
    assert_eq!(findings(&r)[0].verdict, Verdict::Inconclusive);
}

/// A gate that could not be fitted: the report says why instead of leaving the section out,
/// and results.json keeps the reason.
#[test]
fn a_gate_that_could_not_be_fitted_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = sample::sample_results(dir.path());
    r.gate = None;
    let why = "gate component residual_q95 (Quantile(0.25)): degenerate sample";
    r.gate_error = Some(why.into());
    let path = dir.path().join(RESULTS_FILE);
    save_results(&r, &path).unwrap();
    assert_eq!(
        load_results(&path).unwrap().gate_error.as_deref(),
        Some(why)
    );
    let files = render_report(&r, dir.path()).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("## The gate"), "no gate section");
    assert!(md.contains(why), "the reason is missing");
}
