//! `cargo xtask ci`: what CI runs (`.ci/run`). The test suite, then the checks a test cannot
//! make from inside `cargo test`: the architecture invariants, the documentation, the NIfTI
//! reader without its pipeline, every backend feature of the binary (and the tiny end-to-end
//! run on burn-ndarray, through the generic kernels CUDA takes, against burn-flex's), the
//! "Adding a model" walk-through, and the packages of the library crates.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{build_runner, build_runner_with, cargo, invariants, run, target_dir, walkthrough};

/// The library crates, in dependency order, that `cargo package` builds and compiles from the
/// packaged sources alone: they need no burn, so verifying them costs about two minutes.
const VERIFIED_PACKAGES: &[&str] = &[
    "blindspot-atomic",
    "blindspot-metrics",
    "blindspot-io",
    "blindspot-ood",
    "blindspot-synth",
    "blindspot-report",
];

/// The library crates over burn: packaged (manifest, files, versions of the internal
/// dependencies) without the verifying build, which would compile burn again in another
/// profile; the workspace build compiles the same sources.
const PACKAGED_ONLY: &[&str] = &[
    "blindspot-kernels",
    "blindspot-core",
    "blindspot-backbone",
    "blindspot-vae",
    "blindspot-ae",
    "blindspot-flow",
];

/// The backend features of the runner besides the default (flex): each must still compile. CUDA
/// cannot run here, and `check` is enough to keep it building.
const OTHER_BACKENDS: &[(&str, &str)] = &[
    ("ndarray", "the binary on burn-ndarray compiles"),
    ("cuda", "the binary on burn-cuda compiles"),
];

pub fn run_ci(root: &Path, tests: bool) -> Result<()> {
    let mut steps: Vec<(&str, f64)> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        eprintln!("ci: {name}");
        let t = Instant::now();
        f()?;
        steps.push((name, t.elapsed().as_secs_f64()));
        Ok(())
    };
    if tests {
        step("the test suite", &mut || {
            run(cargo()
                .current_dir(root)
                .args(["test", "--workspace", "--release"]))
        })?;
    }
    step("architecture invariants", &mut || invariants::check(root))?;
    step(
        "the NIfTI reader alone (blindspot-io without default features)",
        &mut || {
            run(cargo().current_dir(root).args([
                "test",
                "--release",
                "-p",
                "blindspot-io",
                "--no-default-features",
            ]))
        },
    )?;
    step("documentation, warnings denied", &mut || {
        run(cargo()
            .current_dir(root)
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "--no-deps"]))
    })?;
    for (backend, name) in OTHER_BACKENDS {
        step(name, &mut || {
            run(cargo().current_dir(root).args([
                "check",
                "-p",
                "blindspot-runner",
                "--no-default-features",
                "--features",
                backend,
                "--bins",
            ]))
        })?;
    }
    step(
        "the model walk-through of docs/ARCHITECTURE.md builds and runs",
        &mut || walkthrough::run_walkthrough(root),
    )?;
    step(
        "the tiny run on burn-ndarray agrees with burn-flex",
        &mut || backends_agree(root),
    )?;
    step("packages, verified", &mut || {
        forget_packaged_sources()?;
        // a target directory of its own, emptied first: cargo takes a registry crate of the
        // same name and version for unchanged and reuses its build, so the previous run's
        // blindspot-metrics would stand in for today's
        let verify = target_dir(root).join("package-verify");
        let _ = std::fs::remove_dir_all(&verify);
        run(cargo()
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &verify)
            .args(["package", "--allow-dirty", "--quiet"])
            .args(package_args(VERIFIED_PACKAGES)))
    })?;
    step("packages over burn, unverified", &mut || {
        // with the crates they depend on: cargo resolves unpublished workspace dependencies
        // only among the packages of the same call
        run(cargo()
            .current_dir(root)
            .args(["package", "--allow-dirty", "--quiet", "--no-verify"])
            .args(package_args(VERIFIED_PACKAGES))
            .args(package_args(PACKAGED_ONLY)))
    })?;
    for (name, seconds) in &steps {
        eprintln!("ci: {seconds:>7.1} s  {name}");
    }
    println!("ci: all checks passed");
    Ok(())
}

