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
        for backend in BACKENDS {
            if normal_deps.lines().any(|l| {
                l.trim_start().starts_with(&format!("{backend} "))
                    || l.trim_start().starts_with(&format!("{backend}="))
            }) {
                failures.push(format!(
                    "{name} names the backend {backend} in [dependencies]; libraries stay generic over B: Backend (tests may use it as a dev-dependency)"
                ));
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
