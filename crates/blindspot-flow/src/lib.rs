#![doc = include_str!("../README.md")]
//!
//! A multi-scale normalizing flow (Glow-style: squeeze, actnorm, invertible 1×1 convolution in
//! LU form, affine coupling; RealNVP's factor-out of half the channels after each level) with
//! an exact log-likelihood, reported in nats and bits per dimension.
//!
//! ```text
//! FlowConfig::new() → init::<B>(&device) → Flow<B> → Model::loss / Model::infer
//! Flow::forward: x → (z per level, log|det ∂z/∂x|);  Flow::inverse: z → x
//! ```

mod family;
mod layers;

use blindspot_core::{
    Batch, Inference, InvalidConfig, LossOutput, MapKind, Model, ModelStat, standard_normal,
};
use blindspot_kernels::ConvBackend;
use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use rand_chacha::ChaCha8Rng;

pub use family::{FlowFamily, FlowSettings};
pub use layers::{ActNorm, AffineCoupling, FlowStep, InvConv1x1, squeeze, unsqueeze};

fn invalid(key: &'static str, value: impl ToString, allowed: &'static str) -> InvalidConfig {
    InvalidConfig::new(key, value, allowed)
}

/// Configuration of [`Flow`].
#[derive(Config, Debug, PartialEq)]
pub struct FlowConfig {
    /// Side of the square single-channel input (divisible by `2^levels`).
    #[config(default = 128)]
    pub input_size: usize,
    /// Number of scales (squeeze + steps + split).
    #[config(default = 3)]
    pub levels: usize,
    /// Flow steps (actnorm, 1×1 conv, coupling) per level.
    #[config(default = 4)]
    pub steps_per_level: usize,
    /// Hidden channels of the coupling networks.
    #[config(default = 64)]
    pub hidden: usize,
    /// Standard deviation of the Gaussian dequantisation noise added to training inputs
    /// (0: none). It keeps the density of constant background bounded.
    #[config(default = 0.01)]
    pub train_noise: f64,
}

impl FlowConfig {
    /// Checks every value once.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.levels == 0 || self.levels > 8 {
            return Err(invalid("levels", self.levels, "1..=8"));
        }
        let f = 1usize << self.levels;
        if self.input_size == 0 || !self.input_size.is_multiple_of(f) {
            return Err(invalid(
                "input_size",
                self.input_size,
                "a positive multiple of 2^levels",
            ));
        }
        if self.steps_per_level == 0 {
            return Err(invalid("steps_per_level", 0, "an integer >= 1"));
        }
        if self.hidden == 0 {
            return Err(invalid("hidden", 0, "an integer >= 1"));
        }
        if !(self.train_noise.is_finite() && self.train_noise >= 0.0) {
            return Err(invalid(
                "train_noise",
                self.train_noise,
                "a finite number >= 0",
            ));
        }
        Ok(())
    }

    /// Builds the flow (identity-like at initialisation: actnorm identity, 1×1 convs channel
    /// reversals, couplings with a zero last layer).
    ///
    /// # Errors
    /// As [`FlowConfig::validate`].
    pub fn init<B: ConvBackend>(&self, device: &B::Device) -> Result<Flow<B>, InvalidConfig> {
        self.validate()?;
        let mut levels = Vec::with_capacity(self.levels);
        let mut c = 1;
        for l in 0..self.levels {
            c *= 4;
            let steps = (0..self.steps_per_level)
                .map(|_| FlowStep::new(c, self.hidden, device))
                .collect();
            levels.push(Level { steps });
            if l + 1 < self.levels {
                c -= c / 2; // the factored-out half
            }
        }
        Ok(Flow {
            levels,
            size: self.input_size,
            train_noise: self.train_noise,
        })
    }
}

/// One scale: flow steps on the squeezed tensor.
#[derive(Module, Debug)]
pub struct Level<B: ConvBackend> {
    steps: Vec<FlowStep<B>>,
}

/// The normalizing flow.
#[derive(Module, Debug)]
pub struct Flow<B: ConvBackend> {
    levels: Vec<Level<B>>,
    #[module(skip)]
    size: usize,
    #[module(skip)]
    train_noise: f64,
}

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

impl<B: ConvBackend> Flow<B> {
    /// Maps images to latents: one `z` per level (the factored-out halves, then the rest) and
    /// `log|det ∂z/∂x|` per sample.
    ///
    /// # Shapes
    /// - `x`: `[N, 1, S, S]`
    /// - `z[l]`: `[N, C_l, S/2^(l+1), S/2^(l+1)]`
    /// - log-determinant: `[N]`
    pub fn forward(&self, x: Tensor<B, 4>) -> (Vec<Tensor<B, 4>>, Tensor<B, 1>) {
        let n = x.dims()[0];
        let mut logdet = Tensor::<B, 1>::zeros([n], &x.device());
        let mut h = x;
        let mut zs = Vec::with_capacity(self.levels.len());
        for (l, level) in self.levels.iter().enumerate() {
            h = squeeze(h);
            for step in &level.steps {
                let (y, ld) = step.forward(h);
                h = y;
                logdet = logdet + ld;
            }
            if l + 1 < self.levels.len() {
                let c = h.dims()[1];
                let out = c / 2;
                zs.push(h.clone().narrow(1, 0, out));
                h = h.narrow(1, out, c - out);
            }
        }
        zs.push(h);
        (zs, logdet)
    }

