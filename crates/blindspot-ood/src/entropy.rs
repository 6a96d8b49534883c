//! Residual entropy `H_l1`, the paper's "prior knowledge" statistic (docs/method.md 4.4).
//!
//! A lesion is local and hyper-intense: its residual concentrates on few pixels and has a low
//! normalised entropy. A domain shift (scanner, modality, flip, noise) spreads the residual
//! over the brain: high entropy. Both functions take the **post-processed** residual of
//! [`crate::slice::postprocess_residual`] and the original (non-eroded) brain mask, row-major.

use crate::error::{OodError, Result};

/// The paper's epsilon inside the logarithm (1e-4 at HEAD and at the paper-era commit).
pub const PAPER_EPS: f64 = 1e-4;

/// The paper computes the entropy only for slices with more than this many mask pixels.
pub const PAPER_MIN_MASK_PIXELS: usize = 10;

/// `H_l1` exactly as the paper codes it.
///
/// `S = sum over ALL pixels of r` (1 when that is 0), `p = r / S`, `N = mask pixels`, and
/// `H = -sum over mask pixels of p * log2(p + eps) / log2(N)`. Returns `None` when
/// `N <= min_mask_pixels` (the paper then copies another slice's value from uninitialised
/// memory, a [BUG?] not reproduced: the slice simply has no entropy).
///
/// Quirks kept on purpose: the normaliser runs over the whole image while the entropy runs
/// over the mask, `eps` sits inside the log (so `H` is biased when `p` is of the order of
/// `eps`), and an all-zero residual gives `H = 0`, the value of a perfectly concentrated one.
///
/// # Errors
/// [`OodError::ShapeMismatch`] when `residual` and `mask` differ in length,
/// [`OodError::NonFinite`] or [`OodError::InvalidParameter`] for a NaN, infinite or negative
/// residual value.
pub fn residual_entropy_paper(
    residual: &[f32],
    mask: &[bool],
    eps: f64,
    min_mask_pixels: usize,
) -> Result<Option<f64>> {
    check_inputs(residual, mask)?;
    let n = mask.iter().filter(|&&m| m).count();
    if n <= min_mask_pixels {
        return Ok(None);
    }
    let mut s: f64 = residual.iter().map(|&r| f64::from(r)).sum();
    if s == 0.0 {
        s = 1.0;
    }
    let h: f64 = residual
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(&r, _)| {
            let p = f64::from(r) / s;
            -p * (p + eps).log2()
        })
        .sum();
    Ok(Some(h / (n as f64).log2()))
}

/// A cleaner `H_l1`: the exact normalised Shannon entropy of the residual inside the mask.
///
/// `p = r / sum over mask of r`, `H = -sum over mask, p > 0 of p * log2(p) / log2(N)`.
///
/// Why it is cleaner than [`residual_entropy_paper`]:
/// - normaliser and entropy run over the same pixels, so `p` is a distribution on the mask and
///   `H` lies in `[0, 1]` exactly (1 = uniform over the brain, 0 = one pixel);
/// - no `eps`: with about 4 000 brain pixels a uniform residual has `p = 2.5e-4`, the same
///   order as the paper's `eps = 1e-4`, which then shrinks `H` by an amount that depends on
///   the brain size rather than on the residual's shape;
/// - an all-zero residual inside the mask (a perfect reconstruction) gives `H = 1`: no
///   concentrated evidence, never mistaken for the most lesion-like value 0.
///
/// Returns `None` when the mask has at most `min_mask_pixels` pixels (at least 2 are needed
/// for `log2(N) > 0`).
///
/// # Errors
/// As [`residual_entropy_paper`].
pub fn residual_entropy_clean(
    residual: &[f32],
    mask: &[bool],
    min_mask_pixels: usize,
) -> Result<Option<f64>> {
    check_inputs(residual, mask)?;
    let n = mask.iter().filter(|&&m| m).count();
    if n <= min_mask_pixels.max(1) {
        return Ok(None);
    }
    let s: f64 = residual
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(&r, _)| f64::from(r))
        .sum();
    if s == 0.0 {
        return Ok(Some(1.0));
    }
    let h: f64 = residual
        .iter()
        .zip(mask)
        .filter(|(r, m)| **m && **r > 0.0)
        .map(|(&r, _)| {
            let p = f64::from(r) / s;
            -p * p.log2()
        })
        .sum();
    Ok(Some((h / (n as f64).log2()).clamp(0.0, 1.0)))
}

