#![doc = include_str!("../README.md")]
//!
//! Library code is generic over `B: Backend`; only binaries name a concrete backend.
//!
//! - [`Model`]: the trait every model crate implements (a loss on a batch, inference).
//! - [`Trainer`]: trains a [`Model`] on a [`SliceSource`] in a run directory.
//! - [`Ensemble`]: N members with different seeds, trained and loaded as one unit.

mod checkpoint;
mod data;
mod ensemble;
mod error;
mod family;
mod model;
mod observe;
mod train;

pub use checkpoint::{
    Checkpoints, MODEL_FILE, OPTIMIZER_FILE, RngState, RunState, STATE_FILE, Which, load_model,
    save_model, sync_running_states,
};
pub use data::{InMemorySlices, SliceSource, epoch_order, load_batch};
pub use ensemble::Ensemble;
pub use error::{Error, InvalidConfig, Result};
pub use family::{Family, Members, TrainJob};
pub use model::{
    Batch, Inference, LossOutput, MapKind, Model, ModelStat, SliceOutputs, masked_l1,
    standard_normal, trainable_params,
};
pub use observe::{Silent, StepReport, TrainObserver, TrainStart};
pub use train::{Duration, Fitted, LogLine, TrainConfig, Trainer, read_log, validation_indices};

/// Seeds the backend's own generator (used by parameter initialisers) and returns a ChaCha8
/// generator for everything blindspot draws itself. The same seed gives the same numbers on
/// the CPU.
pub fn seeded<B: burn::tensor::backend::Backend>(
    device: &B::Device,
    seed: u64,
) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    B::seed(device, seed);
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}
