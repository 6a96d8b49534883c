//! From hand-made model outputs to slice records: residual post-processing and statistics.

use blindspot_ood::slice::{
    PostprocessConfig, ResidualKind, ResidualSource, SliceInput, SliceStatsConfig,
    neg_elbo_laplace, postprocess_residual, slice_record,
};
use blindspot_ood::{OodError, SliceId, Statistic};

const W: usize = 32;
const H: usize = 28;

/// An elliptic brain mask inside a 32x28 image.
fn brain() -> Vec<bool> {
    (0..W * H)
        .map(|i| {
            let (x, y) = ((i % W) as f64 - 15.5, (i / W) as f64 - 13.5);
            (x / 14.0).powi(2) + (y / 12.0).powi(2) <= 1.0
        })
        .collect()
}

/// A smooth "reconstruction".
fn recon() -> Vec<f32> {
    (0..W * H)
        .map(|i| (((i % W) as f32) * 0.1).sin() + (((i / W) as f32) * 0.07).cos())
        .collect()
}

fn input<'a>(
    x: &'a [f32],
    xr: &'a [f32],
    mask: &'a [bool],
    seg: Option<&'a [bool]>,
) -> SliceInput<'a> {
    SliceInput {
        id: SliceId::new("synthetic", "s1", 7),
        width: W,
        height: H,
        residual: ResidualSource::Reconstruction {
            input: x,
            reconstruction: xr,
        },
        mask,
        segmentation: seg,
        rec_err: None,
        kl: Some(0.5),
        latent_dim: 128,
        elbo: None,
        log_likelihood: None,
        latent_mean: Some(&[0.1, -0.2]),
        image: None,
    }
}

/// Statistics on the plain positive residual: no erosion, no median filter.
fn unfiltered(min_mask_pixels: usize) -> SliceStatsConfig {
    SliceStatsConfig {
        postprocess: PostprocessConfig {
            kind: ResidualKind::Positive,
            erosion_iterations: 0,
            median_size: 1,
        },
        entropy_eps: 1e-8,
        min_mask_pixels,
    }
}

/// [`input`] on a `width` x `height` slice.
fn sized<'a>(
    x: &'a [f32],
    xr: &'a [f32],
    mask: &'a [bool],
    width: usize,
    height: usize,
) -> SliceInput<'a> {
    SliceInput {
        width,
        height,
        ..input(x, xr, mask, None)
    }
}

#[test]
fn a_local_lesion_has_lower_entropy_than_a_diffuse_shift() {
    let mask = brain();
    let xr = recon();
    let mut lesion = xr.clone();
    let mut seg = vec![false; W * H];
    for y in 10..16 {
        for x in 12..18 {
            lesion[y * W + x] += 3.0;
            seg[y * W + x] = true;
        }
    }
    // The same total excess, spread over the whole image.
    let excess = 3.0 * 36.0 / mask.iter().filter(|&&m| m).count() as f32;
    let shift: Vec<f32> = xr.iter().map(|v| v + excess).collect();
    let cfg = SliceStatsConfig::default();
    let l = slice_record(&input(&lesion, &xr, &mask, Some(&seg)), &cfg).unwrap();
    let s = slice_record(&input(&shift, &xr, &mask, None), &cfg).unwrap();
    for stat in [Statistic::Entropy, Statistic::EntropyClean] {
        let (le, se) = (l.get(stat).unwrap(), s.get(stat).unwrap());
        assert!(le < se, "{stat}: lesion {le} vs shift {se}");
    }
    assert_eq!(l.lesion_pixels, 36);
    assert_eq!(s.lesion_pixels, 0);
    let n = mask.iter().filter(|&&m| m).count();
    assert_eq!(l.mask_pixels as usize, n);
    // rec_err computed here: the lesion's 36 pixels of 3.0 are all inside the mask.
    let rec = l.get(Statistic::RecErr).unwrap();
    assert!((rec - 108.0 / n as f64).abs() < 1e-6, "{rec}");
    assert!((l.get(Statistic::CodedElbo).unwrap() - (rec - 0.5)).abs() < 1e-12);
    assert_eq!(
        l.get(Statistic::NegElbo).unwrap(),
        neg_elbo_laplace(rec, n, 0.5, 128)
    );
    assert_eq!(l.latent_mean.as_deref(), Some(&[0.1f32, -0.2][..]));
    assert!(l.get(Statistic::LogLikelihood).is_err());
}

