//! Mahalanobis distance in latent space, fitted on healthy slices with a regularised covariance.
//!
//! The covariance is shrunk towards a scaled identity, `(1 - lambda) S + lambda (tr S / d) I`,
//! which keeps it invertible when there are fewer slices than latent dimensions or when the
//! latent space has collapsed directions (common in VAEs). `lambda` is either fixed or the
//! Ledoit–Wolf (2004) estimate of the MSE-optimal shrinkage.

use rayon::prelude::*;

use crate::error::{OodError, Result};
use crate::record::{SliceRecord, Statistic};

/// How much the covariance is shrunk towards a scaled identity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shrinkage {
    /// The Ledoit–Wolf estimate, computed from the data.
    LedoitWolf,
    /// A fixed `lambda` in `[0, 1]`.
    Fixed(f64),
}

/// A Gaussian fitted to healthy latent means.
#[derive(Debug, Clone, PartialEq)]
pub struct Mahalanobis {
    mean: Vec<f64>,
    /// Lower Cholesky factor of the regularised covariance, row-major `d x d`.
    chol: Vec<f64>,
    shrinkage: f64,
}

impl Mahalanobis {
    /// Fit on latent vectors (all of one dimension `d >= 1`, at least two of them).
    ///
    /// # Errors
    /// [`OodError::TooFewSamples`], [`OodError::DimensionMismatch`], [`OodError::NonFinite`],
    /// [`OodError::InvalidParameter`] for a fixed `lambda` outside `[0, 1]`, and
    /// [`OodError::Degenerate`] when the regularised covariance is not positive definite (all
    /// vectors equal, or `lambda = 0` with a singular covariance).
    pub fn fit(latents: &[&[f32]], shrinkage: Shrinkage) -> Result<Self> {
        let d = check_latents(latents)?;
        let n = latents.len();
        let mut mean = vec![0.0; d];
        for z in latents {
            for (m, &v) in mean.iter_mut().zip(z.iter()) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        // Empirical covariance (1/n), rows in parallel.
        let centred: Vec<Vec<f64>> = latents
            .iter()
            .map(|z| {
                z.iter()
                    .zip(&mean)
                    .map(|(&v, m)| f64::from(v) - m)
                    .collect()
            })
            .collect();
        let mut cov: Vec<f64> = (0..d)
            .into_par_iter()
            .flat_map_iter(|a| {
                let centred = &centred;
                (0..d).map(move |b| centred.iter().map(|x| x[a] * x[b]).sum::<f64>() / n as f64)
            })
            .collect();
        let trace: f64 = (0..d).map(|a| cov[a * d + a]).sum();
        let mu = trace / d as f64;
        if mu <= 0.0 {
            return Err(OodError::Degenerate {
                what: "Mahalanobis fit latents".into(),
                reason: format!("all {n} latent vectors are equal"),
            });
        }
        let lambda = match shrinkage {
            Shrinkage::Fixed(l) => {
                if !(0.0..=1.0).contains(&l) {
                    return Err(OodError::InvalidParameter {
                        name: "mahalanobis.shrinkage",
                        value: l.to_string(),
                        allowed: "a number in [0, 1]",
                    });
                }
                l
            }
            Shrinkage::LedoitWolf => ledoit_wolf(&cov, &centred, mu),
        };
        for a in 0..d {
            for b in 0..d {
                cov[a * d + b] *= 1.0 - lambda;
            }
            cov[a * d + a] += lambda * mu;
        }
        let chol = cholesky(&cov, d).ok_or_else(|| OodError::Degenerate {
            what: "Mahalanobis fit latents".into(),
            reason: format!(
                "the covariance with shrinkage {lambda} is not positive definite; use more slices or a larger shrinkage"
            ),
        })?;
        Ok(Self {
            mean,
            chol,
            shrinkage: lambda,
        })
    }

    /// Fit on the latent means of the non-empty `healthy` records.
    ///
    /// # Errors
    /// [`OodError::MissingStatistic`] (for [`Statistic::Mahalanobis`]) when a non-empty record
    /// has no latent mean, and the errors of [`Mahalanobis::fit`].
    pub fn fit_records(healthy: &[SliceRecord], shrinkage: Shrinkage) -> Result<Self> {
        let latents = healthy
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| {
                r.latent_mean
                    .as_deref()
                    .ok_or_else(|| OodError::MissingStatistic {
                        id: r.id.clone(),
                        statistic: Statistic::Mahalanobis,
                    })
            })
            .collect::<Result<Vec<&[f32]>>>()?;
        Self::fit(&latents, shrinkage)
    }

    /// Latent dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The shrinkage `lambda` actually used.
    pub fn shrinkage(&self) -> f64 {
        self.shrinkage
    }

    /// `sqrt((z - mean)^T Sigma^-1 (z - mean))`.
    ///
    /// # Errors
    /// [`OodError::DimensionMismatch`] when `z` has the wrong dimension.
    pub fn distance(&self, z: &[f32]) -> Result<f64> {
        let d = self.dim();
        if z.len() != d {
            return Err(OodError::DimensionMismatch {
                what: "Mahalanobis query latent".into(),
                expected: d,
                actual: z.len(),
            });
        }
        // Solve L y = z - mean; the squared distance is |y|^2.
        let mut y = vec![0.0; d];
        for a in 0..d {
            let row = &self.chol[a * d..a * d + a];
            let s: f64 = row.iter().zip(&y).map(|(l, v)| l * v).sum();
            y[a] = (f64::from(z[a]) - self.mean[a] - s) / self.chol[a * d + a];
        }
        Ok(y.iter().map(|v| v * v).sum::<f64>().sqrt())
    }

