//! Lesion size and contrast of the phantom next to real BraTS gliomas.
//!
//! `cargo run --release -p blindspot-synth --example lesion_sizes -- [REAL_DIR]`
//!
//! `REAL_DIR` defaults to `$BLINDSPOT_REAL_DATA`, else `../shared/data/real` beside the
//! workspace root; it must hold `deepmedic_brats2015/brats_2013_pat000{1,2}_1_{flair,seg,
//! brainmask}.nii.gz` (BraTS 2013 gliomas, 1 mm, FLAIR z-scored in the brain).
//!
//! The phantom is the quickstart grid (96 x 120 x 64 voxels of 2 mm, site A, default
//! `[synth.lesions]`), written with `write_dataset` to a temporary folder, once in T2 and
//! once in FLAIR (same subject seeds, so the same brains and lesions), and read back from
//! the NIfTI files. For every lesion kind it prints, per column (phantom T2, phantom FLAIR,
//! real BraTS FLAIR): lesion and brain volume (median and range over subjects), and over
//! the axial slices that hold lesion and at least 100 mm^2 of brain, pooled over subjects:
//! the lesion share of the slice's brain pixels (median, p90) and the lesion contrast
//! `(mean lesion - mean non-lesion brain) / std of the slice's brain pixels` (median).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use blindspot_io::{Volume, read_volume};
use blindspot_synth::{Contrast, LesionKind, SetConfig, Split, SynthConfig, plan, write_dataset};

/// Phantom subjects per lesion kind and weighting.
const PER_KIND: usize = 6;
const KINDS: [LesionKind; 3] = [LesionKind::Tumour, LesionKind::Ms, LesionKind::Stroke];
const REAL_CASES: [&str; 2] = ["brats_2013_pat0001_1", "brats_2013_pat0002_1"];
/// A slice counts when it holds at least this much brain (100 pixels at 1 mm).
const MIN_BRAIN_MM2: f64 = 100.0;

fn main() -> Result<()> {
    let real_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("BLINDSPOT_REAL_DATA").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real"));
    let real_dir = real_dir.canonicalize().unwrap_or(real_dir);

    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let t2 = phantom(Contrast::T2, &tmp.path().join("t2"))?;
    let flair = phantom(Contrast::Flair, &tmp.path().join("flair"))?;
    let real = real_gliomas(&real_dir)?;

    let defaults = SynthConfig::quickstart().lesions;
    println!(
        "phantom: quickstart grid, site A, {PER_KIND} subjects per kind and weighting; \
         tumour_ml = {:?}, ms {:?} x {:?} mL, stroke_ml = {:?}",
        defaults.tumour_ml, defaults.ms_count, defaults.ms_ml, defaults.stroke_ml
    );
    println!("real: BraTS 2013 gliomas from {}", real_dir.display());
    for kind in KINDS {
        let pick = |all: &[Measure]| -> Vec<Measure> {
            all.iter().filter(|m| m.kind == kind).cloned().collect()
        };
        let real_col = if kind == LesionKind::Tumour {
            real.clone()
        } else {
            Vec::new()
        };
        table(kind, &[pick(&t2), pick(&flair), real_col]);
    }
    println!();
    for (case, m) in REAL_CASES.iter().zip(&real) {
        let share = |q| quantile(m.slices.iter().map(|s| s.0), q);
        let contrast = quantile(m.slices.iter().map(|s| s.1), 0.5);
        println!(
            "{case}: {:.0} mL in {:.0} mL of brain, share median {:.3} p90 {:.3}, contrast {contrast:.2}",
            m.lesion_ml,
            m.brain_ml,
            share(0.5),
            share(0.9)
        );
    }
    Ok(())
}

/// What one subject measures.
#[derive(Debug, Clone)]
struct Measure {
    kind: LesionKind,
    lesion_ml: f64,
    brain_ml: f64,
    /// Per lesional slice: (lesion share of brain pixels, contrast in brain-std units).
    slices: Vec<(f64, f64)>,
}

/// Write the lesional phantom in `contrast` to `dir` and measure it from its files.
fn phantom(contrast: Contrast, dir: &Path) -> Result<Vec<Measure>> {
    let mut config = SynthConfig::quickstart();
    let mut set = SetConfig::new("lesion", Split::Test, KINDS.len() * PER_KIND)
        .with_contrast(contrast)
        .lesional();
    set.lesions = KINDS.to_vec();
    config.sets = vec![set];
    write_dataset(&config, dir)
        .with_context(|| format!("writing the {contrast:?} phantom to {}", dir.display()))?;
    plan(&config)?
        .iter()
        .map(|spec| {
            let file = format!("{}.nii.gz", spec.id);
            let image = read(&dir.join("images").join(&file))?;
            let brain = read(&dir.join("brain_masks").join(&file))?;
            let lesion = read(&dir.join("lesion_masks").join(&file))?;
            Ok(measure(spec.lesion, &image, &brain, &lesion))
        })
        .collect()
}