#[test]
fn post_processing_follows_the_paper() {
    let mask = brain();
    let xr = recon();
    let cfg = PostprocessConfig::default();
    let at = |x: usize, y: usize| y * W + x;

    // An isolated bright pixel is removed by the 5x5 median filter.
    let mut x = xr.clone();
    x[at(15, 13)] += 5.0;
    let r = postprocess_residual(
        ResidualSource::Reconstruction {
            input: &x,
            reconstruction: &xr,
        },
        &mask,
        W,
        H,
        &cfg,
    )
    .unwrap();
    assert!(r.iter().all(|&v| v == 0.0));

    // A dark blob: nothing in the positive residual, everything in the absolute one.
    let mut dark = xr.clone();
    for y in 11..16 {
        for x in 13..18 {
            dark[at(x, y)] -= 2.0;
        }
    }
    let run = |kind| {
        postprocess_residual(
            ResidualSource::Reconstruction {
                input: &dark,
                reconstruction: &xr,
            },
            &mask,
            W,
            H,
            &PostprocessConfig { kind, ..cfg },
        )
        .unwrap()
    };
    assert!(run(ResidualKind::Positive).iter().all(|&v| v == 0.0));
    let abs = run(ResidualKind::Absolute);
    assert_eq!(
        abs[at(15, 13)],
        2.0,
        "the blob's centre survives the median"
    );

    // The eroded mask zeroes a bright rim at the brain's border.
    let rim: Vec<f32> = (0..W * H)
        .map(|i| if mask[i] { 1.0 } else { 0.0 })
        .collect();
    let r = postprocess_residual(ResidualSource::AnomalyMap(&rim), &mask, W, H, &cfg).unwrap();
    let leftmost = (0..W).find(|&x| mask[at(x, 13)]).unwrap();
    assert_eq!(r[at(leftmost, 13)], 0.0);
    assert_eq!(r[at(15, 13)], 1.0);

    // With everything off the residual is the masked positive part.
    let off = PostprocessConfig {
        erosion_iterations: 0,
        median_size: 1,
        ..cfg
    };
    let r = postprocess_residual(ResidualSource::AnomalyMap(&rim), &mask, W, H, &off).unwrap();
    assert_eq!(r, rim);
}

#[test]
fn perfect_reconstructions_and_anomaly_maps() {
    let mask = brain();
    let xr = recon();
    let r = slice_record(&input(&xr, &xr, &mask, None), &SliceStatsConfig::default()).unwrap();
    assert_eq!(r.get(Statistic::RecErr).unwrap(), 0.0);
    // The paper's quirk (a zero residual looks perfectly concentrated) and the clean fix.
    assert_eq!(r.get(Statistic::Entropy).unwrap(), 0.0);
    assert_eq!(r.get(Statistic::EntropyClean).unwrap(), 1.0);

    let nll: Vec<f32> = vec![0.5; W * H];
    let mut flow = input(&xr, &xr, &mask, None);
    flow.residual = ResidualSource::AnomalyMap(&nll);
    flow.kl = None;
    flow.log_likelihood = Some(-1234.5);
    flow.latent_mean = None;
    let r = slice_record(&flow, &SliceStatsConfig::default()).unwrap();
    assert!(
        r.get(Statistic::RecErr).is_err(),
        "no reconstruction, no rec_err"
    );
    assert!(r.get(Statistic::NegElbo).is_err());
    assert_eq!(r.get(Statistic::LogLikelihood).unwrap(), -1234.5);
    assert!(r.get(Statistic::EntropyClean).unwrap() > 0.9);
}