fn check_inputs(residual: &[f32], mask: &[bool]) -> Result<()> {
    if residual.len() != mask.len() {
        return Err(OodError::ShapeMismatch {
            what: "residual vs brain mask".into(),
            expected: mask.len(),
            actual: residual.len(),
        });
    }
    for (index, &r) in residual.iter().enumerate() {
        if !r.is_finite() {
            return Err(OodError::NonFinite {
                what: "residual map".into(),
                index,
                value: f64::from(r),
            });
        }
        if r < 0.0 {
            return Err(OodError::InvalidParameter {
                name: "residual",
                value: format!("{r} at index {index}"),
                allowed: "non-negative values (a post-processed residual: positive part or absolute value)",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 32;

    /// A 32x32 image with a disc-shaped brain mask of radius 14.
    fn brain() -> Vec<bool> {
        (0..W * W)
            .map(|i| {
                let (x, y) = ((i % W) as f64 - 15.5, (i / W) as f64 - 15.5);
                x * x + y * y <= 14.0 * 14.0
            })
            .collect()
    }

    /// The same total mass, once in a 3x3 blob, once spread evenly over the brain.
    fn blob_and_spread(mask: &[bool]) -> (Vec<f32>, Vec<f32>) {
        let mut blob = vec![0.0f32; W * W];
        for y in 14..17 {
            for x in 10..13 {
                blob[y * W + x] = 4.0;
            }
        }
        let mass: f32 = blob.iter().sum();
        let n = mask.iter().filter(|&&m| m).count() as f32;
        let spread = mask
            .iter()
            .map(|&m| if m { mass / n } else { 0.0 })
            .collect();
        (blob, spread)
    }

    #[test]
    fn concentrated_blob_has_lower_entropy_than_spread_mass() {
        let mask = brain();
        let (blob, spread) = blob_and_spread(&mask);
        for (b, s) in [
            (
                residual_entropy_paper(&blob, &mask, PAPER_EPS, 10)
                    .unwrap()
                    .unwrap(),
                residual_entropy_paper(&spread, &mask, PAPER_EPS, 10)
                    .unwrap()
                    .unwrap(),
            ),
            (
                residual_entropy_clean(&blob, &mask, 10).unwrap().unwrap(),
                residual_entropy_clean(&spread, &mask, 10).unwrap().unwrap(),
            ),
        ] {
            assert!(b < s, "blob {b} should be below spread {s}");
        }
    }

    #[test]
    fn clean_entropy_hits_its_bounds_exactly() {
        let mask = brain();
        let n = mask.iter().filter(|&&m| m).count();
        let (blob, spread) = blob_and_spread(&mask);
        let uniform = residual_entropy_clean(&spread, &mask, 10).unwrap().unwrap();
        assert!(
            (uniform - 1.0).abs() < 1e-9,
            "uniform over the mask gives 1, got {uniform}"
        );
        // 9 equal pixels: H = log2(9) / log2(N).
        let h = residual_entropy_clean(&blob, &mask, 10).unwrap().unwrap();
        let expected = 9f64.log2() / (n as f64).log2();
        assert!((h - expected).abs() < 1e-12, "{h} vs {expected}");
        let mut single = vec![0.0f32; W * W];
        single[15 * W + 15] = 2.0;
        assert_eq!(
            residual_entropy_clean(&single, &mask, 10).unwrap(),
            Some(0.0)
        );
        assert_eq!(
            residual_entropy_clean(&vec![0.0; W * W], &mask, 10).unwrap(),
            Some(1.0)
        );
    }

    #[test]
    fn paper_entropy_matches_a_hand_computation() {
        // 4x4 image, mask = 12 pixels (N > 10), residual mass partly outside the mask.
        let mut mask = vec![true; 16];
        for i in [0, 3, 12, 15] {
            mask[i] = false;
        }
        let mut r = vec![0.0f32; 16];
        r[0] = 1.0; // outside the mask: counts in S only
        r[5] = 2.0;
        r[6] = 1.0;
        let s = 4.0f64;
        let expected = -((0.5f64) * (0.5f64 + 1e-4).log2()
            + 0.25 * (0.25f64 + 1e-4).log2()
            + 9.0 * 0.0 * (1e-4f64).log2())
            / 12f64.log2();
        let h = residual_entropy_paper(&r, &mask, 1e-4, 10)
            .unwrap()
            .unwrap();
        assert!((h - expected).abs() < 1e-12, "{h} vs {expected} (S = {s})");
        // The paper's all-zero quirk: H = 0.
        assert_eq!(
            residual_entropy_paper(&[0.0; 16], &mask, 1e-4, 10).unwrap(),
            Some(0.0)
        );
    }

    #[test]
    fn small_masks_have_no_entropy_and_bad_input_is_an_error() {
        let mut mask = vec![false; 16];
        for m in mask.iter_mut().take(10) {
            *m = true;
        }
        let r = vec![1.0f32; 16];
        assert_eq!(residual_entropy_paper(&r, &mask, 1e-4, 10).unwrap(), None);
        assert_eq!(residual_entropy_clean(&r, &mask, 10).unwrap(), None);
        assert!(matches!(
            residual_entropy_clean(&r[..15], &mask, 10),
            Err(OodError::ShapeMismatch { .. })
        ));
        let mut bad = r.clone();
        bad[3] = -0.5;
        assert!(matches!(
            residual_entropy_paper(&bad, &mask, 1e-4, 10),
            Err(OodError::InvalidParameter {
                name: "residual",
                ..
            })
        ));
        bad[3] = f32::NAN;
        assert!(matches!(
            residual_entropy_clean(&bad, &mask, 10),
            Err(OodError::NonFinite { index: 3, .. })
        ));
    }
}
