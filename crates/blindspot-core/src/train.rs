//! The training loop: Adam, seeded shuffling, validation at an interval, atomic checkpoints
//! (every N steps, best, last), exact resume, a NaN/Inf guard, progress reported to a
//! [`crate::TrainObserver`] (loss, speed, time left; nothing is printed) and a log of every
//! logged step in two forms, `log.jsonl` and `log.csv`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, ParamId};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    Checkpoints, OPTIMIZER_FILE, RngState, RunState, Which, model_to_bytes, param_ids,
};
use crate::data::{SliceSource, epoch_order, load_batch};
use crate::error::{Error, InvalidConfig, Result, io, json};
use crate::model::{Model, read_f32};
use crate::observe::{Silent, StepReport, TrainObserver, TrainStart};

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duration {
    /// A number of optimizer steps.
    Steps(u64),
    /// A number of passes over the training set.
    Epochs(u64),
}

/// Training settings (plain data; check them with [`TrainConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Adam learning rate (paper: 1e-4).
    pub learning_rate: f64,
    /// Adam beta 1.
    pub beta_1: f32,
    /// Adam beta 2.
    pub beta_2: f32,
    /// Adam epsilon (PyTorch's default 1e-8).
    pub epsilon: f32,
    /// Slices per batch (paper: 128). The last incomplete batch of an epoch is dropped.
    pub batch_size: usize,
    /// How long to train.
    pub duration: Duration,
    /// Seed of the shuffling and of the model's noise.
    pub seed: u64,
    /// Validate every this many steps (0: never).
    pub val_every: u64,
    /// At most this many validation batches per validation (0: all); the slices are then
    /// spread evenly over the validation set ([`validation_indices`]).
    pub val_batches: usize,
    /// Write a checkpoint every this many steps (0: only at the end and at new best).
    pub checkpoint_every: u64,
    /// Keep the newest this many step checkpoints (`last` and `best` are always kept).
    pub keep_checkpoints: usize,
    /// Write a log record (`log.jsonl`, `log.csv`) every this many steps; the last step and
    /// every validation step get one too.
    pub log_every: u64,
    /// Whether the caller shows progress (the `blindspot` binary: a bar on a terminal, plain
    /// lines elsewhere). blindspot-core itself never prints: see [`Trainer::observed_by`].
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            batch_size: 128,
            duration: Duration::Epochs(100),
            seed: 0,
            val_every: 0,
            val_batches: 0,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            log_every: 10,
            progress: true,
        }
    }
}

fn invalid(key: &'static str, value: impl ToString, allowed: &'static str) -> Error {
    InvalidConfig::new(key, value, allowed).into()
}

impl TrainConfig {
    /// Checks every value once.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key and what is allowed.
    pub fn validate(&self) -> Result<()> {
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid(
                "learning_rate",
                self.learning_rate,
                "a finite number > 0",
            ));
        }
        for (key, b) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(key, b, "0 <= beta < 1"));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(invalid("epsilon", self.epsilon, "a finite number > 0"));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", 0, "an integer >= 1"));
        }
        match self.duration {
            Duration::Steps(0) | Duration::Epochs(0) => {
                return Err(invalid("duration", "0", "at least one step or epoch"));
            }
            _ => {}
        }
        if self.log_every == 0 {
            return Err(invalid("log_every", 0, "an integer >= 1"));
        }
        if self.keep_checkpoints == 0 {
            return Err(invalid("keep_checkpoints", 0, "an integer >= 1"));
        }
        Ok(())
    }

    /// The settings a resumed run must share with the run it continues.
    fn resume_settings(&self) -> serde_json::Value {
        serde_json::json!({
            "learning_rate": self.learning_rate,
            // f32 values as their shortest decimal text: exact across a JSON round trip
            "beta_1": self.beta_1.to_string(),
            "beta_2": self.beta_2.to_string(),
            "epsilon": self.epsilon.to_string(),
            "batch_size": self.batch_size,
            "seed": self.seed,
        })
    }
}

/// The result of [`Trainer::fit`].
#[derive(Debug)]
pub struct Fitted<M> {
    /// The model after the last step.
    pub model: M,
    /// Steps completed in total (including those before a resume).
    pub steps: u64,
    /// The step training resumed from (0 for a fresh run).
    pub resumed_from: u64,
    /// Loss of the last step.
    pub last_loss: f64,
    /// Best validation loss and its step.
    pub best_val: Option<(f64, u64)>,
    /// The run directory.
    pub run_dir: PathBuf,
}

