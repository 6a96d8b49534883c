//! The training loop: Adam, seeded shuffling, validation at an interval, atomic checkpoints
//! (every N steps, best, last), exact resume, a NaN/Inf guard, a progress bar and a JSONL log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, ParamId};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    Checkpoints, OPTIMIZER_FILE, RngState, RunState, Which, model_to_bytes, param_ids,
};
use crate::data::{SliceSource, epoch_order, load_batch};
use crate::error::{Error, Result, io, json};
use crate::model::{Model, read_f32};

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
    /// At most this many validation batches per validation (0: all).
    pub val_batches: usize,
    /// Write a checkpoint every this many steps (0: only at the end and at new best).
    pub checkpoint_every: u64,
    /// Keep the newest this many step checkpoints (`last` and `best` are always kept).
    pub keep_checkpoints: usize,
    /// Log (JSONL) every this many steps.
    pub log_every: u64,
    /// Show a progress bar on the terminal.
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
    Error::InvalidConfig {
        key,
        value: value.to_string(),
        allowed,
    }
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

/// One logged line of `log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// Steps completed.
    pub step: u64,
    /// The epoch (0-based) the step belonged to.
    pub epoch: u64,
    /// Training loss of the step (absent on validation lines).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    /// Batch means of the loss terms of the step.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub terms: Vec<(String, f64)>,
    /// Validation loss (validation lines only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    /// Training throughput since the previous log line.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub images_per_s: Option<f64>,
}

/// Runs training in a run directory (`checkpoints/`, `log.jsonl`, `train_config.json`).
///
/// When the directory already holds a `last` checkpoint, training resumes from it exactly
/// (model, optimizer state, step counter, RNG state); the duration may be extended, the other
/// resume-relevant settings must match.
#[derive(Debug, Clone)]
pub struct Trainer {
    config: TrainConfig,
    run_dir: PathBuf,
}

