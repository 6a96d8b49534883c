//! `cargo xtask bench metrics`: pixel AUROC and average precision over 10^7 scores,
//! blindspot-metrics against scikit-learn on the very same inputs.
//!
//! `../shared/bench/sklearn_metrics.py --out` draws the scores (seeded), writes them to raw
//! files and times scikit-learn; we read those files and time blindspot from the raw scores
//! (`RankedScores::from_scores`: key transform, radix sort, sweep, everything), alternating
//! the two sides for `--rounds` rounds. The batch/shard path (`RankAccumulator`) is timed too.
//! Python runs with `OMP_NUM_THREADS=<threads>`, blindspot on a rayon pool of `<threads>`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use blindspot_metrics::{RankAccumulator, RankedScores};

use super::{median, python, shared_dir};

#[derive(clap::Args)]
pub struct Args {
    /// Number of scores.
    #[arg(long, default_value_t = 10_000_000)]
    n: usize,
    /// Fraction of positive (lesion) scores.
    #[arg(long, default_value_t = 0.02)]
    pos: f64,
    /// Seed of the Python generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Timed repetitions per side and round (medians are reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Rounds, alternating Python and Rust.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Prefix of the input files (default: a fresh directory under the system temp dir).
    #[arg(long)]
    out: Option<PathBuf>,
}

struct Side {
    auroc: f64,
    ap: f64,
    auroc_s: Vec<f64>,
    ap_s: Vec<f64>,
}

pub fn run(args: Args) -> Result<()> {
    if args.repeat == 0 || args.rounds == 0 || args.threads == 0 {
        bail!("--repeat, --rounds and --threads must be at least 1");
    }
    // Our own temporary directory (removed at the end) unless --out names the files.
    let temp_dir = args.out.is_none().then(|| {
        std::env::temp_dir().join(format!("blindspot-bench-metrics-{}", std::process::id()))
    });
    let out = match (&args.out, &temp_dir) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join("case")
        }
        (None, None) => unreachable!("temp_dir is set when --out is not"),
    };
    let result = compare(&args, &out);
    if let Some(dir) = temp_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn compare(args: &Args, out: &Path) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("building the rayon pool")?;

    let mut py = Side {
        auroc: f64::NAN,
        ap: f64::NAN,
        auroc_s: vec![],
        ap_s: vec![],
    };
    let mut rs = Side {
        auroc: f64::NAN,
        ap: f64::NAN,
        auroc_s: vec![],
        ap_s: vec![],
    };
    let mut inputs: Option<(Vec<f32>, Vec<bool>)> = None;
    let mut acc_s = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {}/{}: scikit-learn ...", round + 1, args.rounds);
        let json = run_python(args, out)?;
        py.auroc = json["auroc"]
            .as_f64()
            .context("auroc in the Python output")?;
        py.ap = json["average_precision"]
            .as_f64()
            .context("average_precision in the Python output")?;
        py.auroc_s
            .push(json["auroc_s_median"].as_f64().context("auroc_s_median")?);
        py.ap_s.push(
            json["average_precision_s_median"]
                .as_f64()
                .context("average_precision_s_median")?,
        );

        if inputs.is_none() {
            inputs = Some(read_inputs(out, args.n)?);
        }
        let (scores, labels) = inputs.as_ref().expect("read above");
        eprintln!("round {}/{}: blindspot ...", round + 1, args.rounds);
        pool.install(|| -> Result<()> {
            for _ in 0..args.repeat {
                let t = Instant::now();
                rs.auroc = RankedScores::<f32>::from_scores(scores, labels)?.auroc()?;
                rs.auroc_s.push(t.elapsed().as_secs_f64());

                let t = Instant::now();
                rs.ap = RankedScores::<f32>::from_scores(scores, labels)?.average_precision()?;
                rs.ap_s.push(t.elapsed().as_secs_f64());

                // The batch/shard path: push into an accumulator, then sort (for the record).
                let t = Instant::now();
                let mut acc = RankAccumulator::<f32>::new();
                acc.push(scores, labels)?;
                let ranked = acc.finish();
                let (a, p) = (ranked.auroc()?, ranked.average_precision()?);
                acc_s.push(t.elapsed().as_secs_f64());
                if a != rs.auroc || p != rs.ap {
                    bail!(
                        "accumulator path differs: {a} / {p} vs {} / {}",
                        rs.auroc,
                        rs.ap
                    );
                }
            }
            Ok(())
        })?;
    }

    let positives = inputs
        .as_ref()
        .map_or(0, |(_, l)| l.iter().filter(|&&x| x).count());
    println!(
        "metrics bench: n = {}, positives = {positives}, threads = {} (OMP_NUM_THREADS / rayon), {} rounds x {} repeats, medians",
        args.n, args.threads, args.rounds, args.repeat
    );
    println!(
        "{:<18} {:>20} {:>20} {:>9} {:>12} {:>12} {:>8}",
        "metric", "scikit-learn", "blindspot", "|diff|", "sklearn s", "blindspot s", "ratio"
    );
    let (mut worst, mut all_close): (f64, bool) = (0.0, true);
    for (name, a, b, ta, tb) in [
        (
            "auroc",
            py.auroc,
            rs.auroc,
            &mut py.auroc_s,
            &mut rs.auroc_s,
        ),
        (
            "average_precision",
            py.ap,
            rs.ap,
            &mut py.ap_s,
            &mut rs.ap_s,
        ),
    ] {
        let (ta, tb) = (median(ta), median(tb));
        let diff = (a - b).abs();
        worst = worst.max(diff);
        all_close &= diff <= 1e-9; // false for NaN
        println!(
            "{name:<18} {a:>20.15} {b:>20.15} {diff:>9.1e} {ta:>12.4} {tb:>12.4} {:>7.1}x",
            ta / tb
        );
    }
    println!(
        "(blindspot through a RankAccumulator, push + sort + both metrics: {:.4} s)",
        median(&mut acc_s)
    );
    if !all_close {
        bail!("values differ by {worst:e} (allowed 1e-9)");
    }
    Ok(())
}

fn run_python(args: &Args, out: &Path) -> Result<serde_json::Value> {
    let script = shared_dir().join("bench").join("sklearn_metrics.py");
    let output = Command::new(python()?)
        .arg(&script)
        .args(["--n", &args.n.to_string()])
        .args(["--pos", &args.pos.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--repeat", &args.repeat.to_string()])
        .arg("--out")
        .arg(out)
        .env("OMP_NUM_THREADS", args.threads.to_string())
        .env("OPENBLAS_NUM_THREADS", args.threads.to_string())
        .env("MKL_NUM_THREADS", args.threads.to_string())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed with {}:\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("no output from the Python script")?;
    serde_json::from_str(line).with_context(|| format!("parsing the Python output {line:?}"))
}

fn read_inputs(out: &Path, n: usize) -> Result<(Vec<f32>, Vec<bool>)> {
    let with = |ext: &str| PathBuf::from(format!("{}{ext}", out.display()));
    let (sp, lp) = (with(".scores.f32"), with(".labels.u8"));
    let raw = std::fs::read(&sp).with_context(|| format!("reading {}", sp.display()))?;
    let labels = std::fs::read(&lp).with_context(|| format!("reading {}", lp.display()))?;
    if raw.len() != 4 * n || labels.len() != n {
        bail!(
            "{} / {}: expected {n} scores and labels, found {} bytes and {} bytes",
            sp.display(),
            lp.display(),
            raw.len(),
            labels.len()
        );
    }
    let scores = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((scores, labels.iter().map(|&b| b != 0).collect()))
}
