//! Shared fixtures of the model benchmarks: the paper's VAE on the CPU backend selected by cargo
//! feature (`flex`, the default; `ndarray`; `ndarray-blas`, burn-ndarray over the system
//! OpenBLAS; `candle`), a fixed random batch, one training step and one inference pass. Used by
//! `benches/vae.rs` (criterion) and the `vae-timer` binary behind `cargo xtask bench model`.
//! When several backend features are enabled, the first of candle, ndarray, flex is used.

use blindspot_core::{Batch, Model, seeded};
use blindspot_vae::{BackboneConfig, BetaSchedule, Vae, VaeConfig};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The CPU backend under test.
#[cfg(feature = "candle")]
#[allow(deprecated)] // burn 0.21 deprecates burn-candle; it is here only to be measured
pub type Cpu = burn_candle::Candle<f32, i64>;
/// The CPU backend under test.
#[cfg(all(feature = "ndarray", not(feature = "candle")))]
pub type Cpu = burn_ndarray::NdArray<f32>;
/// The CPU backend under test.
#[cfg(all(feature = "flex", not(any(feature = "ndarray", feature = "candle"))))]
pub type Cpu = burn_flex::Flex;

#[cfg(not(any(feature = "flex", feature = "ndarray", feature = "candle")))]
compile_error!(
    "enable one backend feature of blindspot-benches: `flex` (default), `ndarray`, `ndarray-blas` or `candle`"
);

/// The training backend.
pub type Train = Autodiff<Cpu>;

/// The backend's name for reports (`burn-ndarray+openblas` for the `ndarray-blas` feature).
pub const BACKEND: &str = if cfg!(feature = "candle") {
    "burn-candle"
} else if cfg!(feature = "ndarray-blas") {
    "burn-ndarray+openblas"
} else if cfg!(feature = "ndarray") {
    "burn-ndarray"
} else {
    "burn-flex"
};

/// The median of a sample (the mean of the two middle values for an even count; NaN for an
/// empty sample). Sorts `xs` in place by `f64::total_cmp`.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}

/// Everything a VAE timing needs, built outside the timed region.
pub struct VaeBench {
    /// The model being trained.
    pub model: Option<Vae<Train>>,
    /// Adam with the paper's settings.
    pub optim: OptimizerAdaptor<Adam, Vae<Train>, Train>,
    /// The fixed batch on the training backend.
    pub batch: Batch<Train>,
    /// Noise source.
    pub rng: ChaCha8Rng,
    /// Training step counter.
    pub step: u64,
}

impl std::fmt::Debug for VaeBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaeBench")
            .field("step", &self.step)
            .finish()
    }
}

impl VaeBench {
    /// The paper's VAE (width multiplier `width`) and a random `batch × 1 × size × size` batch
    /// with a random 70 % mask, as in `../shared/bench/torch_vae.py`.
    ///
    /// # Panics
    /// On an invalid size or width (bench arguments are checked by the caller).
    pub fn new(batch: usize, size: usize, width: f64) -> Self {
        let device = Default::default();
        let mut rng = seeded::<Train>(&device, 0);
        let model = VaeConfig::new()
            .with_backbone(
                BackboneConfig::new()
                    .with_input_size(size)
                    .with_width(width),
            )
            .with_beta(BetaSchedule::Constant { beta: 1.0 })
            .init::<Train>(&device)
            .expect("valid bench configuration");
        let n = batch * size * size;
        let images: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let masks: Vec<f32> = (0..n).map(|_| f32::from(rng.random_bool(0.7))).collect();
        let batch = Batch::from_host(images, masks, [batch, size, size], &device)
            .expect("buffers sized above");
        Self {
            model: Some(model),
            optim: AdamConfig::new().with_epsilon(1e-8).init(),
            batch,
            rng,
            step: 0,
        }
    }

    /// One training step (forward, loss, backward, Adam); returns the loss.
    pub fn train_step(&mut self) -> f32 {
        let model = self.model.take().expect("model present between steps");
        let out = model.loss(&self.batch, self.step, &mut self.rng);
        let loss: f32 = out.loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        self.model = Some(self.optim.step(1e-4, model, grads));
        self.step += 1;
        loss
    }

    /// The model in evaluation mode and the batch on the inner backend.
    pub fn inference_parts(&self) -> (Vae<Cpu>, Batch<Cpu>) {
        (
            self.model.as_ref().expect("model present").valid(),
            self.batch.clone().inner(),
        )
    }
}

/// One inference pass (forward with BatchNorm running statistics, all maps and statistics read
/// back to the host).
pub fn infer(model: &Vae<Cpu>, batch: &Batch<Cpu>, rng: &mut ChaCha8Rng) -> usize {
    model
        .infer(batch, rng)
        .into_host()
        .map(|o| o.map.len())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty_samples() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [7.0]), 7.0);
        assert!(median(&mut []).is_nan());
    }
}
