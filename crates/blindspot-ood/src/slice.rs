//! From one slice's model outputs (plain buffers) to a [`SliceRecord`].
//!
//! The model crates hand in, per slice, the input and its reconstruction (or an anomaly map
//! such as a per-pixel NLL), the brain mask, and the scalars they compute themselves (KL,
//! ELBO, log-likelihood, latent mean). This module post-processes the residual the paper's way
//! (docs/method.md 3.1) and computes every per-slice statistic it can.

use blindspot_metrics::{Connectivity, erode, median_filter, quantile_sorted};
use serde::{Deserialize, Serialize};

use crate::entropy::{
    PAPER_EPS, PAPER_MIN_MASK_PIXELS, residual_entropy_clean, residual_entropy_paper,
};
use crate::error::{OodError, Result, check_finite};
use crate::ids::{PEAK_PIXELS, SPOT_PIXELS};
use crate::record::{SliceId, SliceRecord, Statistic};

/// Which residual of input and reconstruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualKind {
    /// `max(x - x_hat, 0)`: only pixels brighter than the reconstruction (hyper-intense
    /// lesions in T2; the paper's HEAD default).
    Positive,
    /// `|x - x_hat|` (the paper-era default).
    Absolute,
}

/// The paper's residual post-processing (docs/method.md 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostprocessConfig {
    /// Which residual.
    pub kind: ResidualKind,
    /// Erosions of the brain mask (4-connected cross, zero border) whose result zeroes the
    /// residual outside it; 0 = off. The paper: 3.
    pub erosion_iterations: usize,
    /// Odd side of the reflect-padded median filter; 1 = off. The paper: 5.
    pub median_size: usize,
}

impl Default for PostprocessConfig {
    /// The paper's HEAD settings: positive residual, 3 erosions, 5x5 median.
    fn default() -> Self {
        Self {
            kind: ResidualKind::Positive,
            erosion_iterations: 3,
            median_size: 5,
        }
    }
}

/// Where the residual comes from.
#[derive(Debug, Clone, Copy)]
pub enum ResidualSource<'a> {
    /// Input and reconstruction, row-major `height x width`.
    Reconstruction {
        /// The model input `x`.
        input: &'a [f32],
        /// The reconstruction `x_hat`.
        reconstruction: &'a [f32],
    },
    /// A per-pixel anomaly map computed by the model (for example a flow's per-pixel NLL);
    /// negative values are clamped to 0 ([`ResidualKind`] is ignored).
    AnomalyMap(&'a [f32]),
}

/// One slice's model outputs, as plain data.
#[derive(Debug, Clone)]
pub struct SliceInput<'a> {
    /// Which slice.
    pub id: SliceId,
    /// Image width (fastest axis).
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// The residual's source.
    pub residual: ResidualSource<'a>,
    /// The original (non-eroded) brain mask.
    pub mask: &'a [bool],
    /// The ground-truth lesion segmentation, when the dataset has one.
    pub segmentation: Option<&'a [bool]>,
    /// Mean absolute error inside the mask as the model computed it; `None` = computed here
    /// from a [`ResidualSource::Reconstruction`].
    pub rec_err: Option<f64>,
    /// KL divergence averaged over latent dimensions (`None` for models without one).
    pub kl: Option<f64>,
    /// Latent dimension (for [`neg_elbo_laplace`]).
    pub latent_dim: usize,
    /// The model's own ELBO in nats, when it computes one (its negation is stored as
    /// [`Statistic::NegElbo`]); otherwise [`neg_elbo_laplace`] is used when `rec_err` and `kl`
    /// are known.
    pub elbo: Option<f64>,
    /// The model's log-likelihood (a flow's), when it has one.
    pub log_likelihood: Option<f64>,
    /// The posterior mean, when the model has a latent space.
    pub latent_mean: Option<&'a [f32]>,
    /// The model input, for the model-free intensity statistics (`None`: the input of a
    /// [`ResidualSource::Reconstruction`], if any).
    pub image: Option<&'a [f32]>,
}

/// Settings of [`slice_record`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SliceStatsConfig {
    /// Residual post-processing.
    pub postprocess: PostprocessConfig,
    /// `eps` of the paper's entropy.
    pub entropy_eps: f64,
    /// Slices with at most this many mask pixels get no entropy.
    pub min_mask_pixels: usize,
}