/// One record of the training log: a line of `log.jsonl` and a row of `log.csv`.
///
/// A record is written every `log_every` steps, at the last step and at every validation, at
/// most one per step. `log.csv` has the columns `step,epoch,loss,<terms>,learning_rate,
/// images_per_s,val_loss,<val_terms>`, the term columns named after the terms of the run's
/// first record and the validation columns `val_<term>` after its loss terms (not the model's
/// logged scalars); an absent value is an empty cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Steps completed.
    pub step: u64,
    /// The epoch (0-based) the step belonged to.
    pub epoch: u64,
    /// Training loss of the step.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    /// Batch means of the loss terms of the step (`rec_err`, `kl_div`, ...), then the model's
    /// [`Model::logged_scalars`] (e.g. `beta`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub terms: Vec<(String, f64)>,
    /// The learning rate of the step.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub learning_rate: Option<f64>,
    /// Validation loss, when the model was validated at this step.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    /// Validation means of the loss terms (`rec_err`, `kl_div`, ...), when validated.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub val_terms: Vec<(String, f64)>,
    /// Training throughput since the previous record (validation time excluded).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub images_per_s: Option<f64>,
}

/// Runs training in a run directory (`checkpoints/`, `log.jsonl`, `log.csv`,
/// `train_config.json`).
///
/// When the directory already holds a `last` checkpoint, training resumes from it exactly
/// (model, optimizer state, step counter, RNG state); the duration may be extended, the other
/// resume-relevant settings must match. The logs then continue where the checkpoint stands:
/// records past its step (written by a run that died after it) are dropped first. A fresh run
/// starts fresh logs.
pub struct Trainer {
    config: TrainConfig,
    run_dir: PathBuf,
    observer: std::cell::RefCell<Box<dyn TrainObserver>>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("run_dir", &self.run_dir)
            .finish_non_exhaustive()
    }
}

const LOG_FILE: &str = "log.jsonl";
const CSV_FILE: &str = "log.csv";

