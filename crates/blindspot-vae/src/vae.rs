//! The paper's VAE: Baur backbone, dense latent, masked mean-L1 + β·mean-KL loss.

use blindspot_core::{
    Batch, Inference, LossOutput, MapKind, Model, ModelStat, masked_l1, standard_normal,
};
use blindspot_kernels::ConvBackend;
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand_chacha::ChaCha8Rng;

use crate::beta::BetaSchedule;
use blindspot_backbone::{BackboneConfig, Decoder, Encoder};
use blindspot_core::InvalidConfig;

/// Configuration of [`Vae`].
#[derive(Config, Debug, PartialEq)]
pub struct VaeConfig {
    /// Encoder/decoder geometry (input size, width multiplier).
    #[config(default = "BackboneConfig::new()")]
    pub backbone: BackboneConfig,
    /// Latent dimension (paper: 128).
    #[config(default = 128)]
    pub latent_dim: usize,
    /// The KL weight schedule.
    #[config(default = "BetaSchedule::default()")]
    pub beta: BetaSchedule,
    /// From this training step on, the reconstruction term is computed inside the brain mask;
    /// before it, over all pixels (0: masked from the start).
    #[config(default = 0)]
    pub mask_start_step: u64,
}

impl VaeConfig {
    /// Checks every value once.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the key and what is allowed.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.backbone.validate()?;
        if self.latent_dim == 0 {
            return Err(InvalidConfig::new("latent_dim", 0, "an integer >= 1"));
        }
        self.beta.validate()
    }

    /// Builds the model on `device` (parameters drawn from the backend's generator: seed it
    /// with [`blindspot_core::seeded`] first).
    ///
    /// # Errors
    /// [`InvalidConfig`] when [`VaeConfig::validate`] fails.
    pub fn init<B: ConvBackend>(&self, device: &B::Device) -> Result<Vae<B>, InvalidConfig> {
        self.validate()?;
        let flat = self.backbone.flat_features();
        Ok(Vae {
            encoder: self.backbone.init_encoder(device),
            mu: LinearConfig::new(flat, self.latent_dim).init(device),
            logvar: LinearConfig::new(flat, self.latent_dim).init(device),
            fc: LinearConfig::new(self.latent_dim, flat).init(device),
            decoder: self.backbone.init_decoder(device),
            beta: self.beta,
            mask_start_step: self.mask_start_step,
        })
    }
}

/// The variational autoencoder of Baur et al. (2020) as used by Heer et al. (2021).
#[derive(Module, Debug)]
pub struct Vae<B: ConvBackend> {
    encoder: Encoder<B>,
    mu: Linear<B>,
    logvar: Linear<B>,
    fc: Linear<B>,
    decoder: Decoder<B>,
    #[module(skip)]
    beta: BetaSchedule,
    #[module(skip)]
    mask_start_step: u64,
}

/// The outputs of one VAE forward pass.
///
/// # Shapes
/// - `x_hat`: `[N, 1, S, S]`
/// - `mu`, `logvar`, `z`: `[N, D]`
#[derive(Debug, Clone)]
pub struct VaeOutput<B: Backend> {
    /// The reconstruction (linear, unbounded).
    pub x_hat: Tensor<B, 4>,
    /// Posterior mean.
    pub mu: Tensor<B, 2>,
    /// Posterior log-variance.
    pub logvar: Tensor<B, 2>,
    /// The latent sample.
    pub z: Tensor<B, 2>,
}

impl<B: ConvBackend> Vae<B> {
    /// Encodes, samples `z = μ + ε·exp(logσ²/2)` with `ε` from `rng`, and decodes.
    ///
    /// # Shapes
    /// `images`: `[N, 1, S, S]`
    pub fn forward(&self, images: Tensor<B, 4>, rng: &mut ChaCha8Rng) -> VaeOutput<B> {
        let h = self.encoder.forward(images);
        let mu = self.mu.forward(h.clone());
        let logvar = self.logvar.forward(h);
        let eps = standard_normal::<B, 2>(mu.dims(), rng, &mu.device());
        let z = mu.clone() + eps * logvar.clone().mul_scalar(0.5).exp();
        let x_hat = self.decode(z.clone());
        VaeOutput {
            x_hat,
            mu,
            logvar,
            z,
        }
    }

    /// Decodes latent codes.
    ///
    /// # Shapes
    /// `[N, D]` → `[N, 1, S, S]`
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 4> {
        self.decoder.forward(self.fc.forward(z))
    }

    /// The KL schedule.
    pub fn beta_schedule(&self) -> &BetaSchedule {
        &self.beta
    }

    /// Per-sample KL to N(0, I) averaged over latent dimensions.
    ///
    /// # Shapes
    /// `[N, D]`, `[N, D]` → `[N]`
    pub fn kl(mu: Tensor<B, 2>, logvar: Tensor<B, 2>) -> Tensor<B, 1> {
        let n = mu.dims()[0];
        let inner = logvar.clone().add_scalar(1.0) - mu.square() - logvar.exp();
        inner.mean_dim(1).reshape([n]).mul_scalar(-0.5)
    }

    fn terms(
        &self,
        batch: &Batch<B>,
        use_mask: bool,
        rng: &mut ChaCha8Rng,
    ) -> (VaeOutput<B>, Tensor<B, 1>, Tensor<B, 1>) {
        let out = self.forward(batch.images.clone(), rng);
        let mask = if use_mask {
            batch.masks.clone()
        } else {
            batch.masks.ones_like()
        };
        let rec = masked_l1(batch.images.clone(), out.x_hat.clone(), mask);
        let kl = Self::kl(out.mu.clone(), out.logvar.clone());
        (out, rec, kl)
    }
}

impl<B: ConvBackend> Model<B> for Vae<B> {
    fn family(&self) -> &'static str {
        "vae"
    }

    /// The KL weight β of the step, so that training logs show the warm-up.
    fn logged_scalars(&self, step: u64) -> Vec<(&'static str, f64)> {
        vec![("beta", self.beta.beta(step))]
    }

    /// `mean(rec) + β(step)·mean(kl)`, the reconstruction inside the mask from
    /// `mask_start_step` on.
    fn loss(&self, batch: &Batch<B>, step: u64, rng: &mut ChaCha8Rng) -> LossOutput<B> {
        let (_, rec, kl) = self.terms(batch, step >= self.mask_start_step, rng);
        let beta = self.beta.beta(step);
        let loss = rec.clone().mean() + kl.clone().mean().mul_scalar(beta);
        LossOutput {
            loss,
            terms: vec![
                (ModelStat::RecErr.name(), rec),
                (ModelStat::KlDiv.name(), kl),
            ],
        }
    }

    /// One stochastic pass; `rec_err` inside the mask, `kl_div` and the latent mean (the
    /// pipeline computes the ELBOs from them: the paper's coded `rec - kl` and the negative
    /// ELBO in nats).
    fn infer(&self, batch: &Batch<B>, rng: &mut ChaCha8Rng) -> Inference<B> {
        let (out, rec, kl) = self.terms(batch, true, rng);
        Inference {
            map: out.x_hat,
            map_kind: MapKind::Reconstruction,
            stats: vec![(ModelStat::RecErr, rec), (ModelStat::KlDiv, kl)],
            latent_mean: Some(out.mu),
        }
    }

    fn is_stochastic(&self) -> bool {
        true
    }
}
