//! `cargo xtask study STUDY.toml` for a study file with `kind = "gate"`: gate variants
//! compared on study-only phantom sets, from one trained ensemble and one inference.
//!
//! ```toml
//! kind = "gate"
//! base = "configs/quickstart.toml"   # the run whose recipe (and trained model) is studied
//! out = "runs/study-gate"
//! model_from = "runs/quickstart"      # copy its model/ instead of training it again
//! [sites.A_noisy]                     # extra phantom sites, added to [synth.sites]
//! bias = 0.04
//! # ...
//! [[sets]]                            # study-only sets: added to [synth] sets; they replace
//! name = "study_lesion"               # the base's test sets (so no test set is evaluated)
//! role = "in_distribution"
//! synth = { count = 24, lesions = ["tumour", "ms", "stroke"] }
//! [[variant]]
//! name = "residual"
//! note = "..."
//! set = ['gate.shift=[...]']          # `blindspot --set` overrides of the variant
//! ```
//!
//! It writes the study's run config to `OUT/study.toml` (the base with the sets added),
//! runs `blindspot synth` and `prepare` on it, takes the model from `model_from` (or trains
//! it), infers once (`evaluate --shard 0/2` and `1/2`, kept in `OUT/eval-shards` and reused by
//! later runs: remove `OUT` to start afresh), then evaluates each variant from the
//! partial results (`evaluate --merge --set ...`: the gate does not change inference) and
//! keeps its `results.json` as `OUT/variants/NAME.json`. The table has one row per variant:
//! the gate's goals measured on the study sets, and per set the share rejected and the
//! healthy-pixel FPR of the accepted scans.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateStudy {
    #[allow(dead_code)] // read by the dispatch in main.rs
    kind: String,
    base: PathBuf,
    out: PathBuf,
    #[serde(default)]
    model_from: Option<PathBuf>,
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    sites: toml::Table,
    sets: Vec<StudySet>,
    variant: Vec<crate::Variant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StudySet {
    name: String,
    role: String,
    #[serde(default)]
    transform: Option<String>,
    synth: toml::Table,
}

/// Whether `text` is a gate study (`kind = "gate"`).
pub fn is_gate_study(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("kind").and_then(|k| k.as_str().map(|k| k == "gate")))
        .unwrap_or(false)
}

