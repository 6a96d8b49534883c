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
/// The layers of the workspace, lowest first: a crate depends only on crates of lower layers
/// (docs/ARCHITECTURE.md, "Layers").
const LAYERS: &[(&str, u8)] = &[
    ("blindspot-atomic", 0),
    ("blindspot-metrics", 0),
    ("blindspot-kernels", 0),
    ("blindspot-io", 1),
    ("blindspot-ood", 1),
    ("blindspot-core", 1),
    ("blindspot-synth", 2),
    ("blindspot-report", 2),
    ("blindspot-backbone", 2),
    // the model crates' test kit (a dev-dependency), above core, whose family contract it checks
    ("blindspot-testkit", 2),
    // the model crates (found by their `impl Family for`) are layer MODEL_LAYER
    ("blindspot-runner", 4),
    ("blindspot-fuzz", 5),
    ("blindspot-benches", 5),
    ("xtask", 5),
];

/// The layer of the model crates: the crates that implement `blindspot_core::Family` (no
/// list to keep: a new model crate is found by its impl). None depends on another.
const MODEL_LAYER: u8 = 3;

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
        for dep in normal_dependencies(package) {
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

    // the model crates (those that implement the model-family trait) and mutual imports, from
    // one read of each source file
    let mut model_crates = Vec::new();
    for name in &crates {
        let scan = scan_sources(name, &root.join("crates").join(name).join("src"))?;
        if scan.implements_family {
            model_crates.push(name.as_str());
        }
        failures.extend(scan.mutual_imports);
    }

    // layers: no crate depends on one of its own layer or above it; no model crate on another
    let layer = |n: &str| {
        if model_crates.contains(&n) {
            return Some(MODEL_LAYER);
        }
        LAYERS.iter().find(|(c, _)| *c == n).map(|&(_, l)| l)
    };
    for package in &packages {
        let name = package["name"].as_str().unwrap_or_default();
        let Some(own) = layer(name) else {
            failures.push(format!(
                "{name} has no layer: add it to LAYERS in xtask/src/invariants.rs and to docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for dep in normal_dependencies(package) {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let Some(theirs) = layer(dep_name) else {
                continue; // not a workspace crate
            };
            if model_crates.contains(&name) && model_crates.contains(&dep_name) {
                failures.push(format!(
                    "model crate {name} depends on model crate {dep_name}; shared parts belong in a lower crate (blindspot-backbone)"
                ));
            } else if theirs >= own {
                failures.push(format!(
                    "{name} (layer {own}) depends on {dep_name} (layer {theirs}); a crate depends only on lower layers"
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

/// A package's `[dependencies]` as `cargo metadata` lists them (not dev- or build-dependencies).
fn normal_dependencies(package: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    package["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["kind"].is_null())
}

/// What a crate's sources say, outside comments.
struct SourceScan {
    /// Whether it implements `blindspot_core::Family` (a model crate).
    implements_family: bool,
    /// The pairs of its top-level modules that import each other.
    mutual_imports: Vec<String>,
}

/// Reads every source file of crate `name` once: whether one has an `impl Family for`, and the
/// pairs of top-level modules that import each other (`crate::a` in module `b` and `crate::b`
/// in module `a`; each file's module should sit above or below the other's).
fn scan_sources(name: &str, src: &Path) -> Result<SourceScan> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut implements_family = false;
    for file in crate::walk_rs(src)? {
        let Ok(rel) = file.strip_prefix(src) else {
            continue;
        };
        // code only: a doc link to another module is not an import
        let text: String = std::fs::read_to_string(&file)?
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        implements_family |= text.contains("impl Family for");
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_owned();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let mut rest = text.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !target.is_empty() && target != module {
                uses.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    let mut failures = Vec::new();
    for (a, targets) in &uses {
        for b in targets.iter().filter(|b| a < *b) {
            if uses.get(b).is_some_and(|t| t.contains(a)) {
                failures.push(format!(
                    "{name}: modules `{a}` and `{b}` import each other; one of them should depend on the other only"
                ));
            }
        }
    }
    Ok(SourceScan {
        implements_family,
        mutual_imports: failures,
    })
}
