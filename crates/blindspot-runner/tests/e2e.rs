//! End-to-end: `blindspot run` on a tiny phantom (8 mm voxels, 32x32 slices, 3 training steps,
//! 2 ensemble members) through the real binary; every output must exist, parse and hold
//! finite numbers. Then `blindspot score` on a phantom scan and (with `BLINDSPOT_REAL_DATA`)
//! on a real LAS-oriented scan: the map must sit on the input's grid and affine. Also the exit
//! codes and messages of a bad config.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use blindspot_report::{GridKind, TestSetRole, load_results};
use blindspot_runner::config::RunConfig;
use blindspot_testkit::copy_dir;

const TINY: &str = include_str!("tiny.toml");

fn blindspot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_blindspot"))
}

fn non_empty(path: &Path) {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert!(len > 0, "{} is empty", path.display());
}

/// The tiny run, done once for all tests of this file.
fn tiny_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("tiny.toml");
        std::fs::write(&config, TINY).unwrap();
        let out = tmp.path().join("run");
        let o = blindspot()
            .args([
                "run",
                config.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "blindspot run failed: {stderr}");
        // three training steps learn no anatomy, and the terminal says so
        assert!(
            stderr.contains("model adequacy") && stderr.contains("NOT MET"),
            "{stderr}"
        );
        (tmp, out)
    })
    .1
}

/// A lesional phantom scan of the run in `run`.
fn lesional_scan(run: &Path) -> PathBuf {
    run.join("data/images")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("id_lesion"))
        .expect("a lesional phantom scan")
}

/// Scores `scan` with the tiny run and checks the map against the input.
fn check_score(scan: &Path, out: &Path) {
    let status = blindspot()
        .args(["score", "--run"])
        .arg(tiny_run())
        .arg("--scores")
        .arg(out)
        .arg(scan)
        .status()
        .unwrap();
    assert!(status.success(), "blindspot score failed: {status}");
    let name = scan
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".nii.gz", "");
    let input = blindspot_io::read_volume(scan).unwrap();
    let map = blindspot_io::read_volume(&out.join(format!("{name}.anomaly.nii.gz"))).unwrap();
    assert_eq!(map.dims, input.dims);
    for (a, b) in map
        .affine
        .iter()
        .flatten()
        .zip(input.affine.iter().flatten())
    {
        assert!(
            (a - b).abs() < 1e-4,
            "map affine {:?} vs input {:?}",
            map.affine,
            input.affine
        );
    }
    assert!(map.data.iter().all(|v| v.is_finite() && *v >= 0.0));
    assert!(map.data.iter().any(|v| *v > 0.0), "an all-zero anomaly map");
    // Almost nothing is scored outside the head: background voxels of the input stay 0.
    let outside = map
        .data
        .iter()
        .zip(&input.data)
        .filter(|(m, x)| **x == 0.0 && **m > 0.0)
        .count();
    let background = input.data.iter().filter(|x| **x == 0.0).count();
    assert!(
        outside * 4 < background.max(1),
        "{outside} of {background} background voxels scored"
    );
    let verdict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{name}.verdict.json"))).unwrap())
            .unwrap();
    assert!(verdict["decision"].is_string(), "{verdict}");
}

/// Member `m` trains with the run's master seed + `m`, whatever `[train] seed` says (the tiny
/// config's master seed is 3, its train seed the default 0).
#[test]
fn each_member_trains_with_the_master_seed_plus_its_index() {
    let run = tiny_run();
    for m in 0..2u64 {
        let path = run.join(format!("model/member-{m}/train_config.json"));
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["seed"], 3 + m, "{}", path.display());
    }
}

#[test]
fn score_maps_a_phantom_scan_back_onto_its_grid() {
    let run = tiny_run();
    let scan = lesional_scan(run);
    check_score(&scan, &run.join("scores-phantom"));
}

#[test]
fn score_refuses_a_4d_file_without_volume_and_scores_the_chosen_one() {
    let run = tiny_run();
    let scan = lesional_scan(run);
    let tmp = tempfile::tempdir().unwrap();
    // a plain 3-D copy, then the same volume twice behind a header that says dim = 4, t = 2
    let volume = blindspot_io::read_volume(&scan).unwrap();
    let plain = tmp.path().join("one.nii");
    blindspot_io::write_f32(&plain, &volume).unwrap();
    let mut bytes = std::fs::read(&plain).unwrap();
    let data = bytes[352..].to_vec();
    bytes[40..42].copy_from_slice(&4i16.to_le_bytes());
    bytes[48..50].copy_from_slice(&2i16.to_le_bytes());
    bytes.extend_from_slice(&data);
    let four_d = tmp.path().join("series.nii");
    std::fs::write(&four_d, bytes).unwrap();
    let out_dir = tmp.path().join("scores");

    let refused = blindspot()
        .args(["score", "--run"])
        .arg(run)
        .arg("--scores")
        .arg(&out_dir)
        .arg(&four_d)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("series.nii") && err.contains("2 volumes") && err.contains("--volume"),
        "{err}"
    );
    assert!(!out_dir.join("series.anomaly.nii.gz").exists());

    let status = blindspot()
        .args(["score", "--volume", "1", "--run"])
        .arg(run)
        .arg("--scores")
        .arg(&out_dir)
        .arg(&four_d)
        .status()
        .unwrap();
    assert!(status.success());
    let map = blindspot_io::read_volume(&out_dir.join("series.vol1.anomaly.nii.gz")).unwrap();
    assert_eq!(map.dims, volume.dims);
    let verdict = std::fs::read_to_string(out_dir.join("series.vol1.verdict.json")).unwrap();
    assert!(verdict.contains("series.vol1"), "{verdict}");
}