    /// Maps latents back to images (the exact inverse of [`Flow::forward`]).
    ///
    /// # Panics
    /// If `zs` does not have one tensor per level.
    pub fn inverse(&self, zs: Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
        assert_eq!(zs.len(), self.levels.len(), "one latent per level");
        let mut zs = zs;
        let mut h = zs.pop().expect("checked above");
        for (l, level) in self.levels.iter().enumerate().rev() {
            if l + 1 < self.levels.len() {
                let z = zs.pop().expect("checked above");
                h = Tensor::cat(vec![z, h], 1);
            }
            for step in level.steps.iter().rev() {
                h = step.inverse(h);
            }
            h = unsqueeze(h);
        }
        h
    }

    /// Exact log-likelihood (nats) per sample and a per-pixel decomposition of its negative.
    ///
    /// The map puts each latent's `−log N(z)` (summed over channels) on the input pixels its
    /// position covers and spreads `−log|det|` evenly; it sums to the exact NLL of the slice.
    ///
    /// # Shapes
    /// `[N, 1, S, S]` → (`[N]`, `[N, 1, S, S]`)
    pub fn log_likelihood(&self, x: Tensor<B, 4>) -> (Tensor<B, 1>, Tensor<B, 4>) {
        let [n, _, s, _] = x.dims();
        let (zs, logdet) = self.forward(x);
        let mut map = Tensor::<B, 4>::zeros([n, 1, s, s], &logdet.device());
        for z in zs {
            let [_, _, h, w] = z.dims();
            let f = s / h;
            let nll = z
                .square()
                .mul_scalar(0.5)
                .add_scalar(HALF_LN_2PI)
                .sum_dim(1);
            let up = nll
                .reshape([n, 1, h, 1, w, 1])
                .expand([n, 1, h, f, w, f])
                .reshape([n, 1, s, s])
                .div_scalar((f * f) as f64);
            map = map + up;
        }
        let spread = logdet
            .clone()
            .div_scalar((s * s) as f64)
            .reshape([n, 1, 1, 1]);
        let map = map - spread;
        let ll = map.clone().flatten::<2>(1, 3).sum_dim(1).reshape([n]).neg();
        (ll, map)
    }

    /// Draws `n` samples at temperature `t` (latents `t·ε`).
    pub fn sample(
        &self,
        n: usize,
        t: f64,
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let mut shapes = Vec::new();
        let mut c = 1;
        let mut s = self.size;
        for l in 0..self.levels.len() {
            c *= 4;
            s /= 2;
            if l + 1 < self.levels.len() {
                shapes.push([n, c / 2, s, s]);
                c -= c / 2;
            } else {
                shapes.push([n, c, s, s]);
            }
        }
        let zs = shapes
            .into_iter()
            .map(|sh| standard_normal::<B, 4>(sh, rng, device).mul_scalar(t))
            .collect();
        self.inverse(zs)
    }

    fn bits_per_dim(&self, ll: Tensor<B, 1>, dims: usize) -> Tensor<B, 1> {
        ll.neg().div_scalar(dims as f64 * std::f64::consts::LN_2)
    }
}

impl<B: ConvBackend> Model<B> for Flow<B> {
    fn family(&self) -> &'static str {
        "flow"
    }

    /// Mean negative log-likelihood in bits per dimension of the (dequantised) batch.
    fn loss(&self, batch: &Batch<B>, _step: u64, rng: &mut ChaCha8Rng) -> LossOutput<B> {
        let x = if self.train_noise > 0.0 {
            let dims = batch.images.dims();
            batch.images.clone()
                + standard_normal::<B, 4>(dims, rng, &batch.images.device())
                    .mul_scalar(self.train_noise)
        } else {
            batch.images.clone()
        };
        let [_, _, h, w] = x.dims();
        let (ll, _) = self.log_likelihood(x);
        let bpd = self.bits_per_dim(ll, h * w);
        LossOutput {
            loss: bpd.clone().mean(),
            terms: vec![(ModelStat::BitsPerDim.name(), bpd)],
        }
    }

    /// Per-pixel NLL map (nats), `log_likelihood` (nats) and `bits_per_dim` per slice.
    fn infer(&self, batch: &Batch<B>, _rng: &mut ChaCha8Rng) -> Inference<B> {
        let [_, _, h, w] = batch.images.dims();
        let (ll, map) = self.log_likelihood(batch.images.clone());
        Inference {
            map,
            map_kind: MapKind::NegLogLikelihood,
            stats: vec![
                (ModelStat::BitsPerDim, self.bits_per_dim(ll.clone(), h * w)),
                (ModelStat::LogLikelihood, ll),
            ],
            latent_mean: None,
        }
    }
}
