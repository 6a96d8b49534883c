//! `cargo xtask bench model`: a training step and an inference pass of the paper's
//! VAE, blindspot (burn, `blindspot-benches`'s `vae-timer`) side by side with PyTorch
//! (`../shared/bench/torch_vae.py`) at the same batch, size and thread count. The two are
//! alternated `--rounds` times; the report gives the median of each side and the ratios.
//!
//! xtask does not depend on burn: it builds and spawns the timer, which prints JSON.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{median, python, shared_dir};
use crate::{cargo, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Slices per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Image side.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Channel width multiplier of the VAE (the quickstart uses 0.5).
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// Threads for both sides (RAYON_NUM_THREADS for burn, torch.set_num_threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed iterations per side and round.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed warm-up iterations before them.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Alternating rounds of the two sides.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// burn CPU backend: flex (default), ndarray, ndarray-blas (over the system OpenBLAS) or
    /// candle.
    #[arg(long, default_value = "flex")]
    backend: String,
    /// Skip PyTorch (blindspot only).
    #[arg(long)]
    no_torch: bool,
}

/// The CPU backend features of `blindspot-benches`.
const BACKENDS: &[&str] = &["flex", "ndarray", "ndarray-blas", "candle"];

fn json_line(out: &str, who: &str) -> Result<Value> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{who} printed no JSON line:\n{out}"))?;
    serde_json::from_str(line).with_context(|| format!("{who} printed invalid JSON: {line}"))
}

fn field(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("missing `{key}` in {v}"))
}

/// Runs the script named by `sys.argv[1]` as `__main__` with the rest as its arguments, then
/// prints `peak_rss_kib N` (the process's peak resident memory) on stderr.
const PEAK_RSS_WRAPPER: &str = "import resource, runpy, sys\n\
sys.argv = sys.argv[1:]\n\
try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n\
finally:\n    print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n";

pub fn run(a: Args) -> Result<()> {
    if !BACKENDS.contains(&a.backend.as_str()) {
        bail!(
            "--backend {}: allowed {} (features of blindspot-benches)",
            a.backend,
            BACKENDS.join(", ")
        );
    }
    if a.rounds == 0 || a.steps == 0 || a.threads == 0 {
        bail!("--rounds, --steps and --threads must be >= 1");
    }
    if !(a.width.is_finite() && a.width > 0.0) {
        bail!("--width {}: allowed a number > 0", a.width);
    }
    let root = workspace_root();
    let features: Vec<String> = if a.backend == "flex" {
        vec![]
    } else {
        vec![
            "--no-default-features".into(),
            "--features".into(),
            a.backend.clone(),
        ]
    };
    let common = |c: &mut Command| {
        c.current_dir(&root)
            .args(["--release", "-p", "blindspot-benches", "--bin", "vae-timer"])
            .args(&features);
    };
    let mut build = cargo();
    build.arg("build");
    common(&mut build);
    crate::run(&mut build)?;
    let py = if a.no_torch { None } else { Some(python()?) };
    let script = shared_dir().join("bench").join("torch_vae.py");
    let sizes = [
        "--batch".to_string(),
        a.batch.to_string(),
        "--size".into(),
        a.size.to_string(),
        "--width".into(),
        a.width.to_string(),
        "--steps".into(),
        a.steps.to_string(),
        "--warmup".into(),
        a.warmup.to_string(),
    ];

    let (mut ours_t, mut ours_i, mut torch_t, mut torch_i) = (vec![], vec![], vec![], vec![]);
    let (mut ours_rss, mut torch_rss) = (0.0f64, 0.0f64);
    let mut backend_name = a.backend.clone();
    for round in 0..a.rounds {
        let mut ours = cargo();
        ours.arg("run");
        common(&mut ours);
        ours.arg("--")
            .args(&sizes)
            .env("RAYON_NUM_THREADS", a.threads.to_string());
        let v = json_line(&crate::output(&mut ours)?, "vae-timer")?;
        if let Some(b) = v.get("backend").and_then(Value::as_str) {
            backend_name = b.to_string();
        }
        ours_t.push(field(&v, "train_step_ms_median")?);
        ours_i.push(field(&v, "infer_ms_median")?);
        ours_rss = ours_rss.max(field(&v, "peak_rss_mib").unwrap_or(f64::NAN));
        eprintln!("round {round}: blindspot {v}");
        if let Some(py) = &py {
            // the reference script runs unchanged inside a wrapper that prints the process's
            // peak resident memory (ru_maxrss, KiB on Linux) on stderr when it ends
            let mut torch = Command::new(py);
            torch
                .args(["-c", PEAK_RSS_WRAPPER])
                .arg(&script)
                .args(&sizes)
                .args(["--threads", &a.threads.to_string()])
                .env("OMP_NUM_THREADS", a.threads.to_string());
            let out = torch.output().context("could not start torch_vae.py")?;
            if !out.status.success() {
                bail!(
                    "torch_vae.py failed with {}:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let v = json_line(&String::from_utf8_lossy(&out.stdout), "torch_vae.py")?;
            let rss = String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("peak_rss_kib ")?.trim().parse::<f64>().ok());
            torch_rss = torch_rss.max(rss.map_or(f64::NAN, |k| k / 1024.0));
            torch_t.push(field(&v, "train_step_ms_median")?);
            torch_i.push(field(&v, "infer_ms_median")?);
            eprintln!("round {round}: pytorch   {v}");
        }
    }
    let (bt, bi) = (median(&mut ours_t), median(&mut ours_i));
    println!(
        "VAE batch {} at {}x{}, width {}, {} threads, median over {} rounds x {} steps",
        a.batch, a.size, a.size, a.width, a.threads, a.rounds, a.steps
    );
    println!(
        "{:<28}{:>14}{:>14}{:>16}",
        "", "train step ms", "inference ms", "peak RSS MiB"
    );
    println!(
        "{:<28}{bt:>14.1}{bi:>14.1}{ours_rss:>16.0}",
        format!("blindspot ({})", backend_name)
    );
    if py.is_some() {
        let (tt, ti) = (median(&mut torch_t), median(&mut torch_i));
        println!("{:<28}{tt:>14.1}{ti:>14.1}{torch_rss:>16.0}", "pytorch");
        println!(
            "{:<28}{:>14.2}{:>14.2}{:>16.2}",
            "ratio blindspot/pytorch",
            bt / tt,
            bi / ti,
            ours_rss / torch_rss
        );
        println!("(goal: train ratio <= 1.0, inference ratio <= 0.67, peak memory ratio <= 1.0)");
    }
    Ok(())
}
