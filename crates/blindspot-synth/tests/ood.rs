//! Each OOD kind moves the statistic it is meant to move, and nothing else breaks.

mod common;

use blindspot_synth::{Contrast, LesionKind, OodTransform, Subject, Tissue};
use common::{count, gen_small, mean_where};

fn base(seed: u64) -> Subject {
    gen_small(
        seed,
        "A",
        Contrast::T2,
        LesionKind::None,
        OodTransform::None,
    )
}

/// Brain intensities normalised by their median (so the global scale drops out).
fn normalised_brain(s: &Subject) -> Vec<f64> {
    let mut v: Vec<f64> = s
        .image
        .data
        .iter()
        .zip(&s.brain_mask.data)
        .filter(|(_, m)| **m != 0)
        .map(|(x, _)| f64::from(*x))
        .collect();
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    v.iter().map(|x| x / med).collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn site_b_shifts_the_brain_histogram() {
    // Same anatomy (same seed), another scanner: the brain intensity distribution, with the
    // global scale divided out, changes shape: wider (bias field, gamma) and noisier.
    for seed in [1, 2] {
        let a = base(seed);
        let b = gen_small(
            seed,
            "B",
            Contrast::T2,
            LesionKind::None,
            OodTransform::None,
        );
        assert_eq!(a.brain_mask.data, b.brain_mask.data, "same anatomy");
        let (na, nb) = (normalised_brain(&a), normalised_brain(&b));
        let spread = |v: &[f64]| quantile(v, 0.95) - quantile(v, 0.05);
        let (sa, sb) = (spread(&na), spread(&nb));
        assert!(
            sb > 1.15 * sa,
            "site B 5-95 % spread {sb:.3} vs site A {sa:.3}"
        );
        // Kolmogorov-Smirnov distance between the normalised histograms
        let ks = ks_distance(&na, &nb);
        assert!(ks > 0.08, "KS distance site A vs B = {ks:.3}");
        // and the raw intensity level differs by the scale ratio (1600 / 1000)
        let ratio = mean_where(&b, |i| b.brain_mask.data[i] != 0)
            / mean_where(&a, |i| a.brain_mask.data[i] != 0);
        assert!((1.2..2.2).contains(&ratio), "mean ratio {ratio}");
    }
}

fn ks_distance(a: &[f64], b: &[f64]) -> f64 {
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            i += 1;
        } else {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
fn t1_reverses_the_csf_contrast() {
    let t2 = base(4);
    let t1 = gen_small(4, "A", Contrast::T1, LesionKind::None, OodTransform::None);
    let rel = |s: &Subject| {
        let csf = mean_where(s, |i| {
            s.tissue.data[i] == Tissue::Csf as u8 && s.brain_mask.data[i] != 0
        });
        let wm = mean_where(s, |i| s.tissue.data[i] == Tissue::Wm as u8);
        csf / wm
    };
    assert!(
        rel(&t2) > 1.8 && rel(&t1) < 0.5,
        "CSF/WM: T2 {} T1 {}",
        rel(&t2),
        rel(&t1)
    );
}

#[test]
fn flips_mirror_the_anatomy() {
    let a = gen_small(3, "A", Contrast::T2, LesionKind::Tumour, OodTransform::None);
    let lr = gen_small(
        3,
        "A",
        Contrast::T2,
        LesionKind::Tumour,
        OodTransform::FlipLr,
    );
    let ud = gen_small(
        3,
        "A",
        Contrast::T2,
        LesionKind::Tumour,
        OodTransform::FlipUd,
    );
    let [nx, ny, nz] = a.image.dims;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let idx = i + nx * (j + ny * k);
                assert_eq!(
                    a.image.data[idx],
                    lr.image.data[(nx - 1 - i) + nx * (j + ny * k)]
                );
                assert_eq!(
                    a.lesion_mask.data[idx],
                    lr.lesion_mask.data[(nx - 1 - i) + nx * (j + ny * k)]
                );
                assert_eq!(
                    a.brain_mask.data[idx],
                    ud.brain_mask.data[i + nx * ((ny - 1 - j) + ny * k)]
                );
            }
        }
    }
    // the tumour sits in one hemisphere: after the flip its centre of mass changes side
    let cx = |s: &Subject| {
        let (mut n, mut sx) = (0.0, 0.0);
        for (idx, &m) in s.lesion_mask.data.iter().enumerate() {
            if m != 0 {
                n += 1.0;
                sx += (idx % nx) as f64;
            }
        }
        sx / n - (nx as f64 - 1.0) / 2.0
    };
    assert!(
        cx(&a) * cx(&lr) < 0.0,
        "tumour x offset {} vs {}",
        cx(&a),
        cx(&lr)
    );
}

/// A scan that was not skull-stripped ships with its head as mask (so preprocessing keeps the
/// skull); every other scan ships with its brain mask.
#[test]
fn skull_scans_ship_the_head_as_mask() {
    let s = gen_small(5, "A", Contrast::T2, LesionKind::None, OodTransform::Skull);
    let shipped = s.shipped_mask(OodTransform::Skull);
    let is = |i: usize, t: Tissue| s.tissue.data[i] == t as u8;
    for i in 0..shipped.data.len() {
        if s.brain_mask.data[i] != 0 || is(i, Tissue::Scalp) || is(i, Tissue::Bone) {
            assert_eq!(
                shipped.data[i], 1,
                "voxel {i} (brain, scalp or bone) is in the head mask"
            );
        }
        if is(i, Tissue::Background) && s.brain_mask.data[i] == 0 {
            assert_eq!(
                shipped.data[i], 0,
                "background voxel {i} is outside the head mask"
            );
        }
    }
    assert!(count(&shipped.data) > count(&s.brain_mask.data) * 5 / 4);
    let a = base(5);
    assert_eq!(a.shipped_mask(OodTransform::None).data, a.brain_mask.data);
}

