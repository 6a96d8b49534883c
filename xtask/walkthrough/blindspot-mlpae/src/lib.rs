//! A tiny MLP autoencoder, added to blindspot exactly as docs/ARCHITECTURE.md's "Adding a
//! model" says (`cargo xtask walkthrough` checks that it builds and runs).

use blindspot_core::{
    Batch, Family, Inference, InvalidConfig, LossOutput, MapKind, Model, Result, TrainJob, ModelStat,
};
use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Tensor, backend::Backend};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Step 2: the model's configuration.
#[derive(Config, Debug)]
pub struct MlpAeConfig {
    /// Side of the square input slices.
    pub input_size: usize,
    /// Width of the one hidden layer.
    #[config(default = 32)]
    pub hidden: usize,
}

impl MlpAeConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// The key and value refused.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.hidden == 0 {
            return Err(InvalidConfig::new("model.hidden", self.hidden, "at least 1"));
        }
        if self.input_size == 0 {
            return Err(InvalidConfig::new("input_size", self.input_size, "at least 1"));
        }
        Ok(())
    }

    /// A freshly initialised model.
    pub fn init<B: ConvBackend>(&self, device: &B::Device) -> MlpAe<B> {
        let pixels = self.input_size * self.input_size;
        MlpAe {
            encoder: LinearConfig::new(pixels, self.hidden).init(device),
            decoder: LinearConfig::new(self.hidden, pixels).init(device),
            relu: Relu::new(),
        }
    }
}

/// Step 2: the model, slice -> hidden -> slice.
#[derive(Module, Debug)]
pub struct MlpAe<B: Backend> {
    encoder: Linear<B>,
    decoder: Linear<B>,
    relu: Relu,
}

impl<B: Backend> MlpAe<B> {
    /// The reconstruction `[N, 1, H, W]` and each slice's masked mean absolute residual `[N]`.
    fn reconstruct(&self, batch: &Batch<B>) -> (Tensor<B, 4>, Tensor<B, 1>) {
        let [n, c, h, w] = batch.images.dims();
        let flat = batch.images.clone().reshape([n, c * h * w]);
        let hidden = self.relu.forward(self.encoder.forward(flat));
        let recon = self.decoder.forward(hidden).reshape([n, c, h, w]);
        let diff = (batch.images.clone() - recon.clone()).abs() * batch.masks.clone();
        let per_slice = diff.reshape([n as i32, -1]).sum_dim(1).reshape([n]);
        let area = batch.masks.clone().reshape([n as i32, -1]).sum_dim(1).reshape([n]);
        (recon, per_slice / area.clamp_min(1.0))
    }
}

impl<B: Backend> Model<B> for MlpAe<B> {
    fn family(&self) -> &'static str {
        MlpAeFamily::KIND
    }

    fn loss(&self, batch: &Batch<B>, _step: u64, _rng: &mut ChaCha8Rng) -> LossOutput<B> {
        let (_, rec) = self.reconstruct(batch);
        LossOutput {
            loss: rec.clone().mean().reshape([1]),
            terms: vec![(ModelStat::RecErr.name(), rec)],
        }
    }

    fn infer(&self, batch: &Batch<B>, _rng: &mut ChaCha8Rng) -> Inference<B> {
        let (recon, rec) = self.reconstruct(batch);
        Inference {
            map: recon,
            map_kind: MapKind::Reconstruction,
            stats: vec![(ModelStat::RecErr, rec)],
            latent_mean: None,
        }
    }
}

/// Step 3: the `[model]` keys of `kind = "mlp_ae"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpAeSettings {
    /// Width of the hidden layer, at least 1 (default 32).
    pub hidden: usize,
}

impl Default for MlpAeSettings {
    fn default() -> Self {
        Self { hidden: 32 }
    }
}

/// Step 3: the family the runner registers.
#[derive(Debug, Clone, Copy)]
pub struct MlpAeFamily;

impl Family for MlpAeFamily {
    const KIND: &'static str = "mlp_ae";
    const LABEL: &'static str = "MLP AE";
    const STATISTICS: &'static [ModelStat] = &[ModelStat::RecErr];

    type Settings = MlpAeSettings;
    type Config = MlpAeConfig;
    type Model<B: ConvBackend> = MlpAe<B>;

    fn config(settings: &MlpAeSettings, input_size: usize) -> Result<MlpAeConfig, InvalidConfig> {
        let config = MlpAeConfig::new(input_size).with_hidden(settings.hidden);
        config.validate()?;
        Ok(config)
    }

    fn init<B: ConvBackend>(
        config: &MlpAeConfig,
        device: &B::Device,
    ) -> Result<MlpAe<B>, InvalidConfig> {
        Ok(config.init(device))
    }

    fn train<B: ConvAutodiffBackend>(config: &MlpAeConfig, job: &TrainJob<'_, B>) -> Result<()> {
        job.fit(|| Ok(config.init::<B>(job.device)))
    }
}