const LOG_FILE: &str = "log.jsonl";

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
        })
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
        mut model: M,
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
        let bs = cfg.batch_size;
        if train.len() < bs {
            return Err(invalid(
                "batch_size",
                bs,
                "at most the number of training slices",
            ));
        }
        let per_epoch = (train.len() / bs) as u64;
        let total = match cfg.duration {
            Duration::Steps(s) => s,
            Duration::Epochs(e) => e * per_epoch,
        };
        std::fs::create_dir_all(&self.run_dir).map_err(io(&self.run_dir))?;
        let ckpts = self.checkpoints();
        let mut optim = AdamConfig::new()
            .with_beta_1(cfg.beta_1)
            .with_beta_2(cfg.beta_2)
            .with_epsilon(cfg.epsilon)
            .init::<B, M>();
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();

        // Fresh or resumed state.
        let mut rng = {
            let mut r = ChaCha8Rng::seed_from_u64(cfg.seed);
            r.set_stream(0);
            r
        };
        let mut step = 0u64;
        let mut best_val: Option<(f64, u64)> = None;
        let mut last_ckpt: Option<PathBuf> = None;
        if let Some(dir) = ckpts.find(Which::Last)? {
            let state = Checkpoints::state(&dir)?;
            let state_path = dir.join(crate::checkpoint::STATE_FILE);
            self.check_resume(&state, model.family(), &state_path)?;
            model = crate::checkpoint::load_model(model, &dir.join(crate::checkpoint::MODEL_FILE))?;
            let opt_path = dir.join(OPTIMIZER_FILE);
            let bytes = std::fs::read(&opt_path).map_err(io(&opt_path))?;
            let record = recorder
                .load::<<burn::optim::adaptor::OptimizerAdaptor<burn::optim::Adam, M, B> as Optimizer<M, B>>::Record>(bytes, device)
                .map_err(|e| Error::OptimizerState {
                    path: opt_path.clone(),
                    message: e.to_string(),
                })?;
            let ids = param_ids::<B, M>(&model);
            let record =
                remap_ids(record, |old| ids.get(old.val() as usize).copied()).ok_or_else(|| {
                    Error::OptimizerState {
                        path: opt_path.clone(),
                        message: "parameter positions do not fit the model".into(),
                    }
                })?;
            optim = optim.load_record(record);
            rng = state.rng.restore().ok_or_else(|| Error::InvalidConfig {
                key: "rng",
                value: format!("{:?}", state.rng),
                allowed: "a state written by this program",
            })?;
            step = state.step;
            best_val = state.best_val;
            last_ckpt = Some(dir);
            truncate_log(&self.run_dir.join(LOG_FILE), step)?;
        }
        let resumed_from = step;
        let cfg_path = self.run_dir.join("train_config.json");
        crate::checkpoint::write_atomic(
            &cfg_path,
            &serde_json::to_vec_pretty(cfg).map_err(json(&cfg_path))?,
        )?;

        let bar = if cfg.progress {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} {bar:30} {pos}/{len} steps {per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_position(step);
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let log_path = self.run_dir.join(LOG_FILE);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;

        let mut order: Option<(u64, Vec<usize>)> = None;
        let mut last_loss = f64::NAN;
        let mut clock = (Instant::now(), step);
        while step < total {
            let epoch = step / per_epoch;
            let pos = (step % per_epoch) as usize;
            if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                order = Some((epoch, epoch_order(train.len(), cfg.seed, epoch)));
            }
            let indices =
                &order.as_ref().map(|(_, o)| o).expect("set above")[pos * bs..(pos + 1) * bs];
            let batch = load_batch::<B, S>(train, indices, device)?;
            let out = model.loss(&batch, step, &mut rng);
            let loss = f64::from(read_f32(out.loss.clone(), "loss")?[0]);
            if !loss.is_finite() {
                bar.abandon();
                return Err(Error::NonFiniteLoss {
                    step,
                    loss,
                    last_checkpoint: last_ckpt,
                });
            }
            let logging = (step + 1).is_multiple_of(cfg.log_every) || step + 1 == total;
            let terms = if logging {
                out.terms
                    .iter()
                    .map(|(n, t)| {
                        read_f32(t.clone().mean(), n).map(|v| (n.to_string(), f64::from(v[0])))
                    })
                    .collect::<Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            model = optim.step(cfg.learning_rate, model, grads);
            step += 1;
            last_loss = loss;
            bar.set_position(step);

            if logging {
                let (t0, s0) = clock;
                let secs = t0.elapsed().as_secs_f64();
                let ips = ((step - s0) as f64 * bs as f64) / secs.max(1e-9);
                clock = (Instant::now(), step);
                bar.set_message(format!("loss {loss:.4} {ips:.1} img/s"));
                write_log(
                    &mut log,
                    &log_path,
                    &LogLine {
                        step,
                        epoch,
                        loss: Some(loss),
                        terms,
                        val_loss: None,
                        images_per_s: Some(ips),
                    },
                )?;
            }

            let mut new_best = false;
            if let Some(val) = val
                && cfg.val_every > 0
                && (step.is_multiple_of(cfg.val_every) || step == total)
            {
                let v = self.validate::<B, M, S>(&model, val, step, device)?;
                write_log(
                    &mut log,
                    &log_path,
                    &LogLine {
                        step,
                        epoch,
                        loss: None,
                        terms: Vec::new(),
                        val_loss: Some(v),
                        images_per_s: None,
                    },
                )?;
                if v.is_finite() && best_val.is_none_or(|(b, _)| v < b) {
                    best_val = Some((v, step));
                    new_best = true;
                }
            }
            let periodic = cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every);
            if periodic || new_best || step == total {
                let state = RunState {
                    family: model.family().to_string(),
                    step,
                    rng: RngState::capture(&rng),
                    best_val,
                    settings: cfg.resume_settings(),
                };
                let ids = param_ids::<B, M>(&model);
                let record = remap_ids(optim.to_record(), |id| {
                    ids.iter()
                        .position(|x| *x == id)
                        .map(|p| ParamId::from(p as u64))
                })
                .ok_or_else(|| Error::OptimizerState {
                    path: self.run_dir.clone(),
                    message: "optimizer state names a parameter the model does not have".into(),
                })?;
                let opt_bytes = recorder
                    .record(record, ())
                    .map_err(|e| Error::OptimizerState {
                        path: self.run_dir.clone(),
                        message: e.to_string(),
                    })?;
                let model_bytes = model_to_bytes(&model, &self.run_dir)?;
                let dir = ckpts.write(step, &model_bytes, &opt_bytes, &state)?;
                if new_best {
                    ckpts.point(Which::Best, &dir, step)?;
                }
                ckpts.point(Which::Last, &dir, step)?;
                ckpts.prune(cfg.keep_checkpoints)?;
                last_ckpt = Some(dir);
            }
        }
        bar.finish();
        crate::checkpoint::sync_running_states(&model);
        Ok(Fitted {
            model,
            steps: step,
            resumed_from,
            last_loss,
            best_val,
            run_dir: self.run_dir.clone(),
        })
    }

    /// Mean validation loss over the first `val_batches` batches of `val` in order, with the
    /// model in evaluation mode and a noise stream of its own (validation never moves the
    /// training RNG).
    fn validate<B, M, S>(&self, model: &M, val: &S, step: u64, device: &B::Device) -> Result<f64>
    where
        B: AutodiffBackend,
        M: Model<B> + AutodiffModule<B>,
        M::InnerModule: Model<B::InnerBackend>,
        S: SliceSource + ?Sized,
    {
        let inner = model.valid();
        let bs = self.config.batch_size;
        let n_batches = val.len().div_ceil(bs);
        let n_batches = if self.config.val_batches == 0 {
            n_batches
        } else {
            n_batches.min(self.config.val_batches)
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(u64::MAX);
        let (mut sum, mut count) = (0.0, 0usize);
        for b in 0..n_batches {
            let indices: Vec<usize> = (b * bs..((b + 1) * bs).min(val.len())).collect();
            let batch = load_batch::<B::InnerBackend, S>(val, &indices, device)?;
            let out = inner.loss(&batch, step, &mut rng);
            sum += f64::from(read_f32(out.loss, "val_loss")?[0]) * indices.len() as f64;
            count += indices.len();
        }
        Ok(if count == 0 {
            f64::NAN
        } else {
            sum / count as f64
        })
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

fn write_log(file: &mut std::fs::File, path: &Path, line: &LogLine) -> Result<()> {
    let mut s = serde_json::to_string(line).map_err(json(path))?;
    s.push('\n');
    file.write_all(s.as_bytes()).map_err(io(path))
}

/// Drops log lines written after `step` (by a run that died after its last checkpoint).
fn truncate_log(path: &Path, step: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<LogLine>(l).is_ok_and(|line| line.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::checkpoint::write_atomic(path, kept.as_bytes())
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