impl Trainer {
    /// A trainer for `run_dir` with a validated configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn new(config: TrainConfig, run_dir: impl Into<PathBuf>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            run_dir: run_dir.into(),
            observer: std::cell::RefCell::new(Box::new(Silent)),
        })
    }

    /// The trainer with `observer` told what happens (by default nothing is: the trainer is
    /// silent).
    pub fn observed_by(self, observer: Box<dyn TrainObserver>) -> Self {
        Self {
            observer: std::cell::RefCell::new(observer),
            ..self
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The checkpoints of the run directory.
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(&self.run_dir)
    }

    /// Trains `model` on `train`, validating on `val` when given.
    ///
    /// `model` must be freshly initialised (its weights are replaced on resume).
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] when the loss becomes NaN/Inf (the last good checkpoint is kept),
    /// [`Error::ResumeMismatch`], data, I/O and checkpoint errors.
    pub fn fit<B, M, S>(
        &self,
        model: M,
        train: &S,
        val: Option<&S>,
        device: &B::Device,
    ) -> Result<Fitted<M>>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
        M::InnerModule: Model<B::InnerBackend>,
        S: SliceSource + ?Sized,
    {
        let cfg = &self.config;
        let span = self.span(train.len())?;
        std::fs::create_dir_all(&self.run_dir).map_err(io(&self.run_dir))?;
        let checkpoints = self.checkpoints();
        let mut run = self.open_or_resume::<B, M>(model, &checkpoints, device)?;
        let resumed_from = run.step;
        let log = self.open_logs::<B, M>(&run.model, run.step)?;
        let mut progress = Progress::start(
            self.observer.borrow_mut(),
            log,
            &self.run_name(),
            run.step,
            span.total,
        );
        let mut batches = Batches::new(train.len(), cfg, span);
        while run.step < span.total {
            let (validating, record) = self.due(run.step, span.total, val.is_some());
            let (trained, stepped) = self.train_step::<B, M, S>(
                run,
                &mut batches,
                train,
                record,
                &mut progress,
                device,
            )?;
            run = trained;
            progress.observer.stepped(run.step);
            let images_per_s = record.then(|| progress.images_per_s(run.step, cfg.batch_size));
            let validated = match val {
                Some(val) if validating => {
                    self.validation_step::<B, M, S>(&mut run, val, device)?
                }
                _ => Validated::default(),
            };
            if record {
                let line = LogLine {
                    step: run.step,
                    epoch: stepped.epoch,
                    loss: Some(run.last_loss),
                    terms: stepped.terms,
                    learning_rate: Some(cfg.learning_rate),
                    val_loss: validated.loss,
                    val_terms: validated.terms,
                    images_per_s,
                };
                progress.record(&line, run.last_loss, run.best_val.map(|(b, _)| b))?;
            }
            if self.checkpoint_due(run.step, validated.new_best, span.total) {
                self.checkpoint::<B, M>(&mut run, &checkpoints, validated.new_best)?;
            }
            if record {
                progress.restart(run.step);
            }
        }
        progress.observer.stopped(true);
        crate::checkpoint::sync_running_states(&run.model);
        Ok(Fitted {
            model: run.model,
            steps: run.step,
            resumed_from,
            last_loss: run.last_loss,
            best_val: run.best_val,
            run_dir: self.run_dir.clone(),
        })
    }

    /// The steps of the run: per epoch (the full batches of `train_len` slices) and in all.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a batch is larger than the training set.
    fn span(&self, train_len: usize) -> Result<Span> {
        let bs = self.config.batch_size;
        if train_len < bs {
            return Err(invalid(
                "batch_size",
                bs,
                "at most the number of training slices",
            ));
        }
        let per_epoch = (train_len / bs) as u64;
        let total = match self.config.duration {
            Duration::Steps(s) => s,
            Duration::Epochs(e) => e * per_epoch,
        };
        Ok(Span { per_epoch, total })
    }

    /// Opens the run: the seed's fresh state, or the state of the newest intact checkpoint (the
    /// observer is warned of a corrupt one skipped on the way).
    fn open_or_resume<B, M>(
        &self,
        model: M,
        checkpoints: &Checkpoints,
        device: &B::Device,
    ) -> Result<Run<B, M>>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
    {
        let cfg = &self.config;
        let optim = AdamConfig::new()
            .with_beta_1(cfg.beta_1)
            .with_beta_2(cfg.beta_2)
            .with_epsilon(cfg.epsilon)
            .init::<B, M>();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(0);
        let fresh = Training {
            model,
            optim,
            rng,
            step: 0,
            best_val: None,
            last_ckpt: None,
            last_loss: f64::NAN,
        };
        let Some((dir, skipped)) = checkpoints.find_resumable()? else {
            return Ok(fresh);
        };
        if let Some(message) = skipped {
            self.observer.borrow_mut().warning(&message);
        }
        self.resume::<B, M>(fresh, dir, device)
    }

    /// Continues `fresh` from the checkpoint in `dir`: checks that its model family and
    /// settings match, then loads its model, optimizer state, RNG, step and best validation.
    fn resume<B, M>(&self, fresh: Run<B, M>, dir: PathBuf, device: &B::Device) -> Result<Run<B, M>>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
    {
        let state = Checkpoints::state(&dir)?;
        let state_path = dir.join(crate::checkpoint::STATE_FILE);
        self.check_resume(&state, fresh.model.family(), &state_path)?;
        let model =
            crate::checkpoint::load_model(fresh.model, &dir.join(crate::checkpoint::MODEL_FILE))?;
        let optim = load_optimizer::<B, M>(fresh.optim, &model, &dir.join(OPTIMIZER_FILE), device)?;
        let rng = state.rng.restore().ok_or_else(|| {
            invalid(
                "rng",
                format!("{:?}", state.rng),
                "a state written by this program",
            )
        })?;
        Ok(Training {
            model,
            optim,
            rng,
            step: state.step,
            best_val: state.best_val,
            last_ckpt: Some(dir),
            last_loss: fresh.last_loss,
        })
    }

    /// Writes the run's `train_config.json` and opens its logs for a run continuing after
    /// `step` (0: a fresh run), with no validation columns for `model`'s logged scalars.
    fn open_logs<B, M>(&self, model: &M, step: u64) -> Result<RunLog>
    where
        B: AutodiffBackend,
        M: Model<B>,
    {
        let cfg_path = self.run_dir.join("train_config.json");
        crate::checkpoint::write_file(
            &cfg_path,
            &serde_json::to_vec_pretty(&self.config).map_err(json(&cfg_path))?,
        )?;
        let scalars = model
            .logged_scalars(step)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        RunLog::open(&self.run_dir, step, scalars)
    }

    /// The run's name for the observer: the run directory's last component.
    fn run_name(&self) -> String {
        self.run_dir.file_name().map_or_else(
            || self.run_dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Whether the step after `step` steps validates (every `val_every` steps and at the last
    /// step, when there is a validation set) and whether it writes a log record (at every
    /// validation, every `log_every` steps and at the last step).
    fn due(&self, step: u64, total: u64, has_val: bool) -> (bool, bool) {
        let cfg = &self.config;
        let validating = has_val
            && cfg.val_every > 0
            && ((step + 1).is_multiple_of(cfg.val_every) || step + 1 == total);
        let record = validating || (step + 1).is_multiple_of(cfg.log_every) || step + 1 == total;
        (validating, record)
    }

    /// One training step: the batch of `run.step` in its epoch's order, the loss (through the
    /// NaN guard), the terms of the step's log record when `record`, and the Adam update.
    fn train_step<B, M, S>(
        &self,
        mut run: Run<B, M>,
        batches: &mut Batches,
        train: &S,
        record: bool,
        progress: &mut Progress<'_>,
        device: &B::Device,
    ) -> Result<(Run<B, M>, Stepped)>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
        S: SliceSource + ?Sized,
    {
        let (epoch, indices) = batches.at(run.step);
        let batch = load_batch::<B, S>(train, indices, device)?;
        let out = run.model.loss(&batch, run.step, &mut run.rng);
        let loss = f64::from(read_f32(out.loss.clone(), "loss")?[0]);
        if !loss.is_finite() {
            progress.observer.stopped(false);
            return Err(Error::NonFiniteLoss {
                step: run.step,
                loss,
                last_checkpoint: run.last_ckpt,
            });
        }
        let terms = if record {
            logged_terms::<B, M>(&run.model, &out.terms, run.step)?
        } else {
            Vec::new()
        };
        let grads = GradientsParams::from_grads(out.loss.backward(), &run.model);
        run.model = run.optim.step(self.config.learning_rate, run.model, grads);
        run.step += 1;
        run.last_loss = loss;
        Ok((run, Stepped { epoch, terms }))
    }

    /// Validates the model after `run.step` steps and keeps a finite validation loss lower
    /// than every earlier one as the best.
    fn validation_step<B, M, S>(
        &self,
        run: &mut Run<B, M>,
        val: &S,
        device: &B::Device,
    ) -> Result<Validated>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
        M::InnerModule: Model<B::InnerBackend>,
        S: SliceSource + ?Sized,
    {
        let (loss, terms) = self.validate::<B, M, S>(&run.model, val, run.step, device)?;
        let new_best = loss.is_finite() && run.best_val.is_none_or(|(b, _)| loss < b);
        if new_best {
            run.best_val = Some((loss, run.step));
        }
        Ok(Validated {
            loss: Some(loss),
            terms,
            new_best,
        })
    }

    /// Whether a checkpoint is written after `step` steps: every `checkpoint_every` steps, at a
    /// new best validation and at the last step.
    fn checkpoint_due(&self, step: u64, new_best: bool, total: u64) -> bool {
        let every = self.config.checkpoint_every;
        let periodic = every > 0 && step.is_multiple_of(every);
        periodic || new_best || step == total
    }

    /// Writes a checkpoint of `run` (model, optimizer state, run state), points `last` (and
    /// `best` at a new best) at it and prunes the older step checkpoints.
    fn checkpoint<B, M>(
        &self,
        run: &mut Run<B, M>,
        checkpoints: &Checkpoints,
        new_best: bool,
    ) -> Result<()>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
    {
        let state = RunState {
            family: run.model.family().to_string(),
            step: run.step,
            rng: RngState::capture(&run.rng),
            best_val: run.best_val,
            settings: self.config.resume_settings(),
        };
        let opt_bytes = self.optimizer_bytes::<B, M>(&run.optim, &run.model)?;
        let model_bytes = model_to_bytes(&run.model, &self.run_dir)?;
        let dir = checkpoints.write(run.step, &model_bytes, &opt_bytes, &state)?;
        if new_best {
            checkpoints.point(Which::Best, &dir, run.step)?;
        }
        checkpoints.point(Which::Last, &dir, run.step)?;
        checkpoints.prune(self.config.keep_checkpoints)?;
        run.last_ckpt = Some(dir);
        Ok(())
    }

    /// The bytes of `optim`'s state for a checkpoint, its parameters keyed by their position
    /// in `model`, as checkpoints store them.
    fn optimizer_bytes<B, M>(&self, optim: &Adam<B, M>, model: &M) -> Result<Vec<u8>>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
    {
        let ids = param_ids::<B, M>(model);
        let record = remap_ids(optim.to_record(), |id| {
            ids.iter()
                .position(|x| *x == id)
                .map(|p| ParamId::from(p as u64))
        })
        .ok_or_else(|| Error::OptimizerState {
            path: self.run_dir.clone(),
            message: "optimizer state names a parameter the model does not have".into(),
        })?;
        NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
            .record(record, ())
            .map_err(|e| Error::OptimizerState {
                path: self.run_dir.clone(),
                message: e.to_string(),
            })
    }

    /// Mean validation loss and loss terms over the slices of [`validation_indices`], with
    /// the model in evaluation mode and a noise stream of its own (validation never moves the
    /// training RNG).
    fn validate<B, M, S>(
        &self,
        model: &M,
        val: &S,
        step: u64,
        device: &B::Device,
    ) -> Result<(f64, Vec<(String, f64)>)>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
        M::InnerModule: Model<B::InnerBackend>,
        S: SliceSource + ?Sized,
    {
        let inner = model.valid();
        let bs = self.config.batch_size;
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(u64::MAX);
        let (mut sum, mut count) = (0.0, 0usize);
        let mut terms: Vec<(String, f64)> = Vec::new();
        for indices in validation_indices(val.len(), bs, self.config.val_batches).chunks(bs) {
            let batch = load_batch::<B::InnerBackend, S>(val, indices, device)?;
            let out = inner.loss(&batch, step, &mut rng);
            sum += f64::from(read_f32(out.loss, "val_loss")?[0]) * indices.len() as f64;
            count += indices.len();
            for (k, (name, t)) in out.terms.into_iter().enumerate() {
                let v: f64 = read_f32(t, name)?.into_iter().map(f64::from).sum();
                match terms.get_mut(k) {
                    Some((_, s)) => *s += v,
                    None => terms.push((name.to_string(), v)),
                }
            }
        }
        if count == 0 {
            return Ok((f64::NAN, Vec::new()));
        }
        let n = count as f64;
        Ok((
            sum / n,
            terms.into_iter().map(|(name, s)| (name, s / n)).collect(),
        ))
    }

    fn check_resume(&self, state: &RunState, family: &str, path: &Path) -> Result<()> {
        if state.family != family {
            return Err(Error::ResumeMismatch {
                path: path.to_path_buf(),
                key: "model family",
                saved: state.family.clone(),
                current: family.to_string(),
            });
        }
        let now = self.config.resume_settings();
        for key in [
            "learning_rate",
            "beta_1",
            "beta_2",
            "epsilon",
            "batch_size",
            "seed",
        ] {
            if state.settings.get(key) != now.get(key) {
                return Err(Error::ResumeMismatch {
                    path: path.to_path_buf(),
                    key,
                    saved: state
                        .settings
                        .get(key)
                        .map_or("nothing".into(), |v| v.to_string()),
                    current: now.get(key).map_or("nothing".into(), |v| v.to_string()),
                });
            }
        }
        Ok(())
    }
}
/// The optimizer of [`Trainer::fit`].
type Adam<B, M> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::Adam, M, B>;

/// The steps of a run.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// Steps per epoch: the full batches of the training set.
    per_epoch: u64,
    /// Steps of the whole run.
    total: u64,
}

/// A run in training: the model with [`Trainer::fit`]'s optimizer and the state around them.
type Run<B, M> = Training<M, Adam<B, M>>;

/// What [`Trainer::fit`] carries from one step to the next; a checkpoint saves all of it but
/// `last_ckpt` and `last_loss`.
struct Training<M, O> {
    model: M,
    optim: O,
    /// The training RNG (the model's noise; validation has its own).
    rng: ChaCha8Rng,
    /// Steps completed.
    step: u64,
    /// Best validation loss and its step.
    best_val: Option<(f64, u64)>,
    /// The newest checkpoint written or resumed from.
    last_ckpt: Option<PathBuf>,
    /// Loss of the last step (NaN before the first).
    last_loss: f64,
}

/// What a training step leaves for its log record.
struct Stepped {
    /// The epoch (0-based) the step belonged to.
    epoch: u64,
    /// Batch means of the loss terms and the model's logged scalars (empty unless recorded).
    terms: Vec<(String, f64)>,
}

/// The result of a validation step (none: the step did not validate).
#[derive(Default)]
struct Validated {
    loss: Option<f64>,
    terms: Vec<(String, f64)>,
    /// Whether `loss` is the best so far.
    new_best: bool,
}

/// The batches of training: each epoch's shuffled order of the training slices, drawn when
/// the epoch starts from the seed and the epoch alone (so a resumed run draws the same).
struct Batches {
    len: usize,
    batch_size: usize,
    seed: u64,
    per_epoch: u64,
    /// The epoch whose order is drawn, and the order.
    order: Option<(u64, Vec<usize>)>,
}

impl Batches {
    fn new(len: usize, cfg: &TrainConfig, span: Span) -> Self {
        Self {
            len,
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            per_epoch: span.per_epoch,
            order: None,
        }
    }

    /// The epoch of the step after `step` steps and the slice indices of its batch.
    fn at(&mut self, step: u64) -> (u64, &[usize]) {
        let epoch = step / self.per_epoch;
        let pos = (step % self.per_epoch) as usize;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.order = Some((epoch, epoch_order(self.len, self.seed, epoch)));
        }
        let order = self.order.as_ref().map(|(_, o)| o).expect("set above");
        (
            epoch,
            &order[pos * self.batch_size..(pos + 1) * self.batch_size],
        )
    }
}