impl Default for SliceStatsConfig {
    fn default() -> Self {
        Self {
            postprocess: PostprocessConfig::default(),
            entropy_eps: PAPER_EPS,
            min_mask_pixels: PAPER_MIN_MASK_PIXELS,
        }
    }
}

/// The negative ELBO in nats of the paper's VAE: a Laplace decoder of unit scale over the mask
/// pixels and a diagonal Gaussian posterior, from the per-slice means the model reports:
/// `N_mask * (rec_err + ln 2) + latent_dim * kl`. It upper-bounds `-log p(x)` (of the masked
/// pixels), unlike the paper's coded `rec - kl`.
pub fn neg_elbo_laplace(rec_err: f64, mask_pixels: usize, kl: f64, latent_dim: usize) -> f64 {
    mask_pixels as f64 * (rec_err + std::f64::consts::LN_2) + latent_dim as f64 * kl
}

fn check_len(what: impl FnOnce() -> String, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(OodError::ShapeMismatch {
            what: what(),
            expected,
            actual,
        })
    }
}

/// The post-processed residual: residual, times the eroded mask, median-filtered.
///
/// # Errors
/// [`OodError::ShapeMismatch`] when a buffer does not hold `width * height` values,
/// [`OodError::NonFinite`] for NaN or infinite pixels, [`OodError::Metrics`] for an even
/// median size or an image not larger than half the window.
pub fn postprocess_residual(
    source: ResidualSource<'_>,
    mask: &[bool],
    width: usize,
    height: usize,
    config: &PostprocessConfig,
) -> Result<Vec<f32>> {
    let r = restricted_residual(source, mask, width, height, config)?;
    median_step(r, width, height, config.median_size)
}

/// `r` median-filtered with a `size` x `size` window (`size <= 1`: unchanged).
fn median_step(r: Vec<f32>, width: usize, height: usize, size: usize) -> Result<Vec<f32>> {
    if size > 1 {
        Ok(median_filter(&r, &[height, width], size)?)
    } else {
        Ok(r)
    }
}

/// The first two steps of [`postprocess_residual`]: the residual, times the eroded mask.
fn restricted_residual(
    source: ResidualSource<'_>,
    mask: &[bool],
    width: usize,
    height: usize,
    config: &PostprocessConfig,
) -> Result<Vec<f32>> {
    let n = width * height;
    check_len(|| "brain mask".into(), n, mask.len())?;
    let mut r: Vec<f32> = match source {
        ResidualSource::Reconstruction {
            input,
            reconstruction,
        } => {
            check_len(|| "input".into(), n, input.len())?;
            check_len(|| "reconstruction".into(), n, reconstruction.len())?;
            input
                .iter()
                .zip(reconstruction)
                .map(|(x, y)| match config.kind {
                    ResidualKind::Positive => (x - y).max(0.0),
                    ResidualKind::Absolute => (x - y).abs(),
                })
                .collect()
        }
        ResidualSource::AnomalyMap(map) => {
            check_len(|| "anomaly map".into(), n, map.len())?;
            map.iter().map(|v| v.max(0.0)).collect()
        }
    };
    if let Some(index) = r.iter().position(|v| !v.is_finite()) {
        return Err(OodError::NonFinite {
            what: "residual (input, reconstruction or anomaly map)".into(),
            index,
            value: f64::from(r[index]),
        });
    }
    if config.erosion_iterations > 0 {
        let eroded = erode(
            mask,
            &[height, width],
            config.erosion_iterations,
            Connectivity::Face,
        )?;
        for (v, keep) in r.iter_mut().zip(&eroded) {
            if !keep {
                *v = 0.0;
            }
        }
    } else {
        for (v, keep) in r.iter_mut().zip(mask) {
            if !keep {
                *v = 0.0;
            }
        }
    }
    Ok(r)
}

/// The values of `values` under the mask, as f64.
fn masked(values: &[f32], mask: &[bool]) -> Vec<f64> {
    values
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(v, _)| f64::from(*v))
        .collect()
}

