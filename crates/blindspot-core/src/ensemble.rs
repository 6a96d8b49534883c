//! Ensembles: N members of one architecture with different seeds, trained and loaded as one
//! unit (WAIC needs 5). Member `i` lives in `run_dir/member-i` and uses seed `seed + i`.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{Checkpoints, Which};
use crate::data::SliceSource;
use crate::error::{InvalidConfig, Result};
use crate::model::{Batch, Inference, Model};
use crate::train::{Fitted, TrainConfig, Trainer};

/// N trained models of one architecture.
#[derive(Debug, Clone)]
pub struct Ensemble<M> {
    /// The members, in seed order.
    pub members: Vec<M>,
}

/// The run directory of member `i`.
pub fn member_dir(run_dir: &Path, i: usize) -> PathBuf {
    run_dir.join(format!("member-{i}"))
}

/// Trains member `i` of an ensemble in `run_dir/member-i` with seed `seed + i` (replacing
/// `config.seed`): the backend is seeded with it, then `init(seed)` builds the member. The one
/// place that says how a member is seeded, for [`Ensemble::fit`] and [`crate::TrainJob`].
///
/// # Errors
/// Those of `init` and of [`Trainer::fit`].
#[allow(clippy::too_many_arguments)] // the member, its folder and what `Trainer::fit` takes
pub(crate) fn fit_member<B, M, S>(
    config: &TrainConfig,
    seed: u64,
    i: usize,
    run_dir: &Path,
    observer: Box<dyn crate::TrainObserver>,
    train: &S,
    val: Option<&S>,
    device: &B::Device,
    init: impl FnOnce(u64) -> Result<M>,
) -> Result<Fitted<M>>
where
    B: AutodiffBackend,
    M: Model<B> + AutodiffModule<B>,
    M::InnerModule: Model<B::InnerBackend>,
    S: SliceSource + ?Sized,
{
    let seed = seed.wrapping_add(i as u64);
    let cfg = TrainConfig {
        seed,
        ..config.clone()
    };
    crate::seeded::<B>(device, seed);
    let model = init(seed)?;
    Trainer::new(cfg, member_dir(run_dir, i))?
        .observed_by(observer)
        .fit(model, train, val, device)
}

impl<M> Ensemble<M> {
    /// Trains `n` members; member `i` is built by `init(seed)` after seeding the backend with
    /// `config.seed + i` and trains with that seed. Finished members are resumed (a no-op), so
    /// an interrupted ensemble run continues where it stopped.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] for `n == 0`, and those of [`Trainer::fit`].
    pub fn fit<B, S>(
        n: usize,
        config: &TrainConfig,
        run_dir: &Path,
        mut init: impl FnMut(u64) -> M,
        train: &S,
        val: Option<&S>,
        device: &B::Device,
    ) -> Result<Self>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
        M::InnerModule: Model<B::InnerBackend>,
        S: SliceSource + ?Sized,
    {
        if n == 0 {
            return Err(InvalidConfig::new("members", 0, "an integer >= 1").into());
        }
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let fitted = fit_member(
                config,
                config.seed,
                i,
                run_dir,
                Box::new(crate::Silent),
                train,
                val,
                device,
                |seed| Ok(init(seed)),
            )?;
            members.push(fitted.model);
        }
        Ok(Self { members })
    }

    /// Loads `n` members from their checkpoints `which`; `init(i)` builds an untrained member.
    ///
    /// # Errors
    /// Those of `init`, [`crate::Error::NoCheckpoint`] when a member has none, and those of
    /// [`crate::load_model`].
    pub fn load<B: Backend>(
        run_dir: &Path,
        n: usize,
        which: Which,
        mut init: impl FnMut(usize) -> Result<M>,
    ) -> Result<Self>
    where
        M: Module<B>,
    {
        (0..n)
            .map(|i| Checkpoints::new(&member_dir(run_dir, i)).load_model(init(i)?, which))
            .collect::<Result<Vec<_>>>()
            .map(|members| Self { members })
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Inference of every member on the same batch (each draws its own samples).
    pub fn infer<B: Backend>(&self, batch: &Batch<B>, rng: &mut ChaCha8Rng) -> Vec<Inference<B>>
    where
        M: Model<B>,
    {
        self.members.iter().map(|m| m.infer(batch, rng)).collect()
    }

    /// The members in evaluation mode on the inner backend.
    pub fn valid<B: AutodiffBackend>(&self) -> Ensemble<M::InnerModule>
    where
        M: AutodiffModule<B>,
    {
        Ensemble {
            members: self.members.iter().map(|m| m.valid()).collect(),
        }
    }
}
