//! `cargo xtask bench io`: NIfTI volume -> normalised 128x128 slices, blindspot-io
//! against nibabel + numpy + Pillow on the very same files.
//!
//! Both sides do the same work per volume (see `../shared/bench/nibabel_preprocess.py`): read
//! the `.nii.gz`, reorient to RAS+, brain mask = non-zero voxels, z-score inside the mask,
//! background -3.5, keep the axial slices with brain, resize them (bilinear image, nearest
//! mask). The Rust side is the release example `preprocess_bench` of blindspot-io (built here
//! first, so that the timing is of optimised code). The two sides alternate for `--rounds`
//! rounds, each timing `--repeat` runs per volume; medians and their ratio are printed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{median, python, shared_dir};

#[derive(clap::Args)]
pub struct Args {
    /// Output slice size (square).
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Timed runs per volume, side and round (the median is kept).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Rounds, alternating Python and Rust.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Threads: rayon threads for blindspot, OMP_NUM_THREADS for numpy.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Volumes to preprocess (default: the 240x240x155 BraTS FLAIR volumes of
    /// ../shared/data/real/deepmedic_brats2015).
    files: Vec<PathBuf>,
}

/// One side's JSON line.
struct Run {
    slices: u64,
    s_per_volume: f64,
}

fn parse_run(text: &str, who: &str) -> Result<Run> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("no JSON line in the output of {who}:\n{text}"))?;
    let json: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("{who} printed bad JSON: {line}"))?;
    Ok(Run {
        slices: json["slices"]
            .as_u64()
            .with_context(|| format!("`slices` in {line}"))?,
        s_per_volume: json["s_per_volume_median"]
            .as_f64()
            .with_context(|| format!("`s_per_volume_median` in {line}"))?,
    })
}

fn default_files() -> Vec<PathBuf> {
    let dir = shared_dir()
        .join("data")
        .join("real")
        .join("deepmedic_brats2015");
    [
        "brats_2013_pat0001_1_flair.nii.gz",
        "brats_2013_pat0002_1_flair.nii.gz",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

/// Build the example in release and return its path.
fn build_rust_side() -> Result<PathBuf> {
    let root = crate::workspace_root();
    crate::run(crate::cargo().current_dir(&root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "blindspot-io",
        "--example",
        "preprocess_bench",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let exe = target
        .join("release")
        .join("examples")
        .join(format!("preprocess_bench{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        bail!("built the example but found no binary at {}", exe.display());
    }
    Ok(exe)
}

fn with_files(cmd: &mut Command, files: &[PathBuf]) {
    cmd.args(files.iter().map(|f| f.as_os_str()));
}

pub fn run(args: Args) -> Result<()> {
    if args.repeat == 0 || args.rounds == 0 || args.threads == 0 || args.size == 0 {
        bail!("--size, --repeat, --rounds and --threads must be at least 1");
    }
    let files = if args.files.is_empty() {
        default_files()
    } else {
        args.files.clone()
    };
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        bail!("input volume {} does not exist", missing.display());
    }
    let py = python()?;
    let script = shared_dir().join("bench").join("nibabel_preprocess.py");
    if !script.is_file() {
        bail!("reference script {} is missing", script.display());
    }
    eprintln!("building the Rust side (release) ...");
    let exe = build_rust_side()?;

    let (size, repeat, threads) = (
        args.size.to_string(),
        args.repeat.to_string(),
        args.threads.to_string(),
    );
    let (mut py_s, mut rs_s) = (Vec::new(), Vec::new());
    let (mut py_slices, mut rs_slices) = (0, 0);
    for round in 1..=args.rounds {
        eprintln!(
            "round {round}/{}: nibabel + numpy + Pillow ...",
            args.rounds
        );
        let mut cmd = Command::new(&py);
        cmd.arg(&script)
            .args(["--size", &size, "--repeat", &repeat])
            .env("OMP_NUM_THREADS", &threads)
            .env("OPENBLAS_NUM_THREADS", &threads);
        with_files(&mut cmd, &files);
        let r = parse_run(&crate::output(&mut cmd)?, "nibabel_preprocess.py")?;
        py_s.push(r.s_per_volume);
        py_slices = r.slices;

        eprintln!("round {round}/{}: blindspot-io ...", args.rounds);
        let mut cmd = Command::new(&exe);
        cmd.args(["--size", &size, "--repeat", &repeat, "--threads", &threads]);
        with_files(&mut cmd, &files);
        let r = parse_run(&crate::output(&mut cmd)?, "preprocess_bench")?;
        rs_s.push(r.s_per_volume);
        rs_slices = r.slices;
    }
    if py_slices != rs_slices {
        bail!(
            "the two sides kept different slice counts: Python {py_slices}, blindspot {rs_slices}"
        );
    }
    println!(
        "io bench: {} volume(s) -> {py_slices} slices of {}x{}, threads = {}, {} rounds x {} repeats",
        files.len(),
        args.size,
        args.size,
        args.threads,
        args.rounds,
        args.repeat
    );
    for f in &files {
        println!("  {}", display_rel(f));
    }
    let per_round = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  nibabel+numpy+pillow s/volume per round: {}",
        per_round(&py_s)
    );
    println!(
        "  blindspot-io         s/volume per round: {}",
        per_round(&rs_s)
    );
    let (p, r) = (median(&mut py_s), median(&mut rs_s));
    println!(
        "{:<24} {:>16} {:>16} {:>8}",
        "", "nibabel s/vol", "blindspot s/vol", "ratio"
    );
    println!(
        "{:<24} {:>16.4} {:>16.4} {:>7.2}x",
        "volume -> slices",
        p,
        r,
        p / r
    );
    Ok(())
}

fn display_rel(p: &Path) -> String {
    p.strip_prefix(crate::workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}