/// `residual_median` (of the raw absolute residual, or of the anomaly map), `residual_q95`
/// and `residual_peak` (of the post-processed residual `post`) over the brain pixels. The
/// buffers' lengths were checked by the caller; `mask` has at least one pixel.
fn residual_levels(
    source: ResidualSource<'_>,
    mask: &[bool],
    post: &[f32],
) -> [(Statistic, f64); 3] {
    let mut raw: Vec<f64> = match source {
        ResidualSource::Reconstruction {
            input,
            reconstruction,
        } => input
            .iter()
            .zip(reconstruction)
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|((x, y), _)| f64::from((x - y).abs()))
            .collect(),
        ResidualSource::AnomalyMap(map) => masked(map, mask),
    };
    raw.sort_by(f64::total_cmp);
    let mut post = masked(post, mask);
    post.sort_by(f64::total_cmp);
    let peak = post[post.len().saturating_sub(PEAK_PIXELS)];
    [
        (Statistic::ResidualMedian, quantile_sorted(&raw, 0.5)),
        (Statistic::ResidualQ95, quantile_sorted(&post, 0.95)),
        (Statistic::ResidualPeak, peak),
    ]
}

/// Every per-slice statistic that `input` allows: `rec_err`, `kl`, `neg_elbo`, `coded_elbo`,
/// both residual entropies and the residual levels `residual_median`, `residual_q95`,
/// `residual_peak`, `residual_spot` (slices with more than `min_mask_pixels` mask pixels), the
/// input's `intensity_median`, `intensity_iqr` and `intensity_skew` (the same slices),
/// `log_likelihood`, and the latent mean for [`crate::mahalanobis`].
///
/// # Errors
/// As [`postprocess_residual`]; [`OodError::NonFinite`] for a NaN or infinite scalar.
pub fn slice_record(input: &SliceInput<'_>, config: &SliceStatsConfig) -> Result<SliceRecord> {
    let n = input.width * input.height;
    check_len(
        || format!("brain mask of {}", input.id),
        n,
        input.mask.len(),
    )?;
    let mask_pixels = input.mask.iter().filter(|&&m| m).count();
    let lesion_pixels = match input.segmentation {
        Some(seg) => {
            check_len(|| format!("segmentation of {}", input.id), n, seg.len())?;
            seg.iter().filter(|&&s| s).count()
        }
        None => 0,
    };
    let mut record = SliceRecord::new(
        input.id.clone(),
        u32::try_from(mask_pixels).unwrap_or(u32::MAX),
        u32::try_from(lesion_pixels).unwrap_or(u32::MAX),
    );
    model_scalars(input, mask_pixels, &mut record)?;
    if mask_pixels > config.min_mask_pixels {
        residual_statistics(input, config, &mut record)?;
        intensity_statistics(input, &mut record)?;
    }
    if let Some(z) = input.latent_mean {
        if let Some(index) = z.iter().position(|v| !v.is_finite()) {
            return Err(OodError::NonFinite {
                what: format!("latent mean of {}", input.id),
                index,
                value: f64::from(z[index]),
            });
        }
        record.latent_mean = Some(z.to_vec());
    }
    Ok(record)
}

/// The mean absolute residual inside the mask, from the input and its reconstruction (`None`
/// for an anomaly map, which has no reconstruction).
fn masked_mean_residual(input: &SliceInput<'_>, mask_pixels: usize) -> Result<Option<f64>> {
    let ResidualSource::Reconstruction {
        input: x,
        reconstruction,
    } = input.residual
    else {
        return Ok(None);
    };
    let n = input.width * input.height;
    check_len(|| format!("input of {}", input.id), n, x.len())?;
    check_len(
        || format!("reconstruction of {}", input.id),
        n,
        reconstruction.len(),
    )?;
    let sum: f64 = x
        .iter()
        .zip(reconstruction)
        .zip(input.mask)
        .filter(|(_, m)| **m)
        .map(|((a, b), _)| f64::from((a - b).abs()))
        .sum();
    Ok(Some(sum / mask_pixels.max(1) as f64))
}

