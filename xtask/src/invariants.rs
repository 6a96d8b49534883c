//! The **Architecture Invariants** of docs/ARCHITECTURE.md that a machine can check.

use std::path::Path;

use anyhow::{Result, bail};

use crate::{cargo, output};

/// Crates that need no tensors and must never depend on burn (not even through another crate).
const NO_BURN: &[&str] = &[
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

    for name in crates
        .iter()
        .filter(|c| !MAY_NAME_BACKENDS.contains(&c.as_str()))
    {
        let manifest = std::fs::read_to_string(root.join("crates").join(name).join("Cargo.toml"))?;
        let normal_deps = manifest
            .split("\n[")
            .filter(|section| section.starts_with("dependencies"))
            .collect::<String>();
        // a library asking for a backend extension's backend feature would pull that backend in
        for line in normal_deps.lines().filter(|l| {
            BACKENDS_BEHIND_FEATURES
                .iter()
                .any(|k| l.trim_start().starts_with(&format!("{k} ")))
        }) {
            if line.contains("features") {
                failures.push(format!(
                    "{name} enables backend features of `{}` in [dependencies]; only binaries, the benches and the test kit pick a backend",
                    line.trim()
                ));
            }
        }
        let behind_features = BACKENDS_BEHIND_FEATURES.contains(&name.as_str());
        for backend in BACKENDS {
            let named = |l: &&str| {
                l.trim_start().starts_with(&format!("{backend} "))
                    || l.trim_start().starts_with(&format!("{backend}="))
            };
            for line in normal_deps.lines().filter(named) {
                if !behind_features {
                    failures.push(format!(
                        "{name} names the backend {backend} in [dependencies]; libraries stay generic over B: Backend (tests may use it as a dev-dependency)"
                    ));
                } else if !line.replace(' ', "").contains("optional=true") {
                    failures.push(format!(
                        "{name} names the backend {backend} without `optional = true`; its backend impls stay behind cargo features"
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