#[test]
fn score_and_evaluate_refuse_a_corrupt_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    for part in ["config.resolved.toml", "model"] {
        let from = tiny_run().join(part);
        if from.is_dir() {
            copy_dir(&from, &run.join(part));
        } else {
            std::fs::copy(&from, run.join(part)).unwrap();
        }
    }
    let checkpoints = run.join("model/member-1/checkpoints");
    let pointer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(checkpoints.join("last.json")).unwrap()).unwrap();
    let weights = checkpoints
        .join(pointer["dir"].as_str().unwrap())
        .join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01; // one bit of one weight
    std::fs::write(&weights, bytes).unwrap();

    let scan = lesional_scan(tiny_run());
    let out = blindspot()
        .args(["score", "--run"])
        .arg(&run)
        .arg("--scores")
        .arg(tmp.path().join("scores"))
        .arg(&scan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt") && err.contains("member-1") && err.contains("model.safetensors"),
        "{err}"
    );
    assert!(
        !tmp.path().join("scores").exists()
            || std::fs::read_dir(tmp.path().join("scores"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn evaluate_with_intervals_compares_the_prior_with_the_best_plain_score() {
    // finding 3 is judged on a paired bootstrap over the slices both statistics score
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    copy_dir(tiny_run(), &run);
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let status = blindspot()
        .args(["evaluate", config.to_str().unwrap(), "--out"])
        .arg(&run)
        .args(["--set", "evaluation.bootstrap_resamples=100"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let results: blindspot_report::Results =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    let c = results
        .prior_comparison
        .expect("a paired comparison for finding 3");
    assert!(c.prior.starts_with("entropy"), "{}", c.prior);
    let (low, high) = (c.difference.low.unwrap(), c.difference.high.unwrap());
    assert!(low <= c.difference.value && c.difference.value <= high);
}

#[test]
fn references_without_a_scale_are_reported_not_fatal() {
    // validated on its one training subject, the mean training image at each position is the
    // validation slice itself (E_mean = 0), so no blur can beat it: adequacy has no scale,
    // whatever the phantom draws, and the run must still finish with its results (no gate:
    // it needs more validation scans)
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, &TINY[..TINY.find("[gate]").unwrap()]).unwrap();
    let out = tmp.path().join("run");
    let o = blindspot()
        .args(["run", config.to_str().unwrap(), "--out"])
        .arg(&out)
        .args(["--set", "preprocess.slice_size=[16, 16]"])
        .args(["--set", "synth.sets[0].count=1"])
        .args(["--set", "data.validation.synth_set=\"train\""])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("adequacy cannot be measured"), "{stderr}");
    let results = load_results(&out.join("results.json")).unwrap();
    assert!(results.adequacy.is_none());
}

#[test]
fn score_maps_a_real_las_scan_back_onto_its_grid() {
    let Some(root) = std::env::var_os("BLINDSPOT_REAL_DATA") else {
        eprintln!("BLINDSPOT_REAL_DATA is not set: skipping the real-scan scoring check");
        return;
    };
    let scan = Path::new(&root).join("arc_stroke/M2208_T2w_norm.nii.gz");
    assert!(
        scan.is_file(),
        "{} is missing from BLINDSPOT_REAL_DATA",
        scan.display()
    );
    check_score(&scan, &tiny_run().join("scores-real"));
}

#[test]
fn run_writes_every_output_with_finite_numbers() {
    let out = tiny_run();
    // The resolved config parses back to the same run.
    let resolved = RunConfig::load(&out.join("config.resolved.toml")).unwrap();
    assert_eq!(resolved, RunConfig::from_toml_str(TINY).unwrap());
    assert!(out.join("model/scoring.json").is_file());
    assert!(out.join("model/scoring.json").is_file());

    // results.json validates on load (every number finite, rates in [0, 1]).
    let results = load_results(&out.join("results.json")).unwrap();
    assert_eq!(results.experiment, "tiny");
    assert_eq!(results.test_sets.len(), 5);
    assert!(results.threshold.value.is_finite());
    assert_eq!(results.threshold.target_fpr, Some(0.05));
    assert!(results.wall_times.iter().any(|w| w.step == "train"));
    assert_eq!(results.statistics.len(), 10);
    assert_eq!(results.histograms.len(), 10);
    for t in &results.test_sets {
        assert!(t.scans == 2, "{}: {} scans", t.name, t.scans);
        let model = &t.pixel[0];
        let baseline = &t.pixel[1];
        assert!(!model.baseline && baseline.baseline);
        let fpr = model.healthy_fpr_at_threshold.as_ref().unwrap().value;
        assert!((0.0..=1.0).contains(&fpr));
        match t.role {
            TestSetRole::OutOfDistribution => {
                assert_eq!(t.ood.len(), 10, "{}", t.name);
                let rec = t.ood.iter().find(|o| o.statistic == "rec_err").unwrap();
                let all = rec.all.as_ref().expect("rec_err detects in mode all");
                assert!((0.0..=1.0).contains(&all.auroc.value));
                // WAIC exists with two members.
                let waic = t.ood.iter().find(|o| o.statistic == "waic").unwrap();
                assert!(waic.all.is_some());
            }
            TestSetRole::InDistribution => assert!(t.ood.is_empty()),
        }
        // One slice grid per set, of the right kind, written as a PNG.
        assert_eq!(t.slice_grids.len(), 1, "{}", t.name);
        let grid = &t.slice_grids[0];
        let expected = if t.name.contains("lesional") {
            GridKind::Lesional
        } else if t.role == TestSetRole::OutOfDistribution {
            GridKind::OutOfDistribution
        } else {
            GridKind::InDistribution
        };
        assert_eq!(grid.kind, expected, "{}", t.name);
        let png = std::fs::read(out.join(&grid.path)).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{}", grid.path);
    }
    let lesional = results
        .test_sets
        .iter()
        .find(|t| t.name == "ID lesional")
        .unwrap();
    assert!(lesional.slices.lesional > 0);
    let dice = lesional.pixel[0].dice_at_threshold.as_ref().unwrap().value;
    assert!((0.0..=1.0).contains(&dice));
    assert!(lesional.pixel[0].auroc.is_some() && lesional.pixel[1].auroc.is_some());
    // adequacy of both members against the references of the validation slices, the training
    // curves of both, and (3 steps learn nothing) findings that are not interpretable
    let a = results.adequacy.as_ref().expect("adequacy was measured");
    assert_eq!(a.members.len(), 2);
    assert_eq!(a.criterion, 0.5);
    assert!(a.e_mean > a.e_blur && a.slices > 0, "{a:?}");
    for m in &a.members {
        let score = (a.e_mean - m.e_model) / (a.e_mean - a.e_blur);
        assert!((m.adequacy - score).abs() < 1e-12);
    }
    assert!(!a.adequate());
    assert_eq!(results.training.len(), 2);
    for c in &results.training {
        assert_eq!(c.points.last().map(|p| p.step), Some(3));
        assert!(c.points.iter().all(|p| p.beta.is_some()));
    }
    let refs = blindspot_runner::adequacy::read_references(out).unwrap();
    assert_eq!(refs.validation.len() as u64, a.slices);
    for f in blindspot_report::findings(&results) {
        assert!(
            matches!(
                f.verdict,
                blindspot_report::Verdict::NotInterpretable
                    | blindspot_report::Verdict::NotMeasured
            ),
            "{}: {:?}",
            f.title,
            f.verdict
        );
    }
    non_empty(&out.join("plots/training-member-0.png"));
    // the pooled experiments, one entry per statistic (no intervals: bootstrap is off here)
    assert_eq!(results.pooled.len(), 10);
    for p in &results.pooled {
        let d = p
            .disentangling_auroc
            .expect("lesional and healthy slices exist");
        assert!((0.0..=1.0).contains(&d.value) && d.low.is_none(), "{p:?}");
    }
    assert!(results.prior_comparison.is_none());
    // lesional slices split by lesion size, each bin with the prior and the paper's scores
    assert!(!results.disentangling_by_size.is_empty());
    for b in &results.disentangling_by_size {
        assert!(b.positives > 0 && b.low < b.high);
        assert!(b.auroc.iter().any(|(n, _)| n == "entropy"), "{b:?}");
    }
    let gate = results.gate.as_ref().unwrap();
    assert!(gate.healthy_fpr_all.is_some() && gate.id_acceptance.is_some());
    non_empty(&out.join("plots/gate-acceptance.png"));
    let gate = results.gate.as_ref().expect("the gate ran");
    assert_eq!(gate.per_set.len(), 5);
    assert_eq!(gate.per_set.iter().map(|s| s.scans).sum::<usize>(), 10);
    assert!((0.0..=1.0).contains(&gate.fraction_rejected));
    assert!(!gate.risk_coverage.is_empty());

    for f in [
        "report.md",
        "report.html",
        "config.resolved.toml",
        "data/manifest.csv",
    ] {
        non_empty(&out.join(f));
    }
    for m in 0..2 {
        assert!(out.join(format!("model/member-{m}")).is_dir());
    }
    let tables: Vec<_> = std::fs::read_dir(out.join("tables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!tables.is_empty());
    tables.iter().for_each(|p| non_empty(p));
}

/// A run moved to another machine scores without its training data's environment variables.
#[test]
fn score_needs_no_variable_of_the_training_data() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    copy_dir(&tiny_run().join("model"), &run.join("model"));
    let resolved = std::fs::read_to_string(tiny_run().join("config.resolved.toml")).unwrap();
    assert!(resolved.contains("[data.train]"), "{resolved}");
    let moved = resolved.replacen(
        "[data.train]",
        "[data]\nroot = \"${BLINDSPOT_TEST_UNSET_DATA_ROOT}/data\"\n\n[data.train]",
        1,
    );
    std::fs::write(run.join("config.resolved.toml"), moved).unwrap();
    let scan = lesional_scan(tiny_run());
    let scores = tmp.path().join("scores");
    let out = blindspot()
        .env_remove("BLINDSPOT_TEST_UNSET_DATA_ROOT")
        .args(["score", "--run"])
        .arg(&run)
        .arg("--scores")
        .arg(&scores)
        .arg(&scan)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let decision = stdout.lines().next().unwrap().rsplit('\t').next().unwrap();
    assert!(
        ["in_distribution", "lesion_suspected", "out_of_distribution"].contains(&decision),
        "{stdout}"
    );
    // a step that reads the data still names the variable
    let check = blindspot()
        .env_remove("BLINDSPOT_TEST_UNSET_DATA_ROOT")
        .arg("check")
        .arg(run.join("config.resolved.toml"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains("BLINDSPOT_TEST_UNSET_DATA_ROOT"), "{err}");
}

/// `--version` answers; an option a command does not use is refused, not ignored.
#[test]
fn the_command_line_refuses_options_a_command_does_not_use() {
    let version = blindspot().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("blindspot {}", env!("CARGO_PKG_VERSION"))
    );
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["report", "runs/x", "--set", "seed=1"][..],
        &["backend", "--set", "seed=1"],
        &["score", "--run", "runs/x", "--set", "seed=1", "scan.nii"],
        &["score", "--run", "runs/x", "--out", "elsewhere", "scan.nii"],
        &["train-smoke"],
    ] {
        let out = blindspot()
            .current_dir(tmp.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unexpected argument") || err.contains("unrecognized subcommand"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_config_exits_2_and_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, TINY.replace("members = 2", "members = 0")).unwrap();
    let out = blindspot()
        .args(["run", config.to_str().unwrap(), "--out"])
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("ensemble.members"),
        "{err}"
    );
    assert!(!tmp.path().join("run").exists());

    let missing = blindspot()
        .args(["run", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn an_io_error_states_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan.nii.gz");
    std::fs::write(&scan, b"not a scan").unwrap();
    let missing_run = tmp.path().join("no-such-run");
    let out = blindspot()
        .args(["score", "--run"])
        .arg(&missing_run)
        .arg(&scan)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-run"), "{err}");
    // the OS's text of the cause ("No such file or directory (os error 2)") appears once
    let os_cause = err
        .split(": ")
        .find(|part| part.contains("os error"))
        .unwrap_or_else(|| panic!("no OS cause in {err}"));
    assert_eq!(err.matches(os_cause.trim()).count(), 1, "{err}");
}

#[test]
fn separate_sharded_steps_merge_into_the_same_results_as_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let out = tmp.path().join("staged");
    let step = |args: &[&str]| {
        let status = blindspot()
            .args(args)
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "blindspot {args:?} failed: {status}");
    };
    step(&["synth"]);
    step(&["prepare", "--shard", "1/2"]);
    step(&["prepare", "--shard", "0/2"]);
    step(&["train", "--shard", "1/2"]);
    assert!(!out.join("model/member-0").exists());
    assert!(out.join("model/member-1").is_dir());
    step(&["train", "--shard", "0/2"]);
    step(&["evaluate"]);
    let staged = load_results(&out.join("results.json")).unwrap();
    let whole = load_results(&tiny_run().join("results.json")).unwrap();
    assert_eq!(staged.test_sets, whole.test_sets);
    assert_eq!(staged.gate, whole.gate);
    assert_eq!(staged.threshold.value, whole.threshold.value);
    let scoring = std::fs::read(out.join("model/scoring.json")).unwrap();

    // Sharded evaluation: three partial results, merged, give the same bytes.
    std::fs::remove_file(out.join("results.json")).unwrap();
    let shards = out.join("eval-shards");
    let merge = || {
        blindspot()
            .args(["evaluate", "--merge"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let fails_naming = |file: &str, what: &str| {
        let o = merge();
        assert_eq!(o.status.code(), Some(1), "merge should fail ({what})");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(file) && err.contains(what), "{err}");
    };
    step(&["evaluate", "--shard", "2/3"]);
    step(&["evaluate", "--shard", "1/3"]);
    assert!(shards.join("shard-1-of-3.json.gz").is_file());
    fails_naming("shard-0-of-3.json.gz", "missing");
    step(&["evaluate", "--shard", "0/3"]);
    // A stale file of another sharding, and a file whose content is another shard's.
    let one = shards.join("shard-1-of-3.json.gz");
    std::fs::copy(&one, shards.join("shard-1-of-4.json.gz")).unwrap();
    fails_naming("shard-1-of-4.json.gz", "one of 4 shards");
    std::fs::remove_file(shards.join("shard-1-of-4.json.gz")).unwrap();
    let two = shards.join("shard-2-of-3.json.gz");
    std::fs::rename(&two, shards.join("keep")).unwrap();
    std::fs::copy(&one, &two).unwrap();
    fails_naming("shard-2-of-3.json.gz", "holds shard 1/3");
    std::fs::rename(shards.join("keep"), &two).unwrap();
    assert!(merge().status.success());
    let merged = load_results(&out.join("results.json")).unwrap();
    assert_eq!(merged.test_sets, whole.test_sets);
    assert_eq!(merged.gate, whole.gate);
    assert_eq!(merged.histograms, whole.histograms);
    assert_eq!(merged.threshold, whole.threshold);
    assert_eq!(
        std::fs::read(out.join("model/scoring.json")).unwrap(),
        scoring
    );
    // A shard of another config is refused.
    let other = tmp.path().join("other.toml");
    std::fs::write(
        &other,
        TINY.replace("lesional_pixels = 5", "lesional_pixels = 6"),
    )
    .unwrap();
    let o = blindspot()
        .args(["evaluate", "--merge"])
        .arg(&other)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("shard-0-of-3.json.gz")
            && err.contains("another config"),
        "{err}"
    );

    let bad = blindspot()
        .args(["train", "--shard", "2/2"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// `run` with another model family: the tiny config with `[model]` holding `kind` and that
/// family's `keys`, and the statistics and gate components that model provides.
fn run_kind(
    kind: &str,
    keys: &str,
    statistics: &str,
    gate_statistic: &str,
) -> blindspot_report::Results {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join(format!("{kind}.toml"));
    let vae_keys = "width = 0.25\nlatent_dim = 8\nbeta = { kind = \"monotonic\", start = 0.0, end = 1.0, steps = 3 }\n";
    assert!(TINY.contains(vae_keys));
    let text = TINY
        .replace(vae_keys, &format!("kind = \"{kind}\"\n{keys}\n"))
        .replace(
            r#"statistics = ["rec_err", "kl", "coded_elbo", "neg_elbo", "waic", "waic_neg_elbo", "dose", "dose_density_sum", "entropy", "entropy_clean"]"#,
            &format!("statistics = [{statistics}]\nprior_knowledge = []"),
        )
        .replace(
            r#"{ statistic = "rec_err","#,
            &format!(r#"{{ statistic = "{gate_statistic}","#),
        );
    std::fs::write(&config, text).unwrap();
    let out = tmp.path().join("run");
    let o = blindspot()
        .args(["run", config.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{kind}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    load_results(&out.join("results.json")).unwrap()
}

fn check_kind(results: &blindspot_report::Results, method: &str, statistics: &[&str]) {
    assert_eq!(results.test_sets.len(), 5);
    assert!(results.threshold.value.is_finite());
    for t in &results.test_sets {
        assert_eq!(t.pixel[0].method, method);
        if t.role == TestSetRole::OutOfDistribution {
            let names: Vec<&str> = t.ood.iter().map(|o| o.statistic.as_str()).collect();
            assert_eq!(names, statistics, "{}", t.name);
            for o in &t.ood {
                let all = o.all.as_ref().unwrap_or_else(|| panic!("{}", o.statistic));
                assert!((0.0..=1.0).contains(&all.auroc.value), "{}", o.statistic);
            }
        }
    }
    let lesional = results
        .test_sets
        .iter()
        .find(|t| t.name == "ID lesional")
        .unwrap();
    assert!(lesional.pixel[0].auroc.is_some());
    assert!(results.gate.is_some());
    // a model with a reconstruction is judged for adequacy; a flow has none to judge
    assert_eq!(results.adequacy.is_some(), method != "flow ensemble");
    assert_eq!(results.training.len(), 2);
}

#[test]
fn an_autoencoder_a_denoising_autoencoder_and_a_flow_run_end_to_end() {
    let ae_keys = "width = 0.25\nlatent_dim = 8";
    let ae = run_kind("ae", ae_keys, r#""rec_err", "dose", "entropy""#, "rec_err");
    check_kind(&ae, "AE ensemble", &["rec_err", "dose", "entropy"]);
    let dae_keys = "width = 0.25\nlatent_dim = 8\nnoise_resolution = 4\nnoise_std = 0.1";
    let dae = run_kind(
        "dae",
        dae_keys,
        r#""rec_err", "dose", "entropy""#,
        "rec_err",
    );
    check_kind(&dae, "DAE ensemble", &["rec_err", "dose", "entropy"]);
    let flow = run_kind(
        "flow",
        "width = 0.25\nlevels = 2\nsteps_per_level = 2",
        r#""neg_elbo", "log_likelihood", "waic_neg_elbo", "dose""#,
        "neg_elbo",
    );
    check_kind(
        &flow,
        "flow ensemble",
        &["neg_elbo", "log_likelihood", "waic_neg_elbo", "dose"],
    );
}

/// When stderr is not a terminal (a cluster job's log file), training says what it does in
/// plain lines: start, every logged step with time left, and on a rerun what it reused.
#[test]
fn training_progress_is_plain_text_without_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let out = tmp.path().join("run");
    let train = || {
        let o = blindspot()
            .args(["run", config.to_str().unwrap(), "--out"])
            .arg(&out)
            .args(["--set", "train.progress=true", "--set", "train.log_every=1"])
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let first = train();
    for needle in [
        "member-0: training 3 steps",
        "member-1: training 3 steps",
        "member-0: step 1/3 loss",
        "member-1: step 3/3 loss",
        "s left)",
    ] {
        assert!(first.contains(needle), "{needle:?} missing in:\n{first}");
    }
    let again = train();
    assert!(
        again.contains("member-0: already trained (3 of 3 steps), reused"),
        "{again}"
    );
    assert!(!again.contains("step 1/3"), "{again}");
}

/// `results.json` without the wall times (the only field a rerun may change).
fn results_without_times(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("wall_times");
    v
}

/// What a run directory shows of how far the run got.
fn phase(dir: &Path) -> &'static str {
    if dir.join("report.html").exists() {
        "done"
    } else if dir.join("results.json").exists() {
        "report"
    } else if dir.join("model/scoring.json").exists() {
        "evaluation"
    } else if dir.join("model/member-1/log.csv").exists() {
        "training member 1"
    } else if dir.join("model/member-0/log.csv").exists() {
        "training member 0"
    } else if dir.join("cache").exists() {
        "prepare"
    } else if dir.join("data").exists() {
        "synth"
    } else {
        "start"
    }
}

#[test]
fn a_run_killed_anywhere_and_rerun_gives_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    // enough training steps, with checkpoints, that kills land inside training too
    let sets = [
        "--set",
        "train.duration={ steps = 40 }",
        "--set",
        "train.checkpoint_every=10",
    ];
    let run = |out: &Path| {
        let mut cmd = blindspot();
        cmd.args(["run", config.to_str().unwrap(), "--out"])
            .arg(out)
            .args(sets)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let reference = tmp.path().join("reference");
    let start = std::time::Instant::now();
    assert!(run(&reference).status().unwrap().success());
    let took = start.elapsed();
    let want = results_without_times(&reference);

    // kills when a step's first output appears (synth, prepare, each member's training,
    // evaluation, report), and at fixed shares of the reference run's time
    let mut table = Vec::new();
    let triggers: Vec<(&str, Option<&str>, f64)> = vec![
        ("synth", Some("data"), 0.0),
        ("prepare", Some("cache"), 0.0),
        ("training member 0", Some("model/member-0/log.csv"), 0.0),
        (
            "training member 1",
            Some("model/member-1/checkpoints/last.json"),
            0.0,
        ),
        ("evaluation", Some("model/scoring.json"), 0.0),
        ("report", Some("results.json"), 0.0),
        ("a share of the time", None, 0.3),
        ("a share of the time", None, 0.6),
        ("a share of the time", None, 0.9),
    ];
    for (k, (when, path, fraction)) in triggers.into_iter().enumerate() {
        let out = tmp.path().join(format!("killed-{k}"));
        let mut child = run(&out).spawn().unwrap();
        match path {
            Some(p) => {
                while !out.join(p).exists() && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            None => std::thread::sleep(took.mul_f64(fraction)),
        }
        child.kill().ok(); // SIGKILL (an error: it had finished already)
        child.wait().unwrap();
        let at = phase(&out);
        assert!(
            run(&out).status().unwrap().success(),
            "rerun after a kill at {at}"
        );
        let same = results_without_times(&out) == want;
        table.push(format!("at {when} (run dir shows: {at}): identical {same}"));
        assert!(same, "killed at {at} and rerun: other results");
    }
    eprintln!("kill table:\n{}", table.join("\n"));

    // `evaluate --shard` killed while it writes its partial result, then rerun and merged
    let out = tmp.path().join("sharded");
    std::fs::create_dir_all(&out).unwrap();
    for dir in ["data", "cache", "model"] {
        copy_dir(&reference.join(dir), &out.join(dir));
    }
    std::fs::copy(
        reference.join("config.resolved.toml"),
        out.join("config.resolved.toml"),
    )
    .unwrap();
    let evaluate = |extra: &[&str]| {
        let mut cmd = blindspot();
        cmd.args(["evaluate", config.to_str().unwrap(), "--out"])
            .arg(&out)
            .args(sets)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let start = std::time::Instant::now();
    assert!(evaluate(&["--shard", "0/2"]).status().unwrap().success());
    let shard_took = start.elapsed();
    std::fs::remove_dir_all(out.join("eval-shards")).unwrap();
    for fraction in [0.3, 0.6, 0.9] {
        let mut child = evaluate(&["--shard", "0/2"]).spawn().unwrap();
        std::thread::sleep(shard_took.mul_f64(fraction));
        child.kill().unwrap();
        child.wait().unwrap();
        // a killed shard leaves no partial result under its final name, or a whole one
        assert!(evaluate(&["--shard", "0/2"]).status().unwrap().success());
    }
    assert!(evaluate(&["--shard", "1/2"]).status().unwrap().success());
    std::fs::remove_file(out.join("results.json")).ok();
    assert!(evaluate(&["--merge"]).status().unwrap().success());
    assert_eq!(
        results_without_times(&out),
        want,
        "a sharded evaluation killed mid-write and rerun"
    );
}

/// `blindspot` under a file-size limit of `kib` KiB (`ulimit -f`, with SIGXFSZ ignored, so a
/// write past it fails with EFBIG as a write to a full disk fails with ENOSPC).
fn blindspot_with_file_limit(kib: u64, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_blindspot"))
        .args(args)
        .output()
        .unwrap()
}

/// Names in `dir` (not recursive) that look like temporary files of the atomic writers.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.contains(".tmp"))
        .collect()
}

#[test]
fn a_full_disk_fails_naming_the_file_and_keeps_the_good_files() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let out = tmp.path().join("run");
    let (config_s, out_s) = (config.to_str().unwrap(), out.to_str().unwrap());
    let ok = blindspot()
        .args(["run", config_s, "--out", out_s])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // the report: the old one stays whole
    let report = std::fs::read(out.join("report.html")).unwrap();
    let o = blindspot_with_file_limit(16, &["report", out_s]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(out_s), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("report.html")).unwrap(), report);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));

    // a checkpoint: the last good one stays the one `last` points at, and training resumes
    let checkpoints = out.join("model/member-0/checkpoints");
    let last = std::fs::read(checkpoints.join("last.json")).unwrap();
    let more = ["--set", "train.duration={ steps = 6 }"];
    let o = blindspot_with_file_limit(
        40,
        &[&["train", config_s, "--out", out_s][..], &more].concat(),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("member-0") && stderr(&o).contains("step-0000000006"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(checkpoints.join("last.json")).unwrap(), last);
    assert!(
        leftovers(&checkpoints).is_empty(),
        "{:?}",
        leftovers(&checkpoints)
    );
    let o = blindspot()
        .args([&["train", config_s, "--out", out_s][..], &more].concat())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let last = std::fs::read_to_string(checkpoints.join("last.json")).unwrap();
    assert!(last.contains("step-0000000006"), "{last}");

    // a slice cache: no partial cache under its name, and the rebuilt one is the same
    let cache = out.join("cache");
    let name = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("id-lesional"))
        .unwrap();
    let good = std::fs::read(&name).unwrap();
    std::fs::remove_file(&name).unwrap();
    let o = blindspot_with_file_limit(40, &["prepare", config_s, "--out", out_s]);
    assert!(!o.status.success());
    let file = name.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr(&o).contains(&file), "{}", stderr(&o));
    assert!(!name.exists());
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    let o = blindspot()
        .args(["prepare", config_s, "--out", out_s])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&name).unwrap(), good);
}

/// `blindspot slurm --dry-run` writes five job scripts and prints their sbatch chain; run on
/// this machine one array task after another (as SLURM would, with `SLURM_ARRAY_TASK_ID`), from
/// another working directory and with 3 tasks for 2 members, they give the results of `run`.
#[test]
fn slurm_job_scripts_run_task_by_task_give_the_results_of_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny config's.toml");
    std::fs::write(&config, TINY).unwrap();
    let out = tmp.path().join("run dir");
    let o = blindspot()
        .args(["slurm"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args([
            "--array",
            "3",
            "--time",
            "00:10:00",
            "--sbatch-arg=--mem=1G",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("sbatch")).collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with("JOB_SYNTH=$(sbatch --parsable '"));
    assert!(lines[2].contains("--dependency=afterok:$JOB_PREPARE"));
    assert!(lines[4].contains("--dependency=afterok:$JOB_EVALUATE"));
    let slurm = out.join("slurm");
    let train = std::fs::read_to_string(slurm.join("train.sh")).unwrap();
    for needle in [
        "#SBATCH --array=0-2",
        "#SBATCH --time=00:10:00",
        "#SBATCH --mem=1G",
        "--shard \"${SLURM_ARRAY_TASK_ID}/3\"",
        "tiny config'\\''s.toml",
    ] {
        assert!(
            train.contains(needle),
            "train.sh lacks {needle:?}:\n{train}"
        );
    }
    assert!(slurm.join("logs").is_dir());
    // Run the chain here, one task at a time, from another working directory.
    let elsewhere = tempfile::tempdir().unwrap();
    for (step, tasks) in [
        ("synth", 1),
        ("prepare", 3),
        ("train", 3),
        ("evaluate", 3),
        ("merge", 1),
    ] {
        for task in 0..tasks {
            let o = Command::new("bash")
                .arg(slurm.join(format!("{step}.sh")))
                .current_dir(elsewhere.path())
                .env("SLURM_ARRAY_TASK_ID", task.to_string())
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{step} task {task}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    assert!(out.join("eval-shards/shard-2-of-3.json.gz").is_file());
    // A task run again reuses its finished shard instead of inferring again.
    let o = Command::new("bash")
        .arg(slurm.join("evaluate.sh"))
        .env("SLURM_ARRAY_TASK_ID", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("reused"), "{err}");
    let chained = load_results(&out.join("results.json")).unwrap();
    let whole = load_results(&tiny_run().join("results.json")).unwrap();
    assert_eq!(chained.test_sets, whole.test_sets);
    assert_eq!(chained.gate, whole.gate);
    assert_eq!(chained.threshold.value, whole.threshold.value);
    assert!(out.join("report.md").is_file());
}

/// Submission goes through `sbatch --parsable`, each step after the one before; a refusal by
/// sbatch stops the chain with its message and the script's name. A stand-in `sbatch` first on
/// PATH records its arguments.
#[cfg(unix)]
#[test]
fn slurm_submits_a_dependency_chain_through_sbatch() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = tmp.path().join("calls.txt");
    let fake = bin.join("sbatch");
    let write_fake = |body: &str| {
        std::fs::write(&fake, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // Job ids 101, 102, ... in the `<id>;<cluster>` form of a federated cluster.
    write_fake(&format!(
        "echo \"$@\" >> '{}'\nn=$(wc -l < '{}')\necho \"$((100 + n));cluster\"",
        calls.display(),
        calls.display()
    ));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let submit = |out: &Path| {
        blindspot()
            .args(["slurm"])
            .arg(&config)
            .arg("--out")
            .arg(out)
            .args(["--array", "2", "--partition", "cpu"])
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let out = tmp.path().join("run");
    let o = submit(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("squeue -j 101,102,103,104,105"), "{stdout}");
    let recorded = std::fs::read_to_string(&calls).unwrap();
    let calls_made: Vec<&str> = recorded.lines().collect();
    assert_eq!(calls_made.len(), 5);
    assert!(calls_made[0].starts_with("--parsable ") && calls_made[0].ends_with("synth.sh"));
    for (k, step) in ["prepare", "train", "evaluate", "merge"].iter().enumerate() {
        let want = format!("--parsable --dependency=afterok:{} ", 101 + k);
        assert!(
            calls_made[k + 1].starts_with(&want)
                && calls_made[k + 1].ends_with(&format!("{step}.sh")),
            "{}",
            calls_made[k + 1]
        );
    }
    // sbatch refuses: exit 1, its message and the script named, nothing further submitted.
    write_fake("echo 'sbatch: error: invalid partition specified: cpu' >&2\nexit 1");
    let o = submit(&tmp.path().join("run2"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("invalid partition") && err.contains("synth.sh"),
        "{err}"
    );
    // A bad option is a usage error naming it.
    let o = blindspot()
        .args(["slurm"])
        .arg(&config)
        .args(["--array", "0", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--array"));
}

/// A one-node SLURM cluster (munged, slurmctld, slurmd from Debian's `slurm-wlm` and `munge`) in
/// a temporary folder, stopped by pid when dropped.
struct LiveCluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl LiveCluster {
    /// Starts the daemons, or says why it cannot (not root, a program missing).
    fn start() -> Result<Self, String> {
        let which = |p: &str| {
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(p))
                .find(|f| f.is_file())
                .ok_or_else(|| format!("`{p}` is not installed (apt-get install slurm-wlm munge)"))
        };
        let (munged, slurmctld, slurmd) = (which("munged")?, which("slurmctld")?, which("slurmd")?);
        for client in ["sbatch", "squeue", "scancel"] {
            which(client)?;
        }
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("the daemons of a one-node test cluster need root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path().to_owned();
        for sub in ["state", "spool", "log", "munge"] {
            std::fs::create_dir(d.join(sub)).map_err(|e| e.to_string())?;
        }
        let key: Vec<u8> = (0..1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ std::process::id() as u8)
            .collect();
        let key_file = d.join("munge/munge.key");
        std::fs::write(&key_file, key).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o400))
            .map_err(|e| e.to_string())?;
        // Two free ports, both held until read so that they differ.
        let listeners = [0, 1].map(|_| std::net::TcpListener::bind("127.0.0.1:0"));
        let mut ports = Vec::new();
        for l in &listeners {
            let l = l.as_ref().map_err(|e| e.to_string())?;
            ports.push(l.local_addr().map_err(|e| e.to_string())?.port());
        }
        drop(listeners);
        let host = Command::new("hostname")
            .arg("-s")
            .output()
            .map_err(|e| e.to_string())?;
        let host = String::from_utf8_lossy(&host.stdout).trim().to_owned();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let p = |rel: &str| d.join(rel).display().to_string();
        let conf = d.join("slurm.conf");
        let text = format!(
            "ClusterName=blindspot-test\nSlurmctldHost={host}\nSlurmUser=root\nSlurmdUser=root\n\
             SlurmctldPort={}\nSlurmdPort={}\nAuthType=auth/munge\nAuthInfo=socket={}\n\
             CredType=cred/munge\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nMpiDefault=none\n\
             ReturnToService=2\nStateSaveLocation={}\nSlurmdSpoolDir={}\n\
             SlurmctldPidFile={}\nSlurmdPidFile={}\nSlurmctldLogFile={}\nSlurmdLogFile={}\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             NodeName={host} CPUs={cpus} State=UNKNOWN\n\
             PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            ports[0],
            ports[1],
            p("munge/munge.socket"),
            p("state"),
            p("spool"),
            p("slurmctld.pid"),
            p("slurmd.pid"),
            p("log/slurmctld.log"),
            p("log/slurmd.log"),
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let cluster = LiveCluster { dir, conf };
        let run = |cmd: &mut Command| -> Result<(), String> {
            let o = cmd.output().map_err(|e| e.to_string())?;
            o.status
                .success()
                .then_some(())
                .ok_or_else(|| format!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr)))
        };
        run(Command::new(munged).args([
            "--force",
            &format!("--socket={}", p("munge/munge.socket")),
            &format!("--key-file={}", key_file.display()),
            &format!("--log-file={}", p("log/munged.log")),
            &format!("--pid-file={}", p("munge/munged.pid")),
            &format!("--seed-file={}", p("munge/munged.seed")),
        ]))?;
        run(Command::new(slurmctld).arg("-f").arg(&cluster.conf))?;
        run(Command::new(slurmd).arg("-f").arg(&cluster.conf))?;
        // Wait until the node takes jobs.
        for _ in 0..60 {
            let o = cluster.client("sinfo").args(["-h", "-o", "%t"]).output();
            if o.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle") {
                return Ok(cluster);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        Err(format!(
            "the test cluster did not come up:\n{}",
            cluster.logs()
        ))
    }

    /// A SLURM client command talking to this cluster.
    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn logs(&self) -> String {
        ["log/slurmctld.log", "log/slurmd.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (at most `seconds`) until none of `jobs` is queued or running.
    fn wait(&self, jobs: &[String], seconds: u64) {
        let start = std::time::Instant::now();
        loop {
            let o = self
                .client("squeue")
                .args(["-h", "-o", "%i %T %r", "-j", &jobs.join(",")])
                .output()
                .unwrap();
            let left = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed().as_secs() < seconds,
                "jobs still queued after {seconds} s:\n{left}\n{}",
                self.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

impl Drop for LiveCluster {
    fn drop(&mut self) {
        for pid_file in ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join(pid_file)) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        // Give them a moment to leave their files before the folder goes.
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// The job ids `blindspot slurm` printed, in step order.
fn submitted_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

/// `blindspot slurm --array 2` on a live one-node cluster: the two tasks of each step run at
/// the same time on one run directory, and the results equal a single `run`'s. Then a chain
/// whose one training task is killed mid-way (`scancel`) never evaluates; submitted again, it
/// reuses what finished and gives the results of a single run. Skips loudly without SLURM and
/// root.
#[cfg(unix)]
#[test]
fn slurm_on_a_live_cluster_gives_the_results_of_run() {
    let cluster = match LiveCluster::start() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("\n*** SKIPPED the live SLURM test: {why} ***\n");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let submit = |out: &Path, extra: &[&str]| {
        let o = blindspot()
            .args(["slurm"])
            .arg(&config)
            .arg("--out")
            .arg(out)
            .args(["--array", "2"])
            .args(extra)
            .env("SLURM_CONF", &cluster.conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ids = submitted_ids(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(ids.len(), 5, "{}", String::from_utf8_lossy(&o.stdout));
        ids
    };
    let same_as_run = |out: &Path, reference: &Path| {
        let r = load_results(&out.join("results.json")).unwrap_or_else(|e| {
            let logs: Vec<String> = std::fs::read_dir(out.join("slurm/logs"))
                .map(|d| {
                    d.flatten()
                        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default();
            panic!("{e}\n{}\n{}", logs.join("\n"), cluster.logs())
        });
        let whole = load_results(&reference.join("results.json")).unwrap();
        assert_eq!(r.test_sets, whole.test_sets);
        assert_eq!(r.gate, whole.gate);
        assert_eq!(r.threshold.value, whole.threshold.value);
    };
    let out = tmp.path().join("run");
    let ids = submit(&out, &[]);
    cluster.wait(&ids, 300);
    same_as_run(&out, tiny_run());
    for task in 0..2 {
        assert!(
            out.join(format!("slurm/logs/train-{}_{task}.log", ids[2]))
                .is_file()
        );
    }

    // Kill one training task mid-way (400 steps, so that it runs for a while): the chain stops
    // there; submitted again, it reuses what finished and gives the results of a single run.
    let long = ["--set", "train.duration={ steps = 400 }"];
    let reference = tmp.path().join("reference");
    let o = blindspot()
        .args(["run"])
        .arg(&config)
        .arg("--out")
        .arg(&reference)
        .args(long)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = tmp.path().join("killed");
    let ids = submit(&out, &long);
    let task = format!("{}_1", ids[2]);
    let start = std::time::Instant::now();
    loop {
        let o = cluster
            .client("squeue")
            .args(["-h", "-o", "%T", "-j", &task])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stdout).trim() == "RUNNING" {
            break;
        }
        assert!(start.elapsed().as_secs() < 300, "{task} never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = cluster.client("scancel").arg(&task).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    cluster.wait(&ids[..3], 300);
    assert!(!out.join("results.json").exists(), "the chain went on");
    // The steps behind it wait forever on a dependency that cannot be met: cancel them, resubmit.
    let o = cluster.client("scancel").args(&ids[3..]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = submit(&out, &long);
    cluster.wait(&again, 300);
    same_as_run(&out, &reference);
}
