//! `cargo xtask study STUDY.toml`: a learning-curve study, reproducible from one file (a file
//! with `kind = "gate"` is a gate study instead: `gate_study.rs`).
//!
//! A study file names a base experiment config, settings applied to every variant, and the
//! variants, each a list of `--set KEY=VALUE` overrides of the `blindspot` command line:
//!
//! ```toml
//! base = "configs/quickstart.toml"      # relative to the workspace root
//! out = "runs/study-adequacy"           # one run directory per variant below it
//! set = ["ensemble.members=1", "train.val_every=50"]
//! [[variant]]
//! name = "vae-paper"
//! note = "the quickstart's VAE"
//! set = ["train.duration={ steps = 1500 }"]
//! ```
//!
//! For each variant (or those named by `--only`) it runs `blindspot synth`, `prepare` and
//! `train` (a trained variant resumes, which is a no-op), then reads every member's training
//! log and the adequacy references (`model/adequacy.json`) and prints one Markdown table:
//! validation reconstruction error and adequacy at fixed steps, the final KL per latent
//! dimension and the training time per step. `--table FILE` also writes the table to a file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// Arguments of `cargo xtask study`.
#[derive(clap::Args)]
pub struct Args {
    /// The study file.
    pub(crate) study: PathBuf,
    /// Only these variants (repeatable); default all.
    #[arg(long)]
    pub(crate) only: Vec<String>,
    /// Only build the table from the runs already there; train nothing.
    #[arg(long)]
    pub(crate) table_only: bool,
    /// Also write the Markdown table to this file.
    #[arg(long)]
    pub(crate) table: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Study {
    base: PathBuf,
    out: PathBuf,
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    report_steps: Vec<u64>,
    variant: Vec<crate::Variant>,
}

/// One validation record of a member's log.
struct Point {
    step: u64,
    rec_err: f64,
    kl: Option<f64>,
}

pub fn run(args: Args) -> Result<()> {
    let root = crate::workspace_root();
    let text = std::fs::read_to_string(&args.study)
        .with_context(|| format!("reading {}", args.study.display()))?;
    let study: Study =
        toml::from_str(&text).with_context(|| format!("parsing {}", args.study.display()))?;
    let chosen = crate::chosen_variants(&study.variant, &args.only, &args.study)?;
    let base = root.join(&study.base);
    let out = root.join(&study.out);
    if !args.table_only {
        let exe = crate::build_runner(&root)?;
        for v in &chosen {
            let dir = out.join(&v.name);
            for step in ["synth", "prepare", "train"] {
                eprintln!("study: {} {step}", v.name);
                let mut cmd = std::process::Command::new(&exe);
                cmd.current_dir(&root)
                    .arg(step)
                    .arg(&base)
                    .arg("--out")
                    .arg(&dir);
                for s in study.set.iter().chain(&v.set) {
                    cmd.arg("--set").arg(s);
                }
                if step != "train" {
                    cmd.stdout(std::process::Stdio::null());
                }
                crate::run(&mut cmd)?;
            }
        }
    }
    let steps = if study.report_steps.is_empty() {
        vec![100, 250, 500, 1000, 2000]
    } else {
        study.report_steps.clone()
    };
    let table = table(&study, &chosen, &out, &steps)?;
    print!("{table}");
    if let Some(path) = &args.table {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn number(v: &serde_json::Value, key: &str, path: &Path) -> Result<f64> {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("{}: no number `{key}`", path.display()))
}

/// The validation points and the training seconds per step of one member's log.
fn member_log(dir: &Path) -> Result<(Vec<Point>, Option<f64>)> {
    let path = dir.join("log.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (mut points, mut rates) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(r) = v.get("images_per_s").and_then(serde_json::Value::as_f64) {
            rates.push(r);
        }
        let term = |name: &str| {
            v.get("val_terms")?
                .as_array()?
                .iter()
                .find(|t| t.get(0).and_then(|n| n.as_str()) == Some(name))?
                .get(1)?
                .as_f64()
        };
        if let (Some(step), Some(rec_err)) =
            (v.get("step").and_then(|s| s.as_u64()), term("rec_err"))
        {
            points.push(Point {
                step,
                rec_err,
                kl: term("kl_div"),
            });
        }
    }
    // the median throughput, in seconds per step of the configured batch
    rates.sort_by(f64::total_cmp);
    let batch = json(&dir.join("train_config.json"))
        .ok()
        .and_then(|c| c.get("batch_size").and_then(serde_json::Value::as_f64));
    let per_step = match (rates.get(rates.len() / 2), batch) {
        (Some(&r), Some(b)) if r > 0.0 => Some(b / r),
        _ => None,
    };
    Ok((points, per_step))
}

fn table(study: &Study, chosen: &[&crate::Variant], out: &Path, steps: &[u64]) -> Result<String> {
    let mut t = String::new();
    let mut header = vec!["variant".to_string(), "settings".into()];
    header.extend(steps.iter().map(|s| format!("step {s}")));
    header.extend(["last".into(), "KL/dim".into(), "s/step".into()]);
    writeln!(t, "| {} |", header.join(" | "))?;
    writeln!(t, "|{}", "---|".repeat(header.len()))?;
    for v in chosen {
        let dir = out.join(&v.name);
        let refs_path = dir.join("model").join("adequacy.json");
        if !refs_path.is_file() {
            writeln!(t, "| {} | {} | not trained |", v.name, v.set.join(", "))?;
            continue;
        }
        let refs = json(&refs_path)?;
        let during = refs
            .get("during_training")
            .with_context(|| format!("{}: no `during_training`", refs_path.display()))?;
        let (e_mean, e_blur) = (
            number(during, "e_mean", &refs_path)?,
            number(during, "e_blur", &refs_path)?,
        );
        let adequacy = |e: f64| (e_mean - e) / (e_mean - e_blur);
        let mut members: Vec<PathBuf> = std::fs::read_dir(dir.join("model"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("log.jsonl").is_file())
            .collect();
        members.sort();
        for m in members {
            let (points, per_step) = member_log(&m)?;
            let cell = |p: &Point| format!("{:.3} / **{:.2}**", p.rec_err, adequacy(p.rec_err));
            let mut row = vec![
                format!(
                    "{}{}",
                    v.name,
                    m.file_name()
                        .and_then(|n| n.to_str())
                        .filter(|n| *n != "member-0")
                        .map_or(String::new(), |n| format!(" ({n})"))
                ),
                if v.note.is_empty() {
                    v.set.join(", ")
                } else {
                    v.note.clone()
                },
            ];
            for s in steps {
                row.push(
                    points
                        .iter()
                        .find(|p| p.step == *s)
                        .map_or_else(|| "–".into(), cell),
                );
            }
            let last = points.last();
            row.push(last.map_or_else(|| "–".into(), |p| format!("{} @ {}", cell(p), p.step)));
            row.push(
                last.and_then(|p| p.kl)
                    .map_or_else(|| "–".into(), |k| format!("{k:.3}")),
            );
            row.push(per_step.map_or_else(|| "–".into(), |s| format!("{s:.2}")));
            writeln!(t, "| {} |", row.join(" | "))?;
        }
    }
    writeln!(
        t,
        "\nCells: validation reconstruction error / **adequacy**, against the references on the validation slices each validation saw (`during_training` in `model/adequacy.json`). Base config `{}`, runs in `{}`.",
        study.base.display(),
        study.out.display()
    )?;
    Ok(t)
}