    /// Store [`Statistic::Mahalanobis`] in every record that has a latent mean.
    ///
    /// # Errors
    /// [`OodError::DimensionMismatch`] for a latent of the wrong dimension.
    pub fn annotate(&self, records: &mut [SliceRecord]) -> Result<()> {
        records.par_iter_mut().try_for_each(|r| {
            if let Some(z) = &r.latent_mean {
                let dist = self.distance(z).map_err(|_| OodError::DimensionMismatch {
                    what: format!("latent mean of {}", r.id),
                    expected: self.dim(),
                    actual: z.len(),
                })?;
                r.set(Statistic::Mahalanobis, dist);
            }
            Ok(())
        })
    }
}

/// Lower Cholesky factor of a symmetric `d x d` matrix; `None` when not positive definite.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// The common dimension of at least two finite latent vectors.
fn check_latents(latents: &[&[f32]]) -> Result<usize> {
    let n = latents.len();
    if n < 2 {
        return Err(OodError::TooFewSamples {
            what: "Mahalanobis fit latents".into(),
            needed: 2,
            got: n,
        });
    }
    let d = latents[0].len();
    if d == 0 {
        return Err(OodError::DimensionMismatch {
            what: "Mahalanobis fit latent 0".into(),
            expected: 1,
            actual: 0,
        });
    }
    for (i, z) in latents.iter().enumerate() {
        if z.len() != d {
            return Err(OodError::DimensionMismatch {
                what: format!("Mahalanobis fit latent {i}"),
                expected: d,
                actual: z.len(),
            });
        }
        if let Some(j) = z.iter().position(|v| !v.is_finite()) {
            return Err(OodError::NonFinite {
                what: format!("Mahalanobis fit latent {i}"),
                index: j,
                value: f64::from(z[j]),
            });
        }
    }
    Ok(d)
}

/// Ledoit and Wolf's shrinkage intensity towards `mu I` of the empirical covariance `cov`
/// (`d x d`, row-major) of the `centred` vectors whose mean variance is `mu`.
fn ledoit_wolf(cov: &[f64], centred: &[Vec<f64>], mu: f64) -> f64 {
    let (n, d) = (centred.len() as f64, centred[0].len());
    let trace: f64 = (0..d).map(|a| cov[a * d + a]).sum();
    let frob2: f64 = cov.iter().map(|c| c * c).sum();
    let fourth: f64 = centred
        .iter()
        .map(|x| {
            let s: f64 = x.iter().map(|v| v * v).sum();
            s * s
        })
        .sum::<f64>()
        / n;
    // delta = ||S - mu I||_F^2 / d, beta = (mean_k ||x_k||^4 - ||S||_F^2) / (n d).
    let delta = (frob2 - 2.0 * mu * trace + d as f64 * mu * mu) / d as f64;
    let beta = ((fourth - frob2) / (n * d as f64)).min(delta);
    if delta <= 0.0 {
        0.0
    } else {
        (beta / delta).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_of_a_known_gaussian() {
        // Points on the axes of a diagonal covariance diag(4, 1) (1/n normalisation).
        let pts: Vec<[f32; 2]> = vec![[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]];
        let latents: Vec<&[f32]> = pts.iter().map(|p| &p[..]).collect();
        let m = Mahalanobis::fit(&latents, Shrinkage::Fixed(0.0)).unwrap();
        // S = diag(2, 0.5): the distance of (2, 0) is 2 / sqrt(2).
        assert!((m.distance(&[2.0, 0.0]).unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert!((m.distance(&[0.0, 1.0]).unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert!(m.distance(&[0.0, 0.0]).unwrap().abs() < 1e-12);
        assert!(m.distance(&[1.0]).is_err());
    }

    #[test]
    fn shrinkage_makes_a_singular_covariance_usable() {
        // Three points in 4-D: rank-deficient covariance.
        let pts: Vec<[f32; 4]> = vec![
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ];
        let latents: Vec<&[f32]> = pts.iter().map(|p| &p[..]).collect();
        assert!(matches!(
            Mahalanobis::fit(&latents, Shrinkage::Fixed(0.0)),
            Err(OodError::Degenerate { .. })
        ));
        let m = Mahalanobis::fit(&latents, Shrinkage::LedoitWolf).unwrap();
        assert!(m.shrinkage() > 0.0 && m.shrinkage() <= 1.0);
        let near = m.distance(&[0.3, 0.3, 0.0, 0.0]).unwrap();
        let far = m.distance(&[0.0, 0.0, 3.0, 3.0]).unwrap();
        assert!(far > near);
        assert!(Mahalanobis::fit(&latents, Shrinkage::Fixed(1.5)).is_err());
        let same: Vec<&[f32]> = vec![&[1.0, 1.0], &[1.0, 1.0]];
        assert!(Mahalanobis::fit(&same, Shrinkage::LedoitWolf).is_err());
    }
}
