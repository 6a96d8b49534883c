//! Identities: of slices and scans, and of the statistics (with the direction in which each
//! one means "more anomalous"). Records ([`crate::record`]) are keyed by them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identity of one 2-D slice: which dataset, which subject or volume, which slice index.
///
/// Every alignment in this crate (ensemble members, score tables) is by identity, never by
/// position in a loader.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SliceId {
    /// Dataset name, for example `camcan-t2` or `brats17-t2`.
    pub dataset: String,
    /// Subject or volume identifier within the dataset.
    pub volume: String,
    /// Axial slice index within the volume.
    pub slice: u32,
}

impl SliceId {
    /// A new identity.
    pub fn new(dataset: impl Into<String>, volume: impl Into<String>, slice: u32) -> Self {
        Self {
            dataset: dataset.into(),
            volume: volume.into(),
            slice,
        }
    }

    /// The scan this slice belongs to.
    pub fn scan(&self) -> ScanId {
        ScanId {
            dataset: self.dataset.clone(),
            volume: self.volume.clone(),
        }
    }
}

impl fmt::Display for SliceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} slice {}", self.dataset, self.volume, self.slice)
    }
}

/// Identity of one scan (volume): the unit the gate decides on and the bootstrap resamples.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScanId {
    /// Dataset name.
    pub dataset: String,
    /// Subject or volume identifier within the dataset.
    pub volume: String,
}

impl fmt::Display for ScanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dataset, self.volume)
    }
}

/// Which values of a statistic point to out-of-distribution input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger values are more anomalous.
    HigherIsOod,
    /// Smaller values are more anomalous.
    LowerIsOod,
}

impl Direction {
    /// The value oriented so that higher always means more anomalous.
    pub fn orient(self, value: f64) -> f64 {
        match self {
            Direction::HigherIsOod => value,
            Direction::LowerIsOod => -value,
        }
    }
}

/// The per-slice statistics. Each has one documented [`Direction`], used by every evaluation.
///
/// Exhaustive on purpose: the runner decides for each one which model families provide it, by a
/// `match` without a catch-all, so a statistic added here does not compile until it is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// Mean absolute reconstruction error inside the brain mask (`rec_err`). Higher is OOD.
    RecErr,
    /// KL divergence of the posterior from the prior, averaged over latent dimensions
    /// (`kl_div`). Higher is OOD.
    Kl,
    /// The negative ELBO in nats, a proper upper bound on `-log p(x)` (the model's own, or
    /// [`crate::slice::neg_elbo_laplace`]). Higher is OOD.
    NegElbo,
    /// The paper's coded "ELBO", `rec_err - kl_div` (docs/method.md 4.1, a [BUG?] kept as a
    /// named variant for faithful reproduction). Higher is OOD, as the paper used it.
    CodedElbo,
    /// Residual entropy `H_l1` exactly as the paper codes it (docs/method.md 4.4). Lower is
    /// OOD: a lesion concentrates the residual (low entropy).
    Entropy,
    /// The cleaner residual entropy of [`crate::entropy::residual_entropy_clean`]. Lower is OOD.
    EntropyClean,
    /// The model's log-likelihood `log p(x)` (a flow's exact one). Lower is OOD.
    LogLikelihood,
    /// Typicality distance `|-log p(x) - H_hat|` of [`crate::typicality`]. Higher is OOD.
    Typicality,
    /// Mahalanobis distance of the latent mean from the healthy latent distribution. Higher is OOD.
    Mahalanobis,
    /// The paper's ensemble WAIC: mean minus population variance over members of the coded
    /// ELBO (docs/method.md 4.2). Higher is OOD, as the paper used it.
    Waic,
    /// WAIC of Choi et al. on the log-likelihood bound, negated: `mean + var` over members of
    /// [`Statistic::NegElbo`]. Higher is OOD.
    WaicNegElbo,
    /// DoSE as published (Morningstar et al. 2021): the sum of per-statistic KDE
    /// log-densities. Lower is OOD.
    Dose,
    /// The paper's DoSE variant: the sum of raw KDE densities (docs/method.md 4.3). Lower is OOD.
    DoseDensitySum,
    /// Median over the slice's brain pixels of the absolute residual `|x - x_hat|` (not
    /// post-processed; a model's anomaly map where it has no reconstruction): how well the
    /// model reconstructs the tissue the slice mostly consists of. A lesion covering less than
    /// half of the brain pixels cannot move it; noise, blur or another contrast does. Higher
    /// is OOD.
    ResidualMedian,
    /// The 95th percentile of the post-processed residual over the slice's brain pixels: the
    /// level that 5 % of them exceed, on the scale of the pixel threshold (a slice whose value
    /// is above the threshold has a healthy-pixel FPR above 5 %). Higher is OOD.
    ResidualQ95,
    /// The [`PEAK_PIXELS`]-th largest value of the post-processed residual: the level a bright
    /// spot of at least that many pixels reaches (the lesional-slice rule's size). Higher is
    /// anomalous.
    ResidualPeak,
    /// The [`SPOT_PIXELS`]-th largest value of the residual post-processed as the pixel maps
    /// are but with at most a 3x3 median filter: a small bright spot (an MS-like plaque at
    /// 64x64) that a 5x5 filter removes before [`Statistic::ResidualPeak`] sees it. Higher is
    /// anomalous.
    ResidualSpot,
    /// Median of the model input over the slice's brain pixels (model-free). A shift moves
    /// it either way: read it two-sided (the gate's `side = "both"`); its nominal direction
    /// is higher is OOD.
    IntensityMedian,
    /// Interquartile range of the model input over the slice's brain pixels (model-free);
    /// like [`Statistic::IntensityMedian`], nominally higher is OOD.
    IntensityIqr,
    /// Bowley's quartile skewness of the model input over the slice's brain pixels,
    /// `(q75 + q25 - 2 q50) / (q75 - q25)` in `[-1, 1]` (0 when the quartiles coincide;
    /// model-free). A scanner's intensity non-linearity (gamma) or another contrast changes the
    /// shape of the whole distribution; a lesion covering a few percent of the brain moves the
    /// quartiles by at most a few percentiles. Read it two-sided; nominally higher is OOD.
    IntensitySkew,
}

