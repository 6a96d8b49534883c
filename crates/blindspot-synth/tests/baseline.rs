//! The model-free threshold baseline sees FLAIR tumours well and small MS plaques less well,
//! as on real data.

mod common;

use blindspot_synth::{Contrast, LesionKind, OodTransform, ThresholdBaseline, dice};
use common::gen_small;

fn mean_dice(
    baseline: &ThresholdBaseline,
    kind: LesionKind,
    seeds: std::ops::Range<u64>,
) -> (f64, f64) {
    let mut dices = Vec::new();
    for seed in seeds {
        let s = gen_small(seed, "A", Contrast::Flair, kind, OodTransform::None);
        let seg = baseline.segment(&s.image, &s.brain_mask).unwrap();
        dices.push(
            dice(&seg, &s.lesion_mask)
                .unwrap()
                .expect("lesional volume"),
        );
    }
    let mean = dices.iter().sum::<f64>() / dices.len() as f64;
    let min = dices.iter().copied().fold(f64::INFINITY, f64::min);
    (mean, min)
}

#[test]
fn flair_tumours_are_found_and_ms_lesions_less_well() {
    let healthy: Vec<_> = (100..104)
        .map(|seed| {
            gen_small(
                seed,
                "A",
                Contrast::Flair,
                LesionKind::None,
                OodTransform::None,
            )
        })
        .collect();
    let baseline =
        ThresholdBaseline::fit(healthy.iter().map(|s| (&s.image, &s.brain_mask)), 99.0).unwrap();
    assert!(
        baseline.threshold() > 1.0,
        "z threshold {}",
        baseline.threshold()
    );
    let (tumour_mean, tumour_min) = mean_dice(&baseline, LesionKind::Tumour, 0..5);
    let (ms_mean, _) = mean_dice(&baseline, LesionKind::Ms, 0..5);
    assert!(
        tumour_min > 0.5,
        "every FLAIR tumour Dice > 0.5 (min {tumour_min:.3}, mean {tumour_mean:.3})"
    );
    assert!(
        ms_mean < tumour_mean - 0.1,
        "MS Dice {ms_mean:.3} vs tumour {tumour_mean:.3}"
    );
    assert!(
        ms_mean > 0.05,
        "MS plaques are visible at all ({ms_mean:.3})"
    );
}

#[test]
fn healthy_false_positive_rate_matches_the_percentile() {
    let healthy: Vec<_> = (200..203)
        .map(|seed| {
            gen_small(
                seed,
                "A",
                Contrast::Flair,
                LesionKind::None,
                OodTransform::None,
            )
        })
        .collect();
    let baseline =
        ThresholdBaseline::fit(healthy.iter().map(|s| (&s.image, &s.brain_mask)), 99.0).unwrap();
    let s = gen_small(
        250,
        "A",
        Contrast::Flair,
        LesionKind::None,
        OodTransform::None,
    );
    let seg = baseline.segment(&s.image, &s.brain_mask).unwrap();
    let fp = seg.data.iter().filter(|&&v| v != 0).count() as f64;
    let brain = s.brain_mask.data.iter().filter(|&&v| v != 0).count() as f64;
    assert!(fp / brain < 0.03, "false-positive fraction {}", fp / brain);
}
