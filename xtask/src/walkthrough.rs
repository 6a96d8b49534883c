//! `cargo xtask walkthrough`: proves docs/ARCHITECTURE.md's "Adding a model". It copies the
//! workspace (the files git tracks or would track) into `target/walkthrough/workspace`, takes
//! the walk-through's steps there with the throw-away crate in `xtask/walkthrough/` (a tiny MLP
//! autoencoder): the crate under `crates/`, its line in the root `[workspace.dependencies]`,
//! its line in the runner's `[dependencies]` and its one line in the runner's `families!` list;
//! then checks the architecture invariants of the copy, builds the runner there (sharing this
//! workspace's target directory, so only the workspace's crates compile again) and runs the
//! tiny experiment with `[model] kind = "mlp_ae"`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build_runner, cargo, invariants, output, run, target_dir};

/// The throw-away model crate, relative to the workspace root.
const CRATE: &str = "xtask/walkthrough/blindspot-mlpae";
/// Step 1: its line in the root `[workspace.dependencies]`.
const WORKSPACE_DEPENDENCY: &str =
    r#"blindspot-mlpae = { path = "crates/blindspot-mlpae", version = "0.1.0" }"#;
/// Step 4: its line in the runner's `[dependencies]` ...
const RUNNER_DEPENDENCY: &str = "blindspot-mlpae = { workspace = true }";
/// ... and its one line in the runner's registry.
const REGISTRY_LINE: &str = "    MlpAe => blindspot_mlpae::MlpAeFamily,";
/// The tiny experiment of the end-to-end tests, whose `[model]` the walk-through replaces.
const TINY: &str = "crates/blindspot-runner/tests/tiny.toml";

pub fn run_walkthrough(root: &Path) -> Result<()> {
    let work = target_dir(root).join("walkthrough");
    let copy = work.join("workspace");
    let mut kept = copy_workspace(root, &copy)?;
    kept.extend(add_model(root, &copy)?);
    remove_others(&copy, &kept)?;
    invariants::check(&copy)
        .context("the architecture invariants of the walk-through's workspace")?;
    let binary = build_copy(root, &copy, &work)?;
    let config = write_config(root, &copy)?;
    let out = work.join("run");
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new(&binary)
        .current_dir(&copy)
        .args(["run"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null()))?;
    check_run(&out)?;
    eprintln!(
        "walkthrough: the MLP autoencoder, added as docs/ARCHITECTURE.md says, trained and was evaluated ({})",
        out.display()
    );
    Ok(())
}

/// Makes `to` a copy of the files `git ls-files` names (tracked, and untracked but not
/// ignored): a file is written only when its bytes differ, so that a second run keeps cargo's
/// fingerprints (file times) of the unchanged crates, and a file the tree no longer has is
/// removed.
fn copy_workspace(root: &Path, to: &Path) -> Result<BTreeSet<PathBuf>> {
    let listed = output(Command::new("git").current_dir(root).args([
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "-z",
    ]))
    .context("listing the workspace's files with git")?;
    let mut kept = BTreeSet::new();
    for rel in listed.split('\0').filter(|p| !p.is_empty()) {
        let from = root.join(rel);
        let Ok(bytes) = std::fs::read(&from) else {
            continue; // deleted in the working tree
        };
        let dest = to.join(rel);
        write_if_changed(&dest, &bytes)?;
        kept.insert(dest);
    }
    Ok(kept)
}

/// Writes `bytes` to `path` (creating its folder) unless it holds them already.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Removes the files under `dir` that are not in `kept`.
fn remove_others(dir: &Path, kept: &BTreeSet<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            remove_others(&path, kept)?;
        } else if !kept.contains(&path) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The walk-through's steps 1 and 4 (steps 2 and 3 are the crate's own source); returns the
