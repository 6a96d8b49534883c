//! Axial (and one coronal) slices of every kind of synthetic subject, as PNG files.
//!
//! `cargo run --release -p blindspot-synth --example preview [-- <out dir>]`
//! (default `target/synth-preview/`). Each PNG is one subject: four axial slices from low to
//! high, then a coronal slice; the bottom row repeats them with the lesion mask in red and
//! the brain-mask outline in green.

use std::path::PathBuf;

use anyhow::{Context, Result};
use blindspot_synth::{
    Contrast, LesionKind, OodTransform, Split, Subject, SubjectSpec, SynthConfig, generate_subject,
};

fn main() -> Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/synth-preview"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let config = SynthConfig::quickstart();
    let cases: Vec<(&str, &str, Contrast, LesionKind, OodTransform)> = vec![
        (
            "t2_healthy",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::None,
        ),
        (
            "t1_healthy",
            "A",
            Contrast::T1,
            LesionKind::None,
            OodTransform::None,
        ),
        (
            "flair_healthy",
            "A",
            Contrast::Flair,
            LesionKind::None,
            OodTransform::None,
        ),
        (
            "pd_healthy",
            "A",
            Contrast::Pd,
            LesionKind::None,
            OodTransform::None,
        ),
        (
            "t2_tumour",
            "A",
            Contrast::T2,
            LesionKind::Tumour,
            OodTransform::None,
        ),
        (
            "flair_tumour",
            "A",
            Contrast::Flair,
            LesionKind::Tumour,
            OodTransform::None,
        ),
        (
            "t1_tumour",
            "A",
            Contrast::T1,
            LesionKind::Tumour,
            OodTransform::None,
        ),
        (
            "flair_ms",
            "A",
            Contrast::Flair,
            LesionKind::Ms,
            OodTransform::None,
        ),
        (
            "t2_stroke",
            "A",
            Contrast::T2,
            LesionKind::Stroke,
            OodTransform::None,
        ),
        (
            "t2_siteB",
            "B",
            Contrast::T2,
            LesionKind::None,
            OodTransform::None,
        ),
        (
            "t2_siteC",
            "C",
            Contrast::T2,
            LesionKind::None,
            OodTransform::None,
        ),
        (
            "t2_flip_lr",
            "A",
            Contrast::T2,
            LesionKind::Tumour,
            OodTransform::FlipLr,
        ),
        (
            "t2_flip_ud",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::FlipUd,
        ),
        (
            "t2_skull",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::Skull,
        ),
        (
            "t1_skull",
            "A",
            Contrast::T1,
            LesionKind::None,
            OodTransform::Skull,
        ),
        (
            "noise",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::Noise,
        ),
        (
            "t2_inversion",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::Inversion,
        ),
        (
            "t2_ghosting",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::Ghosting,
        ),
        (
            "t2_blobs",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::Blobs,
        ),
    ];
    for (n, (name, site, contrast, lesion, ood)) in cases.into_iter().enumerate() {
        for seed in [1u64, 2] {
            let spec = SubjectSpec {
                id: format!("{name}-{seed}"),
                set: "preview".into(),
                split: Split::Test,
                seed: seed * 1000 + n as u64 % 3,
                site: site.into(),
                contrast,
                lesion,
                ood,
            };
            let s = generate_subject(&config, &spec)?;
            let path = out.join(format!("{name}_{seed}.png"));
            write_png(&s, &path)?;
            println!("{} (lesion {:.1} mL)", path.display(), s.lesion_ml);
        }
    }
    Ok(())
}

/// A panel: width, height, and the voxel index of pixel (column, row).
type Panel = (usize, usize, Box<dyn Fn(usize, usize) -> usize>);

/// Four axial slices and a coronal one; the second row with mask overlays; 2x upscaled.
fn write_png(s: &Subject, path: &std::path::Path) -> Result<()> {
    let [nx, ny, nz] = s.image.dims;
    let zs = [nz * 30 / 100, nz * 45 / 100, nz * 58 / 100, nz * 72 / 100];
    let mut panels: Vec<Panel> = zs
        .iter()
        .map(|&z| {
            let f: Box<dyn Fn(usize, usize) -> usize> =
                Box::new(move |c, r| c + nx * ((ny - 1 - r) + ny * z));
            (nx, ny, f)
        })
        .collect();
    let yc = ny / 2;
    panels.push((
        nx,
        nz,
        Box::new(move |c, r| c + nx * (yc + ny * (nz - 1 - r))),
    ));
    let mut sorted: Vec<f32> = s
        .image
        .data
        .iter()
        .zip(&s.brain_mask.data)
        .filter(|(_, m)| **m != 0)
        .map(|(v, _)| *v)
        .collect();
    sorted.sort_by(f32::total_cmp);
    let lo = sorted.first().copied().unwrap_or(0.0).min(0.0);
    let hi = sorted
        .get(sorted.len() * 995 / 1000)
        .copied()
        .unwrap_or(1.0)
        .max(lo + 1e-6);
    let scale = 2;
    let width: usize = panels.iter().map(|p| p.0).sum::<usize>() * scale;
    let height = panels.iter().map(|p| p.1).max().unwrap_or(1) * 2 * scale;
    let mut rgb = vec![0u8; width * height * 3];
    let mut x0 = 0;
    for (w, h, at) in &panels {
        for r in 0..*h {
            for c in 0..*w {
                let idx = at(c, r);
                let g = (((s.image.data[idx] - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0) as u8;
                let lesion = s.lesion_mask.data[idx] != 0;
                let edge = s.brain_mask.data[idx] != 0
                    && (c == 0 || r == 0 || c + 1 == *w || r + 1 == *h || {
                        [at(c - 1, r), at(c + 1, r), at(c, r - 1), at(c, r + 1)]
                            .iter()
                            .any(|&n| s.brain_mask.data[n] == 0)
                    });
                let over = if lesion {
                    [255, g / 2, g / 2]
                } else if edge {
                    [g / 2, 255, g / 2]
                } else {
                    [g, g, g]
                };
                for dy in 0..scale {
                    for dx in 0..scale {
                        let top = ((r * scale + dy) * width + x0 + c * scale + dx) * 3;
                        rgb[top..top + 3].copy_from_slice(&[g, g, g]);
                        let bottom = (((r + h) * scale + dy) * width + x0 + c * scale + dx) * 3;
                        if bottom + 3 <= rgb.len() {
                            rgb[bottom..bottom + 3].copy_from_slice(&over);
                        }
                    }
                }
            }
        }
        x0 += w * scale;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&rgb)?;
    Ok(())
}
