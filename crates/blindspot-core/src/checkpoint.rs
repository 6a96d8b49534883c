//! Model files (safetensors, through burn-store) and training checkpoints, all written
//! atomically: a temporary file or directory in the same directory, then a rename.
//!
//! A run directory holds `checkpoints/step-NNNNNNNNNN/` directories, each with
//! `model.safetensors`, `optimizer.mpk` and `state.json`, plus the pointers `last.json` and
//! `best.json`. A checkpoint directory is complete once it has its final name.
//!
//! Each checkpoint directory also holds `checksums.json`, the CRC-32 of its three files,
//! written with them and checked on every load ([`Checkpoints::verify`]): a flipped bit in a
//! weight is refused, never used. Training resumes from the next older intact checkpoint
//! with a warning; loading for inference fails and names that older checkpoint.

use std::path::{Path, PathBuf};

use burn::module::{Module, ParamId};
use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io, json};

/// Writes `bytes` to `path` through the workspace's atomic writer ([`blindspot_atomic`]:
/// a temporary file beside `path`, synced, then renamed over it).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    blindspot_atomic::write_atomic(path, |w| w.write_all(bytes)).map_err(io(path))
}

/// Folds pending BatchNorm running-statistics updates into the stored values. burn 0.21 keeps
/// the newest update of a `RunningState` per thread until a sync, and module visitors (which
/// the safetensors store uses) read the synced value only; a record conversion syncs, and the
/// state is shared between clones.
pub fn sync_running_states<B: Backend, M: Module<B>>(model: &M) {
    let _ = model.clone().into_record();
}

/// The module's parameters as safetensors bytes.
fn model_bytes<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<Vec<u8>> {
    sync_running_states(model);
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    store.get_bytes().map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Saves a module's parameters (BatchNorm running statistics included) to a safetensors file,
/// atomically.
///
/// # Errors
/// [`Error::Safetensors`] or [`Error::Io`].
pub fn save_model<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<()> {
    let bytes = model_bytes(model, path)?;
    write_file(path, &bytes)
}

/// Loads a safetensors file into a module of the same architecture. Every tensor must be
/// present with its shape.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Safetensors`] when it is corrupt or
/// does not fit the module (missing tensors, shape mismatches).
pub fn load_model<B: Backend, M: Module<B>>(mut model: M, path: &Path) -> Result<M> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = model
        .load_from(&mut store)
        .map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let mut parts = Vec::new();
        if !result.errors.is_empty() {
            parts.push(format!(
                "errors: {}",
                result
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if !result.missing.is_empty() {
            parts.push(format!("missing tensors: {:?}", result.missing));
        }
        if !result.unused.is_empty() {
            parts.push(format!(
                "tensors the model does not have: {:?}",
                result.unused
            ));
        }
        return Err(Error::Safetensors {
            path: path.to_path_buf(),
            message: format!("does not fit the model ({})", parts.join(", ")),
        });
    }
    Ok(model)
}

/// The ids of a module's float parameters in visiting order. Ids are not stored in safetensors,
/// so optimizer state is saved keyed by position and mapped back through this list.
pub(crate) fn param_ids<B: Backend, M: Module<B>>(model: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
        ) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// The state of a training run saved with each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    /// Model family (`vae`, `ae`, ...).
    pub family: String,
    /// Steps completed.
    pub step: u64,
    /// The training RNG: seed (hex), stream and word position.
    pub rng: RngState,
    /// Best validation loss so far and the step it was reached at.
    pub best_val: Option<(f64, u64)>,
    /// The resume-relevant settings of the run (learning rate, betas, batch size, seed).
    pub settings: serde_json::Value,
}

/// The position of a ChaCha8 stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// The 32-byte seed, hex.
    pub seed: String,
    /// The stream number.
    pub stream: u64,
    /// The word position (a 68-bit number, as a decimal string).
    pub word_pos: String,
}

impl RngState {
    /// Captures a generator's state.
    pub fn capture(rng: &rand_chacha::ChaCha8Rng) -> Self {
        let seed = rng.get_seed();
        Self {
            seed: seed.iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// Rebuilds the generator, or `None` when the fields are malformed.
    pub fn restore(&self) -> Option<rand_chacha::ChaCha8Rng> {
        use rand::SeedableRng;
        if self.seed.len() != 64 {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(self.seed.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().ok()?);
        Some(rng)
    }
}

/// A pointer file (`last.json`, `best.json`) naming a checkpoint directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pointer {
    dir: String,
    step: u64,
}

/// Which checkpoint of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The newest.
    Last,
    /// The one with the lowest validation loss.
    Best,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Last => "last",
            Which::Best => "best",
        }
    }
}

