//! Model families: the one trait a model crate implements so that the runner can configure,
//! train, load and score its models without knowing them (docs/ARCHITECTURE.md, "Adding a
//! model"), and the object-safe handle of a loaded ensemble that the runner drives.

use std::fmt::Debug;
use std::path::Path;

use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::Which;
use crate::data::SliceSource;
use crate::ensemble::{Ensemble, fit_member};
use crate::error::{InvalidConfig, Result};
use crate::model::{Batch, Model, ModelStat, SliceOutputs};
use crate::train::TrainConfig;

/// A model family (the VAE, an autoencoder, a flow): its name in `[model] kind`, its own
/// settings, the statistics its inference reports, and how its members are built, trained and
/// loaded. A model crate implements it once; the runner lists the family on one line.
pub trait Family {
    /// Its `[model] kind` (`"vae"`).
    const KIND: &'static str;
    /// Its name in reports (`"VAE"`).
    const LABEL: &'static str;
    /// The per-slice statistics ([`ModelStat`]s) of its [`Model::infer`]; a test of
    /// each model crate checks them against what inference returns.
    const STATISTICS: &'static [ModelStat];

    /// The `[model]` keys of this family besides `kind`, every one with a default; unknown keys
    /// are errors (`#[serde(deny_unknown_fields, default)]`).
    type Settings: Serialize + DeserializeOwned + Default + Clone + Debug + PartialEq + Send + Sync;
    /// The model crate's validated configuration.
    type Config: Clone + Debug + Send + Sync;
    /// The model on backend `B`.
    type Model<B: ConvBackend>: Model<B> + 'static;

    /// The configuration of `settings` for `input_size`² slices, validated.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the setting.
    fn config(settings: &Self::Settings, input_size: usize) -> Result<Self::Config, InvalidConfig>;

    /// The latent dimensions its KL statistic is averaged over (0: no KL).
    fn latent_dims(_settings: &Self::Settings) -> usize {
        0
    }

    /// An untrained member.
    ///
    /// # Errors
    /// [`InvalidConfig`] when `config` was not validated by [`Family::config`].
    fn init<B: ConvBackend>(
        config: &Self::Config,
        device: &B::Device,
    ) -> Result<Self::Model<B>, InvalidConfig>;

    /// Trains the members of `job`, each built by [`Family::init`]: usually
    /// `job.fit(|| Self::init::<B>(config, job.device))`, which a model crate writes because
    /// only it knows that its model on `B` is the autodiff form of its model on `B`'s inner
    /// backend.
    ///
    /// # Errors
    /// Those of [`TrainJob::fit`].
    fn train<B: ConvAutodiffBackend>(config: &Self::Config, job: &TrainJob<'_, B>) -> Result<()>;

    /// The last checkpoint of members `0..members` under `run_dir`, as a handle.
    ///
    /// # Errors
    /// [`crate::Error::NoCheckpoint`] when a member has none, and those of [`Ensemble::load`].
    fn load<B: ConvBackend>(
        config: &Self::Config,
        run_dir: &Path,
        members: usize,
        device: &B::Device,
    ) -> Result<Box<dyn Members<B>>> {
        let ensemble = Ensemble::load::<B>(run_dir, members, Which::Last, |_| {
            Ok(Self::init::<B>(config, device)?)
        })?;
        Ok(Box::new(ensemble))
    }
}

/// A loaded ensemble as the runner drives it, whatever its model type.
pub trait Members<B: Backend> {
    /// The number of members.
    fn len(&self) -> usize;

    /// Whether there is no member.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inference of every member on `batch` (each draws its own samples from `rng`, in member
    /// order), read back to the host.
    ///
    /// # Errors
    /// When a tensor cannot be read back.
    fn infer(&self, batch: &Batch<B>, rng: &mut ChaCha8Rng) -> Result<Vec<SliceOutputs>>;
}

impl<B: Backend, M: Model<B>> Members<B> for Ensemble<M> {
    fn len(&self) -> usize {
        self.members.len()
    }

    fn infer(&self, batch: &Batch<B>, rng: &mut ChaCha8Rng) -> Result<Vec<SliceOutputs>> {
        Ensemble::infer(self, batch, rng)
            .into_iter()
            .map(|o| o.into_host())
            .collect()
    }
}

/// The training of some members of an ensemble (all of them, or a shard's share): member `i`
/// trains in `run_dir/member-i` with seed `seed + i` (which replaces `config.seed`), the backend
/// seeded with it before the member is built. A finished member is resumed, which is a no-op.
pub struct TrainJob<'a, B: Backend> {
    /// The members to train.
    pub members: Vec<usize>,
    /// Member 0's seed (the run's master seed).
    pub seed: u64,
    /// The training settings (their `seed` is replaced by each member's).
    pub config: &'a TrainConfig,
    /// The ensemble's folder.
    pub run_dir: &'a Path,
    /// Training slices.
    pub train: &'a dyn SliceSource,
    /// Validation slices.
    pub val: Option<&'a dyn SliceSource>,
    /// The device.
    pub device: &'a B::Device,
    /// The observer of member `i`'s training (`|_| Box::new(Silent)` for none).
    pub observe: &'a dyn Fn(usize) -> Box<dyn crate::TrainObserver>,
}

impl<B: AutodiffBackend> TrainJob<'_, B> {
    /// Trains each member built by `init`.
    ///
    /// # Errors
    /// Those of `init` and of [`crate::Trainer::fit`].
    pub fn fit<M>(&self, mut init: impl FnMut() -> Result<M, InvalidConfig>) -> Result<()>
    where
        M: Model<B> + AutodiffModule<B>,
        M::InnerModule: Model<B::InnerBackend>,
    {
        for &i in &self.members {
            fit_member(
                self.config,
                self.seed,
                i,
                self.run_dir,
                (self.observe)(i),
                self.train,
                self.val,
                self.device,
                |_| Ok(init()?),
            )?;
        }
        Ok(())
    }
}