/// What a run reports while it trains: its observer, its logs and the clocks of its speed.
struct Progress<'a> {
    observer: std::cell::RefMut<'a, Box<dyn TrainObserver>>,
    log: RunLog,
    /// Steps of the whole run.
    total: u64,
    /// When training (or its resume) started, and at which step.
    started: (Instant, u64),
    /// When the last record was written (or training started), and at which step.
    since_record: (Instant, u64),
}

impl<'a> Progress<'a> {
    /// Tells `observer` that the run named `name` starts after `step` of `total` steps (fresh,
    /// resumed or already finished) and starts the clocks.
    fn start(
        mut observer: std::cell::RefMut<'a, Box<dyn TrainObserver>>,
        log: RunLog,
        name: &str,
        step: u64,
        total: u64,
    ) -> Self {
        let start = match step {
            0 => TrainStart::Fresh,
            s if s >= total => TrainStart::Finished(s),
            s => TrainStart::Resumed(s),
        };
        observer.started(name, start, total);
        let started = (Instant::now(), step);
        Self {
            observer,
            log,
            total,
            started,
            since_record: (Instant::now(), step),
        }
    }

    /// Training images per second from the last record to `step` (asked before validating, so
    /// validation time is excluded).
    fn images_per_s(&self, step: u64, batch_size: usize) -> f64 {
        let (t0, s0) = self.since_record;
        ((step - s0) as f64 * batch_size as f64) / t0.elapsed().as_secs_f64().max(1e-9)
    }

