//! `cargo xtask bench ...`: blindspot and its Python reference, side by side in one run.
//!
//! The Python side runs the scripts of `../shared/bench` with the interpreter named by
//! `BLINDSPOT_BENCH_PYTHON`, else `/tmp/blindspot-bench/bin/python3` (set up as
//! `../shared/bench/README.md` says).

mod io;
mod kde;
mod metrics;
mod model;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Which {
    /// NIfTI volume -> normalised 128x128 slices, against nibabel + numpy + Pillow.
    Io(io::Args),
    /// AUROC and average precision over 10^7 scores, against scikit-learn.
    Metrics(metrics::Args),
    /// DoSE's 1-D Gaussian KDE fit + log-density, against scipy.
    Kde(kde::Args),
    /// The paper's VAE training step and inference, against PyTorch.
    Model(model::Args),
}

pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Io(a) => io::run(a),
        Which::Metrics(a) => metrics::run(a),
        Which::Kde(a) => kde::run(a),
        Which::Model(a) => model::run(a),
    }
}

/// `../shared` beside the workspace, or `BLINDSPOT_SHARED`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("BLINDSPOT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("..").join("shared"))
}

/// The Python interpreter of the benchmark venv, with a clear error when it is missing.
pub fn python() -> Result<PathBuf> {
    let path = std::env::var_os("BLINDSPOT_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/blindspot-bench/bin/python3"));
    if !path.is_file() {
        bail!(
            "no Python for the reference benchmarks at {}: set it up once with\n  \
             python3 -m venv /tmp/blindspot-bench\n  \
             /tmp/blindspot-bench/bin/pip install torch numpy scipy scikit-learn nibabel pillow\n\
             or point BLINDSPOT_BENCH_PYTHON at an interpreter that has those packages",
            path.display()
        );
    }
    Ok(path)
}

/// Median of a non-empty sample.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}
