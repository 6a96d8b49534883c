//! `cargo xtask`: the one entry point for automation (no Makefiles, no shell glue).
//!
//! - `cargo xtask ci`: what CI runs: the tests, the architecture invariants, the docs with
//!   warnings denied, blindspot-io without default features, the other backend features, and
//!   `cargo package` of the library crates.
//! - `cargo xtask validate`: formatting, clippy with warnings denied, the architecture
//!   invariants of docs/ARCHITECTURE.md, and the test suite.
//! - `cargo xtask bench <io|metrics|kde|model>`: blindspot side by side with the reference
//!   Python implementations in `../shared/bench`, in one run, printing both times and the ratio.
//! - `cargo xtask study STUDY.toml`: a learning-curve study (training runs of config variants)
//!   and its table of reconstruction error and model adequacy against step.
//! - `cargo xtask fuzz <target|all> --seconds N`: mutation fuzzing of the readers (NIfTI, slice
//!   cache, config, shard merge), restarting the fuzzer when it dies and keeping the input.

mod bench;
mod ci;
mod fuzz;
mod gate_study;
mod invariants;
mod study;
mod walkthrough;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Automation for the blindspot workspace")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// What CI runs: the tests, then the invariants, docs, the reader alone, every backend
    /// feature, the model walk-through and the library packages.
    Ci {
        /// Skip the test suite (the checks only).
        #[arg(long)]
        no_tests: bool,
    },
    /// fmt --check, clippy -D warnings, architecture invariants, then the tests (release profile).
    Validate {
        /// Skip the test run (fmt, clippy and invariants only).
        #[arg(long)]
        no_tests: bool,
    },
    /// Check the architecture invariants only.
    Invariants,
    /// Benchmarks against the Python references in ../shared/bench.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// A learning-curve study: train config variants, tabulate adequacy against step.
    Study(study::Args),
    /// Fuzz a reader (nifti, cache, config, shard, or all): failures land in
    /// crates/blindspot-fuzz/regressions/.
    Fuzz(fuzz::Args),
    /// Follow docs/ARCHITECTURE.md's "Adding a model" in a copy of the workspace with a
    /// throw-away MLP autoencoder, and run it through `blindspot run` on a tiny config.
    Walkthrough,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Ci { no_tests } => ci::run_ci(&workspace_root(), !no_tests),
        Cmd::Validate { no_tests } => validate(no_tests),
        Cmd::Invariants => invariants::check(&workspace_root()),
        Cmd::Bench { which } => bench::run(which),
        Cmd::Study(args) => {
            let text = std::fs::read_to_string(&args.study)
                .with_context(|| format!("reading {}", args.study.display()))?;
            if gate_study::is_gate_study(&text) {
                gate_study::run(
                    &args.study,
                    &text,
                    &args.only,
                    args.table_only,
                    args.table.as_deref(),
                )
            } else {
                study::run(args)
            }
        }
        Cmd::Fuzz(args) => fuzz::run_fuzz(args),
        Cmd::Walkthrough => walkthrough::run_walkthrough(&workspace_root()),
    }
}

fn validate(no_tests: bool) -> Result<()> {
    let root = workspace_root();
    run(cargo()
        .current_dir(&root)
        .args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;
    invariants::check(&root)?;
    if !no_tests {
        run(cargo()
            .current_dir(&root)
            .args(["test", "--workspace", "--release"]))?;
    }
    println!("validate: all checks passed");
    Ok(())
}

/// The workspace root (the parent of this crate's manifest directory).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// One variant of a study (`[[variant]]` of a learning-curve or a gate study): its name, a
/// note for the table, and its `blindspot --set` overrides.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Variant {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) note: String,
    #[serde(default)]
    pub(crate) set: Vec<String>,
}

/// The variants `only` names (all when it is empty), in file order; an unknown name is an
/// error listing the variants `file` has.
pub(crate) fn chosen_variants<'a>(
    variants: &'a [Variant],
    only: &[String],
    file: &Path,
) -> Result<Vec<&'a Variant>> {
    if let Some(name) = only
        .iter()
        .find(|n| !variants.iter().any(|v| &v.name == *n))
    {
        bail!(
            "--only {name}: no such variant in {} (it has: {})",
            file.display(),
            variants
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(variants
        .iter()
        .filter(|v| only.is_empty() || only.contains(&v.name))
        .collect())
}

/// Builds the `blindspot` binary (release) and returns its path.
pub(crate) fn build_runner(root: &Path) -> Result<PathBuf> {
    build_runner_with(root, &[])
}

/// Builds the `blindspot` binary (release) with extra cargo `features` and returns its path.
pub(crate) fn build_runner_with(root: &Path, features: &[&str]) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "blindspot-runner"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    run(&mut cmd)?;
    Ok(target_dir(root).join("release").join("blindspot"))
}

/// `CARGO_TARGET_DIR` or `target/` of the workspace.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { root.join(p) } else { p })
        .unwrap_or_else(|| root.join("target"))
}

/// Run a command, failing with its command line when it exits non-zero.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Run a command and capture its standard output as text.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every `.rs` file under `dir` (recursively, sorted); none when `dir` does not exist.
pub(crate) fn walk_rs(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