/// `cargo package` verifies a crate against the workspace crates of the same call through a
/// local registry, whose packages cargo extracts into `CARGO_HOME/registry/src/-<hash>/` and, on
/// a later call, reuses by name and version: a crate changed without a new version would be
/// verified against its old sources (measured: blindspot-io failed to find a function its
/// dependency had gained). Removes those extractions of this workspace's crates first.
fn forget_packaged_sources() -> Result<()> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let Ok(registries) = std::fs::read_dir(home.join("registry").join("src")) else {
        return Ok(()); // nothing extracted yet
    };
    for registry in registries {
        let registry = registry?.path();
        // the local overlay registries have no name: `-<hash>`; crates.io's is `index.crates.io-…`
        let local = registry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('-'));
        if !local {
            continue;
        }
        for entry in std::fs::read_dir(&registry)? {
            let path = entry?.path();
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("blindspot-"));
            if ours && path.is_dir() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn package_args(crates: &[&str]) -> Vec<String> {
    crates
        .iter()
        .flat_map(|c| ["-p".to_owned(), (*c).to_owned()])
        .collect()
}

/// The tiny experiment of the end-to-end tests, run by both binaries.
const TINY: &str = "crates/blindspot-runner/tests/tiny.toml";

/// How far a number of the ndarray run may be from flex's: `|a - b| <= ABS + REL * |a|`. The two
/// backends sum in other orders (flex through blindspot-kernels' GEMM lowering, ndarray through
/// burn's generic convolutions), and three training steps carry the rounding into the weights.
/// Measured (2026-12-07, AVX2): AUROCs and APs within 0.017, the gate's scores within 1 % (0.23
/// and 0.41 on a score of -52 in two CI runs: burn-ndarray is not bit-reproducible run to run,
/// two of its runs differ by 0.13 there, while burn-flex's are identical; after the phantom's
/// normal draws changed, a lesion score 0.104 apart), the texts, the gate's verdicts included,
/// equal. The false-positive rate at 95 % TPR is left out ([`is_skipped`]).
const ABS: f64 = 0.1;
const REL: f64 = 0.05;

/// Builds the binary on burn-ndarray (the runner's `ndarray` feature takes precedence over the
/// default `flex`), restores the flex binary, runs the tiny experiment with both, and compares
/// their `results.json`: the same structure and texts, and every number within [`ABS`] and
/// [`REL`] (wall times, speeds and the plots' histograms aside: a slice that crosses a bin edge
/// moves a count).
fn backends_agree(root: &Path) -> Result<()> {
    let release = target_dir(root).join("release");
    let built = build_runner_with(root, &["ndarray"])?;
    let ndarray = release.join("blindspot-ndarray");
    std::fs::copy(&built, &ndarray)
        .with_context(|| format!("copying the ndarray binary to {}", ndarray.display()))?;
    let flex = build_runner(root)?;
    let out = release.join("ci-backends");
    let _ = std::fs::remove_dir_all(&out);
    let mut results = Vec::new();
    for (name, binary) in [("flex", &flex), ("ndarray", &ndarray)] {
        let dir = out.join(name);
        let backend = crate::output(std::process::Command::new(binary).arg("backend"))?;
        if !backend.contains(name) {
            bail!("{} says `{}`, not {name}", binary.display(), backend.trim());
        }
        run(std::process::Command::new(binary)
            .current_dir(root)
            .args(["run", TINY, "--out"])
            .arg(&dir)
            .stdout(std::process::Stdio::null()))?;
        results.push(read_json(&dir.join("results.json"))?);
    }
    let mut worst = (0.0f64, String::new());
    let mut numbers = 0usize;
    compare(&results[0], &results[1], "", &mut worst, &mut numbers)?;
    eprintln!(
        "ci: {numbers} numbers of results.json agree; the largest difference is {:.2e} at {}",
        worst.0,
        if worst.1.is_empty() { "-" } else { &worst.1 }
    );
    Ok(())
}

