//! The **Architecture Invariants** of docs/ARCHITECTURE.md that a machine can check.

use std::path::Path;

use anyhow::{Result, bail};

use crate::{cargo, output};

/// Crates that need no tensors and must never depend on burn (not even through another crate).
const NO_BURN: &[&str] = &[
    "blindspot-atomic",
    "blindspot-io",
    "blindspot-synth",
    "blindspot-metrics",
    "blindspot-ood",
    "blindspot-report",
];

/// Concrete burn backends: only the runner binary may name them outside dev-dependencies.
const BACKENDS: &[&str] = &["burn-flex", "burn-ndarray", "burn-cuda", "burn-candle"];
const MAY_NAME_BACKENDS: &[&str] = &[
    "blindspot-runner",
    "xtask",
    // the one TestBackend alias (a dev-dependency of the model crates) and the benchmarks
    "blindspot-testkit",
    "blindspot-benches",
];
/// Generic crates that implement a backend extension trait for concrete backends: they may name
/// a backend only as an optional dependency, behind a cargo feature, so that a crate using them
/// without features (the models) stays backend-free.
const BACKENDS_BEHIND_FEATURES: &[&str] = &["blindspot-kernels"];

pub fn check(root: &Path) -> Result<()> {
    let mut failures = Vec::new();
    let crates = workspace_crates(root)?;

    for name in NO_BURN.iter().filter(|n| crates.iter().any(|c| c == *n)) {
        let tree = output(cargo().current_dir(root).args([
            "tree",
            "-p",
            name,
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ]))?;
        if tree.lines().any(|l| l.starts_with("burn")) {
            failures.push(format!("{name} depends on burn (it must stay tensor-free)"));
        }
    }

    // every crate's declared dependencies as cargo reads them (so `[dependencies.x]` tables and
    // target-specific sections count too)
    let metadata: serde_json::Value =
        serde_json::from_str(&output(cargo().current_dir(root).args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
        ]))?)?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    for package in packages.iter().filter(|p| {
        p["name"]
            .as_str()
            .is_some_and(|n| crates.iter().any(|c| c == n) && !MAY_NAME_BACKENDS.contains(&n))
    }) {
        let name = package["name"].as_str().unwrap_or_default();
        let behind_features = BACKENDS_BEHIND_FEATURES.contains(&name);
        // normal dependencies only: dev-dependencies may name a backend (the test kit)
        let normal = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null());
        for dep in normal {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            // a library asking for a backend extension's backend feature would pull that
            // backend in
            let features = dep["features"].as_array().map_or(0, Vec::len);
            if BACKENDS_BEHIND_FEATURES.contains(&dep_name) && features > 0 {
                failures.push(format!(
                    "{name} enables features {} of `{dep_name}` in [dependencies]; only binaries, the benches and the test kit pick a backend",
                    dep["features"]
                ));
            }
            if BACKENDS.contains(&dep_name) {
                if !behind_features {
                    failures.push(format!(
                        "{name} names the backend {dep_name} in [dependencies]; libraries stay generic over B: Backend (tests may use it as a dev-dependency)"
                    ));
                } else if dep["optional"].as_bool() != Some(true) {
                    failures.push(format!(
                        "{name} names the backend {dep_name} without `optional = true`; its backend impls stay behind cargo features"
                    ));
                }
            }
        }
    }

    if failures.is_empty() {
        println!("invariants: {} crates checked, all hold", crates.len());
        Ok(())
    } else {
        bail!(
            "architecture invariants violated:\n  {}",
            failures.join("\n  ")
        )
    }
}

fn workspace_crates(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}
