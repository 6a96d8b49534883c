//! The one test backend of the workspace, and tiny synthetic brain-like images for model tests.
//!
//! Model crates take this crate as a **dev-dependency** only: libraries stay generic over
//! `B: Backend`, tests run on [`TestBackend`] (CPU).

use burn::backend::Autodiff;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The CPU backend every test in the workspace runs on.
pub type TestBackend = burn_flex::Flex;
/// [`TestBackend`] with automatic differentiation, for training tests.
pub type TestAutodiffBackend = Autodiff<TestBackend>;
/// The device of [`TestBackend`].
pub type TestDevice = burn_flex::FlexDevice;

/// Holds the test binary's one turn at burn-flex's random generator.
///
/// burn-flex keeps one generator per process, which every parameter initialiser draws from, and
/// the test harness runs tests on several threads: a test that seeds the generator and builds a
/// model holds this guard for its whole run, so that its parameters come from its seed alone,
/// whatever else runs at the same time.
pub fn backend_rng() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // a test that panicked while holding it leaves nothing half-done behind
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The device tests run on.
pub fn device() -> TestDevice {
    TestDevice::default()
}

/// A tiny synthetic set of "healthy" slices: smooth ellipses (brain) on a background of -3.5,
/// z-score-like intensities, with their brain masks.
///
/// Returns `(images, masks)`, each `n * size * size` values in row-major `[n, 1, size, size]`
/// order. Deterministic for a given seed.
pub fn phantom_slices(n: usize, size: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = vec![-3.5f32; n * size * size];
    let mut masks = vec![0f32; n * size * size];
    let s = size as f32;
    for k in 0..n {
        let cx = s / 2.0 + rng.random_range(-0.05..0.05) * s;
        let cy = s / 2.0 + rng.random_range(-0.05..0.05) * s;
        let ax = s * rng.random_range(0.30..0.40);
        let ay = s * rng.random_range(0.35..0.44);
        let phase = rng.random_range(0.0..std::f32::consts::TAU);
        for y in 0..size {
            for x in 0..size {
                let dx = (x as f32 + 0.5 - cx) / ax;
                let dy = (y as f32 + 0.5 - cy) / ay;
                let r2 = dx * dx + dy * dy;
                if r2 <= 1.0 {
                    let i = k * size * size + y * size + x;
                    // smooth "tissue": bright rim, darker core, a gentle wave
                    let v = 0.8 * r2 - 0.4 + 0.2 * (3.0 * dx + phase).sin() * (2.0 * dy).cos();
                    images[i] = v;
                    masks[i] = 1.0;
                }
            }
        }
    }
    (images, masks)
}

/// Adds a bright Gaussian blob ("lesion") of the given radius (pixels) and peak height to
/// slice `k` of `images` (as made by [`phantom_slices`]), centred at `(cx, cy)`, only inside
/// the mask. Returns the blob's own mask (pixels where it adds more than a tenth of the peak).
pub fn add_blob(
    images: &mut [f32],
    masks: &[f32],
    size: usize,
    k: usize,
    (cx, cy): (f32, f32),
    radius: f32,
    peak: f32,
) -> Vec<bool> {
    let mut blob = vec![false; size * size];
    for y in 0..size {
        for x in 0..size {
            let i = k * size * size + y * size + x;
            let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
            let g = peak * (-d2 / (2.0 * radius * radius)).exp();
            if masks[i] > 0.5 {
                images[i] += g;
                blob[y * size + x] = g > 0.1 * peak;
            }
        }
    }
    blob
}

