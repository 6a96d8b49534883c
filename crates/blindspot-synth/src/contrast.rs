//! Tissue classes and their mean intensity under each weighting.

use rand::{Rng, SeedableRng};

use crate::field::normal;

use crate::config::Contrast;

/// Tissue classes of the phantom (also the values of [`crate::Subject::tissue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tissue {
    /// Outside the head (or outside the brain once skull-stripped).
    Background = 0,
    /// Cerebrospinal fluid: ventricles, sulci, the interhemispheric fissure.
    Csf = 1,
    /// Cortical grey matter.
    Gm = 2,
    /// White matter.
    Wm = 3,
    /// Deep grey-matter nuclei (caudate, lentiform, thalamus).
    DeepGm = 4,
    /// Tumour: necrotic core.
    Necrosis = 5,
    /// Tumour: enhancing rim (solid tumour).
    Rim = 6,
    /// Tumour: peritumoural oedema.
    Oedema = 7,
    /// MS-like plaque.
    Ms = 8,
    /// Stroke-like infarct.
    Stroke = 9,
    /// Cortical bone of the skull (only when not skull-stripped).
    Bone = 10,
    /// Diploe / marrow between the skull tables.
    Marrow = 11,
    /// Scalp (fat and skin).
    Scalp = 12,
}

/// Number of tissue classes.
pub const N_TISSUES: usize = 13;

impl Tissue {
    /// All classes, in the order of their `u8` value.
    pub const ALL: [Tissue; N_TISSUES] = [
        Tissue::Background,
        Tissue::Csf,
        Tissue::Gm,
        Tissue::Wm,
        Tissue::DeepGm,
        Tissue::Necrosis,
        Tissue::Rim,
        Tissue::Oedema,
        Tissue::Ms,
        Tissue::Stroke,
        Tissue::Bone,
        Tissue::Marrow,
        Tissue::Scalp,
    ];

    /// Whether the class is a lesion.
    pub fn is_lesion(self) -> bool {
        matches!(
            self,
            Tissue::Necrosis | Tissue::Rim | Tissue::Oedema | Tissue::Ms | Tissue::Stroke
        )
    }
}

/// Nominal mean intensity of each tissue (index = `Tissue as usize`), before the site's
/// gamma and scale; about 1 for the brightest brain tissue.
///
/// Ordering as in real scans: T1 WM > GM > CSF, lesions dark; T2 CSF > GM > WM, lesions
/// bright; FLAIR CSF dark, GM > WM, lesions brightest; PD CSF >= GM > WM.
pub fn nominal_means(contrast: Contrast) -> [f64; N_TISSUES] {
    //        bg   csf   gm    wm    dgm   necr  rim   oed   ms    strk  bone  marr  scalp
    match contrast {
        Contrast::T1 => [
            0.0, 0.18, 0.56, 0.82, 0.64, 0.16, 0.50, 0.38, 0.46, 0.34, 0.04, 0.85, 0.95,
        ],
        Contrast::T2 => [
            0.0, 1.00, 0.60, 0.42, 0.50, 1.00, 0.72, 0.86, 0.82, 0.88, 0.04, 0.55, 0.75,
        ],
        Contrast::Flair => [
            0.0, 0.08, 0.60, 0.45, 0.54, 0.35, 0.90, 1.00, 0.98, 0.95, 0.04, 0.60, 0.70,
        ],
        Contrast::Pd => [
            0.0, 0.88, 0.80, 0.64, 0.74, 0.90, 0.88, 0.94, 0.92, 0.93, 0.05, 0.70, 0.85,
        ],
    }
}

/// Per-subject tissue means: the nominal means, times a fixed per-site factor in
/// `1 +- site_jitter`, times a per-subject factor with a 3 % standard deviation.
pub(crate) fn subject_means(
    contrast: Contrast,
    site_jitter: f64,
    site_seed: u64,
    rng: &mut impl Rng,
) -> [f64; N_TISSUES] {
    let mut means = nominal_means(contrast);
    let mut site_rng = rand_chacha::ChaCha8Rng::seed_from_u64(site_seed);
    for m in means.iter_mut().skip(1) {
        let site_factor = 1.0 + site_jitter * site_rng.random_range(-1.0..=1.0);
        let subject_factor = (1.0 + 0.03 * normal(rng)).clamp(0.9, 1.1);
        *m *= site_factor * subject_factor;
    }
    means
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flair_keeps_grey_above_white_in_the_contrast_model() {
        // the strongest built-in site jitter (site B, 0.06), many sites and subjects
        let (gm, wm) = (Tissue::Gm as usize, Tissue::Wm as usize);
        for site_seed in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(site_seed + 100);
            for _ in 0..200 {
                let m = subject_means(Contrast::Flair, 0.06, site_seed, &mut rng);
                assert!(
                    m[gm] > m[wm],
                    "site seed {site_seed}: gm {} wm {}",
                    m[gm],
                    m[wm]
                );
            }
        }
    }
}