#[test]
fn bad_buffers_and_scalars_are_errors() {
    let mask = brain();
    let xr = recon();
    let short = &xr[..W * H - 1];
    let err = slice_record(
        &input(short, &xr, &mask, None),
        &SliceStatsConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, OodError::ShapeMismatch { .. }), "{err}");
    let mut bad = input(&xr, &xr, &mask, None);
    bad.kl = Some(f64::NAN);
    assert!(matches!(
        slice_record(&bad, &SliceStatsConfig::default()),
        Err(OodError::NonFinite { .. })
    ));
    let mut nan = xr.clone();
    nan[40] = f32::INFINITY;
    assert!(matches!(
        slice_record(&input(&nan, &xr, &mask, None), &SliceStatsConfig::default()),
        Err(OodError::NonFinite { .. })
    ));
    let even = SliceStatsConfig {
        postprocess: PostprocessConfig {
            median_size: 4,
            ..PostprocessConfig::default()
        },
        ..SliceStatsConfig::default()
    };
    assert!(matches!(
        slice_record(&input(&xr, &xr, &mask, None), &even),
        Err(OodError::Metrics(_))
    ));
}

#[test]
fn residual_levels_and_intensity_summaries_match_a_hand_computed_slice() {
    // 10x10 image, brain = the 8x8 interior (64 pixels); no post-processing, so the
    // post-processed residual is the positive residual on the mask.
    let (w, h) = (10usize, 10usize);
    let mask: Vec<bool> = (0..w * h)
        .map(|i| (1..9).contains(&(i % w)) && (1..9).contains(&(i / w)))
        .collect();
    let xr = vec![0.0f32; w * h];
    // Brain pixel k (row-major over the interior) gets x = k / 64 - 0.25: 16 negative
    // residuals, 48 positive ones; the background gets a huge value the stats must ignore.
    let mut x = vec![100.0f32; w * h];
    let mut k = 0usize;
    for (i, m) in mask.iter().enumerate() {
        if *m {
            x[i] = k as f32 / 64.0 - 0.25;
            k += 1;
        }
    }
    let cfg = unfiltered(10);
    let i = sized(&x, &xr, &mask, w, h);
    let r = slice_record(&i, &cfg).unwrap();
    // |x| over the brain: 16 values k/64 - 1/4 for k < 16 (down to 1/64), 48 values above.
    let mut abs: Vec<f64> = (0..64).map(|k| (k as f64 / 64.0 - 0.25).abs()).collect();
    abs.sort_by(f64::total_cmp);
    let median = (abs[31] + abs[32]) / 2.0;
    assert!((r.get(Statistic::ResidualMedian).unwrap() - median).abs() < 1e-6);
    // Positive part: 16 zeros then k/64 - 1/4; its 95th percentile (linear) and 20th largest.
    let mut pos: Vec<f64> = (0..64).map(|k| (k as f64 / 64.0 - 0.25).max(0.0)).collect();
    pos.sort_by(f64::total_cmp);
    let q95 = pos[59] + (pos[60] - pos[59]) * (0.95 * 63.0 - 59.0);
    assert!((r.get(Statistic::ResidualQ95).unwrap() - q95).abs() < 1e-6);
    assert!((r.get(Statistic::ResidualPeak).unwrap() - pos[64 - 20]).abs() < 1e-6);
    // No median filter to shrink: the spot level is the 8th largest value.
    assert!((r.get(Statistic::ResidualSpot).unwrap() - pos[64 - 8]).abs() < 1e-6);
    // The input itself: its median and IQR over the brain, ignoring the background.
    let xs: Vec<f64> = (0..64).map(|k| k as f64 / 64.0 - 0.25).collect();
    let q = |p: f64| {
        let pos = p * 63.0;
        let lo = pos.floor() as usize;
        xs[lo] + (xs[(lo + 1).min(63)] - xs[lo]) * (pos - lo as f64)
    };
    assert!((r.get(Statistic::IntensityMedian).unwrap() - q(0.5)).abs() < 1e-6);
    assert!((r.get(Statistic::IntensityIqr).unwrap() - (q(0.75) - q(0.25))).abs() < 1e-6);
    // A linear ramp is symmetric: no skew.
    assert!(r.get(Statistic::IntensitySkew).unwrap().abs() < 1e-6);
}

