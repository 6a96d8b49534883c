#![doc = include_str!("../README.md")]
//!
//! The paper's variational autoencoder (Baur et al. 2020 layout, docs/method.md 2.1) on burn,
//! generic over the backend: four 5×5 stride-2 conv blocks 32-64-128-128 with BatchNorm and
//! LeakyReLU(0.01), a 1×1 conv to 16 channels, a dense 128-d latent, a mirrored
//! transposed-conv decoder and a linear output; 1,758,481 trainable parameters at 1×128×128.
//!
//! Loss: mean L1 inside the brain mask + β(t)·KL averaged over latent dimensions, with the β
//! schedules of [`BetaSchedule`] and masking switched on from `mask_start_step`.
//!
//! ```text
//! VaeConfig::new() → validate/init::<B>(&device) → Vae<B> → Model::loss / Model::infer
//! ```

mod beta;
mod family;
mod vae;

pub use beta::BetaSchedule;
/// The backbone the VAE is built on, for callers that configure it (`VaeConfig::backbone`).
pub use blindspot_backbone::{BackboneConfig, ConvAutodiffBackend, ConvBackend};
pub use family::{VaeFamily, VaeSettings};
pub use vae::{Vae, VaeConfig, VaeOutput};