    /// Reports the logged step of `line` to the observer (with the time left at the pace since
    /// the start), then appends `line` to both logs.
    fn record(&mut self, line: &LogLine, loss: f64, best_val: Option<f64>) -> Result<()> {
        let (t0, s0) = self.started;
        let per_step = t0.elapsed().as_secs_f64() / (line.step - s0).max(1) as f64;
        self.observer.logged(&StepReport {
            step: line.step,
            total: self.total,
            loss,
            images_per_s: line.images_per_s.unwrap_or_default(),
            val_loss: line.val_loss,
            best_val,
            seconds_left: per_step * (self.total - line.step) as f64,
        });
        self.log.append(line)
    }

    /// Restarts the speed clock after the record of `step`.
    fn restart(&mut self, step: u64) {
        self.since_record = (Instant::now(), step);
    }
}

/// The batch means of a step's loss `terms`, then `model`'s logged scalars at `step`.
fn logged_terms<B, M>(
    model: &M,
    terms: &[(&'static str, Tensor<B, 1>)],
    step: u64,
) -> Result<Vec<(String, f64)>>
where
    B: AutodiffBackend,
    M: Model<B>,
{
    let mut terms = terms
        .iter()
        .map(|(n, t)| read_f32(t.clone().mean(), n).map(|v| (n.to_string(), f64::from(v[0]))))
        .collect::<Result<Vec<_>>>()?;
    terms.extend(
        model
            .logged_scalars(step)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v)),
    );
    Ok(terms)
}

