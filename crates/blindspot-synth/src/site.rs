//! Acquisition ("site"): what a scanner and its protocol do to the ideal image.
//!
//! Order of application: blur (in-plane PSF and slice profile) -> bias field -> gamma ->
//! global scale -> Rician noise -> skull-stripping (image times brain mask).

use serde::{Deserialize, Serialize};

use crate::error::{Result, invalid};

/// Acquisition parameters of one site (`[synth.sites.<name>]`, every key required there).
///
/// Built-in sites:
///
/// | site | role | bias | snr | blur_mm | scale | gamma | slice_mm | contrast_jitter |
/// |------|------|------|-----|---------|-------|-------|----------|-----------------|
/// | `A` | training (bias-corrected, thin slices, good SNR, like Cam-CAN) | 0.04 | 30 | 0.0 | 1000 | 1.00 | 0.0 | 0.00 |
/// | `B` | other scanner: strong bias, noisier, thick slices, brighter, other curve | 0.30 | 12 | 0.8 | 1600 | 1.40 | 5.0 | 0.06 |
/// | `C` | milder shift: moderate bias, softer image, darker | 0.12 | 22 | 0.5 | 600 | 0.85 | 3.5 | 0.04 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteParams {
    /// Bias-field amplitude: the log of the multiplicative field spans about +-bias, in [0, 1].
    pub bias: f64,
    /// Signal-to-noise ratio: mean grey-matter intensity over the Gaussian noise sigma, in [2, 1000].
    pub snr: f64,
    /// In-plane blur, Gaussian sigma in mm, in [0, 5].
    pub blur_mm: f64,
    /// Global intensity scale (the image unit of this scanner), in (0, 1e6].
    pub scale: f64,
    /// Gamma applied to the normalised intensity, in [0.3, 3].
    pub gamma: f64,
    /// Slice thickness in mm along z (0: as thin as the voxel); thicker slices blur along z
    /// with a Gaussian of FWHM `sqrt(slice_mm^2 - spacing_z^2)`. In [0, 20].
    pub slice_mm: f64,
    /// Systematic per-tissue contrast change of this protocol: each tissue mean is scaled by
    /// a fixed factor in `1 +- contrast_jitter` (the same for every subject of the site), in [0, 0.5].
    pub contrast_jitter: f64,
}

impl SiteParams {
    /// A built-in site by name (`A`, `B` or `C`).
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "A" => Some(SiteParams {
                bias: 0.04,
                snr: 30.0,
                blur_mm: 0.0,
                scale: 1000.0,
                gamma: 1.0,
                slice_mm: 0.0,
                contrast_jitter: 0.0,
            }),
            "B" => Some(SiteParams {
                bias: 0.3,
                snr: 12.0,
                blur_mm: 0.8,
                scale: 1600.0,
                gamma: 1.4,
                slice_mm: 5.0,
                contrast_jitter: 0.06,
            }),
            "C" => Some(SiteParams {
                bias: 0.12,
                snr: 22.0,
                blur_mm: 0.5,
                scale: 600.0,
                gamma: 0.85,
                slice_mm: 3.5,
                contrast_jitter: 0.04,
            }),
            _ => None,
        }
    }

    pub(crate) fn validate(&self, key: &str) -> Result<()> {
        let checks: [(&str, f64, f64, f64); 7] = [
            ("bias", self.bias, 0.0, 1.0),
            ("snr", self.snr, 2.0, 1000.0),
            ("blur_mm", self.blur_mm, 0.0, 5.0),
            ("scale", self.scale, 1e-6, 1e6),
            ("gamma", self.gamma, 0.3, 3.0),
            ("slice_mm", self.slice_mm, 0.0, 20.0),
            ("contrast_jitter", self.contrast_jitter, 0.0, 0.5),
        ];
        for (name, v, lo, hi) in checks {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(format!("{key}.{name}"), v, format!("{lo}..={hi}")));
            }
        }
        Ok(())
    }
}
