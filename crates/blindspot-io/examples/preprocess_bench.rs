//! The Rust side of `cargo xtask bench io`: time NIfTI volume -> normalised slices.
//!
//! Does what `../shared/bench/nibabel_preprocess.py` does, per volume: read (gzip), reorient to
//! RAS+, brain mask = non-zero voxels, z-score inside the mask, background `-3.5`, keep the
//! axial slices with brain, resize each to `SIZE x SIZE` (image: Pillow-exact antialiased
//! bilinear; mask: nearest). Prints one JSON line with the same keys as the Python script.
//!
//! Usage: `cargo run --release -p blindspot-io --example preprocess_bench -- [--size 128]
//! [--repeat 3] [--threads 2] [--dump OUT.f32] [--breakdown] FILE.nii.gz...`
//!
//! `--breakdown` prints the time of each stage (read; reorientation + pipeline) to stderr.
//!
//! `--dump` writes the slices of the first file, `f32` little-endian, slice after slice (in
//! the Neurological view transposed to the Python script's layout: rows = x, columns = y), to
//! compare them with the Python output.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use blindspot_io::{Pipeline, PreprocessConfig, SliceView, read_volume};

struct Args {
    size: usize,
    repeat: usize,
    threads: usize,
    dump: Option<PathBuf>,
    breakdown: bool,
    files: Vec<PathBuf>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        size: 128,
        repeat: 3,
        threads: 2,
        dump: None,
        breakdown: false,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--size" => a.size = value("--size")?.parse()?,
            "--repeat" => a.repeat = value("--repeat")?.parse()?,
            "--threads" => a.threads = value("--threads")?.parse()?,
            "--dump" => a.dump = Some(value("--dump")?.into()),
            "--breakdown" => a.breakdown = true,
            f if !f.starts_with("--") => a.files.push(f.into()),
            other => bail!("unknown option {other}"),
        }
    }
    if a.files.is_empty() || a.repeat == 0 || a.threads == 0 {
        bail!("usage: preprocess_bench [--size N] [--repeat N] [--threads N] [--dump OUT] FILE...");
    }
    Ok(a)
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

fn main() -> Result<()> {
    let args = parse()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let view = if args.dump.is_some() {
        SliceView::Neurological
    } else {
        SliceView::Radiological
    };
    let pipeline = Pipeline::new(
        PreprocessConfig {
            slice_size: [args.size, args.size],
            view,
            ..PreprocessConfig::default()
        },
        None,
    )?;
    let (mut per_volume, mut slices) = (Vec::new(), 0);
    for (f, file) in args.files.iter().enumerate() {
        let mut times = Vec::new();
        let mut out = None;
        for _ in 0..args.repeat {
            let t = Instant::now();
            let r = pool.install(|| -> Result<_> {
                let vol = read_volume(file)?;
                let t_read = t.elapsed().as_secs_f64();
                // Reorientation to RAS+ happens inside: slices are read along RAS z straight
                // from the stored grid.
                let out = pipeline.run_native(vol, None, None)?;
                if args.breakdown {
                    let t_all = t.elapsed().as_secs_f64();
                    eprintln!(
                        "read {t_read:.4} s, reorient + pipeline {:.4} s",
                        t_all - t_read
                    );
                }
                Ok(out)
            })?;
            times.push(t.elapsed().as_secs_f64());
            out = Some(r);
        }
        let out = out.expect("repeat >= 1");
        slices += out.slices.len();
        per_volume.push(median(&mut times));
        if let (0, Some(path)) = (f, &args.dump) {
            // Neurological view: row r = y reversed, column c = x. Python: row = x, column = y.
            let n = args.size;
            let mut bytes = Vec::with_capacity(out.slices.len() * n * n * 4);
            for s in &out.slices {
                for x in 0..n {
                    for y in 0..n {
                        bytes.extend_from_slice(&s.image[(n - 1 - y) * n + x].to_le_bytes());
                    }
                }
            }
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let total: f64 = per_volume.iter().sum();
    println!(
        "{}",
        serde_json::json!({
            "impl": "blindspot",
            "volumes": args.files.len(),
            "slices": slices,
            "size": args.size,
            "threads": args.threads,
            "s_per_volume_median": median(&mut per_volume),
            "s_total": total,
        })
    );
    Ok(())
}