/// `optim` with the checkpointed state of `path`, whose parameters are keyed by their
/// position in `model`.
fn load_optimizer<B, M>(
    optim: Adam<B, M>,
    model: &M,
    path: &Path,
    device: &B::Device,
) -> Result<Adam<B, M>>
where
    B: AutodiffBackend,
    M: Model<B> + AutodiffModule<B>,
{
    let bytes = std::fs::read(path).map_err(io(path))?;
    let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
        .load::<<Adam<B, M> as Optimizer<M, B>>::Record>(bytes, device)
        .map_err(|e| Error::OptimizerState {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let ids = param_ids::<B, M>(model);
    let record =
        remap_ids(record, |old| ids.get(old.val() as usize).copied()).ok_or_else(|| {
            Error::OptimizerState {
                path: path.to_path_buf(),
                message: "parameter positions do not fit the model".into(),
            }
        })?;
    Ok(optim.load_record(record))
}

/// The validation slices of a validation: all `len` slices when `val_batches` is 0 or covers
/// them, else `val_batches · batch_size` slices spread evenly over the set (slice
/// `⌊i · len / k⌋` for `i < k`), so that a short validation still sees every subject.
pub fn validation_indices(len: usize, batch_size: usize, val_batches: usize) -> Vec<usize> {
    let k = val_batches.saturating_mul(batch_size);
    if val_batches == 0 || k >= len {
        return (0..len).collect();
    }
    (0..k).map(|i| i * len / k).collect()
}

/// Rewrites the parameter ids of an optimizer record; `None` when an id has no image.
fn remap_ids<R, V>(record: R, mut f: impl FnMut(ParamId) -> Option<ParamId>) -> Option<R>
where
    R: IntoIterator<Item = (ParamId, V)> + FromIterator<(ParamId, V)>,
{
    record
        .into_iter()
        .map(|(id, v)| f(id).map(|n| (n, v)))
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().collect())
}

/// The two logs of a run directory, open for appending.
struct RunLog {
    jsonl: (File, PathBuf),
    csv: (File, PathBuf),
    /// The term columns of `log.csv`; `None` until the header is written.
    columns: Option<Columns>,
    /// Names of the model's logged scalars (no validation column for them).
    scalars: Vec<String>,
}

/// The variable columns of `log.csv`: the terms of the first record, and the validation
/// columns (its loss terms, without the model's logged scalars).
#[derive(Debug, Clone, PartialEq)]
struct Columns {
    terms: Vec<String>,
    val: Vec<String>,
}

impl Columns {
    fn of(line: &LogLine, scalars: &[String]) -> Self {
        let terms: Vec<String> = line.terms.iter().map(|(n, _)| n.clone()).collect();
        let val = terms
            .iter()
            .filter(|t| !scalars.contains(t))
            .cloned()
            .collect();
        Self { terms, val }
    }
}

impl RunLog {
    /// Opens the logs of `run_dir` for a run continuing after `step` (0: a fresh run). Lines
    /// of records past `step` and incomplete lines (a torn last line) are dropped, the others
    /// kept byte for byte; both files are rewritten atomically. `log.csv` is rebuilt from the
    /// records of `log.jsonl` when its header does not fit them (or it is missing).
    fn open(run_dir: &Path, step: u64, scalars: Vec<String>) -> Result<Self> {
        let jsonl_path = run_dir.join(LOG_FILE);
        let csv_path = run_dir.join(CSV_FILE);
        let read = |path: &Path| -> Result<String> {
            if step == 0 || !path.exists() {
                return Ok(String::new());
            }
            std::fs::read_to_string(path).map_err(io(path))
        };
        let (jsonl_text, csv_text) = (read(&jsonl_path)?, read(&csv_path)?);
        let (mut jsonl, mut kept) = (String::new(), Vec::new());
        for l in complete_lines(&jsonl_text) {
            if let Ok(line) = serde_json::from_str::<LogLine>(l)
                && line.step <= step
            {
                jsonl.push_str(l);
                jsonl.push('\n');
                kept.push(line);
            }
        }
        crate::checkpoint::write_file(&jsonl_path, jsonl.as_bytes())?;

        let columns: Option<Columns> = kept.first().map(|l| Columns::of(l, &scalars));
        let mut csv = String::new();
        if let Some(columns) = &columns {
            csv.push_str(&csv_header(columns));
            match kept_csv_rows(&csv_text, &header_fields(columns), step) {
                Some(rows) => csv.push_str(&rows),
                None => {
                    for line in &kept {
                        csv.push_str(&csv_row(columns, line));
                    }
                }
            }
        }
        crate::checkpoint::write_file(&csv_path, csv.as_bytes())?;
        let append = |path: &Path| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io(path))
        };
        Ok(Self {
            jsonl: (append(&jsonl_path)?, jsonl_path),
            csv: (append(&csv_path)?, csv_path),
            columns,
            scalars,
        })
    }

    /// Appends one record to both logs (each a single write of whole lines).
    fn append(&mut self, line: &LogLine) -> Result<()> {
        let (file, path) = &mut self.jsonl;
        let mut text = serde_json::to_string(line).map_err(json(&*path))?;
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io(&*path))?;
        let mut text = String::new();
        let scalars = &self.scalars;
        let columns = self.columns.get_or_insert_with(|| {
            let columns = Columns::of(line, scalars);
            text.push_str(&csv_header(&columns));
            columns
        });
        text.push_str(&csv_row(columns, line));
        let (file, path) = &mut self.csv;
        file.write_all(text.as_bytes()).map_err(io(&*path))
    }
}

