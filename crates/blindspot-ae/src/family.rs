//! The autoencoders as model families of the runner (`[model] kind = "ae"` and `"dae"`).

use blindspot_backbone::{BackboneConfig, ConvAutodiffBackend, ConvBackend};
use blindspot_core::{Family, InvalidConfig, ModelStat, Result, TrainJob};
use serde::{Deserialize, Serialize};

use crate::{Autoencoder, AutoencoderConfig, CoarseNoiseConfig};

/// The `[model]` keys of the autoencoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AeSettings {
    /// Width multiplier of the 32-64-128-128 channel ladder, in (0, 16] (default 1).
    pub width: f64,
    /// Bottleneck dimension, at least 1 (default 128).
    pub latent_dim: usize,
    /// From this step on the reconstruction loss is masked to the brain (default 0).
    pub mask_start_step: u64,
}

impl Default for AeSettings {
    fn default() -> Self {
        Self {
            width: 1.0,
            latent_dim: 128,
            mask_start_step: 0,
        }
    }
}

/// The `[model]` keys of the denoising autoencoder: the autoencoder's and its coarse noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaeSettings {
    /// Width multiplier of the 32-64-128-128 channel ladder, in (0, 16] (default 1).
    pub width: f64,
    /// Bottleneck dimension, at least 1 (default 128).
    pub latent_dim: usize,
    /// From this step on the reconstruction loss is masked to the brain (default 0).
    pub mask_start_step: u64,
    /// Side of the low-resolution noise grid, 1 to the slice side (default 16).
    pub noise_resolution: usize,
    /// Standard deviation of the noise in z-score units, >= 0 (default 0.2).
    pub noise_std: f64,
}

impl Default for DaeSettings {
    fn default() -> Self {
        let noise = CoarseNoiseConfig::new();
        Self {
            width: 1.0,
            latent_dim: 128,
            mask_start_step: 0,
            noise_resolution: noise.resolution,
            noise_std: noise.std,
        }
    }
}

fn config(
    width: f64,
    latent_dim: usize,
    mask_start_step: u64,
    noise: Option<CoarseNoiseConfig>,
    input_size: usize,
) -> Result<AutoencoderConfig, InvalidConfig> {
    let c = AutoencoderConfig::new()
        .with_backbone(
            BackboneConfig::new()
                .with_input_size(input_size)
                .with_width(width),
        )
        .with_latent_dim(latent_dim)
        .with_mask_start_step(mask_start_step)
        .with_noise(noise);
    c.validate()?;
    Ok(c)
}

/// A deterministic autoencoder on the VAE's backbone.
#[derive(Debug, Clone, Copy)]
pub struct AeFamily;

impl Family for AeFamily {
    const KIND: &'static str = "ae";
    const LABEL: &'static str = "AE";
    const STATISTICS: &'static [ModelStat] = &[ModelStat::RecErr];

    type Settings = AeSettings;
    type Config = AutoencoderConfig;
    type Model<B: ConvBackend> = Autoencoder<B>;

    fn config(s: &AeSettings, input_size: usize) -> Result<AutoencoderConfig, InvalidConfig> {
        config(s.width, s.latent_dim, s.mask_start_step, None, input_size)
    }

    fn init<B: ConvBackend>(
        c: &AutoencoderConfig,
        device: &B::Device,
    ) -> Result<Autoencoder<B>, InvalidConfig> {
        c.init::<B>(device)
    }

    fn train<B: ConvAutodiffBackend>(c: &AutoencoderConfig, job: &TrainJob<'_, B>) -> Result<()> {
        job.fit(|| c.init::<B>(job.device))
    }
}

/// A denoising autoencoder: trained to return the clean slice from one with coarse noise.
#[derive(Debug, Clone, Copy)]
pub struct DaeFamily;

impl Family for DaeFamily {
    const KIND: &'static str = "dae";
    const LABEL: &'static str = "DAE";
    const STATISTICS: &'static [ModelStat] = &[ModelStat::RecErr];

    type Settings = DaeSettings;
    type Config = AutoencoderConfig;
    type Model<B: ConvBackend> = Autoencoder<B>;

    fn config(s: &DaeSettings, input_size: usize) -> Result<AutoencoderConfig, InvalidConfig> {
        let noise = CoarseNoiseConfig::new()
            .with_resolution(s.noise_resolution)
            .with_std(s.noise_std);
        config(
            s.width,
            s.latent_dim,
            s.mask_start_step,
            Some(noise),
            input_size,
        )
    }

    // the same model as the autoencoder (its config carries the noise)
    fn init<B: ConvBackend>(
        c: &AutoencoderConfig,
        device: &B::Device,
    ) -> Result<Autoencoder<B>, InvalidConfig> {
        AeFamily::init::<B>(c, device)
    }

    fn train<B: ConvAutodiffBackend>(c: &AutoencoderConfig, job: &TrainJob<'_, B>) -> Result<()> {
        AeFamily::train::<B>(c, job)
    }
}
