//! `cargo xtask bench kde`: DoSE's 1-D Gaussian KDE, blindspot against scipy.
//!
//! Both fit on the same `--fit` standard-normal draws (numpy's `default_rng(0)`, exported by
//! the reference interpreter) and evaluate the log-density at `--eval` points on `[-4, 4]`.
//! The scipy side is `../shared/bench/scipy_kde.py`, unchanged; its log-densities at every
//! point are exported once more for the value check (relative error at most 1e-6).
//! blindspot is timed with all rayon threads and with one thread, before and after scipy.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use blindspot_ood::GaussianKde;

use super::{median, python, shared_dir};

#[derive(clap::Args)]
pub struct Args {
    /// Number of values the KDE is fitted on.
    #[arg(long, default_value_t = 20_000)]
    fit: usize,
    /// Number of points the log-density is evaluated at.
    #[arg(long, default_value_t = 20_000)]
    eval: usize,
    /// Timed repetitions per implementation (scipy takes about 10 s each at the defaults).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// Exports the numpy draws and scipy's log-densities as raw little-endian f64.
const EXPORT: &str = r#"
import sys, numpy as np
from scipy.stats import gaussian_kde
fit, ev, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = np.random.default_rng(0).standard_normal(fit)
x.astype('<f8').tofile(out + '/x.f64')
gaussian_kde(x).logpdf(np.linspace(-4, 4, ev)).astype('<f8').tofile(out + '/logpdf.f64')
"#;

fn read_f64(path: &PathBuf) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")))
        .collect())
}

/// numpy's `linspace(start, stop, n)`.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
    v[n - 1] = stop;
    v
}

fn time_rust(
    x: &[f64],
    pts: &[f64],
    repeat: usize,
    threads: Option<usize>,
) -> Result<(f64, Vec<f64>)> {
    let run = || -> Result<(f64, Vec<f64>)> {
        let mut times = Vec::with_capacity(repeat);
        let mut out = Vec::new();
        for _ in 0..repeat {
            let t = Instant::now();
            let kde = GaussianKde::fit(x)?;
            out = kde.log_density_many(pts);
            times.push(t.elapsed().as_secs_f64());
        }
        Ok((median(&mut times), out))
    };
    match threads {
        None => run(),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()?
            .install(run),
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.fit < 2 || args.eval < 1 || args.repeat < 1 {
        bail!("--fit must be at least 2, --eval and --repeat at least 1");
    }
    let py = python()?;
    let script = shared_dir().join("bench").join("scipy_kde.py");
    let dir = std::env::temp_dir().join(format!("blindspot-bench-kde-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "exporting numpy's draws and scipy's log-densities ({} x {}) ...",
        args.fit, args.eval
    );
    crate::run(
        Command::new(&py)
            .args(["-c", EXPORT])
            .arg(args.fit.to_string())
            .arg(args.eval.to_string())
            .arg(&dir),
    )?;
    let x = read_f64(&dir.join("x.f64"))?;
    let reference = read_f64(&dir.join("logpdf.f64"))?;
    std::fs::remove_dir_all(&dir).ok();
    if x.len() != args.fit || reference.len() != args.eval {
        bail!(
            "the export wrote {} draws and {} values",
            x.len(),
            reference.len()
        );
    }
    let pts = linspace(-4.0, 4.0, args.eval);

    let threads = rayon::current_num_threads();
    let (before, values) = time_rust(&x, &pts, args.repeat, None)?;
    let (single_before, _) = time_rust(&x, &pts, args.repeat, Some(1))?;
    println!("running {} ...", script.display());
    let out = crate::output(
        Command::new(&py)
            .arg(&script)
            .args([
                "--fit",
                &args.fit.to_string(),
                "--eval",
                &args.eval.to_string(),
            ])
            .args(["--repeat", &args.repeat.to_string()]),
    )?;
    let line = out.lines().last().context("scipy_kde.py printed nothing")?;
    let scipy: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))?;
    let scipy_s = scipy["kde_s_median"].as_f64().context("no kde_s_median")?;
    let (after, _) = time_rust(&x, &pts, args.repeat, None)?;
    let (single_after, _) = time_rust(&x, &pts, args.repeat, Some(1))?;
    let rust_s = median(&mut [before, after]);
    let single_s = median(&mut [single_before, single_after]);

    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
    let worst = values
        .iter()
        .zip(&reference)
        .map(|(a, b)| rel(*a, *b))
        .fold(0.0, f64::max);
    let kde = GaussianKde::fit(&x)?;
    let at0 = kde.log_density(0.0);
    let at2 = kde.log_density(2.0);
    let s0 = scipy["logpdf_at_0"].as_f64().context("no logpdf_at_0")?;
    let s2 = scipy["logpdf_at_2"].as_f64().context("no logpdf_at_2")?;
    let factor = scipy["bandwidth_factor"]
        .as_f64()
        .context("no bandwidth_factor")?;

    println!(
        "kde: fit {} values, log-density at {} points",
        args.fit, args.eval
    );
    println!("  scipy      {scipy_s:>9.4} s  (median of {})", args.repeat);
    println!(
        "  blindspot  {rust_s:>9.4} s  ({threads} threads)   ratio {:.1}x",
        scipy_s / rust_s
    );
    println!(
        "  blindspot  {single_s:>9.4} s  (1 thread)    ratio {:.1}x",
        scipy_s / single_s
    );
    println!(
        "  bandwidth factor  scipy {factor:.17}  blindspot {:.17}",
        kde.factor()
    );
    println!("  logpdf(0)  scipy {s0:.15}  blindspot {at0:.15}");
    println!("  logpdf(2)  scipy {s2:.15}  blindspot {at2:.15}");
    println!(
        "  max relative difference over all {} points: {worst:.3e}",
        args.eval
    );
    let check = [worst, rel(at0, s0), rel(at2, s2), rel(kde.factor(), factor)];
    if check.iter().any(|e| e.is_nan() || *e > 1e-6) {
        bail!("values differ from scipy by more than 1e-6 relative: {check:?}");
    }
    println!("  values equal to scipy within 1e-6 relative: ok");
    Ok(())
}