/// The lines of `text` that end with a line break (a torn last line does not), without it.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// One CSV record ending in `\n`, written by the `csv` crate (a field holding a comma, a quote
/// or a line break is quoted).
fn csv_record(fields: &[String]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // into memory: neither the write nor the flush can fail
    let bytes = match writer.write_record(fields) {
        Ok(()) => writer.into_inner().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The rows of an earlier `log.csv` to keep, each rewritten as it was: the complete rows of
/// `header`'s width up to `step`; `None` when its header is not `header` (the columns changed,
/// or it is empty), so the caller rebuilds it from `log.jsonl`.
fn kept_csv_rows(text: &str, header: &[String], step: u64) -> Option<String> {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)]; // a torn last row is dropped
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(complete.as_bytes());
    let mut records = reader.records();
    let first = records.next()?.ok()?;
    if !first.iter().eq(header.iter().map(String::as_str)) {
        return None;
    }
    let mut rows = String::new();
    for record in records.flatten() {
        let step_of = record.get(0).and_then(|s| s.parse::<u64>().ok());
        if record.len() == header.len() && step_of.is_some_and(|s| s <= step) {
            let fields: Vec<String> = record.iter().map(str::to_owned).collect();
            rows.push_str(&csv_record(&fields));
        }
    }
    Some(rows)
}

