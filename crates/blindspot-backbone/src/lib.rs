#![doc = include_str!("../README.md")]
//!
//! The convolutional encoder and decoder of Baur et al. (2020) (docs/method.md 2.1), with the
//! batch normalisation they use, shared by the model crates of the autoencoder family
//! (blindspot-vae, blindspot-ae) so that neither depends on the other.
//!
//! ```text
//! BackboneConfig::new() → init_encoder / init_decoder::<B: ConvBackend>(&device) → forward
//! ```

mod backbone;
mod norm;

pub use backbone::{BOTTLENECK_CHANNELS, BackboneConfig, ConvBlock, Decoder, Encoder, UpBlock};
/// The backend bound of the models built on this backbone (convolutions through
/// `blindspot-kernels`); training code asks for [`ConvAutodiffBackend`].
pub use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
