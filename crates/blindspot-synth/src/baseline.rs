//! A model-free lesion detector: z-score inside the brain, threshold at a high percentile of
//! healthy z-scores. It shows that the lesions are visible at all, and serves as the report's
//! baseline.

use blindspot_io::Volume;

use crate::error::{Result, SynthError, invalid};

/// Intensity-threshold lesion segmentation fitted on healthy volumes.
///
/// Every volume is z-scored with the mean and standard deviation of its own brain voxels;
/// a voxel is called lesion when its z-score exceeds the chosen percentile of all healthy
/// brain z-scores. It finds hyperintense lesions only (FLAIR or T2 tumours, oedema, plaques).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdBaseline {
    threshold_z: f64,
}

impl ThresholdBaseline {
    /// Fit the threshold: the `percentile` (in (0, 100)) of the brain z-scores of `healthy`
    /// (image, brain mask) pairs.
    ///
    /// # Errors
    /// [`SynthError::Invalid`] for a percentile outside (0, 100) or no volume;
    /// [`SynthError::Shape`] when a mask's grid differs from its image's;
    /// [`SynthError::EmptyMask`] when a brain mask is empty.
    pub fn fit<'a, I>(healthy: I, percentile: f64) -> Result<Self>
    where
        I: IntoIterator<Item = (&'a Volume<f32>, &'a Volume<u8>)>,
    {
        if !(percentile > 0.0 && percentile < 100.0) {
            return Err(invalid(
                "percentile",
                percentile,
                "a percentile in (0, 100)",
            ));
        }
        let mut z = Vec::new();
        for (n, (image, brain)) in healthy.into_iter().enumerate() {
            let (mean, std) = brain_stats(image, brain, &format!("healthy volume {n}"))?;
            z.extend(
                image
                    .data
                    .iter()
                    .zip(&brain.data)
                    .filter(|(_, m)| **m != 0)
                    .map(|(v, _)| ((f64::from(*v) - mean) / std) as f32),
            );
        }
        if z.is_empty() {
            return Err(invalid(
                "healthy",
                "no volumes",
                "at least one healthy (image, brain mask) pair",
            ));
        }
        z.sort_by(f32::total_cmp);
        let rank = ((z.len() - 1) as f64 * percentile / 100.0).round() as usize;
        Ok(ThresholdBaseline {
            threshold_z: f64::from(z[rank]),
        })
    }

    /// A baseline with a fixed z-score threshold.
    pub fn with_threshold(threshold_z: f64) -> Self {
        ThresholdBaseline { threshold_z }
    }

    /// The z-score threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold_z
    }

    /// Segment one volume: 1 where the brain z-score exceeds the threshold.
    ///
    /// # Errors
    /// [`SynthError::Shape`] when the grids differ; [`SynthError::EmptyMask`] for an empty
    /// brain mask.
    pub fn segment(&self, image: &Volume<f32>, brain: &Volume<u8>) -> Result<Volume<u8>> {
        let (mean, std) = brain_stats(image, brain, "image")?;
        let t = mean + self.threshold_z * std;
        let data = image
            .data
            .iter()
            .zip(&brain.data)
            .map(|(&v, &m)| u8::from(m != 0 && f64::from(v) > t))
            .collect();
        Ok(Volume {
            dims: image.dims,
            data,
            affine: image.affine,
            spacing: image.spacing,
        })
    }
}

/// Dice overlap of two binary masks (non-zero = positive); `None` when both are empty.
///
/// # Errors
/// [`SynthError::Shape`] when the grids differ.
pub fn dice(prediction: &Volume<u8>, truth: &Volume<u8>) -> Result<Option<f64>> {
    check_dims(prediction.dims, truth.dims, "prediction")?;
    let (mut both, mut p, mut t) = (0u64, 0u64, 0u64);
    for (&a, &b) in prediction.data.iter().zip(&truth.data) {
        let (a, b) = (a != 0, b != 0);
        both += u64::from(a && b);
        p += u64::from(a);
        t += u64::from(b);
    }
    Ok((p + t > 0).then(|| 2.0 * both as f64 / (p + t) as f64))
}

fn check_dims(got: [usize; 3], expected: [usize; 3], what: &str) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(SynthError::Shape {
            what: what.to_owned(),
            got,
            expected,
        })
    }
}

/// Mean and standard deviation (ddof 0, at least 1e-12) of the brain voxels.
fn brain_stats(image: &Volume<f32>, brain: &Volume<u8>, what: &str) -> Result<(f64, f64)> {
    check_dims(brain.dims, image.dims, &format!("{what}: brain mask"))?;
    let (mut n, mut sum, mut sum2) = (0u64, 0.0f64, 0.0f64);
    for (&v, &m) in image.data.iter().zip(&brain.data) {
        if m != 0 {
            let v = f64::from(v);
            n += 1;
            sum += v;
            sum2 += v * v;
        }
    }
    if n == 0 {
        return Err(SynthError::EmptyMask {
            what: what.to_owned(),
        });
    }
    let mean = sum / n as f64;
    let var = (sum2 / n as f64 - mean * mean).max(0.0);
    Ok((mean, var.sqrt().max(1e-12)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol<T: Clone>(data: Vec<T>) -> Volume<T> {
        Volume {
            dims: [data.len(), 1, 1],
            data,
            affine: [[0.0; 4]; 4],
            spacing: [1.0; 3],
        }
    }

    #[test]
    fn dice_counts_overlap() {
        let a = vol(vec![1u8, 1, 0, 0]);
        let b = vol(vec![1u8, 0, 1, 0]);
        assert_eq!(dice(&a, &b).unwrap(), Some(0.5));
        assert_eq!(dice(&vol(vec![0u8; 4]), &vol(vec![0u8; 4])).unwrap(), None);
        assert!(dice(&a, &vol(vec![0u8; 3])).is_err());
    }

    #[test]
    fn threshold_finds_the_bright_voxel() {
        let healthy: Vec<f32> = (0..100).map(|i| (i % 10) as f32).collect();
        let brain = vol(vec![1u8; 100]);
        let image = vol(healthy);
        let b = ThresholdBaseline::fit([(&image, &brain)], 99.0).unwrap();
        let mut sick = image.clone();
        sick.data[5] = 100.0;
        let seg = b.segment(&sick, &brain).unwrap();
        assert_eq!(seg.data.iter().filter(|&&v| v != 0).count(), 1);
        assert_eq!(seg.data[5], 1);
        assert!(ThresholdBaseline::fit([(&image, &brain)], 100.0).is_err());
        assert!(b.segment(&image, &vol(vec![0u8; 100])).is_err());
    }
}
