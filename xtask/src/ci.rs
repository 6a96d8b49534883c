//! `cargo xtask ci`: what CI runs (`.ci/run`). The test suite, then the checks a test cannot
//! make from inside `cargo test`: the architecture invariants, the documentation, the NIfTI
//! reader without its pipeline, every backend feature of the binary, and the packages of the
//! library crates.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::{cargo, invariants, run};

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
    step("packages, verified", &mut || {
        run(cargo()
            .current_dir(root)
            .args(["package", "--allow-dirty", "--quiet"])
            .args(package_args(VERIFIED_PACKAGES)))
    })?;
    step("packages over burn, unverified", &mut || {
        run(cargo()
            .current_dir(root)
            .args(["package", "--allow-dirty", "--quiet", "--no-verify"])
            .args(package_args(PACKAGED_ONLY)))
    })?;
    for (name, seconds) in &steps {
        eprintln!("ci: {seconds:>7.1} s  {name}");
    }
    println!("ci: all checks passed");
    Ok(())
}

fn package_args(crates: &[&str]) -> Vec<String> {
    crates
        .iter()
        .flat_map(|c| ["-p".to_owned(), (*c).to_owned()])
        .collect()
}
