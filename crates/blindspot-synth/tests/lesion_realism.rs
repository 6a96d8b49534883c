//! The default tumours are as large and as bright as real gliomas.
//!
//! Bounds from two BraTS 2013 gliomas (1 mm, FLAIR z-scored in the brain): whole tumour 112 and
//! 63 mL; over axial slices with lesion, the lesion share of the slice's brain pixels has median
//! 0.109 / 0.083 (p90 0.137 / 0.111) and the FLAIR contrast `(mean lesion - mean non-lesion
//! brain) / std of the slice's brain` has median 1.87 / 1.99. Published BraTS whole-tumour
//! volumes are about 20-250 mL. Rerun the comparison with
//! `cargo run --release -p blindspot-synth --example lesion_sizes -- [REAL_DIR]`.

mod common;

use blindspot_synth::{Contrast, LesionKind, OodTransform, Subject, SynthConfig, generate_subject};
use common::spec;

/// Published BraTS whole-tumour volumes, mL.
const GLIOMA_ML: [f64; 2] = [20.0, 250.0];
/// Accepted median slice share (real: 0.083 and 0.109).
const SHARE_MEDIAN: [f64; 2] = [0.07, 0.13];
/// Accepted median FLAIR contrast in brain-std units (real: 1.87 and 1.99).
const FLAIR_CONTRAST: [f64; 2] = [1.5, 3.0];
/// A slice counts when it holds at least this much brain (100 pixels at 1 mm).
const MIN_BRAIN_MM2: f64 = 100.0;

/// Per axial slice with lesion and enough brain: (lesion share, contrast in brain-std units).
fn slices(s: &Subject) -> Vec<(f64, f64)> {
    let [nx, ny, nz] = s.image.dims;
    let min_px = MIN_BRAIN_MM2 / (s.image.spacing[0] * s.image.spacing[1]);
    let mut out = Vec::new();
    for k in 0..nz {
        let (mut brain, mut sum, mut sum2) = (0usize, 0.0f64, 0.0f64);
        let (mut lesion, mut lesion_sum) = (0usize, 0.0f64);
        for idx in nx * ny * k..nx * ny * (k + 1) {
            if s.brain_mask.data[idx] == 0 {
                continue;
            }
            let v = f64::from(s.image.data[idx]);
            brain += 1;
            sum += v;
            sum2 += v * v;
            if s.lesion_mask.data[idx] != 0 {
                lesion += 1;
                lesion_sum += v;
            }
        }
        if lesion == 0 || lesion == brain || (brain as f64) < min_px {
            continue;
        }
        let mean = sum / brain as f64;
        let std = (sum2 / brain as f64 - mean * mean).max(0.0).sqrt();
        let healthy = (sum - lesion_sum) / (brain - lesion) as f64;
        let contrast = (lesion_sum / lesion as f64 - healthy) / std;
        out.push((lesion as f64 / brain as f64, contrast));
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn default_tumour_volumes_are_those_of_real_gliomas() {
    let [lo, hi] = SynthConfig::quickstart().lesions.tumour_ml;
    assert!(
        lo >= GLIOMA_ML[0] && hi <= GLIOMA_ML[1],
        "tumour_ml [{lo}, {hi}] outside {GLIOMA_ML:?}"
    );
    let mid = 0.5 * (lo + hi);
    assert!(
        (50.0..=150.0).contains(&mid),
        "tumour_ml centre {mid} mL (real: 63 and 112, published median near 100)"
    );
}

#[test]
fn default_tumours_fill_a_realistic_share_of_their_slices_in_flair() {
    // the quickstart grid (2 mm), as written by `blindspot-synth` for the experiments
    let config = SynthConfig::quickstart();
    let [lo, hi] = config.lesions.tumour_ml;
    let mut pooled = Vec::new();
    for seed in 0..8 {
        let s = generate_subject(
            &config,
            &spec(
                seed,
                "A",
                Contrast::Flair,
                LesionKind::Tumour,
                OodTransform::None,
            ),
        )
        .unwrap();
        assert!(
            s.lesion_ml >= 0.8 * lo && s.lesion_ml <= 1.25 * hi,
            "seed {seed}: {:.1} mL, configured [{lo}, {hi}]",
            s.lesion_ml
        );
        let sl = slices(&s);
        assert!(sl.len() >= 10, "seed {seed}: {} lesional slices", sl.len());
        pooled.extend(sl);
    }
    let share = median(pooled.iter().map(|s| s.0).collect());
    let contrast = median(pooled.iter().map(|s| s.1).collect());
    assert!(
        (SHARE_MEDIAN[0]..=SHARE_MEDIAN[1]).contains(&share),
        "median slice share {share:.3} outside {SHARE_MEDIAN:?}"
    );
    assert!(
        (FLAIR_CONTRAST[0]..=FLAIR_CONTRAST[1]).contains(&contrast),
        "median FLAIR contrast {contrast:.2} outside {FLAIR_CONTRAST:?}"
    );
}