/// Quartile skewness by hand: eight brain pixels 0, 1, 1, 2, 2, 3, 8, 9 (and a background
/// pixel that must not count). Linear quantiles at 7p: q25 = 1 (position 1.75), q50 = 2
/// (3.5), q75 = 3 + 0.25 * 5 = 4.25 (5.25), so (4.25 + 1 - 4) / 3.25 = 1.25 / 3.25.
#[test]
fn intensity_skew_by_hand() {
    let x = [9.0f32, 0.0, 1.0, 2.0, 8.0, 1.0, 3.0, 2.0, 100.0];
    let xr = [0.0f32; 9];
    let mut mask = [true; 9];
    mask[8] = false;
    let cfg = unfiltered(1);
    let i = sized(&x, &xr, &mask, 3, 3);
    let r = slice_record(&i, &cfg).unwrap();
    let skew = r.get(Statistic::IntensitySkew).unwrap();
    assert!((skew - 1.25 / 3.25).abs() < 1e-9, "{skew}");
    // Mirrored intensities mirror the skew.
    let neg: Vec<f32> = x.iter().map(|v| -v).collect();
    let i = sized(&neg, &xr, &mask, 3, 3);
    let r = slice_record(&i, &cfg).unwrap();
    assert!((r.get(Statistic::IntensitySkew).unwrap() + 1.25 / 3.25).abs() < 1e-9);
}

#[test]
fn a_planted_spot_raises_the_peak_but_not_the_median_residual() {
    let mask = brain();
    let xr = recon();
    let noise: Vec<f32> = (0..W * H)
        .map(|i| 0.05 * ((i as f32 * 12.9898).sin() * 43_758.547).fract())
        .collect();
    let healthy: Vec<f32> = xr.iter().zip(&noise).map(|(a, b)| a + b).collect();
    let mut lesion = healthy.clone();
    for y in 10..16 {
        for x in 12..18 {
            lesion[y * W + x] += 2.0;
        }
    }
    let cfg = SliceStatsConfig::default();
    let h = slice_record(&input(&healthy, &xr, &mask, None), &cfg).unwrap();
    let l = slice_record(&input(&lesion, &xr, &mask, None), &cfg).unwrap();
    let get = |r: &blindspot_ood::SliceRecord, s| r.get(s).unwrap();
    // 36 of about 520 brain pixels: the peak sees it, the median moves by a few ranks only
    // (the mean, rec_err, by far more).
    assert!(get(&l, Statistic::ResidualPeak) > get(&h, Statistic::ResidualPeak) + 1.0);
    let (hm, lm) = (
        get(&h, Statistic::ResidualMedian),
        get(&l, Statistic::ResidualMedian),
    );
    assert!((lm - hm).abs() < 0.15 * hm, "median {hm} -> {lm}");
    let (hr, lr) = (get(&h, Statistic::RecErr), get(&l, Statistic::RecErr));
    assert!(lr - hr > 5.0 * (lm - hm).abs(), "rec_err {hr} -> {lr}");
}

/// A 4x4 bright spot in a 16x16 slice: the pixel maps' 5x5 median filter keeps its inner 2x2
/// (fewer than the 20 pixels `residual_peak` reads, so 0), the 3x3 filter of `residual_spot`
/// keeps all but its 4 corners (12 pixels, at least the 8 it reads).
#[test]
fn a_small_spot_survives_the_spot_statistic_only() {
    let (w, h) = (16, 16);
    let mut x = vec![0.0f32; w * h];
    for r in 6..10 {
        for c in 6..10 {
            x[r * w + c] = 1.0;
        }
    }
    let xr = vec![0.0f32; w * h];
    let mask = vec![true; w * h];
    let i = sized(&x, &xr, &mask, w, h);
    let r = slice_record(&i, &SliceStatsConfig::default()).unwrap();
    assert_eq!(r.get(Statistic::ResidualPeak).unwrap(), 0.0);
    assert_eq!(r.get(Statistic::ResidualSpot).unwrap(), 1.0);
    // A 3x3 spot keeps only 5 pixels after the 3x3 filter: below the 8 the statistic reads.
    x.iter_mut().for_each(|v| *v = 0.0);
    for r in 6..9 {
        for c in 6..9 {
            x[r * w + c] = 1.0;
        }
    }
    let i = sized(&x, &xr, &mask, w, h);
    let r = slice_record(&i, &SliceStatsConfig::default()).unwrap();
    assert_eq!(r.get(Statistic::ResidualSpot).unwrap(), 0.0);
}