/// Like [`phantom_slices`], with a texture of its own in every slice (three plane waves of
/// random frequency, direction and phase, amplitude about 0.5 each): slices that no single
/// image predicts, so that a model can only reconstruct them by reading its input.
pub fn textured_slices(n: usize, size: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let (mut images, masks) = phantom_slices(n, size, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7e47_0e5e);
    for k in 0..n {
        let waves: Vec<(f32, f32, f32)> = (0..3)
            .map(|_| {
                let angle = rng.random_range(0.0..std::f32::consts::PI);
                let freq = rng.random_range(2.0..5.0) * std::f32::consts::TAU / size as f32;
                (
                    freq * angle.cos(),
                    freq * angle.sin(),
                    rng.random_range(0.0..std::f32::consts::TAU),
                )
            })
            .collect();
        for y in 0..size {
            for x in 0..size {
                let i = k * size * size + y * size + x;
                if masks[i] > 0.5 {
                    images[i] += waves
                        .iter()
                        .map(|&(fx, fy, p)| 0.5 * (fx * x as f32 + fy * y as f32 + p).sin())
                        .sum::<f32>();
                }
            }
        }
    }
    (images, masks)
}

/// Copies the folder `from` to `to` with everything below it (tests that damage a copy of a
/// run or a checkpoint directory).
///
/// # Panics
/// On any I/O error: a test helper.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Checks that the statistics family `F` declares (`Family::STATISTICS`) are exactly those its
/// inference returns, on two phantom slices of 32x32 with `settings`.
///
/// # Panics
/// When they differ (the point of the check), or `settings` do not build a model.
pub fn check_family_statistics<F: blindspot_core::Family>(settings: &F::Settings) {
    use blindspot_core::{Batch, Model};
    use rand::SeedableRng;
    let _rng = backend_rng();
    let d = device();
    blindspot_core::seeded::<TestBackend>(&d, 3);
    let config = F::config(settings, 32).expect("settings that build a model");
    let model = F::init::<TestBackend>(&config, &d).expect("a validated config");
    let (i, m) = phantom_slices(2, 32, 1);
    let batch = Batch::<TestBackend>::from_host(i, m, [2, 32, 32], &d).expect("a batch");
    let out = model
        .infer(&batch, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))
        .into_host()
        .expect("host outputs");
    let mut got: Vec<blindspot_core::ModelStat> = out.stats.iter().map(|(s, _)| *s).collect();
    let mut want = F::STATISTICS.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "statistics of family `{}`", F::KIND);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantoms_are_deterministic_and_masked() {
        let (a, m) = phantom_slices(2, 32, 1);
        let (b, _) = phantom_slices(2, 32, 1);
        assert_eq!(a, b);
        let inside = m.iter().filter(|&&v| v > 0.5).count();
        assert!(
            inside > 2 * 32 * 32 / 4,
            "brain covers a good part: {inside}"
        );
        for (v, mk) in a.iter().zip(&m) {
            if *mk < 0.5 {
                assert_eq!(*v, -3.5);
            } else {
                assert!(v.abs() < 1.5);
            }
        }
    }

    #[test]
    fn textured_slices_differ_from_each_other_inside_the_brain_only() {
        let (plain, m) = phantom_slices(2, 32, 3);
        let (t, m2) = textured_slices(2, 32, 3);
        assert_eq!(m, m2);
        let mut changed = 0;
        for i in 0..t.len() {
            if m[i] < 0.5 {
                assert_eq!(t[i], -3.5);
            } else if (t[i] - plain[i]).abs() > 0.1 {
                changed += 1;
            }
        }
        assert!(changed > m.iter().filter(|&&v| v > 0.5).count() / 2);
        assert_eq!(textured_slices(2, 32, 3).0, t);
    }

    #[test]
    fn blob_brightens_inside_the_mask_only() {
        let (mut a, m) = phantom_slices(1, 32, 2);
        let before = a.clone();
        let blob = add_blob(&mut a, &m, 32, 0, (16.0, 16.0), 2.0, 3.0);
        assert!(blob.iter().any(|&b| b));
        for i in 0..a.len() {
            if m[i] < 0.5 {
                assert_eq!(a[i], before[i]);
            } else {
                assert!(a[i] >= before[i]);
            }
        }
    }
}