/// The checkpoints of one run directory.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

/// Files of one checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Optimizer state file of a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.mpk";
/// Run state file of a checkpoint directory.
pub const STATE_FILE: &str = "state.json";
/// The CRC-32 of the other files of a checkpoint directory.
pub const CHECKSUM_FILE: &str = "checksums.json";
/// The files [`CHECKSUM_FILE`] covers.
const CHECKED_FILES: [&str; 3] = [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE];

/// `checksums.json`: file name to CRC-32 (8 hex digits).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checksums {
    crc32: std::collections::BTreeMap<String, String>,
}

fn crc_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

impl Checkpoints {
    /// The checkpoints under `run_dir/checkpoints`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.join("checkpoints"),
        }
    }

    /// The checkpoint directory the pointer `which` names, if any.
    ///
    /// # Errors
    /// [`Error::Json`] when the pointer is corrupt, [`Error::Io`] when it cannot be read.
    pub fn find(&self, which: Which) -> Result<Option<PathBuf>> {
        let p = self.dir.join(format!("{}.json", which.name()));
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let ptr: Pointer = serde_json::from_str(&text).map_err(json(&p))?;
        let d = self.dir.join(&ptr.dir);
        if ptr.dir.contains(['/', '\\']) || !d.join(STATE_FILE).is_file() {
            return Err(Error::Io {
                path: p,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("points at a missing checkpoint directory {}", d.display()),
                ),
            });
        }
        Ok(Some(d))
    }

    /// Like [`Checkpoints::find`] but failing when there is none.
    ///
    /// # Errors
    /// [`Error::NoCheckpoint`] and those of [`Checkpoints::find`].
    pub fn get(&self, which: Which) -> Result<PathBuf> {
        self.find(which)?.ok_or_else(|| Error::NoCheckpoint {
            dir: self.dir.clone(),
            which: which.name(),
        })
    }

    /// Loads the model of checkpoint `which` into `model`, after [`Checkpoints::verify`].
    ///
    /// # Errors
    /// As [`Checkpoints::get`] and [`load_model`]; [`Error::CorruptCheckpoint`] (naming the
    /// next older intact checkpoint, if any) when a file fails its checksum.
    pub fn load_model<B: Backend, M: Module<B>>(&self, model: M, which: Which) -> Result<M> {
        let d = self.get(which)?;
        self.verify_or_advise(&d, "rerun `blindspot train` to resume from it")?;
        load_model(model, &d.join(MODEL_FILE))
    }

    /// Checks the files of checkpoint directory `dir` against its `checksums.json`.
    /// Directories written before checksums existed (no `checksums.json`) pass.
    ///
    /// # Errors
    /// [`Error::CorruptCheckpoint`] (with empty advice) for a missing file or a mismatch;
    /// [`Error::Io`] or [`Error::Json`] for an unreadable `checksums.json`.
    pub fn verify(dir: &Path) -> Result<()> {
        let p = dir.join(CHECKSUM_FILE);
        let text = match std::fs::read(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(io(&p))?,
        };
        let sums: Checksums = serde_json::from_slice(&text).map_err(json(&p))?;
        for file in CHECKED_FILES {
            let path = dir.join(file);
            let corrupt = |why: String| Error::CorruptCheckpoint {
                path: path.clone(),
                why,
                advice: String::new(),
            };
            let Some(want) = sums.crc32.get(file) else {
                return Err(corrupt(format!("{CHECKSUM_FILE} has no checksum for it")));
            };
            let bytes = match std::fs::read(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(corrupt("missing".into()));
                }
                other => other.map_err(io(&path))?,
            };
            let got = crc_hex(&bytes);
            if &got != want {
                return Err(corrupt(format!(
                    "CRC-32 {got}, but {want} was written with it"
                )));
            }
        }
        Ok(())
    }

    /// The newest intact checkpoint directory older than `dir`, with its step.
    pub fn older_intact(&self, dir: &Path) -> Option<(PathBuf, u64)> {
        let mut steps: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                    && p.as_path() < dir
            })
            .collect();
        steps.sort();
        steps.into_iter().rev().find_map(|p| {
            let state = Self::verify(&p).and_then(|()| Self::state(&p)).ok()?;
            Some((p, state.step))
        })
    }

    /// [`Checkpoints::verify`], completing a failure's advice with the next older intact
    /// checkpoint (`then` says what to do with it) or how to retrain.
    fn verify_or_advise(&self, dir: &Path, then: &str) -> Result<()> {
        match Self::verify(dir) {
            Err(Error::CorruptCheckpoint { path, why, .. }) => {
                let advice = match self.older_intact(dir) {
                    Some((older, step)) => format!(
                        "the next older intact checkpoint is {} (step {step}): {then}",
                        older.display()
                    ),
                    None => format!(
                        "no older intact checkpoint: remove {} to train this member again",
                        self.dir.display()
                    ),
                };
                Err(Error::CorruptCheckpoint { path, why, advice })
            }
            other => other,
        }
    }

    /// The newest checkpoint to resume training from: the one `last` points at when intact,
    /// otherwise the next older intact one, with the warning to show (it names the corrupt
    /// file); [`crate::Trainer`] passes it to its observer.
    ///
    /// # Errors
    /// [`Error::CorruptCheckpoint`] when `last` is corrupt and no older checkpoint is intact;
    /// those of [`Checkpoints::find`].
    pub fn find_resumable(&self) -> Result<Option<(PathBuf, Option<String>)>> {
        let Some(last) = self.find(Which::Last)? else {
            return Ok(None);
        };
        match self.verify_or_advise(&last, "training resumes from it") {
            Ok(()) => Ok(Some((last, None))),
            Err(e @ Error::CorruptCheckpoint { .. }) => match self.older_intact(&last) {
                Some((older, _)) => Ok(Some((older, Some(e.to_string())))),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Writes checkpoint directory `step-NNNNNNNNNN` atomically and returns its path.
    pub(crate) fn write(
        &self,
        step: u64,
        model_bytes: &[u8],
        optimizer_bytes: &[u8],
        state: &RunState,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let name = format!("step-{step:010}");
        let target = self.dir.join(&name);
        let prefix = format!(".tmp-{name}-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        // the permissions of a plain `create_dir` (0o777 less the umask), not 0o700
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o777));
        }
        let tmp = builder.tempdir_in(&self.dir).map_err(io(&self.dir))?;
        let state_json = serde_json::to_vec_pretty(state).map_err(json(tmp.path()))?;
        let files = [
            (MODEL_FILE, model_bytes),
            (OPTIMIZER_FILE, optimizer_bytes),
            (STATE_FILE, &state_json),
        ];
        let mut sums = Checksums {
            crc32: Default::default(),
        };
        for (file, bytes) in files {
            write_file(&tmp.path().join(file), bytes)?;
            sums.crc32.insert(file.to_owned(), crc_hex(bytes));
        }
        let sums_path = tmp.path().join(CHECKSUM_FILE);
        write_file(
            &sums_path,
            &serde_json::to_vec_pretty(&sums).map_err(json(&sums_path))?,
        )?;
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        let tmp = tmp.keep();
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        Ok(target)
    }

    /// Points `which` at checkpoint directory `dir` (atomically).
    pub(crate) fn point(&self, which: Which, dir: &Path, step: u64) -> Result<()> {
        let ptr = Pointer {
            dir: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            step,
        };
        let p = self.dir.join(format!("{}.json", which.name()));
        write_file(&p, &serde_json::to_vec(&ptr).map_err(json(&p))?)
    }

    /// Removes step directories beyond the newest `keep`, except those `last` and `best`
    /// point at.
    pub(crate) fn prune(&self, keep: usize) -> Result<()> {
        let protected: Vec<PathBuf> = [Which::Last, Which::Best]
            .into_iter()
            .filter_map(|w| self.find(w).ok().flatten())
            .collect();
        let mut steps: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
            })
            .collect();
        steps.sort();
        let n = steps.len();
        for p in steps.into_iter().take(n.saturating_sub(keep)) {
            if !protected.contains(&p) {
                std::fs::remove_dir_all(&p).map_err(io(&p))?;
            }
        }
        Ok(())
    }

    /// Reads the run state of a checkpoint directory.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`].
    pub fn state(dir: &Path) -> Result<RunState> {
        let p = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&text).map_err(json(&p))
    }
}

pub(crate) fn model_to_bytes<B: Backend, M: Module<B>>(model: &M, dir: &Path) -> Result<Vec<u8>> {
    model_bytes(model, &dir.join(MODEL_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn rng_state_round_trips_mid_stream() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        rng.set_stream(3);
        for _ in 0..17 {
            rng.random::<u32>();
        }
        let state = RngState::capture(&rng);
        let mut back = state.restore().unwrap();
        for _ in 0..10 {
            assert_eq!(rng.random::<u64>(), back.random::<u64>());
        }
        let bad = RngState {
            seed: "zz".into(),
            ..state
        };
        assert!(bad.restore().is_none());
    }
}