/// The size, in pixels, of the bright spot [`Statistic::ResidualPeak`] reads: a slice is
/// lesional by the evaluation's default rule from 20 lesion pixels.
pub const PEAK_PIXELS: usize = 20;

/// The size, in pixels, of the spot [`Statistic::ResidualSpot`] reads: what survives a 3x3
/// median filter (at least 5 of the 9 pixels of a window bright) and still stands out of a
/// slice's few brightest noise pixels.
pub const SPOT_PIXELS: usize = 8;

impl Statistic {
    /// Every statistic, in a fixed order.
    pub const ALL: [Statistic; 20] = [
        Statistic::RecErr,
        Statistic::Kl,
        Statistic::NegElbo,
        Statistic::CodedElbo,
        Statistic::Entropy,
        Statistic::EntropyClean,
        Statistic::LogLikelihood,
        Statistic::Typicality,
        Statistic::Mahalanobis,
        Statistic::Waic,
        Statistic::WaicNegElbo,
        Statistic::Dose,
        Statistic::DoseDensitySum,
        Statistic::ResidualMedian,
        Statistic::ResidualQ95,
        Statistic::ResidualPeak,
        Statistic::ResidualSpot,
        Statistic::IntensityMedian,
        Statistic::IntensityIqr,
        Statistic::IntensitySkew,
    ];

    /// The short name used in tables, JSON and configs.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::RecErr => "rec_err",
            Statistic::Kl => "kl",
            Statistic::NegElbo => "neg_elbo",
            Statistic::CodedElbo => "coded_elbo",
            Statistic::Entropy => "entropy",
            Statistic::EntropyClean => "entropy_clean",
            Statistic::LogLikelihood => "log_likelihood",
            Statistic::Typicality => "typicality",
            Statistic::Mahalanobis => "mahalanobis",
            Statistic::Waic => "waic",
            Statistic::WaicNegElbo => "waic_neg_elbo",
            Statistic::Dose => "dose",
            Statistic::DoseDensitySum => "dose_density_sum",
            Statistic::ResidualMedian => "residual_median",
            Statistic::ResidualQ95 => "residual_q95",
            Statistic::ResidualPeak => "residual_peak",
            Statistic::ResidualSpot => "residual_spot",
            Statistic::IntensityMedian => "intensity_median",
            Statistic::IntensityIqr => "intensity_iqr",
            Statistic::IntensitySkew => "intensity_skew",
        }
    }

    /// Which values point to anomalous input (see each variant).
    pub fn direction(self) -> Direction {
        match self {
            Statistic::RecErr
            | Statistic::Kl
            | Statistic::NegElbo
            | Statistic::CodedElbo
            | Statistic::Typicality
            | Statistic::Mahalanobis
            | Statistic::Waic
            | Statistic::WaicNegElbo
            | Statistic::ResidualMedian
            | Statistic::ResidualQ95
            | Statistic::ResidualPeak
            | Statistic::ResidualSpot
            | Statistic::IntensityMedian
            | Statistic::IntensityIqr
            | Statistic::IntensitySkew => Direction::HigherIsOod,
            Statistic::Entropy
            | Statistic::EntropyClean
            | Statistic::LogLikelihood
            | Statistic::Dose
            | Statistic::DoseDensitySum => Direction::LowerIsOod,
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