fn read_json(path: &PathBuf) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Keys left out: what measures the machine, not the method, the plots' histograms, and the
/// false-positive rate at 95 % TPR: one point of a ROC curve over the dozen slices of a tiny
/// set, where two scores that trade places move it by a slice's share (measured: 11 of 13
/// slices on flex, 13 of 13 on ndarray, 0.15 apart); the AUROC over the same slices is compared.
fn is_skipped(key: &str) -> bool {
    matches!(
        key,
        "wall_times" | "seconds" | "images_per_s" | "histograms" | "fpr_at_95_tpr"
    )
}

/// A text with every number in it replaced by `#`: captions quote numbers, which may differ.
fn without_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        let digit = c.is_ascii_digit() || (in_number && c == '.');
        if digit && !in_number {
            out.push('#');
        } else if !digit {
            out.push(c);
        }
        in_number = digit;
    }
    out
}

/// Walks two JSON trees side by side: equal structure and texts, numbers within tolerance.
fn compare(
    a: &Value,
    b: &Value,
    at: &str,
    worst: &mut (f64, String),
    numbers: &mut usize,
) -> Result<()> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            if keys(x) != keys(y) {
                bail!("{at}: flex has keys {:?}, ndarray {:?}", keys(x), keys(y));
            }
            for (k, v) in x {
                if !is_skipped(k) {
                    compare(v, &y[k], &format!("{at}.{k}"), worst, numbers)?;
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                bail!("{at}: {} entries on flex, {} on ndarray", x.len(), y.len());
            }
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                compare(v, w, &format!("{at}[{i}]"), worst, numbers)?;
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let d = (x - y).abs();
            // a NaN on either side fails too
            if d.is_nan() || d > ABS + REL * x.abs() {
                bail!("{at}: {x} on flex, {y} on ndarray (allowed: {ABS} + {REL} x |flex|)");
            }
            *numbers += 1;
            if d > worst.0 {
                *worst = (d, at.to_owned());
            }
        }
        (Value::String(x), Value::String(y)) if without_numbers(x) == without_numbers(y) => {}
        _ if a == b => {}
        _ => bail!("{at}: {a} on flex, {b} on ndarray"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_within_tolerance_and_texts_up_to_their_numbers_agree() {
        let flex = serde_json::json!({
            "auroc": 0.80, "seconds": 3.0, "caption": "above the threshold 0.766",
            "gate": [{"decision": "in_distribution", "score": 1.27}],
            "histograms": [{"counts": [0, 3]}],
        });
        let close = serde_json::json!({
            "auroc": 0.83, "seconds": 90.0, "caption": "above the threshold 0.77",
            "gate": [{"decision": "in_distribution", "score": 1.34}],
            "histograms": [{"counts": [3, 0]}],
        });
        let (mut worst, mut n) = ((0.0, String::new()), 0);
        compare(&flex, &close, "", &mut worst, &mut n).unwrap();
        assert_eq!(n, 2);
        assert_eq!(worst.1, ".gate[0].score");
        let mut far = close.clone();
        far["auroc"] = serde_json::json!(0.95);
        let err = compare(&flex, &far, "", &mut worst, &mut n).unwrap_err();
        assert!(err.to_string().contains(".auroc"), "{err}");
        let mut flipped = close.clone();
        flipped["gate"][0]["decision"] = serde_json::json!("out_of_distribution");
        let err = compare(&flex, &flipped, "", &mut worst, &mut n).unwrap_err();
        assert!(err.to_string().contains(".gate[0].decision"), "{err}");
        assert_eq!(without_numbers("t 0.766, 12 of 3"), "t #, # of #");
    }
}
