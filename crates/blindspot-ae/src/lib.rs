#![doc = include_str!("../README.md")]
//!
//! Deterministic autoencoders on the VAE's backbone (blindspot-backbone): a plain autoencoder and a
//! denoising autoencoder with coarse noise (low-resolution Gaussian noise, upsampled bilinearly
//! and added inside the brain; the model learns to return the clean slice).
//!
//! ```text
//! AutoencoderConfig::new() [.with_noise(Some(CoarseNoiseConfig::new()))]
//!     → init::<B>(&device) → Autoencoder<B> → Model::loss / Model::infer
//! ```

use blindspot_backbone::{BackboneConfig, ConvBackend, Decoder, Encoder};
mod family;

pub use family::{AeFamily, AeSettings, DaeFamily, DaeSettings};

use blindspot_core::{
    Batch, Inference, InvalidConfig, LossOutput, MapKind, Model, ModelStat, masked_l1,
    standard_normal,
};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use rand_chacha::ChaCha8Rng;

fn invalid(key: &'static str, value: impl ToString, allowed: &'static str) -> InvalidConfig {
    InvalidConfig::new(key, value, allowed)
}

/// Coarse noise of a denoising autoencoder.
#[derive(Config, Debug, PartialEq)]
pub struct CoarseNoiseConfig {
    /// Side of the low-resolution noise grid (upsampled to the input size).
    #[config(default = 16)]
    pub resolution: usize,
    /// Standard deviation of the noise (input units: z-scores).
    #[config(default = 0.2)]
    pub std: f64,
}

/// Configuration of [`Autoencoder`].
#[derive(Config, Debug, PartialEq)]
pub struct AutoencoderConfig {
    /// Encoder/decoder geometry, shared with the VAE.
    #[config(default = "BackboneConfig::new()")]
    pub backbone: BackboneConfig,
    /// Bottleneck dimension.
    #[config(default = 128)]
    pub latent_dim: usize,
    /// Coarse input noise during training (a denoising autoencoder), or none.
    #[config(default = "None")]
    pub noise: Option<CoarseNoiseConfig>,
    /// From this training step on, the loss is computed inside the brain mask.
    #[config(default = 0)]
    pub mask_start_step: u64,
}

impl AutoencoderConfig {
    /// Checks every value once.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.backbone.validate()?;
        if self.latent_dim == 0 {
            return Err(invalid("latent_dim", 0, "an integer >= 1"));
        }
        if let Some(n) = &self.noise {
            if n.resolution == 0 || n.resolution > self.backbone.input_size {
                return Err(invalid("noise.resolution", n.resolution, "1..=input_size"));
            }
            if !(n.std.is_finite() && n.std >= 0.0) {
                return Err(invalid("noise.std", n.std, "a finite number >= 0"));
            }
        }
        Ok(())
    }

    /// Builds the model.
    ///
    /// # Errors
    /// As [`AutoencoderConfig::validate`].
    pub fn init<B: ConvBackend>(
        &self,
        device: &B::Device,
    ) -> Result<Autoencoder<B>, InvalidConfig> {
        self.validate()?;
        let flat = self.backbone.flat_features();
        Ok(Autoencoder {
            encoder: self.backbone.init_encoder(device),
            to_latent: LinearConfig::new(flat, self.latent_dim).init(device),
            fc: LinearConfig::new(self.latent_dim, flat).init(device),
            decoder: self.backbone.init_decoder(device),
            noise: self.noise.as_ref().map(|n| (n.resolution, n.std)),
            mask_start_step: self.mask_start_step,
        })
    }
}

/// A deterministic (optionally denoising) autoencoder.
#[derive(Module, Debug)]
pub struct Autoencoder<B: ConvBackend> {
    encoder: Encoder<B>,
    to_latent: Linear<B>,
    fc: Linear<B>,
    decoder: Decoder<B>,
    #[module(skip)]
    noise: Option<(usize, f64)>,
    #[module(skip)]
    mask_start_step: u64,
}

impl<B: ConvBackend> Autoencoder<B> {
    /// Encodes to the bottleneck code.
    ///
    /// # Shapes
    /// `[N, 1, S, S]` → `[N, D]`
    pub fn encode(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.to_latent.forward(self.encoder.forward(x))
    }

    /// Decodes a code.
    ///
    /// # Shapes
    /// `[N, D]` → `[N, 1, S, S]`
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 4> {
        self.decoder.forward(self.fc.forward(z))
    }

    /// Coarse noise for `images` inside `masks`: `resolution²` Gaussian values per slice,
    /// upsampled bilinearly (zero when the model is not denoising).
    ///
    /// # Shapes
    /// `[N, 1, S, S]` → `[N, 1, S, S]`
    pub fn coarse_noise(&self, masks: &Tensor<B, 4>, rng: &mut ChaCha8Rng) -> Tensor<B, 4> {
        let [n, _, h, w] = masks.dims();
        match self.noise {
            Some((r, std)) => {
                let low =
                    standard_normal::<B, 4>([n, 1, r, r], rng, &masks.device()).mul_scalar(std);
                let up = interpolate(
                    low,
                    [h, w],
                    InterpolateOptions::new(InterpolateMode::Bilinear),
                );
                up * masks.clone()
            }
            None => masks.zeros_like(),
        }
    }
}

impl<B: ConvBackend> Model<B> for Autoencoder<B> {
    fn family(&self) -> &'static str {
        if self.noise.is_some() { "dae" } else { "ae" }
    }

    /// Mean L1 between the clean slice and the reconstruction of the (noisy) input, inside
    /// the mask from `mask_start_step` on.
    fn loss(&self, batch: &Batch<B>, step: u64, rng: &mut ChaCha8Rng) -> LossOutput<B> {
        let input = if self.noise.is_some() {
            batch.images.clone() + self.coarse_noise(&batch.masks, rng)
        } else {
            batch.images.clone()
        };
        let x_hat = self.decode(self.encode(input));
        let mask = if step >= self.mask_start_step {
            batch.masks.clone()
        } else {
            batch.masks.ones_like()
        };
        let rec = masked_l1(batch.images.clone(), x_hat, mask);
        LossOutput {
            loss: rec.clone().mean(),
            terms: vec![(ModelStat::RecErr.name(), rec)],
        }
    }

    /// Reconstruction of the clean input, `rec_err` inside the mask, the code as latent mean.
    fn infer(&self, batch: &Batch<B>, _rng: &mut ChaCha8Rng) -> Inference<B> {
        let z = self.encode(batch.images.clone());
        let x_hat = self.decode(z.clone());
        let rec = masked_l1(batch.images.clone(), x_hat.clone(), batch.masks.clone());
        Inference {
            map: x_hat,
            map_kind: MapKind::Reconstruction,
            stats: vec![(ModelStat::RecErr, rec)],
            latent_mean: Some(z),
        }
    }
}