/// The model's scalars and those computed from them: `rec_err` (the model's, else from the
/// reconstruction), `kl`, `coded_elbo`, `neg_elbo` (the model's ELBO, else
/// [`neg_elbo_laplace`]) and `log_likelihood`.
fn model_scalars(
    input: &SliceInput<'_>,
    mask_pixels: usize,
    record: &mut SliceRecord,
) -> Result<()> {
    let scalars = [input.rec_err, input.kl, input.elbo, input.log_likelihood];
    let present: Vec<f64> = scalars.iter().flatten().copied().collect();
    check_finite(|| format!("model scalars of {}", input.id), &present)?;
    let rec_err = match input.rec_err {
        Some(r) => Some(r),
        None => masked_mean_residual(input, mask_pixels)?,
    };
    if let Some(r) = rec_err {
        check_finite(|| format!("reconstruction error of {}", input.id), &[r])?;
        record.set(Statistic::RecErr, r);
    }
    if let Some(kl) = input.kl {
        record.set(Statistic::Kl, kl);
        if let Some(r) = rec_err {
            record.set(Statistic::CodedElbo, r - kl);
        }
    }
    match (input.elbo, rec_err, input.kl) {
        (Some(elbo), _, _) => record.set(Statistic::NegElbo, -elbo),
        (None, Some(r), Some(kl)) => record.set(
            Statistic::NegElbo,
            neg_elbo_laplace(r, mask_pixels, kl, input.latent_dim),
        ),
        _ => {}
    }
    if let Some(ll) = input.log_likelihood {
        record.set(Statistic::LogLikelihood, ll);
    }
    Ok(())
}

/// The statistics of the post-processed residual: both entropies, the residual levels and
/// `residual_spot`. The residual is restricted to the eroded brain once, filtered as the pixel
/// maps are, and with at most a 3x3 window for `residual_spot`.
fn residual_statistics(
    input: &SliceInput<'_>,
    config: &SliceStatsConfig,
    record: &mut SliceRecord,
) -> Result<()> {
    let (w, h) = (input.width, input.height);
    let restricted = restricted_residual(input.residual, input.mask, w, h, &config.postprocess)?;
    let fine_size = config.postprocess.median_size.min(3);
    let fine = median_step(restricted.clone(), w, h, fine_size)?;
    let residual = if fine_size == config.postprocess.median_size {
        fine.clone()
    } else {
        median_step(restricted, w, h, config.postprocess.median_size)?
    };
    if let Some(h) = residual_entropy_paper(
        &residual,
        input.mask,
        config.entropy_eps,
        config.min_mask_pixels,
    )? {
        record.set(Statistic::Entropy, h);
    }
    if let Some(h) = residual_entropy_clean(&residual, input.mask, config.min_mask_pixels)? {
        record.set(Statistic::EntropyClean, h);
    }
    for (statistic, value) in residual_levels(input.residual, input.mask, &residual) {
        record.set(statistic, value);
    }
    let mut spot = masked(&fine, input.mask);
    spot.sort_by(f64::total_cmp);
    record.set(
        Statistic::ResidualSpot,
        spot[spot.len().saturating_sub(SPOT_PIXELS)],
    );
    Ok(())
}

/// The model-free statistics of the input's brain intensities: `intensity_median`,
/// `intensity_iqr` and the quartile skewness `intensity_skew` (nothing when the model hands in
/// no image).
fn intensity_statistics(input: &SliceInput<'_>, record: &mut SliceRecord) -> Result<()> {
    let image = match (input.image, input.residual) {
        (Some(x), _) | (None, ResidualSource::Reconstruction { input: x, .. }) => x,
        (None, ResidualSource::AnomalyMap(_)) => return Ok(()),
    };
    check_len(
        || format!("image of {}", input.id),
        input.width * input.height,
        image.len(),
    )?;
    let mut v = masked(image, input.mask);
    check_finite(|| format!("image of {}", input.id), &v)?;
    v.sort_by(f64::total_cmp);
    let [q25, q50, q75] = [0.25, 0.5, 0.75].map(|p| quantile_sorted(&v, p));
    record.set(Statistic::IntensityMedian, q50);
    record.set(Statistic::IntensityIqr, q75 - q25);
    let skew = if q75 > q25 {
        ((q75 - q50) - (q50 - q25)) / (q75 - q25)
    } else {
        0.0
    };
    record.set(Statistic::IntensitySkew, skew);
    Ok(())
}