/// Runs the gate study in `file` (its `text`): every variant, or those in `only`; with
/// `table_only` it only tabulates what earlier runs left; `table` also gets the table.
pub fn run(
    file: &Path,
    text: &str,
    only: &[String],
    table_only: bool,
    table_file: Option<&Path>,
) -> Result<()> {
    let root = crate::workspace_root();
    let study: GateStudy =
        toml::from_str(text).with_context(|| format!("parsing {}", file.display()))?;
    let chosen = crate::chosen_variants(&study.variant, only, file)?;
    let out = root.join(&study.out);
    let config = out.join("study.toml");
    if !table_only {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let text = study_config(&root.join(&study.base), &study)?;
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let exe = crate::build_runner(&root)?;
        let blindspot = |args: &[&str], sets: &[String]| -> Result<()> {
            let mut cmd = std::process::Command::new(&exe);
            cmd.current_dir(&root)
                .arg(args[0])
                .arg(&config)
                .arg("--out")
                .arg(&out)
                .args(&args[1..]);
            for s in study.set.iter().chain(sets) {
                cmd.arg("--set").arg(s);
            }
            cmd.stdout(std::process::Stdio::null());
            eprintln!("study: blindspot {}", args.join(" "));
            crate::run(&mut cmd)
        };
        blindspot(&["synth"], &[])?;
        blindspot(&["prepare"], &[])?;
        if let Some(from) = &study.model_from {
            let target = out.join("model");
            if !target.exists() {
                copy_dir(&root.join(from).join("model"), &target)?;
            }
        }
        blindspot(&["train"], &[])?;
        // One inference serves every variant; a later run reuses it (`evaluate --merge`
        // refuses it, naming the file, when the study's sets changed since).
        let shards = out.join("eval-shards");
        for shard in ["0/2", "1/2"] {
            let file = shards.join(format!("shard-{}-of-2.json.gz", &shard[..1]));
            if file.exists() {
                eprintln!("study: reusing {}", file.display());
            } else {
                blindspot(&["evaluate", "--shard", shard], &[])?;
            }
        }
        let kept = out.join("variants");
        std::fs::create_dir_all(&kept).with_context(|| format!("creating {}", kept.display()))?;
        for v in &chosen {
            blindspot(&["evaluate", "--merge"], &v.set)?;
            let to = kept.join(format!("{}.json", v.name));
            std::fs::copy(out.join("results.json"), &to)
                .with_context(|| format!("writing {}", to.display()))?;
        }
    }
    let table = table(&study, &chosen, &out)?;
    print!("{table}");
    if let Some(path) = table_file {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The base config with the study's sites and sets added and its test sets replaced.
fn study_config(base: &Path, study: &GateStudy) -> Result<String> {
    let text =
        std::fs::read_to_string(base).with_context(|| format!("reading {}", base.display()))?;
    let mut doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", base.display()))?;
    doc.insert(
        "name".into(),
        toml::Value::String(format!(
            "{}-gate-study",
            doc.get("name").and_then(|n| n.as_str()).unwrap_or("run")
        )),
    );
    let synth = doc
        .get_mut("synth")
        .and_then(toml::Value::as_table_mut)
        .with_context(|| {
            format!(
                "{}: no [synth] section to add study sets to",
                base.display()
            )
        })?;
    let sites = synth
        .entry("sites")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .context("[synth] sites is not a table")?;
    for (name, site) in &study.sites {
        sites.insert(name.clone(), site.clone());
    }
    let sets = synth
        .get_mut("sets")
        .and_then(toml::Value::as_array_mut)
        .context("[synth] has no sets")?;
    let mut tests = Vec::new();
    for s in &study.sets {
        let mut t = s.synth.clone();
        t.insert("name".into(), toml::Value::String(s.name.clone()));
        sets.push(toml::Value::Table(t));
        let mut test = toml::Table::new();
        test.insert("name".into(), toml::Value::String(s.name.clone()));
        test.insert("role".into(), toml::Value::String(s.role.clone()));
        test.insert("synth_set".into(), toml::Value::String(s.name.clone()));
        if let Some(tr) = &s.transform {
            test.insert("transform".into(), toml::Value::String(tr.clone()));
        }
        tests.push(toml::Value::Table(test));
    }
    let data = doc
        .get_mut("data")
        .and_then(toml::Value::as_table_mut)
        .with_context(|| format!("{}: no [data] section", base.display()))?;
    data.insert("test".into(), toml::Value::Array(tests));
    Ok(format!(
        "# Written by `cargo xtask study` from {} and the gate study's sets: do not edit.\n{}",
        base.display(),
        toml::to_string(&doc)?
    ))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn rate(v: Option<&Value>) -> String {
    match v.and_then(|e| e.get("value")).and_then(Value::as_f64) {
        Some(x) => format!("{:.0}%", 100.0 * x),
        None => "-".into(),
    }
}

/// The study table: one row per variant (goals on the study sets), then per set the share
/// of scans rejected and the accepted scans' FPR against the target.
fn table(study: &GateStudy, chosen: &[&crate::Variant], out: &Path) -> Result<String> {
    let mut t = String::new();
    let mut per_set = String::new();
    writeln!(
        t,
        "| variant | ID accepted | lesional ID accepted | lesional flagged | healthy flagged | lesion AUROC | note |"
    )?;
    writeln!(t, "|---|---:|---:|---:|---:|---:|---|")?;
    let names: Vec<&str> = study.sets.iter().map(|s| s.name.as_str()).collect();
    writeln!(
        per_set,
        "\nPer set: share of scans rejected / healthy-pixel FPR of the accepted scans in multiples of the target (`all` = without the gate).\n"
    )?;
    writeln!(per_set, "| variant | {} |", names.join(" | "))?;
    writeln!(per_set, "|---|{}", "---:|".repeat(names.len()))?;
    let mut fpr_row = None;
    for v in chosen {
        let path = out.join("variants").join(format!("{}.json", v.name));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let r: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let target = r["threshold"]["target_fpr"].as_f64().unwrap_or(0.05);
        let g = &r["gate"];
        let n = &g["goals"];
        let auroc = n["lesion_auroc"]["value"]
            .as_f64()
            .map_or_else(|| "-".into(), |x| format!("{x:.3}"));
        writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            v.name,
            rate(n.get("id_acceptance")),
            rate(n.get("lesional_acceptance")),
            rate(n.get("lesion_sensitivity")),
            rate(n.get("healthy_flag_rate")),
            auroc,
            v.note
        )?;
        let sets = g["per_set"].as_array().cloned().unwrap_or_default();
        let cell = |name: &str, accepted: bool| -> String {
            let Some(s) = sets.iter().find(|s| s["test_set"] == name) else {
                return "-".into();
            };
            let key = if accepted {
                "healthy_fpr_accepted"
            } else {
                "healthy_fpr_all"
            };
            let fpr = s[key]["value"]
                .as_f64()
                .map_or_else(|| "-".into(), |x| format!("{:.2}x", x / target));
            if accepted {
                format!("{} / {fpr}", rate(s.get("rejection")))
            } else {
                fpr
            }
        };
        if fpr_row.is_none() {
            fpr_row = Some(format!(
                "| all (no gate) | {} |",
                names
                    .iter()
                    .map(|n| cell(n, false))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        writeln!(
            per_set,
            "| {} | {} |",
            v.name,
            names
                .iter()
                .map(|n| cell(n, true))
                .collect::<Vec<_>>()
                .join(" | ")
        )?;
    }
    if let Some(row) = fpr_row {
        writeln!(per_set, "{row}")?;
    }
    Ok(t + &per_set)
}
