//! The VAE as a model family of the runner (`[model] kind = "vae"`).

use blindspot_core::{Family, InvalidConfig, ModelStat, Result, TrainJob};
use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
use serde::{Deserialize, Serialize};

use crate::{BackboneConfig, BetaSchedule, Vae, VaeConfig};

/// The `[model]` keys of the VAE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaeSettings {
    /// Width multiplier of the 32-64-128-128 channel ladder, in (0, 16] (default 1, the paper).
    pub width: f64,
    /// Latent dimension, at least 1 (default 128, the paper).
    pub latent_dim: usize,
    /// The KL weight schedule (default monotonic 0 → 1 over 2000 steps).
    pub beta: BetaSchedule,
    /// From this step on the reconstruction loss is masked to the brain (default 0).
    pub mask_start_step: u64,
}

impl Default for VaeSettings {
    fn default() -> Self {
        Self {
            width: 1.0,
            latent_dim: 128,
            beta: BetaSchedule::default(),
            mask_start_step: 0,
        }
    }
}

/// The paper's VAE.
#[derive(Debug, Clone, Copy)]
pub struct VaeFamily;

impl Family for VaeFamily {
    const KIND: &'static str = "vae";
    const LABEL: &'static str = "VAE";
    const STATISTICS: &'static [ModelStat] = &[ModelStat::RecErr, ModelStat::KlDiv];

    type Settings = VaeSettings;
    type Config = VaeConfig;
    type Model<B: ConvBackend> = Vae<B>;

    fn config(s: &VaeSettings, input_size: usize) -> Result<VaeConfig, InvalidConfig> {
        let config = VaeConfig::new()
            .with_backbone(
                BackboneConfig::new()
                    .with_input_size(input_size)
                    .with_width(s.width),
            )
            .with_latent_dim(s.latent_dim)
            .with_beta(s.beta)
            .with_mask_start_step(s.mask_start_step);
        config.validate()?;
        Ok(config)
    }

    fn latent_dims(s: &VaeSettings) -> usize {
        s.latent_dim
    }

    fn init<B: ConvBackend>(c: &VaeConfig, device: &B::Device) -> Result<Vae<B>, InvalidConfig> {
        c.init::<B>(device)
    }

    fn train<B: ConvAutodiffBackend>(c: &VaeConfig, job: &TrainJob<'_, B>) -> Result<()> {
        job.fit(|| c.init::<B>(job.device))
    }
}
