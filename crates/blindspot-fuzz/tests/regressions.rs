//! Every saved fuzz failure reads back without a panic, and a short seeded fuzz run of every
//! target (the CI smoke run of `cargo xtask fuzz`) finds none.

use blindspot_fuzz::{Budget, Harness, Target, fuzz, regression_dir, run_caught, seeds};

#[test]
fn every_saved_failure_now_reads_without_a_panic() {
    let work = tempfile::tempdir().unwrap();
    let harness = Harness::new(work.path()).unwrap();
    for target in Target::ALL {
        let Ok(entries) = std::fs::read_dir(regression_dir(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "bin") {
                continue;
            }
            let input = std::fs::read(&path).unwrap();
            if let Err(panic) = run_caught(&harness, target, &input) {
                panic!("{} panics again: {panic}", path.display());
            }
        }
    }
}

#[test]
fn a_seeded_smoke_run_of_every_target_finds_no_panic() {
    // quiet: a caught panic would print its message per case
    let real = std::env::var_os("BLINDSPOT_REAL_DATA").map(std::path::PathBuf::from);
    let work = tempfile::tempdir().unwrap();
    let harness = Harness::new(work.path()).unwrap();
    for target in Target::ALL {
        let seeds = seeds(target, real.as_deref(), None).unwrap();
        let report = fuzz(
            &harness,
            target,
            &seeds,
            7,
            Budget::Cases(300),
            None,
            None,
            |_| {},
        )
        .unwrap();
        assert_eq!(report.cases, 300);
        assert!(
            report.panics.is_empty(),
            "{}: {} of 300 cases panicked, the first: {}",
            target.name(),
            report.panics.len(),
            report.panics[0].1
        );
        // the mutations are not all refused at the door: some inputs still read
        assert!(report.accepted > 0, "{}: no case read", target.name());
    }
}
