//! Shared helpers: a small grid so the tests stay fast.

#![allow(dead_code)] // each test file uses a different subset

use blindspot_synth::{
    Contrast, LesionKind, OodTransform, Split, Subject, SubjectSpec, SynthConfig, generate_subject,
};

/// The quickstart config on a coarse 3 mm grid (about 170 k voxels).
pub fn small_config() -> SynthConfig {
    let mut c = SynthConfig::quickstart();
    c.dims = [58, 68, 42];
    c.spacing = [3.0, 3.0, 3.0];
    c
}

/// A spec with everything given.
pub fn spec(
    seed: u64,
    site: &str,
    contrast: Contrast,
    lesion: LesionKind,
    ood: OodTransform,
) -> SubjectSpec {
    SubjectSpec {
        id: format!("t-{seed:03}"),
        set: "t".into(),
        split: Split::Test,
        seed,
        site: site.into(),
        contrast,
        lesion,
        ood,
    }
}

/// Generate with the small config.
pub fn gen_small(
    seed: u64,
    site: &str,
    contrast: Contrast,
    lesion: LesionKind,
    ood: OodTransform,
) -> Subject {
    generate_subject(&small_config(), &spec(seed, site, contrast, lesion, ood)).expect("generates")
}

/// Mean of `image` over voxels where `pick` holds.
pub fn mean_where(s: &Subject, pick: impl Fn(usize) -> bool) -> f64 {
    let (mut n, mut sum) = (0usize, 0.0f64);
    for i in 0..s.image.data.len() {
        if pick(i) {
            n += 1;
            sum += f64::from(s.image.data[i]);
        }
    }
    assert!(n > 0, "no voxel selected");
    sum / n as f64
}

/// Number of non-zero voxels.
pub fn count(mask: &[u8]) -> usize {
    mask.iter().filter(|&&v| v != 0).count()
}
