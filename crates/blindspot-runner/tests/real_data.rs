//! The real-data experiment `configs/ixi-hh.toml` end to end on a few real scans and a few
//! training steps, so that its layouts, masks, orientations and split keep working (the full
//! run is docs/real-data.md). Needs `BLINDSPOT_REAL_DATA` (`.ci/run` points it at
//! ../shared/data/real); without it every test says loudly that it skipped and passes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use blindspot_report::{TestSetRole, load_results};
use blindspot_runner::config::{DatasetSpec, RunConfig, TestSetSpec};

fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ixi-hh.toml")
}

fn real_data() -> Option<PathBuf> {
    let root = std::env::var_os("BLINDSPOT_REAL_DATA");
    if root.is_none() {
        eprintln!(
            "\n*** BLINDSPOT_REAL_DATA is not set: SKIPPED the real-data test of configs/ixi-hh.toml ***\n"
        );
    }
    root.map(PathBuf::from)
}

/// The subject ids a dataset of the config lists.
fn ids(config: &RunConfig, spec: &DatasetSpec) -> Vec<String> {
    let root = config.data_root().unwrap();
    let dir = root.join(spec.dir.as_deref().unwrap_or("."));
    let layout = spec.layout.as_ref().expect("a layout").check().unwrap();
    layout
        .discover(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .into_iter()
        .map(|s| {
            assert!(s.brain_mask.is_some(), "{}: no brain mask", s.id);
            s.id
        })
        .collect()
}

fn dataset(t: &TestSetSpec) -> DatasetSpec {
    DatasetSpec {
        dir: t.dir.clone(),
        synth_set: t.synth_set.clone(),
        layout: t.layout.clone(),
    }
}

#[test]
fn the_split_is_fixed_disjoint_and_complete() {
    if real_data().is_none() {
        return;
    }
    let config = RunConfig::load(&config_path()).unwrap();
    let train = ids(&config, &config.data.train);
    let val = ids(&config, &config.data.validation);
    let test = ids(&config, &dataset(&config.data.test[0]));
    assert_eq!((train.len(), val.len(), test.len()), (77, 35, 28));
    let all: BTreeSet<&String> = train.iter().chain(&val).chain(&test).collect();
    assert_eq!(all.len(), 140, "every IXI-HH subject in exactly one part");
    // Every test set over ixi_hh_t1 draws from the held-out part only.
    for t in &config.data.test {
        if t.dir.as_deref() == Some("ixi_hh_t1") {
            let got = ids(&config, &dataset(t));
            assert!(got.iter().all(|id| test.contains(id)), "{}", t.name);
        }
    }
    // The gate calibrates on enough scans for its alpha (split-conformal: 1/alpha - 1).
    let gate = config.gate.as_ref().expect("a gate");
    let fit = (val.len() as f64 * gate.fit_fraction).round() as usize;
    assert!((val.len() - fit) as f64 >= 1.0 / gate.alpha - 1.0);
}

#[test]
fn ixi_hh_runs_end_to_end_on_a_few_real_scans() {
    if real_data().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let config = RunConfig::load(&config_path()).unwrap();
    let mut sets: Vec<String> = vec![
        "data.train.layout.max_subjects=8".into(),
        // 21 validation scans: the gate fits on 6 and calibrates on 15 (alpha 0.1 needs 9).
        "data.validation.layout.max_subjects=21".into(),
        "gate.alpha=0.1".into(),
        "gate.lesion_alpha=0.1".into(),
        "train.duration={ steps = 60 }".into(),
        "train.batch_size=16".into(),
        "train.val_every=30".into(),
        "train.val_batches=4".into(),
        "ensemble.members=2".into(),
        "evaluation.slice_stride=4".into(),
        "evaluation.bootstrap_resamples=100".into(),
    ];
    for (i, _) in config.data.test.iter().enumerate() {
        sets.push(format!("data.test[{i}].layout.max_subjects=2"));
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blindspot"));
    cmd.args(["run", config_path().to_str().unwrap(), "--out"])
        .arg(&out);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "blindspot run configs/ixi-hh.toml failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let results = load_results(&out.join("results.json")).unwrap();
    assert_eq!(results.experiment, "ixi-hh");
    assert_eq!(results.test_sets.len(), config.data.test.len());
    let set = |name: &str| {
        results
            .test_sets
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no test set {name}"))
    };
    for t in &results.test_sets {
        assert_eq!(t.scans, 2, "{}", t.name);
        let fpr = t.pixel[0].healthy_fpr_at_threshold.as_ref().unwrap().value;
        assert!((0.0..=1.0).contains(&fpr), "{}: {fpr}", t.name);
    }
    // Healthy scans carry no lesion pixels; the blobs and the BraTS masks do.
    assert_eq!(set("IXI-HH T1").role, TestSetRole::InDistribution);
    assert_eq!(set("IXI-HH T1").slices.lesional, 0);
    assert!(set("IXI-HH T1 + blobs").slices.lesional > 0);
    assert!(set("BraTS T1c glioma").slices.lesional > 0);
    assert_eq!(set("LPBA40 T1").role, TestSetRole::OutOfDistribution);
    // The gate judged every test scan.
    let gate = results
        .gate
        .as_ref()
        .unwrap_or_else(|| panic!("the gate was not fitted: {:?}", results.gate_error));
    let scans: usize = results.test_sets.iter().map(|t| t.scans).sum();
    assert_eq!(gate.scans.len(), scans);
    assert!(out.join("report.md").is_file());
    assert!(out.join("grids/lpba40-t1.png").is_file());
}
