//! Real-data conformance: every volume listed in `expected.json` of the folder named by
//! `BLINDSPOT_REAL_DATA` reads as nibabel 5.4.2 read it (shape, zooms, datatype, scaling, codes,
//! affine, orientation codes, value statistics, sampled voxels, RAS shape and affine).
//!
//! Run: `BLINDSPOT_REAL_DATA=/work/shared/data/real cargo test --release -p blindspot-io --test conformance`.
//! Without the variable the test prints that it skipped the real files and passes.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use blindspot_io::{
    NonFinitePolicy, ReadOptions, axcodes, read_header, read_nifti, reorient_to_ras,
};
use serde_json::Value;

const VALUE_TOL: f64 = 1e-6;
/// Absolute, in millimetres.
const AFFINE_TOL: f64 = 1e-4;

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1.0)
}

fn f64s(v: &Value) -> Result<Vec<f64>> {
    v.as_array()
        .context("expected an array")?
        .iter()
        .map(|x| x.as_f64().context("expected a number"))
        .collect()
}

fn affine(v: &Value) -> Result<Vec<f64>> {
    let rows = v.as_array().context("affine is not an array")?;
    let mut out = Vec::new();
    for r in rows {
        out.extend(f64s(r)?);
    }
    ensure!(out.len() == 16, "affine has {} entries", out.len());
    Ok(out)
}

fn check_affine(what: &str, got: &[[f64; 4]; 4], want: &[f64]) -> Result<()> {
    for (g, w) in got.iter().flatten().zip(want) {
        ensure!((g - w).abs() <= AFFINE_TOL, "{what}: {got:?} != {want:?}");
    }
    Ok(())
}

/// Check one file; returns an error naming the first field that differs.
fn check(root: &Path, e: &Value) -> Result<()> {
    let file = e["file"].as_str().context("entry without file")?;
    let path = root.join(file);
    let header = read_header(&path)?;

    let shape: Vec<usize> = f64s(&e["shape"])?.iter().map(|&v| v as usize).collect();
    ensure!(
        header.shape == shape,
        "shape {:?} != {shape:?}",
        header.shape
    );
    let zooms = f64s(&e["zooms"])?;
    ensure!(
        header.zooms.len() == zooms.len()
            && header
                .zooms
                .iter()
                .zip(&zooms)
                .all(|(g, w)| close(*g, *w, VALUE_TOL)),
        "zooms {:?} != {zooms:?}",
        header.zooms
    );
    ensure!(
        i64::from(header.datatype.code())
            == e["datatype_code"].as_i64().context("datatype_code")?,
        "datatype code"
    );
    ensure!(
        header.datatype.name() == e["on_disk_dtype"].as_str().context("on_disk_dtype")?,
        "dtype {}",
        header.datatype.name()
    );
    ensure!(
        close(
            header.scl_slope,
            e["scl_slope"].as_f64().context("scl_slope")?,
            VALUE_TOL
        ),
        "scl_slope {}",
        header.scl_slope
    );
    ensure!(
        close(
            header.scl_inter,
            e["scl_inter"].as_f64().context("scl_inter")?,
            VALUE_TOL
        ),
        "scl_inter {}",
        header.scl_inter
    );
    ensure!(
        i64::from(header.sform_code) == e["sform_code"].as_i64().context("sform_code")?,
        "sform_code"
    );
    ensure!(
        i64::from(header.qform_code) == e["qform_code"].as_i64().context("qform_code")?,
        "qform_code"
    );
    check_affine("affine", &header.affine, &affine(&e["affine"])?)?;
    let codes: String = axcodes(&header.affine)?.iter().collect();
    ensure!(
        codes == e["axcodes"].as_str().context("axcodes")?,
        "axcodes {codes}"
    );

    // Statistics over all volumes, in f64 as nibabel computed them.
    let (mut n, mut sum, mut min, mut max, mut nonzero) =
        (0usize, 0.0f64, f64::INFINITY, f64::NEG_INFINITY, 0usize);
    let mut volumes = Vec::new();
    for t in 0..header.num_volumes() {
        let img = read_nifti::<f64>(
            &path,
            &ReadOptions {
                volume: t,
                non_finite: NonFinitePolicy::Error,
            },
        )?;
        for &v in &img.volume.data {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
            nonzero += usize::from(v != 0.0);
        }
        volumes.push(img.volume);
    }
    let mean = sum / n as f64;
    // Two-pass variance for accuracy.
    let var = volumes
        .iter()
        .flat_map(|v| &v.data)
        .map(|&v| (v - mean) * (v - mean))
        .sum::<f64>()
        / n as f64;
    let stats = &e["stats"];
    for (name, got) in [
        ("min", min),
        ("max", max),
        ("mean", mean),
        ("std", var.sqrt()),
        ("sum", sum),
    ] {
        let want = stats[name]
            .as_f64()
            .with_context(|| format!("stats.{name}"))?;
        ensure!(close(got, want, VALUE_TOL), "stats.{name} {got} != {want}");
    }
    ensure!(
        nonzero as i64 == stats["nonzero"].as_i64().context("nonzero")?,
        "nonzero {nonzero}"
    );

    for s in e["samples"].as_array().context("samples")? {
        let idx: Vec<usize> = f64s(&s["index"])?.iter().map(|&v| v as usize).collect();
        let want = s["value"].as_f64().context("sample value")?;
        let vol = &volumes[idx.get(3).copied().unwrap_or(0)];
        let got = vol.data[vol.index(idx[0], idx[1], idx[2])];
        ensure!(
            close(got, want, VALUE_TOL),
            "voxel {idx:?}: {got} != {want}"
        );
    }

    let (ras, reorientation) = reorient_to_ras(&volumes[0])?;
    let ras_shape: Vec<usize> = f64s(&e["ras_shape"])?.iter().map(|&v| v as usize).collect();
    ensure!(
        ras.dims[..] == ras_shape[..3],
        "ras_shape {:?} != {ras_shape:?}",
        ras.dims
    );
    ensure!(ras_shape[3..] == shape[3..], "ras_shape keeps the 4th dim");
    check_affine("ras_affine", &ras.affine, &affine(&e["ras_affine"])?)?;
    ensure!(
        reorientation.to_original(&ras)? == volumes[0],
        "RAS -> original is not the identity"
    );
    Ok(())
}

#[test]
fn real_volumes_read_as_nibabel_reads_them() -> Result<()> {
    let Some(root) = std::env::var_os("BLINDSPOT_REAL_DATA") else {
        println!("BLINDSPOT_REAL_DATA is not set: skipped the real-data conformance files");
        return Ok(());
    };
    let root = Path::new(&root);
    let manifest = root.join("expected.json");
    let text =
        std::fs::read_to_string(&manifest).with_context(|| manifest.display().to_string())?;
    let entries: Vec<Value> = serde_json::from_str(&text)?;
    let mut failures = Vec::new();
    for e in &entries {
        if let Err(err) = check(root, e) {
            failures.push(format!("{}: {err:#}", e["file"]));
        }
    }
    println!(
        "{} of {} real volumes conform",
        entries.len() - failures.len(),
        entries.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} files differ from nibabel:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}