#[test]
fn skull_adds_a_ring_outside_the_brain_mask() {
    let a = base(5);
    let s = gen_small(5, "A", Contrast::T2, LesionKind::None, OodTransform::Skull);
    assert_eq!(
        a.brain_mask.data, s.brain_mask.data,
        "the brain mask stays the brain"
    );
    let outside_a = mean_where(&a, |i| a.brain_mask.data[i] == 0);
    assert_eq!(outside_a, 0.0, "skull-stripped: zero outside the brain");
    let scalp = mean_where(&s, |i| s.tissue.data[i] == Tissue::Scalp as u8);
    let marrow = mean_where(&s, |i| s.tissue.data[i] == Tissue::Marrow as u8);
    let bone = mean_where(&s, |i| s.tissue.data[i] == Tissue::Bone as u8);
    let brain = mean_where(&s, |i| s.brain_mask.data[i] != 0);
    // bone is dark, diploe and scalp fat bright (bone layers are thin: partial volume at 3 mm)
    assert!(
        scalp > 0.5 * brain && marrow > bone * 1.2 && bone < 0.6 * scalp,
        "scalp {scalp} marrow {marrow} bone {bone} brain {brain}"
    );
    let ring = count(
        &s.tissue
            .data
            .iter()
            .map(|&t| u8::from(t == Tissue::Scalp as u8))
            .collect::<Vec<_>>(),
    );
    assert!(ring > count(&s.brain_mask.data) / 10, "scalp voxels {ring}");
}

#[test]
fn noise_is_standard_normal_with_a_full_mask() {
    let s = gen_small(6, "A", Contrast::T2, LesionKind::None, OodTransform::Noise);
    let n = s.image.data.len() as f64;
    let mean = s.image.data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = s
        .image
        .data
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
        "mean {mean} var {var}"
    );
    assert_eq!(count(&s.brain_mask.data), s.image.data.len());
    assert_eq!(count(&s.lesion_mask.data), 0);
}

#[test]
fn inversion_reverses_the_tissue_order() {
    let a = base(7);
    let s = gen_small(
        7,
        "A",
        Contrast::T2,
        LesionKind::None,
        OodTransform::Inversion,
    );
    let m = |x: &Subject, t: Tissue| {
        mean_where(x, |i| {
            x.tissue.data[i] == t as u8 && x.brain_mask.data[i] != 0
        })
    };
    assert!(m(&a, Tissue::Csf) > m(&a, Tissue::Wm));
    assert!(
        m(&s, Tissue::Csf) < m(&s, Tissue::Wm),
        "inverted: CSF darker than WM"
    );
}

#[test]
fn ghosting_adds_shifted_copies() {
    let a = base(8);
    let g = gen_small(
        8,
        "A",
        Contrast::T2,
        LesionKind::None,
        OodTransform::Ghosting,
    );
    let [nx, ny, nz] = a.image.dims;
    let shift = ny / 4;
    // the added signal correlates with the image shifted by ny/4 along y
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let idx = i + nx * (j + ny * k);
                if a.brain_mask.data[idx] == 0 {
                    continue;
                }
                let added = f64::from(g.image.data[idx] - a.image.data[idx]);
                let shifted = f64::from(a.image.data[i + nx * ((j + shift) % ny + ny * k)]);
                num += added * shifted;
                den += shifted * shifted;
            }
        }
    }
    let gain = num / den;
    assert!((0.2..0.6).contains(&gain), "ghost gain {gain}");
}

#[test]
fn blobs_follow_the_paper_and_sit_on_the_sampled_point() {
    for seed in 0..4 {
        let a = base(seed);
        let b = gen_small(
            seed,
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::Blobs,
        );
        let lesion = count(&b.lesion_mask.data);
        assert!(lesion > 0, "seed {seed}: empty blob mask");
        assert!(
            b.lesion_mask
                .data
                .iter()
                .zip(&b.brain_mask.data)
                .all(|(l, m)| *l == 0 || *m != 0)
        );
        // the largest increase is inside the mask, and the mask is where the increase is large
        let diff: Vec<f32> = b
            .image
            .data
            .iter()
            .zip(&a.image.data)
            .map(|(x, y)| x - y)
            .collect();
        let (argmax, _) = diff
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .unwrap();
        assert_eq!(
            b.lesion_mask.data[argmax], 1,
            "seed {seed}: peak outside the blob mask"
        );
        let inside = diff
            .iter()
            .zip(&b.lesion_mask.data)
            .filter(|(_, m)| **m != 0)
            .map(|(d, _)| *d)
            .fold(f32::MAX, f32::min);
        let outside = diff
            .iter()
            .zip(&b.lesion_mask.data)
            .filter(|(_, m)| **m == 0)
            .map(|(d, _)| *d)
            .fold(0.0, f32::max);
        assert!(
            inside >= outside * 0.999,
            "seed {seed}: mask is not a level set ({inside} < {outside})"
        );
    }
}