fn csv_header(columns: &Columns) -> String {
    csv_record(&header_fields(columns))
}

fn header_fields(columns: &Columns) -> Vec<String> {
    let mut fields = vec!["step".to_string(), "epoch".into(), "loss".into()];
    fields.extend(columns.terms.iter().cloned());
    fields.extend([
        "learning_rate".into(),
        "images_per_s".into(),
        "val_loss".into(),
    ]);
    fields.extend(columns.val.iter().map(|c| format!("val_{c}")));
    fields
}

/// A CSV row; a term the header does not name is left out (it stays in `log.jsonl`).
fn csv_row(columns: &Columns, line: &LogLine) -> String {
    let num = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut fields = vec![
        line.step.to_string(),
        line.epoch.to_string(),
        num(line.loss),
    ];
    let find = |terms: &[(String, f64)], c: &String| {
        num(terms.iter().find(|(n, _)| n == c).map(|(_, v)| *v))
    };
    fields.extend(columns.terms.iter().map(|c| find(&line.terms, c)));
    fields.extend([
        num(line.learning_rate),
        num(line.images_per_s),
        num(line.val_loss),
    ]);
    fields.extend(columns.val.iter().map(|c| find(&line.val_terms, c)));
    csv_record(&fields)
}

/// Reads `log.jsonl` of a run directory.
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] (with the path) on a malformed line.
pub fn read_log(run_dir: &Path) -> Result<Vec<LogLine>> {
    let path = run_dir.join(LOG_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(json(&path)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_follow_the_header_and_leave_absent_values_empty() {
        let columns = Columns {
            terms: vec!["rec_err".to_string(), "a,b".to_string()],
            val: vec!["rec_err".to_string()],
        };
        assert_eq!(
            csv_header(&columns),
            "step,epoch,loss,rec_err,\"a,b\",learning_rate,images_per_s,val_loss,val_rec_err\n"
        );
        let line = LogLine {
            step: 7,
            epoch: 1,
            loss: Some(0.5),
            // a term the header does not name is left out; a missing one is empty
            terms: vec![("other".into(), 9.0), ("rec_err".into(), 0.25)],
            learning_rate: Some(1e-4),
            val_loss: Some(0.75),
            val_terms: vec![("rec_err".into(), 0.5)],
            images_per_s: Some(12.5),
        };
        assert_eq!(
            csv_row(&columns, &line),
            "7,1,0.5,0.25,,0.0001,12.5,0.75,0.5\n"
        );
        assert_eq!(csv_record(&["say \"hi\"".into()]), "\"say \"\"hi\"\"\"\n");
    }

    #[test]
    fn validation_spreads_a_limited_budget_over_the_set() {
        assert_eq!(validation_indices(5, 4, 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(validation_indices(5, 4, 2), vec![0, 1, 2, 3, 4]);
        assert_eq!(validation_indices(10, 2, 2), vec![0, 2, 5, 7]);
        assert_eq!(validation_indices(0, 2, 1), Vec::<usize>::new());
    }

    #[test]
    fn an_earlier_csv_keeps_its_complete_rows_up_to_the_step() {
        let columns = Columns {
            terms: vec!["a,b".to_string()],
            val: vec![],
        };
        let header = header_fields(&columns);
        let text = format!(
            "{}1,0,0.5,0.25,0.001,10,\n2,0,0.4,0.2,0.001,11,0.3\n3,0,0.3,0.1,0.001,12,\n4,0,0.2",
            csv_header(&columns)
        );
        // the quoted header matches; rows past step 2 and the torn last row are dropped
        assert_eq!(
            kept_csv_rows(&text, &header, 2).as_deref(),
            Some("1,0,0.5,0.25,0.001,10,\n2,0,0.4,0.2,0.001,11,0.3\n")
        );
        // a short row (another width) is dropped too
        let short = format!("{}1,0,0.5\n", csv_header(&columns));
        assert_eq!(kept_csv_rows(&short, &header, 9).as_deref(), Some(""));
        // another header: rebuild from log.jsonl
        let other = Columns {
            terms: vec!["a".to_string()],
            val: vec![],
        };
        assert_eq!(kept_csv_rows(&text, &header_fields(&other), 2), None);
        assert_eq!(kept_csv_rows("", &header, 2), None);
    }

    #[test]
    fn only_complete_lines_are_kept() {
        let lines: Vec<&str> = complete_lines("a\r\nb\n\nc").collect();
        assert_eq!(lines, ["a", "b", ""]);
    }
}
