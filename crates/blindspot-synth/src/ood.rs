//! Out-of-distribution transforms applied to a finished subject (the `skull` transform is
//! part of rendering instead: it keeps the head around the brain).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{BlobConfig, OodTransform};
use crate::field::normal;
use crate::scan::Subject;

pub(crate) fn apply(kind: OodTransform, s: &mut Subject, blobs: &BlobConfig, rng: &mut ChaCha8Rng) {
    let dims = s.image.dims;
    match kind {
        OodTransform::None | OodTransform::Skull => {}
        OodTransform::FlipLr => {
            flip(&mut s.image.data, dims, 0);
            flip(&mut s.brain_mask.data, dims, 0);
            flip(&mut s.lesion_mask.data, dims, 0);
            flip(&mut s.tissue.data, dims, 0);
        }
        OodTransform::FlipUd => {
            flip(&mut s.image.data, dims, 1);
            flip(&mut s.brain_mask.data, dims, 1);
            flip(&mut s.lesion_mask.data, dims, 1);
            flip(&mut s.tissue.data, dims, 1);
        }
        OodTransform::Noise => {
            s.image
                .data
                .iter_mut()
                .for_each(|v| *v = normal(rng) as f32);
            s.brain_mask.data.fill(1);
            s.lesion_mask.data.fill(0);
            s.tissue.data.fill(0);
        }
        OodTransform::Inversion => invert(s),
        OodTransform::Ghosting => ghost(s, rng),
        OodTransform::Blobs => add_blob(s, blobs, rng),
    }
}

/// Mirror along voxel axis `axis`.
pub(crate) fn flip<T: Copy>(data: &mut [T], dims: [usize; 3], axis: usize) {
    let [nx, ny, nz] = dims;
    for k in 0..nz {
        for j in 0..ny {
            let row = nx * (j + ny * k);
            match axis {
                0 => data[row..row + nx].reverse(),
                _ => {
                    if j < ny / 2 {
                        let other = nx * ((ny - 1 - j) + ny * k);
                        for i in 0..nx {
                            data.swap(row + i, other + i);
                        }
                    }
                }
            }
        }
    }
}

/// `p99 + p1 - I` inside the brain, floored at 0.
fn invert(s: &mut Subject) {
    let mut inside: Vec<f32> = brain_values(s);
    if inside.is_empty() {
        return;
    }
    inside.sort_by(f32::total_cmp);
    let p = |q: f64| inside[((inside.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (p(0.01), p(0.99));
    for (v, &m) in s.image.data.iter_mut().zip(&s.brain_mask.data) {
        if m != 0 {
            *v = (hi + lo - *v).max(0.0);
        }
    }
}

/// Attenuated replicas shifted by +-ny/4 along y (phase encoding), then skull-stripped again.
fn ghost(s: &mut Subject, rng: &mut ChaCha8Rng) {
    let [nx, ny, nz] = s.image.dims;
    let a = rng.random_range(0.25..=0.4) as f32;
    let shift = ny / 4;
    let src = s.image.data.clone();
    for k in 0..nz {
        for j in 0..ny {
            let up = (j + shift) % ny;
            let down = (j + ny - shift) % ny;
            for i in 0..nx {
                let idx = i + nx * (j + ny * k);
                let ghost =
                    a * src[i + nx * (up + ny * k)] + 0.6 * a * src[i + nx * (down + ny * k)];
                s.image.data[idx] = if s.brain_mask.data[idx] != 0 {
                    src[idx] + ghost
                } else {
                    0.0
                };
            }
        }
    }
}

/// One Gaussian blob (docs/method.md 1.7), centred on a uniformly drawn brain voxel.
fn add_blob(s: &mut Subject, cfg: &BlobConfig, rng: &mut ChaCha8Rng) {
    let inside = brain_values(s);
    if inside.is_empty() {
        return;
    }
    let n = inside.len() as f64;
    let mean = inside.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (inside
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let target = rng.random_range(0..inside.len());
    let centre_idx = s
        .brain_mask
        .data
        .iter()
        .enumerate()
        .filter(|(_, m)| **m != 0)
        .nth(target)
        .map(|(i, _)| i)
        .expect("target < number of brain voxels");
    let [nx, ny, nz] = s.image.dims;
    let c = [
        centre_idx % nx,
        (centre_idx / nx) % ny,
        centre_idx / (nx * ny),
    ];
    let sigma_px = rng.random_range(cfg.sigma_px[0]..=cfg.sigma_px[1]);
    let sigma_mm = sigma_px * cfg.pixel_mm;
    let peak = cfg.weight / (std::f64::consts::TAU * sigma_px * sigma_px);
    let sp = s.image.spacing;
    let threshold = (-0.5f64).exp();
    for k in 0..nz {
        let dz = (k as f64 - c[2] as f64) * sp[2];
        for j in 0..ny {
            let dy = (j as f64 - c[1] as f64) * sp[1];
            for i in 0..nx {
                let idx = i + nx * (j + ny * k);
                if s.brain_mask.data[idx] == 0 {
                    continue;
                }
                let dx = (i as f64 - c[0] as f64) * sp[0];
                let z = peak * (-(dx * dx + dy * dy + dz * dz) / (2.0 * sigma_mm * sigma_mm)).exp();
                s.image.data[idx] += (z * std) as f32;
                if z > threshold {
                    s.lesion_mask.data[idx] = 1;
                }
            }
        }
    }
}

fn brain_values(s: &Subject) -> Vec<f32> {
    s.image
        .data
        .iter()
        .zip(&s.brain_mask.data)
        .filter(|(_, m)| **m != 0)
        .map(|(v, _)| *v)
        .collect()
}