/// model crate's files it wrote.
fn add_model(root: &Path, copy: &Path) -> Result<Vec<PathBuf>> {
    let dest = copy.join("crates/blindspot-mlpae");
    let mut written = Vec::new();
    for rel in ["Cargo.toml", "src/lib.rs"] {
        let bytes = std::fs::read(root.join(CRATE).join(rel))
            .with_context(|| format!("reading {CRATE}/{rel}"))?;
        write_if_changed(&dest.join(rel), &bytes)?;
        written.push(dest.join(rel));
    }
    insert_after(
        &copy.join("Cargo.toml"),
        "[workspace.dependencies]\n",
        WORKSPACE_DEPENDENCY,
    )?;
    insert_after(
        &copy.join("crates/blindspot-runner/Cargo.toml"),
        "[dependencies]\n",
        RUNNER_DEPENDENCY,
    )?;
    insert_after(
        &copy.join("crates/blindspot-runner/src/models.rs"),
        "\nfamilies! {\n",
        REGISTRY_LINE,
    )?;
    Ok(written)
}

/// Inserts `line` after the first occurrence of `marker` in `path`.
fn insert_after(path: &Path, marker: &str, line: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let Some(at) = text.find(marker) else {
        bail!(
            "{} has no `{}`: the walk-through in docs/ARCHITECTURE.md no longer matches it",
            path.display(),
            marker.trim()
        );
    };
    let at = at + marker.len();
    let edited = format!("{}{line}\n{}", &text[..at], &text[at..]);
    write_if_changed(path, edited.as_bytes())
}

/// Builds the copy's runner into the shared target directory, keeps its binary apart and
/// rebuilds this workspace's (the build put the copy's binary in its place).
fn build_copy(root: &Path, copy: &Path, work: &Path) -> Result<PathBuf> {
    let target = target_dir(root);
    run(cargo()
        .current_dir(copy)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--quiet", "-p", "blindspot-runner"]))?;
    let binary = work.join("blindspot");
    std::fs::copy(target.join("release").join("blindspot"), &binary)
        .with_context(|| format!("keeping the walk-through's binary as {}", binary.display()))?;
    build_runner(root)?;
    Ok(binary)
}

/// The tiny experiment with the new model: its `[model]` replaced by `kind = "mlp_ae"`.
fn write_config(root: &Path, copy: &Path) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(root.join(TINY)).with_context(|| format!("reading {TINY}"))?;
    let mut config: toml::Table = text.parse().with_context(|| format!("parsing {TINY}"))?;
    let mut model = toml::Table::new();
    model.insert("kind".into(), "mlp_ae".into());
    model.insert("hidden".into(), 16.into());
    config.insert("model".into(), model.into());
    config.insert("name".into(), "walkthrough".into());
    // the statistics an autoencoder provides (no KL, hence no ELBO or WAIC)
    let statistics: Vec<toml::Value> = ["rec_err", "dose", "entropy", "entropy_clean"]
        .into_iter()
        .map(Into::into)
        .collect();
    let evaluation = config
        .get_mut("evaluation")
        .and_then(toml::Value::as_table_mut)
        .with_context(|| format!("{TINY} has no [evaluation]"))?;
    evaluation.insert("statistics".into(), statistics.into());
    let path = copy.join("walkthrough.toml");
    std::fs::write(&path, toml::to_string(&config)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The run went through the new family: its config names the kind, its results the label.
fn check_run(out: &Path) -> Result<()> {
    let path = out.join("results.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let results: serde_json::Value = serde_json::from_str(&text)?;
    let kind = &results["config"]["model"]["kind"];
    if kind != "mlp_ae" {
        bail!("{} names the model kind {kind}, not mlp_ae", path.display());
    }
    if !text.contains("MLP AE ensemble") {
        bail!(
            "{} never names the method `MLP AE ensemble`",
            path.display()
        );
    }
    for file in ["report.md", "report.html", "model/member-0"] {
        if !out.join(file).exists() {
            bail!("the walk-through's run has no {}", out.join(file).display());
        }
    }
    Ok(())
}
