#![doc = include_str!("../README.md")]
//!
//! 2-D convolutions as a burn backend extension, so that the models' convolutions run on fast
//! kernels where we have them and on burn's own ops everywhere else.
//!
//! burn 0.21's CPU backend (burn-flex) spends most of a training step of the paper's VAE outside
//! its matrix products: the default convolution backward of burn-backend transposes activations
//! with `swap_dims(0, 1)` (which flex copies element by element) and flex scatters the columns of
//! a transposed convolution in a serial loop (benches/README.md). This crate follows burn's
//! documented backend-extension pattern instead of patching burn:
//!
//! - [`ConvBackend`]: a backend trait with the convolution and transposed convolution of
//!   `ModuleOps` and their input, weight and bias gradients. Every method has a default body
//!   that calls burn's op, so `impl ConvBackend for X {}` keeps burn's kernels.
//! - `burn_flex::Flex` (feature `flex`, the crate default) overrides them with GEMM-lowered
//!   kernels ([`cpu`]): im2col/col2im on thread-local buffers, parallel over images, no strided
//!   copies. `Autodiff<B>` forwards to `B` and registers a backward that calls `B`'s gradient
//!   ops. burn-ndarray (`ndarray`), burn-cuda (`cuda`) and burn-candle (`candle`) keep burn's.
//! - [`Conv2d`] and [`ConvTranspose2d`]: modules with exactly the parameters (names, shapes,
//!   initialisation) of burn's, so checkpoints and seeded runs do not change, whose forward goes
//!   through the trait; [`conv2d`] and [`conv_transpose2d`] are the functional forms.
//!
//! ```text
//! Conv2dConfig::new([cin, cout], [k, k]) → init::<B: ConvBackend>(&device) → Conv2d<B>::forward
//! ```
//!
//! Model crates name only [`ConvBackend`] (and [`ConvAutodiffBackend`] for training code) and
//! depend on this crate without features; the binaries enable the feature of the backend they
//! pick, which is the only place a concrete backend is named.

mod alloc;
mod backend;
mod backward;
#[cfg(feature = "flex")]
pub mod cpu;
#[cfg(feature = "flex")]
mod flex;
mod module;

pub use alloc::keep_freed_memory;
pub use backend::{
    ConvAutodiffBackend, ConvBackend, NormInference, NormTensors, batch_norm, batch_norm_inference,
    conv_transpose2d, conv_transpose2d_norm_leaky, conv2d, conv2d_norm_leaky, leaky_relu,
};
pub use module::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