/// The two BraTS gliomas, or none (with a note on stderr) when a file is missing.
fn real_gliomas(dir: &Path) -> Result<Vec<Measure>> {
    let sub = dir.join("deepmedic_brats2015");
    let paths: Vec<[PathBuf; 3]> = REAL_CASES
        .iter()
        .map(|c| ["flair", "brainmask", "seg"].map(|s| sub.join(format!("{c}_{s}.nii.gz"))))
        .collect();
    let missing: Vec<&PathBuf> = paths.iter().flatten().filter(|p| !p.is_file()).collect();
    if !missing.is_empty() {
        eprintln!("real data missing, its column stays empty:");
        for p in missing {
            eprintln!("  {}", p.display());
        }
        eprintln!(
            "pass the folder that holds deepmedic_brats2015/ as the first argument or set \
             BLINDSPOT_REAL_DATA=/path/to/shared/data/real"
        );
        return Ok(Vec::new());
    }
    paths
        .iter()
        .map(|[flair, brain, seg]| {
            Ok(measure(
                LesionKind::Tumour,
                &read(flair)?,
                &read(brain)?,
                &read(seg)?,
            ))
        })
        .collect()
}

fn read(path: &Path) -> Result<Volume<f32>> {
    read_volume(path).with_context(|| format!("reading {}", path.display()))
}

/// Volumes and per-slice share and contrast; lesion = `lesion > 0` inside `brain > 0`.
fn measure(
    kind: LesionKind,
    image: &Volume<f32>,
    brain: &Volume<f32>,
    lesion: &Volume<f32>,
) -> Measure {
    let voxel_ml = image.spacing.iter().product::<f64>() / 1000.0;
    // the voxel axis that points most along world z is the axial slice axis
    let axis = (0..3)
        .max_by(|&a, &b| {
            image.affine[2][a]
                .abs()
                .total_cmp(&image.affine[2][b].abs())
        })
        .unwrap_or(2);
    let [nx, ny, nz] = image.dims;
    let n_slices = image.dims[axis];
    let pixel_mm2 = (0..3)
        .filter(|&a| a != axis)
        .map(|a| image.spacing[a])
        .product::<f64>();
    let mut per_slice = vec![(Stats::default(), Stats::default()); n_slices];
    let (mut brain_n, mut lesion_n) = (0usize, 0usize);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let idx = i + nx * (j + ny * k);
                if brain.data[idx] <= 0.0 {
                    continue;
                }
                brain_n += 1;
                let s = [i, j, k][axis];
                let v = f64::from(image.data[idx]);
                let (all, les) = &mut per_slice[s];
                all.add(v);
                if lesion.data[idx] > 0.0 {
                    lesion_n += 1;
                    les.add(v);
                }
            }
        }
    }
    let slices = per_slice
        .iter()
        .filter(|(all, les)| les.n > 0 && all.n as f64 * pixel_mm2 >= MIN_BRAIN_MM2)
        .map(|(all, les)| {
            let share = les.n as f64 / all.n as f64;
            let healthy_n = all.n - les.n;
            let contrast = if healthy_n == 0 || all.std() == 0.0 {
                f64::NAN
            } else {
                let healthy_mean = (all.sum - les.sum) / healthy_n as f64;
                (les.mean() - healthy_mean) / all.std()
            };
            (share, contrast)
        })
        .collect();
    Measure {
        kind,
        lesion_ml: lesion_n as f64 * voxel_ml,
        brain_ml: brain_n as f64 * voxel_ml,
        slices,
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    n: usize,
    sum: f64,
    sum2: f64,
}

impl Stats {
    fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sum2 += v * v;
    }
    fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }
    fn std(&self) -> f64 {
        (self.sum2 / self.n as f64 - self.mean().powi(2))
            .max(0.0)
            .sqrt()
    }
}

/// Linear-interpolated quantile (numpy's default) of finite values; NaN when there are none.
fn quantile(values: impl IntoIterator<Item = f64>, q: f64) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn table(kind: LesionKind, columns: &[Vec<Measure>; 3]) {
    println!();
    println!(
        "{:<28}{:>18}{:>18}{:>18}",
        kind.name(),
        "phantom T2",
        "phantom FLAIR",
        "real BraTS FLAIR"
    );
    type Row = (&'static str, fn(&[Measure]) -> String);
    let rows: [Row; 7] = [
        ("subjects", |m| m.len().to_string()),
        ("lesion mL, median (range)", |m| {
            spread(m.iter().map(|x| x.lesion_ml))
        }),
        ("brain mL, median (range)", |m| {
            spread(m.iter().map(|x| x.brain_ml))
        }),
        ("lesional slices", |m| {
            m.iter().map(|x| x.slices.len()).sum::<usize>().to_string()
        }),
        ("slice share, median", |m| {
            format!("{:.3}", quantile(shares(m), 0.5))
        }),
        ("slice share, p90", |m| {
            format!("{:.3}", quantile(shares(m), 0.9))
        }),
        ("contrast (brain std), med.", |m| {
            let c = m.iter().flat_map(|x| x.slices.iter().map(|s| s.1));
            format!("{:.2}", quantile(c, 0.5))
        }),
    ];
    for (name, f) in rows {
        print!("{name:<28}");
        for col in columns {
            let cell = if col.is_empty() { "-".into() } else { f(col) };
            print!("{cell:>18}");
        }
        println!();
    }
}

fn shares(m: &[Measure]) -> impl Iterator<Item = f64> + '_ {
    m.iter().flat_map(|x| x.slices.iter().map(|s| s.0))
}

/// `median (min-max)`, with one decimal below 10.
fn spread(values: impl Iterator<Item = f64>) -> String {
    let v: Vec<f64> = values.collect();
    let (lo, hi) = (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let med = quantile(v, 0.5);
    let p = if hi < 10.0 { 1 } else { 0 };
    format!("{med:.p$} ({lo:.p$}-{hi:.p$})")
}
