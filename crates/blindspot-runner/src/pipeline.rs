//! `blindspot run`: the whole experiment of one [`RunConfig`] in a run directory.
//!
//! Steps (each timed into `results.json`): synthesise the phantom (`data/`), preprocess every
//! dataset into a slice cache (`cache/`), train the VAE ensemble (`model/member-i/`), infer on
//! the validation set and every test set, turn the outputs into [`SliceRecord`]s, and evaluate:
//! the healthy-pixel-FPR threshold on healthy validation pixels, pixel metrics per test set
//! (beside a model-free intensity-threshold baseline calibrated the same way), OOD detection
//! in three modes for every statistic, disentangling, the gate with risk-coverage. The
//! [`Results`] go to `results.json`, the resolved config beside it, and the report is rendered.
//!
//! Generic over the training backend; the binary picks it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use blindspot_core::{Batch, MapKind, Members, SliceOutputs, SliceSource, TrainJob, stat};
use blindspot_io::histmatch::{HistMatchConfig, Landmarks};
use blindspot_io::{Pipeline, SubjectFiles};
use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
use blindspot_metrics::{BootstrapConfig, RankAccumulator, RankedScores};
use blindspot_ood::eval::{
    IdNegatives, OodMode, ScanOutcome, Scorer, detection_set, disentangling_set, risk_coverage,
};
use blindspot_ood::slice::{
    PostprocessConfig, ResidualSource, SliceInput, SliceStatsConfig, postprocess_residual,
    slice_record,
};
use blindspot_ood::waic::{WaicKind, ensemble_waic};
use blindspot_ood::{Decision, Dose, Gate, LesionRule, SliceId, SliceRecord, Statistic};
use blindspot_report::{
    BestDice, BootstrapInfo, Curve, Curves, Detection, Disentangling, Estimate, GateResult,
    GateSetResult, Histogram, OodDetection, PixelMetrics, Results, SliceCounts, StatisticInfo,
    TestSetResult, TestSetRole, ThresholdInfo, WallTime,
};
use blindspot_report::{
    GrayImage, GridKind, GridRow, SliceGrid, SliceGridRef, write_slice_grid_with,
};
use burn::tensor::backend::Backend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{ConfigError, DatasetSpec, Role, RunConfig, ThresholdMethod, Transform};
use crate::slices::CacheSlices;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading or preprocessing data failed.
    #[error(transparent)]
    Data(#[from] blindspot_io::IoError),
    /// Synthesising the phantom failed.
    #[error(transparent)]
    Synth(#[from] blindspot_synth::SynthError),
    /// Training or inference failed.
    #[error(transparent)]
    Model(#[from] blindspot_core::Error),
    /// A model crate refused a setting.
    #[error(transparent)]
    ModelConfig(#[from] blindspot_core::InvalidConfig),
    /// An OOD statistic or the gate failed.
    #[error(transparent)]
    Ood(#[from] blindspot_ood::OodError),
    /// A metric failed.
    #[error(transparent)]
    Metrics(#[from] blindspot_metrics::MetricsError),
    /// Writing the results or the report failed.
    #[error(transparent)]
    Report(#[from] blindspot_report::ReportError),
    /// A configuration value this pipeline does not run yet.
    #[error("`{key}` = {value} is not supported by `blindspot run` yet; allowed: {allowed}")]
    Unsupported {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// An input this command cannot take as it was given, with the option that would make it
    /// acceptable (for example a 4-D scan without `--volume`).
    #[error("{path}: {why}; {hint}")]
    Refused {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// A partial result of `evaluate --shard` is missing, duplicated, unreadable or from
    /// another evaluation.
    #[error("shard file {path}: {why}")]
    Shard {
        /// The shard file (or the one expected).
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// A dataset holds no usable slice or subject.
    #[error("dataset `{dataset}` is empty: {why}")]
    Empty {
        /// The dataset.
        dataset: String,
        /// What is missing.
        why: String,
    },
}

impl RunError {
    /// Whether the error is the user's configuration (exit code 2) rather than a runtime
    /// failure (exit code 1).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            RunError::Config(_)
                | RunError::Unsupported { .. }
                | RunError::Refused { .. }
                | RunError::ModelConfig(_)
                | RunError::Model(
                    blindspot_core::Error::InvalidConfig(_)
                        | blindspot_core::Error::ResumeMismatch { .. }
                )
        )
    }
}

pub(crate) type Result<T> = std::result::Result<T, RunError>;

/// What a finished run wrote.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// `results.json`.
    pub results: PathBuf,
    /// `report.html`.
    pub report: PathBuf,
    /// Wall time of the whole run in seconds.
    pub seconds: f64,
    /// The members' adequacy, when the model reconstructs.
    pub adequacy: Option<blindspot_report::AdequacyResult>,
}

impl RunSummary {
    /// One line on the models' adequacy for the terminal, when it was measured: the members'
    /// scores against the criterion, and whether the findings can be read.
    pub fn adequacy_line(&self) -> Option<String> {
        let a = self.adequacy.as_ref()?;
        let scores: Vec<String> = a
            .members
            .iter()
            .map(|m| format!("{:.2}", m.adequacy))
            .collect();
        Some(if a.adequate() {
            format!(
                "model adequacy {} (criterion {:.2}): met, the findings can be read",
                scores.join(" "),
                a.criterion
            )
        } else {
            format!(
                "model adequacy {} (criterion {:.2}): NOT MET. The model did not learn the anatomy; \
                 the report marks every finding not interpretable (train longer or see \
                 docs/study-adequacy.md)",
                scores.join(" "),
                a.criterion
            )
        })
    }
}

/// Slices per inference batch.
const INFER_BATCH: usize = 32;

/// One dataset after inference (or the part of it one shard inferred).
pub(crate) struct SetData {
    pub(crate) name: String,
    pub(crate) role: Option<Role>,
    pub(crate) scans: usize,
    /// Slices the whole set infers (every shard together).
    pub(crate) total_slices: usize,
    /// The ensemble's records (WAIC and DoSE added), in slice order.
    pub(crate) records: Vec<SliceRecord>,
    /// The cache index of each record's slice.
    pub(crate) record_slices: Vec<usize>,
    /// Per record (aligned with `records`): each member's reconstruction error `rec_err`
    /// (empty for a model without one), for the members' adequacy.
    pub(crate) member_rec_err: Vec<Vec<f64>>,
    /// Per scan (indexed like `subjects`): the post-processed residual of the ensemble-mean
    /// reconstruction on brain pixels, positive = lesion (exact and mergeable).
    pub(crate) pixels: Vec<RankAccumulator<f32>>,
    /// The input intensity of the same pixels (the baseline's score).
    pub(crate) intensity: RankAccumulator<f32>,
    pub(crate) subjects: Vec<String>,
    /// With `keep_maps`: per inferred slice, its cache index and post-processed residual.
    pub(crate) maps: Vec<(usize, Vec<f32>)>,
    /// Example slices for the report's slice grid, in slice order.
    pub(crate) examples: Vec<Example>,
}

/// One example slice of a slice grid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Example {
    /// Its cache index.
    pub(crate) slice: usize,
    pub(crate) label: String,
    pub(crate) input: Vec<f32>,
    pub(crate) reconstruction: Vec<f32>,
    pub(crate) residual: Vec<f32>,
    pub(crate) lesion: Vec<f32>,
}

/// The slices shown in a set's grid: the most lesional ones when the set has lesional slices,
/// else evenly spaced ones.
fn example_slices(cache: &CacheSlices, indices: &[usize], config: &RunConfig) -> Vec<usize> {
    let k = config.report.grid_examples;
    if k == 0 || indices.is_empty() {
        return Vec::new();
    }
    let c = cache.cache();
    let lesion = |i: usize| c.lesion(i).iter().filter(|&&v| v != 0).count();
    let mut lesional: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| lesion(i) > config.evaluation.lesional_pixels)
        .collect();
    if !lesional.is_empty() {
        lesional.sort_by_key(|&i| (std::cmp::Reverse(lesion(i)), i));
        lesional.truncate(k);
        return lesional;
    }
    let n = indices.len();
    let mut picks: Vec<usize> = (0..k.min(n))
        .map(|j| indices[(2 * j + 1) * n / (2 * k.min(n))])
        .collect();
    picks.dedup();
    picks
}

/// One part of a job split over `count` processes (`--shard index/count`): this process takes
/// the datasets (`prepare`) or ensemble members (`train`) whose position modulo `count` is
/// `index`. Shards share one run directory, so their outputs merge there; `evaluate` then
/// reads them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// The number of shards, at least 1.
    pub count: usize,
}

impl Shard {
    /// The whole job in one process.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether item `i` belongs to this shard.
    pub fn owns(self, i: usize) -> bool {
        i % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = RunError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || RunError::Unsupported {
            key: "--shard".into(),
            value: format!("{text:?}"),
            allowed: "`i/n` with 0 <= i < n, for example 0/2 and 1/2",
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Step wall times of a run directory, merged over the separate commands (`timings.json`).
const TIMINGS_FILE: &str = "timings.json";

fn record_time(dir: &Path, step: &str, t: Instant) -> Result<()> {
    record_seconds(dir, step, t.elapsed().as_secs_f64())
}

fn record_seconds(dir: &Path, step: &str, seconds: f64) -> Result<()> {
    let path = dir.join(TIMINGS_FILE);
    let mut times: BTreeMap<String, f64> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    times.insert(step.to_owned(), seconds);
    let text = serde_json::to_vec_pretty(&times).map_err(|e| RunError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    blindspot_report::write_atomic(&path, &text)?;
    Ok(())
}

fn read_times(dir: &Path) -> Vec<WallTime> {
    let times: BTreeMap<String, f64> = std::fs::read(dir.join(TIMINGS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    ["synth", "prepare", "train", "inference", "evaluation"]
        .iter()
        .filter_map(|s| {
            times.get(*s).map(|&seconds| WallTime {
                step: (*s).to_owned(),
                seconds,
            })
        })
        .collect()
}

pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// The datasets of a run in cache order (train, validation, then the test sets), each with
/// its histogram matching.
fn dataset_specs(config: &RunConfig) -> Vec<(String, DatasetSpec, Option<HistMatchConfig>)> {
    let mut specs = vec![
        ("train".into(), config.data.train.clone(), None),
        ("validation".into(), config.data.validation.clone(), None),
    ];
    for t in &config.data.test {
        specs.push((
            t.name.clone(),
            DatasetSpec {
                dir: t.dir.clone(),
                synth_set: t.synth_set.clone(),
                layout: t.layout.clone(),
            },
            t.histogram_match.clone(),
        ));
    }
    specs
}

/// The histogram-matching reference of a run: the mean landmarks of the training scans
/// (Nyúl's standard scale), inside their brain masks (non-zero voxels without one).
fn training_landmarks(train: &[SubjectFiles], config: &HistMatchConfig) -> Result<Landmarks> {
    let mut sum: Option<Landmarks> = None;
    for s in train {
        let image = blindspot_io::read_volume(&s.image)?;
        let mask = match &s.brain_mask {
            Some(p) => blindspot_io::preprocess::binarize(&blindspot_io::read_volume(p)?),
            None => blindspot_io::preprocess::nonzero_mask(&image),
        };
        let l = Landmarks::compute(&image, &mask, config)?;
        match &mut sum {
            None => sum = Some(l),
            Some(acc) => acc
                .values
                .iter_mut()
                .zip(&l.values)
                .for_each(|(a, b)| *a += b),
        }
    }
    let mut mean = sum.ok_or_else(|| RunError::Empty {
        dataset: "train".into(),
        why: "no subject for the histogram-matching reference".into(),
    })?;
    let n = train.len() as f64;
    mean.values.iter_mut().for_each(|v| *v /= n);
    Ok(mean)
}

fn cache_path(dir: &Path, i: usize, name: &str) -> PathBuf {
    dir.join("cache")
        .join(format!("{i:02}-{}.bsc", blindspot_report::slug(name)))
}

/// `blindspot synth`: writes the phantom of `[synth]` into `dir/data` (nothing without a
/// `[synth]` section) and saves the resolved config in `dir`.
///
/// # Errors
/// [`RunError::Unsupported`] for settings the pipeline does not run; synthesis and I/O errors.
pub fn synth(config: &RunConfig, dir: &Path) -> Result<()> {
    let t = Instant::now();
    check_supported(config)?;
    create_dir(dir)?;
    config.save_resolved(dir)?;
    if let Some(synth) = &config.synth {
        blindspot_synth::write_dataset(synth, &dir.join("data"))?;
    }
    record_time(dir, "synth", t)
}

/// `blindspot prepare`: preprocesses the datasets of `shard` into slice caches under
/// `dir/cache` (a cache already built with the same parameters and subjects is kept).
/// Returns the number of caches built.
///
/// # Errors
/// [`RunError::Empty`] for a dataset without subjects or slices; reading and preprocessing
/// errors naming the file.
pub fn prepare(config: &RunConfig, dir: &Path, shard: Shard) -> Result<usize> {
    let t = Instant::now();
    check_supported(config)?;
    let plain = Pipeline::new(config.preprocess.clone(), None)?;
    create_dir(&dir.join("cache"))?;
    let mut built = 0;
    let specs = dataset_specs(config);
    for (i, (name, spec, matching)) in specs.iter().enumerate() {
        if !shard.owns(i) {
            continue;
        }
        let subjects = subjects_of(config, spec, &dir.join("data"), name)?;
        let matched;
        let pipeline = match matching {
            None => &plain,
            Some(h) => {
                let train = subjects_of(config, &specs[0].1, &dir.join("data"), "train")?;
                let reference = training_landmarks(&train, h)?;
                let preprocess = blindspot_io::PreprocessConfig {
                    histogram_match: Some(h.clone()),
                    ..config.preprocess.clone()
                };
                matched = Pipeline::new(preprocess, Some(reference))?;
                &matched
            }
        };
        let path = cache_path(dir, i, name);
        let fresh = blindspot_io::SliceCache::open(&path)
            .map(|c| {
                c.matches_params(&pipeline.params_json()) && c.subjects().len() == subjects.len()
            })
            .unwrap_or(false);
        if !fresh {
            blindspot_io::build_cache(&subjects, pipeline, &path)?;
            built += 1;
        }
    }
    if shard == Shard::ALL {
        record_time(dir, "prepare", t)?;
    }
    Ok(built)
}

fn open_cache(dir: &Path, i: usize, name: &str) -> Result<CacheSlices> {
    let path = cache_path(dir, i, name);
    if !path.is_file() {
        return Err(RunError::Empty {
            dataset: name.to_owned(),
            why: format!(
                "no slice cache at {} (run `blindspot prepare` first)",
                path.display()
            ),
        });
    }
    let slices = CacheSlices::open(&path)?;
    if slices.is_empty() {
        return Err(RunError::Empty {
            dataset: name.to_owned(),
            why: "no slice with brain after preprocessing".into(),
        });
    }
    Ok(slices)
}

/// `blindspot train`: trains the ensemble members of `shard` in `dir/model/member-i` (member
/// `i` with seed `seed + i`, as [`Ensemble::fit`] does); a finished member is resumed, which
/// is a no-op, so an interrupted run continues where it stopped.
///
/// # Errors
/// [`RunError::Empty`] when the caches are missing; training errors.
pub fn train<B: ConvAutodiffBackend>(
    config: &RunConfig,
    dir: &Path,
    shard: Shard,
    device: &B::Device,
) -> Result<()> {
    let t = Instant::now();
    check_supported(config)?;
    let train = open_cache(dir, 0, "train")?;
    let val = open_cache(dir, 1, "validation")?;
    crate::adequacy::write_references(config, dir, &train, &val)?;
    let members = (0..config.ensemble.members)
        .filter(|&m| shard.owns(m))
        .collect();
    let job = TrainJob::<B> {
        members,
        config: &config.train,
        run_dir: &dir.join("model"),
        train: &train,
        val: Some(&val),
        device,
    };
    config.model.train(config.preprocess.slice_size[0], &job)?;
    if shard == Shard::ALL {
        record_time(dir, "train", t)?;
    }
    Ok(())
}

/// `blindspot evaluate`: loads every member's last checkpoint, infers on the validation set and
/// every test set, evaluates, and writes `results.json`, `model/scoring.json` and the report.
///
/// # Errors
/// [`RunError::Empty`] for a missing cache, [`RunError::Model`] for a missing checkpoint;
/// metric, OOD and report errors.
pub fn evaluate<B: ConvBackend>(
    config: &RunConfig,
    dir: &Path,
    device: &B::Device,
) -> Result<RunSummary> {
    let start = Instant::now();
    check_supported(config)?;
    config.save_resolved(dir)?;
    let t = Instant::now();
    let mut sets = infer_sets::<B>(config, dir, Shard::ALL, device)?;
    record_time(dir, "inference", t)?;
    finish_evaluation(config, dir, &mut sets, start)
}

/// `blindspot evaluate --shard i/n`: the expensive part of [`evaluate`], inference, on the
/// share of `shard` (chunks of slices, numbered over all evaluated sets, chunk modulo `n`
/// equals `i`), written atomically to `eval-shards/shard-i-of-n.json.gz` in `dir`. Returns that
/// path. [`merge_shards`] turns the `n` partial results into exactly the results of
/// [`evaluate`].
///
/// # Errors
/// As [`evaluate`]; writing the partial result.
pub fn evaluate_shard<B: ConvBackend>(
    config: &RunConfig,
    dir: &Path,
    shard: Shard,
    device: &B::Device,
) -> Result<PathBuf> {
    check_supported(config)?;
    config.save_resolved(dir)?;
    let t = Instant::now();
    let sets = infer_sets::<B>(config, dir, shard, device)?;
    crate::partial::write(config, dir, shard, &sets, t.elapsed().as_secs_f64())
}

/// `blindspot evaluate --merge`: reads the partial results of every shard of
/// [`evaluate_shard`] from `dir/eval-shards/`, merges them (exactly: the records in slice
/// order, the pixel scores as [`RankAccumulator`]s) and evaluates as [`evaluate`] does. Needs
/// neither the model nor the caches.
///
/// # Errors
/// [`RunError::Shard`] for a missing, duplicate or mismatched shard file (naming it); then
/// as [`evaluate`].
pub fn merge_shards(config: &RunConfig, dir: &Path) -> Result<RunSummary> {
    let start = Instant::now();
    check_supported(config)?;
    let (mut sets, inference) = crate::partial::read_all(config, dir)?;
    config.save_resolved(dir)?;
    record_seconds(dir, "inference", inference)?;
    finish_evaluation(config, dir, &mut sets, start)
}

/// Evaluates inferred sets (validation first) and writes `model/scoring.json`,
/// `results.json` and the report.
fn finish_evaluation(
    config: &RunConfig,
    dir: &Path,
    sets: &mut [SetData],
    start: Instant,
) -> Result<RunSummary> {
    let t = Instant::now();
    let (mut results, scoring) = evaluate_sets(config, dir, sets, Vec::new())?;
    let model_dir = dir.join("model");
    create_dir(&model_dir)?;
    let scoring_path = model_dir.join(SCORING_FILE);
    let text = serde_json::to_vec_pretty(&scoring).map_err(|e| RunError::Io {
        path: scoring_path.clone(),
        source: e.into(),
    })?;
    blindspot_report::write_atomic(&scoring_path, &text)?;
    record_time(dir, "evaluation", t)?;
    results.wall_times = read_times(dir);
    let results_path = dir.join(blindspot_report::RESULTS_FILE);
    blindspot_report::save_results(&results, &results_path)?;
    let files = blindspot_report::render_report(&results, dir)?;
    Ok(RunSummary {
        dir: dir.to_owned(),
        results: results_path,
        report: files.html,
        seconds: start.elapsed().as_secs_f64(),
        adequacy: results.adequacy,
    })
}

/// The evaluated datasets in order (validation, then the test sets): name, role and
/// transform.
pub(crate) fn evaluated_sets(config: &RunConfig) -> Vec<(String, Option<Role>, Transform)> {
    std::iter::once(("validation".to_owned(), None, Transform::None))
        .chain(
            config
                .data
                .test
                .iter()
                .map(|t| (t.name.clone(), Some(t.role), t.transform)),
        )
        .collect()
}

/// Inference of `shard` over the validation set and every test set with the run's ensemble.
fn infer_sets<B: ConvBackend>(
    config: &RunConfig,
    dir: &Path,
    shard: Shard,
    device: &B::Device,
) -> Result<Vec<SetData>> {
    let caches = evaluated_sets(config)
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| open_cache(dir, i + 1, name))
        .collect::<Result<Vec<_>>>()?;
    let members = load_members::<B>(config, dir, device)?;
    let bar = progress_for(config, &caches, shard);
    let mut sets = Vec::new();
    let mut first_chunk = 0;
    for (i, ((name, role, transform), cache)) in
        evaluated_sets(config).into_iter().zip(&caches).enumerate()
    {
        let plan = ChunkPlan {
            shard,
            first_chunk,
            seed: config.seed ^ 0x5eed_1f3e,
        };
        sets.push(infer_set(
            members.as_ref(),
            cache,
            &format!("{:02}-{name}", i + 1),
            &name,
            role,
            config,
            plan,
            device,
            &bar,
            false,
            transform,
        )?);
        first_chunk += chunk_count(cache, config);
    }
    bar.finish_and_clear();
    Ok(sets)
}

fn chunk_count(cache: &CacheSlices, config: &RunConfig) -> usize {
    inferred_slices(cache, config).len().div_ceil(INFER_BATCH)
}

/// The progress bar of inference over the chunks `shard` owns.
fn progress_for(
    config: &RunConfig,
    caches: &[CacheSlices],
    shard: Shard,
) -> indicatif::ProgressBar {
    if !config.train.progress {
        return indicatif::ProgressBar::hidden();
    }
    let total: usize = caches
        .iter()
        .flat_map(|c| {
            inferred_slices(c, config)
                .chunks(INFER_BATCH)
                .map(<[usize]>::len)
                .collect::<Vec<_>>()
        })
        .enumerate()
        .filter(|&(c, _)| shard.owns(c))
        .map(|(_, n)| n)
        .sum();
    progress(total as u64, "inference")
}

/// Every member's last checkpoint under `dir/model`.
///
/// # Errors
/// [`RunError::ModelConfig`] for a setting the model refuses, [`RunError::Model`] for a missing
/// or corrupt checkpoint.
pub(crate) fn load_members<B: ConvBackend>(
    config: &RunConfig,
    dir: &Path,
    device: &B::Device,
) -> Result<Box<dyn Members<B>>> {
    config.model.load::<B>(
        config.preprocess.slice_size[0],
        &dir.join("model"),
        config.ensemble.members,
        device,
    )
}

/// `blindspot run`: [`synth`], [`prepare`], [`train`] and [`evaluate`] in `dir` (created when
/// missing) on `device`.
///
/// # Errors
/// [`RunError`] naming the step's offending file, key or dataset.
pub fn run<B: ConvAutodiffBackend>(
    config: &RunConfig,
    dir: &Path,
    device: &B::Device,
) -> Result<RunSummary> {
    let start = Instant::now();
    synth(config, dir)?;
    prepare(config, dir, Shard::ALL)?;
    train::<B>(config, dir, Shard::ALL, device)?;
    let mut summary = evaluate::<B::InnerBackend>(config, dir, device)?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// File (under the run's `model/`) holding what `blindspot score` needs beside the weights.
pub const SCORING_FILE: &str = "scoring.json";

/// What scoring a new scan needs from its run, beside the model weights: the pixel threshold,
/// the fitted gate, and the healthy validation records (DoSE is refitted on them).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScoringState {
    /// The calibrated pixel threshold of the post-processed residual.
    pub threshold: f64,
    /// The gate fitted on healthy validation scans (absent: no `[gate]`).
    pub gate: Option<Gate>,
    /// The healthy validation slices.
    pub healthy_validation: Vec<SliceRecord>,
}

fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} slices (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

fn check_supported(config: &RunConfig) -> Result<()> {
    if config.preprocess.histogram_match.is_some() {
        return Err(RunError::Unsupported {
            key: "preprocess.histogram_match".into(),
            value: "set".into(),
            allowed: "no histogram matching",
        });
    }
    Ok(())
}

/// The subjects of one dataset: a phantom set (from `data/manifest.csv`) or a layout.
fn subjects_of(
    config: &RunConfig,
    spec: &DatasetSpec,
    data_dir: &Path,
    name: &str,
) -> Result<Vec<SubjectFiles>> {
    let subjects = match (&spec.synth_set, &spec.layout) {
        (Some(set), _) => blindspot_synth::read_manifest(&data_dir.join("manifest.csv"))?
            .into_iter()
            .filter(|row| &row.set == set)
            .map(|row| row.files(data_dir))
            .collect(),
        (None, Some(layout)) => {
            let root = config.data_root()?;
            let root = match &spec.dir {
                Some(d) => root.join(d),
                None => root,
            };
            layout.check()?.discover(&root)?
        }
        (None, None) => Vec::new(),
    };
    if subjects.is_empty() {
        return Err(RunError::Empty {
            dataset: name.to_owned(),
            why: "no subject found".into(),
        });
    }
    Ok(subjects)
}

/// Where one [`infer_set`] call sits in the evaluation: its shard, the global index of the
/// set's first chunk (chunks are numbered over all evaluated sets, so shards stay balanced),
/// and the seed of the inference randomness (chunk `c` draws from stream `c` of it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkPlan {
    pub(crate) shard: Shard,
    pub(crate) first_chunk: usize,
    pub(crate) seed: u64,
}

/// The slices of `cache` that are inferred: every `stride`-th one.
fn inferred_slices(cache: &CacheSlices, config: &RunConfig) -> Vec<usize> {
    (0..cache.len())
        .step_by(config.evaluation.slice_stride)
        .collect()
}

/// Inference of the ensemble on every `stride`-th slice of `cache`, in fixed chunks of
/// [`INFER_BATCH`] slices, keeping the chunks `plan.shard` owns. Each chunk draws from its own
/// random stream, so a slice's outputs do not depend on the sharding.
#[allow(clippy::too_many_arguments)] // two call sites; a struct would only rename the arguments
pub(crate) fn infer_set<B: Backend>(
    ensemble: &dyn Members<B>,
    cache: &CacheSlices,
    dataset: &str,
    name: &str,
    role: Option<Role>,
    config: &RunConfig,
    plan: ChunkPlan,
    device: &B::Device,
    bar: &indicatif::ProgressBar,
    keep_maps: bool,
    transform: Transform,
) -> Result<SetData> {
    let [h, w] = cache.shape();
    let hw = h * w;
    let stats_cfg = SliceStatsConfig::default();
    let post = PostprocessConfig::default();
    let latent_dim = config.model.latent_dims();
    let c = cache.cache();
    let indices = inferred_slices(cache, config);
    let mut set = SetData {
        name: name.to_owned(),
        role,
        scans: c.subjects().len(),
        total_slices: indices.len(),
        records: Vec::new(),
        record_slices: Vec::new(),
        member_rec_err: Vec::new(),
        pixels: vec![RankAccumulator::new(); c.subjects().len()],
        intensity: RankAccumulator::new(),
        subjects: c.subjects().to_vec(),
        maps: Vec::new(),
        examples: Vec::new(),
    };
    let wanted = example_slices(cache, &indices, config);
    let mut member_records: Vec<Vec<SliceRecord>> = vec![Vec::new(); ensemble.len()];
    for (j, chunk) in indices.chunks(INFER_BATCH).enumerate() {
        let global = plan.first_chunk + j;
        if !plan.shard.owns(global) {
            continue;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        rng.set_stream(global as u64);
        let n = chunk.len();
        let mut images = vec![0.0f32; n * hw];
        let mut masks = vec![0.0f32; n * hw];
        let mut segs = vec![0u8; n * hw];
        for (k, &i) in chunk.iter().enumerate() {
            cache
                .read(
                    i,
                    &mut images[k * hw..(k + 1) * hw],
                    &mut masks[k * hw..(k + 1) * hw],
                )
                .map_err(|message| RunError::Empty {
                    dataset: name.to_owned(),
                    why: message,
                })?;
            segs[k * hw..(k + 1) * hw].copy_from_slice(c.lesion(i));
            apply_transform(
                transform,
                [h, w],
                &mut images[k * hw..(k + 1) * hw],
                &mut masks[k * hw..(k + 1) * hw],
                &mut segs[k * hw..(k + 1) * hw],
                config.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
        }
        let batch = Batch::<B>::from_host(images.clone(), masks.clone(), [n, h, w], device)?;
        let outs = ensemble.infer(&batch, &mut rng)?;
        for (k, &i) in chunk.iter().enumerate() {
            let id = c.identity(i);
            let slice_id = SliceId::new(dataset, id.subject, id.index as u32);
            let x = &images[k * hw..(k + 1) * hw];
            let mask: Vec<bool> = masks[k * hw..(k + 1) * hw]
                .iter()
                .map(|&b| b > 0.5)
                .collect();
            let seg: Vec<bool> = segs[k * hw..(k + 1) * hw].iter().map(|&b| b != 0).collect();
            let members = outs
                .iter()
                .map(|o| MemberSlice::of(o, k))
                .collect::<Vec<_>>();
            for (m, member) in members.iter().enumerate() {
                let input = SliceInput {
                    id: slice_id.clone(),
                    width: w,
                    height: h,
                    residual: member.residual(x),
                    mask: &mask,
                    segmentation: Some(&seg),
                    rec_err: member.rec_err,
                    kl: member.kl,
                    latent_dim,
                    // The VAE's `elbo` is the paper's coded `rec - kl`, not nats: the record
                    // derives its own (see `neg_elbo_laplace`). A flow's ELBO is exact: its
                    // log-likelihood.
                    elbo: member.log_likelihood,
                    log_likelihood: member.log_likelihood,
                    latent_mean: None,
                };
                member_records[m].push(slice_record(&input, &stats_cfg)?);
            }
            // The ensemble: the mean map, the mean of each statistic every member has.
            let mut mean = vec![0.0f32; hw];
            for member in &members {
                for (a, b) in mean.iter_mut().zip(member.map) {
                    *a += b / members.len() as f32;
                }
            }
            let mean_of = |f: fn(&MemberSlice<'_>) -> Option<f64>| {
                let v: Option<Vec<f64>> = members.iter().map(f).collect();
                v.map(|v| v.iter().sum::<f64>() / v.len() as f64)
            };
            let source = if members[0].map_kind == MapKind::Reconstruction {
                ResidualSource::Reconstruction {
                    input: x,
                    reconstruction: &mean,
                }
            } else {
                ResidualSource::AnomalyMap(&mean)
            };
            let input = SliceInput {
                id: slice_id,
                width: w,
                height: h,
                residual: source,
                mask: &mask,
                segmentation: Some(&seg),
                rec_err: None,
                kl: mean_of(|m| m.kl),
                latent_dim,
                elbo: mean_of(|m| m.log_likelihood),
                log_likelihood: mean_of(|m| m.log_likelihood),
                latent_mean: None,
            };
            set.records.push(slice_record(&input, &stats_cfg)?);
            set.record_slices.push(i);
            set.member_rec_err
                .push(members.iter().filter_map(|m| m.rec_err).collect());
            let residual = postprocess_residual(source, &mask, w, h, &post)?;
            let scan = c
                .subjects()
                .iter()
                .position(|s| s == id.subject)
                .unwrap_or(0);
            if wanted.contains(&i) {
                set.examples.push(Example {
                    slice: i,
                    label: format!("{} z{}", id.subject, id.index),
                    input: x.to_vec(),
                    // inside the brain only: the masked loss leaves the rest unconstrained,
                    // and the input's background there keeps the grid readable
                    reconstruction: mean
                        .iter()
                        .zip(&mask)
                        .zip(x)
                        .map(|((&r, &m), &xi)| if m { r } else { xi })
                        .collect(),
                    residual: residual.clone(),
                    lesion: seg.iter().map(|&b| f32::from(u8::from(b))).collect(),
                });
            }
            set.pixels[scan].push_masked(&residual, &seg, &mask)?;
            set.intensity.push_masked(x, &seg, &mask)?;
            if keep_maps {
                set.maps.push((i, residual));
            }
        }
        bar.inc(n as u64);
    }
    if ensemble.len() >= 2 {
        let members: Vec<&[SliceRecord]> = member_records.iter().map(Vec::as_slice).collect();
        for kind in [WaicKind::Paper, WaicKind::NegElbo] {
            if members[0]
                .first()
                .is_some_and(|r| r.get(kind.member_statistic()).is_err())
            {
                continue; // the model has no such statistic (checked against the config)
            }
            let scores = ensemble_waic(&members, kind)?;
            blindspot_ood::record::insert_scores(
                &mut set.records,
                kind.output_statistic(),
                &scores,
            )?;
        }
    }
    Ok(set)
}

/// One member's outputs for one slice.
struct MemberSlice<'a> {
    map: &'a [f32],
    map_kind: MapKind,
    rec_err: Option<f64>,
    kl: Option<f64>,
    log_likelihood: Option<f64>,
}

impl<'a> MemberSlice<'a> {
    fn of(out: &'a SliceOutputs, k: usize) -> Self {
        Self {
            map: out.map_of(k),
            map_kind: out.map_kind,
            rec_err: out.stat(stat::REC_ERR).map(|v| v[k]),
            kl: out.stat(stat::KL_DIV).map(|v| v[k]),
            log_likelihood: out.stat(stat::LOG_LIKELIHOOD).map(|v| v[k]),
        }
    }

    fn residual<'b>(&'b self, input: &'b [f32]) -> ResidualSource<'b> {
        match self.map_kind {
            MapKind::Reconstruction => ResidualSource::Reconstruction {
                input,
                reconstruction: self.map,
            },
            MapKind::NegLogLikelihood => ResidualSource::AnomalyMap(self.map),
        }
    }
}

/// A test set's transform on one slice (`[h, w]`, row-major as displayed): mirrored columns
/// (`flip_lr`) or rows (`flip_ud`), or standard Gaussian noise (in z-score units) replacing the
/// brain (`noise`, seeded per slice).
fn apply_transform(
    transform: Transform,
    [h, w]: [usize; 2],
    image: &mut [f32],
    mask: &mut [f32],
    seg: &mut [u8],
    seed: u64,
) {
    fn flip<T>(v: &mut [T], h: usize, w: usize, rows: bool) {
        for r in 0..h {
            if rows {
                if r < h - 1 - r {
                    let (a, b) = v.split_at_mut((h - 1 - r) * w);
                    a[r * w..(r + 1) * w].swap_with_slice(&mut b[..w]);
                }
            } else {
                v[r * w..(r + 1) * w].reverse();
            }
        }
    }
    match transform {
        Transform::None => {}
        Transform::Blobs => add_blob([h, w], image, mask, seg, seed),
        Transform::FlipLr | Transform::FlipUd => {
            let rows = transform == Transform::FlipUd;
            flip(image, h, w, rows);
            flip(mask, h, w, rows);
            flip(seg, h, w, rows);
        }
        Transform::Noise => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for (x, &m) in image.iter_mut().zip(mask.iter()) {
                if m > 0.5 {
                    // Box-Muller.
                    let u1: f64 = 1.0 - rand::Rng::random::<f64>(&mut rng);
                    let u2: f64 = rand::Rng::random::<f64>(&mut rng);
                    *x = ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32;
                }
            }
            seg.fill(0);
        }
    }
}

/// The paper's Gaussian-blob "lesion" (docs/method.md 1.7) on one z-scored slice: with
/// probability 0.75, when the brain has more than 100 pixels (at 128x128; scaled by area),
/// `1000 G` is added to the brain, `G` a normalised 2-D Gaussian of integer `sigma ~ U{4..10}`
/// pixels at 128x128 (scaled to the slice; the peak keeps the paper's 1.6 to 9.9 z-units), and
/// the ground truth gains the brain pixels where `1000 G > exp(-0.5)`.
///
/// The blob is centred on a uniformly drawn brain pixel. The authors' code centres it halfway
/// between that pixel and the image centre (flagged as a probable bug in docs/method.md);
/// that is not reproduced.
fn add_blob([h, w]: [usize; 2], image: &mut [f32], mask: &[f32], seg: &mut [u8], seed: u64) {
    const WEIGHT: f64 = 1000.0;
    const PROBABILITY: f64 = 0.75;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if rand::Rng::random::<f64>(&mut rng) >= PROBABILITY {
        return;
    }
    let scale = w as f64 / 128.0;
    let brain: Vec<usize> = (0..h * w).filter(|&p| mask[p] > 0.5).collect();
    if brain.len() as f64 <= 100.0 * scale * scale {
        return;
    }
    let centre = brain[rand::Rng::random_range(&mut rng, 0..brain.len())];
    let (cr, cc) = ((centre / w) as f64, (centre % w) as f64);
    let sigma128 = f64::from(rand::Rng::random_range(&mut rng, 4u32..=10));
    let sigma = sigma128 * scale;
    let peak = WEIGHT / (std::f64::consts::TAU * sigma128 * sigma128);
    let threshold = (-0.5f64).exp();
    for p in brain {
        let (r, c) = ((p / w) as f64, (p % w) as f64);
        let d2 = (r - cr).powi(2) + (c - cc).powi(2);
        let g = peak * (-d2 / (2.0 * sigma * sigma)).exp();
        image[p] += g as f32;
        if g > threshold {
            seg[p] = 1;
        }
    }
}

/// An estimate of a rate in [0, 1]; interval ends are clamped to it (a bootstrap of a value
/// of 1 can end at `1 + 3e-15` from floating-point sums).
fn estimate(value: f64, ci: Option<blindspot_metrics::ConfidenceInterval>) -> Estimate {
    match ci {
        Some(ci) => Estimate::with_ci(value, ci.lower.clamp(0.0, 1.0), ci.upper.clamp(0.0, 1.0)),
        None => Estimate::point(value),
    }
}

/// Pixel counts at `threshold` (the rule `score > threshold`): (TP, FP, FN, healthy pixels).
fn counts(ranked: &RankedScores<f32>, threshold: f64) -> (u64, u64, u64, u64) {
    let (mut tp, mut fp) = (0, 0);
    // Distinct scores, highest first.
    for t in ranked.tallies() {
        if t.score <= threshold {
            break;
        }
        tp += t.positives;
        fp += t.negatives;
    }
    (tp, fp, ranked.positives() - tp, ranked.negatives())
}

/// Everything the accumulators hold, pooled and ranked.
fn pooled(parts: &[RankAccumulator<f32>]) -> RankedScores<f32> {
    let mut all = RankAccumulator::new();
    for p in parts {
        all.merge(p.clone());
    }
    all.finish()
}

fn pixel_metrics(
    method: &str,
    baseline: bool,
    ranked: &RankedScores<f32>,
    threshold: f64,
    curve_points: usize,
    curves: &mut Curves,
) -> Result<PixelMetrics> {
    let (tp, fp, fneg, healthy) = counts(ranked, threshold);
    let has_lesion = tp + fneg > 0;
    let mut m = PixelMetrics {
        method: method.to_owned(),
        baseline,
        auroc: None,
        ap: None,
        best_dice: None,
        dice_at_threshold: None,
        healthy_fpr_at_threshold: (healthy > 0)
            .then(|| Estimate::point(fp as f64 / healthy as f64)),
    };
    if healthy > 0 {
        // healthy-pixel FPR above each distinct score, for every set with healthy pixels
        let negatives = ranked.negatives() as f64;
        let mut above = 0u64;
        let fvt: Vec<[f64; 2]> = ranked
            .tallies()
            .filter(|t| t.negatives > 0 && t.score.is_finite())
            .map(|t| {
                above += t.negatives;
                [t.score, above as f64 / negatives]
            })
            .collect();
        curves
            .fpr_vs_threshold
            .push(Curve::thinned(method, &fvt, curve_points));
    }
    if has_lesion && healthy > 0 {
        m.auroc = Some(Estimate::point(ranked.auroc()?));
        m.ap = Some(Estimate::point(ranked.average_precision()?));
        let best = ranked.best_dice()?;
        if best.threshold.is_finite() {
            m.best_dice = Some(BestDice {
                dice: best.dice,
                threshold: best.threshold,
            });
        }
        m.dice_at_threshold = Some(Estimate::point(
            2.0 * tp as f64 / (2 * tp + fp + fneg) as f64,
        ));
        let roc = ranked.roc_curve()?;
        let pts: Vec<[f64; 2]> = roc
            .fpr
            .iter()
            .zip(&roc.tpr)
            .map(|(&x, &y)| [x, y])
            .collect();
        curves.roc.push(Curve::thinned(method, &pts, curve_points));
        let pr = ranked.pr_curve()?;
        let pts: Vec<[f64; 2]> = pr
            .recall
            .iter()
            .zip(&pr.precision)
            .map(|(&x, &y)| [x, y])
            .collect();
        curves.pr.push(Curve::thinned(method, &pts, curve_points));
    }
    Ok(m)
}

/// The pixel threshold: fixed, or the one reaching the target FPR on the healthy (negative)
/// pixels of `validation`.
fn calibrate(config: &RunConfig, validation: &RankedScores<f32>) -> Result<f64> {
    match config.threshold.method {
        ThresholdMethod::Fixed => Ok(config.threshold.value.unwrap_or(0.0)),
        ThresholdMethod::HealthyFpr => Ok(validation
            .threshold_for_fpr(config.threshold.target_fpr)?
            .threshold),
    }
}

fn detection(
    id: &[SliceRecord],
    test: &[SliceRecord],
    statistic: Statistic,
    mode: OodMode,
    rule: LesionRule,
    seed: u64,
    bootstrap: Option<&BootstrapConfig>,
) -> Option<Detection> {
    let negatives = match mode {
        OodMode::All => IdNegatives::All,
        _ => IdNegatives::Matched { seed },
    };
    let set = detection_set(
        id,
        test,
        &Scorer::Statistic(statistic),
        mode,
        rule,
        negatives,
    )
    .ok()?;
    let m = blindspot_ood::eval::evaluate(&set, bootstrap).ok()?;
    let iv = m.intervals;
    Some(Detection {
        auroc: estimate(m.auroc, iv.map(|i| i.auroc)),
        auprc: estimate(m.auprc, iv.map(|i| i.auprc)),
        fpr_at_95_tpr: estimate(m.fpr_at_95_tpr, iv.map(|i| i.fpr_at_95_tpr)),
    })
}

fn evaluate_sets(
    config: &RunConfig,
    dir: &Path,
    sets: &mut [SetData],
    times: Vec<WallTime>,
) -> Result<(Results, ScoringState)> {
    let (val, tests) = sets
        .split_first_mut()
        .expect("the validation set comes first");
    // DoSE on the statistics every non-empty slice has, fitted on healthy validation slices.
    let healthy_val: Vec<SliceRecord> = val
        .records
        .iter()
        .filter(|r| !r.is_empty() && r.lesion_pixels == 0)
        .cloned()
        .collect();
    let dose = Dose::fit(&healthy_val, &config.model.dose_statistics())?;
    dose.annotate(&mut val.records)?;
    for t in tests.iter_mut() {
        dose.annotate(&mut t.records)?;
    }
    // Both thresholds read the healthy (negative) validation pixels only.
    let threshold = calibrate(config, &pooled(&val.pixels))?;
    let baseline_threshold = val
        .intensity
        .clone()
        .finish()
        .threshold_for_fpr(config.threshold.target_fpr)?
        .threshold;

    let mut results = Results::new(
        config.name.clone(),
        config.to_json_value()?,
        ThresholdInfo {
            value: threshold,
            target_fpr: (config.threshold.method == ThresholdMethod::HealthyFpr)
                .then_some(config.threshold.target_fpr),
            calibrated_on: format!("healthy pixels of the validation set ({} scans)", val.scans),
        },
    );
    results.wall_times = times;
    let ev = &config.evaluation;
    // A model with a reconstruction error is judged against the references `train` wrote.
    let reconstructs = val.member_rec_err.first().is_some_and(|m| !m.is_empty());
    let refs = if reconstructs {
        Some(crate::adequacy::read_references(dir)?)
    } else {
        crate::adequacy::read_references(dir).ok()
    };
    if let Some(refs) = &refs {
        results.adequacy = crate::adequacy::member_adequacy(refs, val, ev.min_adequacy)?;
    }
    results.training =
        crate::adequacy::training_curves(dir, config.ensemble.members, refs.as_ref())?;
    let method = format!("{} ensemble", config.model.label());
    let bootstrap = (ev.bootstrap_resamples > 0).then_some(BootstrapConfig {
        resamples: ev.bootstrap_resamples,
        level: ev.confidence,
        seed: config.seed,
    });
    results.bootstrap = bootstrap.as_ref().map(|b| BootstrapInfo {
        resamples: b.resamples,
        level: b.level,
        unit: "scan".into(),
        seed: b.seed,
    });
    results.statistics = ev
        .statistics
        .iter()
        .map(|s| StatisticInfo {
            name: s.name().to_owned(),
            label: s.name().to_owned(),
            prior_knowledge: ev.prior_knowledge.contains(s),
        })
        .collect();
    let [oh, ow] = config.preprocess.slice_size;
    let rule = LesionRule {
        min_pixels: u32::try_from(ev.lesional_pixels).unwrap_or(u32::MAX),
    };
    let id: Vec<SliceRecord> = tests
        .iter()
        .filter(|t| t.role == Some(Role::InDistribution))
        .flat_map(|t| t.records.iter().cloned())
        .collect();
    for t in tests.iter() {
        let mut curves = Curves::default();
        let pixel = vec![
            pixel_metrics(
                &method,
                false,
                &pooled(&t.pixels),
                threshold,
                config.report.curve_points,
                &mut curves,
            )?,
            pixel_metrics(
                "intensity threshold",
                true,
                &t.intensity.clone().finish(),
                baseline_threshold,
                config.report.curve_points,
                &mut curves,
            )?,
        ];
        let ood_set = t.role == Some(Role::OutOfDistribution);
        let ood = if ood_set {
            ev.statistics
                .iter()
                .map(|&s| OodDetection {
                    statistic: s.name().to_owned(),
                    all: detection(
                        &id,
                        &t.records,
                        s,
                        OodMode::All,
                        rule,
                        config.seed,
                        bootstrap.as_ref(),
                    ),
                    lesional: detection(
                        &id,
                        &t.records,
                        s,
                        OodMode::Lesional,
                        rule,
                        config.seed,
                        bootstrap.as_ref(),
                    ),
                    healthy: detection(
                        &id,
                        &t.records,
                        s,
                        OodMode::Healthy,
                        rule,
                        config.seed,
                        bootstrap.as_ref(),
                    ),
                })
                .collect()
        } else {
            Vec::new()
        };
        let others: Vec<SliceRecord> = tests
            .iter()
            .filter(|o| o.role == Some(Role::InDistribution) && o.name != t.name)
            .flat_map(|o| o.records.iter().cloned())
            .collect();
        let disentangling = ev
            .statistics
            .iter()
            .filter_map(|&s| {
                let set = disentangling_set(
                    &others,
                    &[&t.records],
                    &Scorer::Statistic(s),
                    rule,
                    IdNegatives::Matched { seed: config.seed },
                )
                .ok()?;
                let m = blindspot_ood::eval::evaluate(&set, bootstrap.as_ref()).ok()?;
                Some(Disentangling {
                    statistic: s.name().to_owned(),
                    auroc: estimate(m.auroc, m.intervals.map(|i| i.auroc)),
                })
            })
            .collect();
        let non_empty = t.records.iter().filter(|r| !r.is_empty());
        let lesional = non_empty.clone().filter(|r| r.is_lesional(rule)).count();
        let total = non_empty.count();
        let slices = if ood_set {
            SliceCounts {
                id: 0,
                healthy_ood: total - lesional,
                lesional,
            }
        } else {
            SliceCounts {
                id: total - lesional,
                healthy_ood: 0,
                lesional,
            }
        };
        results.test_sets.push(TestSetResult {
            name: t.name.clone(),
            role: if ood_set {
                TestSetRole::OutOfDistribution
            } else {
                TestSetRole::InDistribution
            },
            scans: t.scans,
            slices,
            pixel,
            ood,
            disentangling,
            curves,
            slice_grids: slice_grid(dir, t, ood_set, threshold, [oh, ow])?
                .into_iter()
                .collect(),
        });
    }
    for &s in &ev.statistics {
        // one group per set, split healthy / lesional where the set has lesional slices
        let values: Vec<(String, Vec<f64>)> = tests
            .iter()
            .flat_map(|t| {
                let of = |lesional: bool| -> Vec<f64> {
                    t.records
                        .iter()
                        .filter(|r| r.is_lesional(rule) == lesional)
                        .filter_map(|r| r.get(s).ok())
                        .collect()
                };
                let lesional = of(true);
                if lesional.is_empty() {
                    vec![(t.name.clone(), of(false))]
                } else {
                    vec![
                        (format!("{} (healthy slices)", t.name), of(false)),
                        (format!("{} (lesional slices)", t.name), lesional),
                    ]
                }
            })
            .collect();
        let groups: Vec<(&str, &[f64])> = values
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        results.histograms.push(Histogram::from_values(
            s.name(),
            &groups,
            config.report.histogram_bins,
        ));
    }
    pooled_experiments(&mut results, config, tests, rule, bootstrap.as_ref())?;
    let mut gate = None;
    if let Some(gate_cfg) = &config.gate {
        let fitted = Gate::fit_split(&healthy_val, gate_cfg.clone())?;
        results.gate = Some(run_gate(&fitted, tests, threshold, bootstrap.as_ref())?);
        gate = Some(fitted);
    }
    let scoring = ScoringState {
        threshold,
        gate,
        healthy_validation: healthy_val,
    };
    Ok((results, scoring))
}

/// Draws the set's example slices (input, reconstruction, residual, ground truth, prediction
/// at the threshold) to `grids/<set>.png`.
fn slice_grid(
    dir: &Path,
    set: &SetData,
    ood: bool,
    threshold: f64,
    [h, w]: [usize; 2],
) -> Result<Option<SliceGridRef>> {
    if set.examples.is_empty() {
        return Ok(None);
    }
    let image = |data: &[f32]| GrayImage {
        width: w,
        height: h,
        data: data.to_vec(),
    };
    let lesional = set
        .examples
        .iter()
        .any(|e| e.lesion.iter().any(|&v| v > 0.0));
    let rows = set
        .examples
        .iter()
        .map(|e| GridRow {
            label: e.label.clone(),
            panels: vec![
                image(&e.input),
                image(&e.reconstruction),
                image(&e.residual),
                image(&e.lesion),
                image(
                    &e.residual
                        .iter()
                        .map(|&r| f32::from(u8::from(f64::from(r) > threshold)))
                        .collect::<Vec<_>>(),
                ),
            ],
        })
        .collect();
    let grid = SliceGrid {
        title: set.name.clone(),
        columns: [
            "input",
            "reconstruction",
            "residual",
            "ground truth",
            "prediction",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        display_ranges: Vec::new(),
    };
    let rel = format!("grids/{}.png", blindspot_report::slug(&set.name));
    create_dir(&dir.join("grids"))?;
    // input and reconstruction share one window, the residual is drawn in magma, masks binary
    write_slice_grid_with(&grid, &SliceGrid::paper_styles(), &dir.join(&rel))?;
    let kind = if lesional {
        GridKind::Lesional
    } else if ood {
        GridKind::OutOfDistribution
    } else {
        GridKind::InDistribution
    };
    Ok(Some(SliceGridRef {
        kind,
        path: rel,
        caption: format!(
            "{}: input, ensemble-mean reconstruction (inside the brain mask, where the loss \
             is computed; the input's background elsewhere), post-processed residual, ground \
             truth, residual above the threshold {threshold:.3}",
            set.name
        ),
    }))
}

/// Edges of the lesion-share bins of [`Results::disentangling_by_size`]: the lesion's share of
/// the slice's brain pixels.
const LESION_SHARE_BINS: [f64; 6] = [0.0, 0.02, 0.05, 0.1, 0.2, 1.0];

/// The paper's two slice-level experiments over every test set pooled, per statistic, and the
/// paired comparison of finding 3 (docs/method.md 5.2): OOD detection (healthy slices of the
/// out-of-distribution sets against healthy in-distribution slices) and disentangling (lesional
/// slices of every set against the healthy slices of every set), with scan-level intervals.
fn pooled_experiments(
    results: &mut Results,
    config: &RunConfig,
    tests: &[SetData],
    rule: LesionRule,
    bootstrap: Option<&BootstrapConfig>,
) -> Result<()> {
    let ev = &config.evaluation;
    let of_role = |role: Role| -> Vec<SliceRecord> {
        tests
            .iter()
            .filter(|t| t.role == Some(role))
            .flat_map(|t| t.records.iter().cloned())
            .collect()
    };
    let id_healthy: Vec<SliceRecord> = of_role(Role::InDistribution)
        .into_iter()
        .filter(|r| !r.is_lesional(rule))
        .collect();
    let ood = of_role(Role::OutOfDistribution);
    let all: Vec<&[SliceRecord]> = tests.iter().map(|t| t.records.as_slice()).collect();
    let disentangling =
        |s: Statistic| disentangling_set(&[], &all, &Scorer::Statistic(s), rule, IdNegatives::All);
    let metrics = |set: &blindspot_ood::eval::ScoredSet| {
        blindspot_ood::eval::evaluate(set, bootstrap)
            .ok()
            .map(|m| estimate(m.auroc, m.intervals.map(|i| i.auroc)))
    };
    for &s in &ev.statistics {
        let ood_auroc = detection_set(
            &id_healthy,
            &ood,
            &Scorer::Statistic(s),
            OodMode::Healthy,
            rule,
            IdNegatives::All,
        )
        .ok()
        .and_then(|set| metrics(&set));
        let disentangling_auroc = disentangling(s).ok().and_then(|set| metrics(&set));
        results.pooled.push(blindspot_report::PooledStatistic {
            statistic: s.name().to_owned(),
            ood_auroc,
            disentangling_auroc,
        });
    }
    // Disentangling against lesion size: the lesional slices split by the lesion's share of
    // the slice's brain, each bin against every healthy slice.
    let plotted: Vec<Statistic> = ev
        .statistics
        .iter()
        .copied()
        .filter(|s| {
            ev.prior_knowledge.contains(s)
                || blindspot_report::findings::PAPER_OOD_STATISTICS.contains(&s.name())
        })
        .collect();
    let share = |r: &SliceRecord| f64::from(r.lesion_pixels) / f64::from(r.mask_pixels.max(1));
    for w in LESION_SHARE_BINS.windows(2) {
        let (low, high) = (w[0], w[1]);
        let kept: Vec<Vec<SliceRecord>> = tests
            .iter()
            .map(|t| {
                t.records
                    .iter()
                    .filter(|r| !r.is_lesional(rule) || (share(r) > low && share(r) <= high))
                    .cloned()
                    .collect()
            })
            .collect();
        let kept: Vec<&[SliceRecord]> = kept.iter().map(Vec::as_slice).collect();
        let positives = kept
            .iter()
            .flat_map(|t| t.iter())
            .filter(|r| !r.is_empty() && r.is_lesional(rule))
            .count();
        if positives == 0 {
            continue;
        }
        let auroc = plotted
            .iter()
            .filter_map(|&s| {
                let set =
                    disentangling_set(&[], &kept, &Scorer::Statistic(s), rule, IdNegatives::All)
                        .ok()?;
                Some((s.name().to_owned(), metrics(&set)?))
            })
            .collect();
        results
            .disentangling_by_size
            .push(blindspot_report::SizeBin {
                low,
                high,
                positives,
                auroc,
            });
    }
    // Finding 3: the best prior-knowledge statistic against the best of the paper's scores.
    let best = |prior: bool| {
        results
            .pooled
            .iter()
            .filter(|p| {
                let is_prior = ev.prior_knowledge.iter().any(|s| s.name() == p.statistic);
                is_prior == prior
                    && (prior
                        || blindspot_report::findings::PAPER_OOD_STATISTICS
                            .contains(&p.statistic.as_str()))
            })
            .filter_map(|p| {
                p.disentangling_auroc
                    .map(|e| (p.statistic.clone(), e.value))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(name, _)| name)
    };
    let named = |name: &str| ev.statistics.iter().copied().find(|s| s.name() == name);
    if let (Some(prior), Some(plain), Some(b)) = (best(true), best(false), bootstrap)
        && let (Some(p), Some(q)) = (named(&prior), named(&plain))
    {
        // paired on the slices both statistics score
        let (a, c) = blindspot_ood::eval::paired_disentangling_sets(
            &all,
            &Scorer::Statistic(p),
            &Scorer::Statistic(q),
            rule,
            IdNegatives::All,
        )?;
        match blindspot_ood::eval::compare_auroc(&a, &c, b) {
            Ok(cmp) => {
                results.prior_comparison = Some(blindspot_report::PriorComparison {
                    prior,
                    plain,
                    difference: Estimate {
                        value: cmp.difference.estimate,
                        low: Some(cmp.difference.lower),
                        high: Some(cmp.difference.upper),
                    },
                });
            }
            // the report then judges finding 3 on the mean of the per-set AUROCs and says so
            Err(e) => {
                eprintln!("warning: no paired comparison of {prior} and {plain} for finding 3: {e}")
            }
        }
    }
    Ok(())
}

fn run_gate(
    gate: &Gate,
    tests: &[SetData],
    threshold: f64,
    bootstrap: Option<&BootstrapConfig>,
) -> Result<GateResult> {
    let mut per_set = Vec::new();
    let mut outcomes = Vec::new();
    let (mut dice_acc, mut dice_all) = (Vec::new(), Vec::new());
    let (mut rejected, mut scans) = (0usize, 0usize);
    // Pixels of the accepted scans and of all scans, and the in-distribution scans accepted.
    let (mut pixels_acc, mut pixels_all) = (Vec::new(), Vec::new());
    let (mut id_scans, mut id_accepted) = (0usize, 0usize);
    for t in tests {
        let verdicts = gate.decide_all(&t.records)?;
        for v in &verdicts {
            let accepted = v.decision.reports_lesion_map();
            if let Some(k) = t.subjects.iter().position(|s| *s == v.scan.volume) {
                pixels_all.push(t.pixels[k].clone());
                if accepted {
                    pixels_acc.push(t.pixels[k].clone());
                }
            }
            if t.role == Some(Role::InDistribution) {
                id_scans += 1;
                id_accepted += usize::from(accepted);
            }
        }
        // Pixel counts per scan at the calibrated threshold.
        let per_scan: BTreeMap<&str, (u64, u64, u64)> = t
            .subjects
            .iter()
            .zip(&t.pixels)
            .map(|(scan, acc)| {
                let (tp, fp, fneg, _) = counts(&acc.clone().finish(), threshold);
                (scan.as_str(), (tp, fp, fneg))
            })
            .collect();
        let mut row = GateSetResult {
            test_set: t.name.clone(),
            scans: verdicts.len(),
            in_distribution: 0,
            lesion_suspected: 0,
            rejected: 0,
        };
        for v in &verdicts {
            match v.decision {
                Decision::InDistribution => row.in_distribution += 1,
                Decision::LesionSuspected => row.lesion_suspected += 1,
                Decision::OutOfDistribution => row.rejected += 1,
            }
            let (tp, fp, fneg) = per_scan
                .get(v.scan.volume.as_str())
                .copied()
                .unwrap_or_default();
            let outcome = ScanOutcome {
                scan: v.scan.clone(),
                gate_score: if v.shift_score.is_finite() {
                    v.shift_score
                } else {
                    f64::MAX
                },
                true_positives: tp,
                false_positives: fp,
                false_negatives: fneg,
            };
            // The Dice means cover lesional scans (a healthy scan has no lesion to find).
            if tp + fneg > 0 {
                dice_all.push(outcome.dice());
                if v.decision.reports_lesion_map() {
                    dice_acc.push(outcome.dice());
                }
            }
            outcomes.push(outcome);
        }
        rejected += row.rejected;
        scans += row.scans;
        per_set.push(row);
    }
    let mean = |v: &[f64]| {
        (!v.is_empty()).then(|| Estimate::point(v.iter().sum::<f64>() / v.len() as f64))
    };
    // Healthy-pixel FPR at the threshold and pixel AP over the pooled scans.
    let pixel_summary = |parts: &[RankAccumulator<f32>]| -> (Option<f64>, Option<f64>) {
        if parts.is_empty() {
            return (None, None);
        }
        let ranked = pooled(parts);
        let (_, fp, _, negatives) = counts(&ranked, threshold);
        let fpr = (negatives > 0).then(|| fp as f64 / negatives as f64);
        (fpr, ranked.average_precision().ok())
    };
    let (healthy_fpr_accepted, pixel_ap_accepted) = pixel_summary(&pixels_acc);
    let (healthy_fpr_all, pixel_ap_all) = pixel_summary(&pixels_all);
    let rc = risk_coverage(&outcomes)?;
    let aurc_ci = match bootstrap {
        Some(b) => blindspot_ood::eval::bootstrap_aurc(&outcomes, b).ok(),
        None => None,
    };
    Ok(GateResult {
        per_set,
        fraction_rejected: if scans == 0 {
            0.0
        } else {
            rejected as f64 / scans as f64
        },
        dice_accepted: mean(&dice_acc),
        dice_all: mean(&dice_all),
        risk_coverage: rc
            .points
            .iter()
            .map(|p| [p.coverage, 1.0 - p.mean_dice])
            .collect(),
        aurc: Some(estimate(rc.aurc, aurc_ci)),
        healthy_fpr_accepted,
        healthy_fpr_all,
        pixel_ap_accepted,
        pixel_ap_all,
        id_acceptance: (id_scans > 0).then(|| id_accepted as f64 / id_scans as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition_items() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        let owned: Vec<usize> = (0..7).filter(|&i| s.owns(i)).collect();
        assert_eq!(owned, [1, 4]);
        assert!((0..5).all(|i| Shard::ALL.owns(i)));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", ""] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.is_config(), "{bad}");
            assert!(err.to_string().contains("--shard"), "{err}");
        }
    }

    #[test]
    fn transforms_mirror_all_three_buffers_and_noise_stays_in_the_brain() {
        // 3 rows x 2 columns.
        let base = || {
            (
                vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
                vec![1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0],
                vec![1u8, 0, 0, 0, 0, 0],
            )
        };
        let (mut x, mut m, mut s) = base();
        apply_transform(Transform::FlipUd, [3, 2], &mut x, &mut m, &mut s, 0);
        assert_eq!(x, [5.0, 6.0, 3.0, 4.0, 1.0, 2.0]);
        assert_eq!(m, [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(s, [0, 0, 0, 0, 1, 0]);
        let (mut x, mut m, mut s) = base();
        apply_transform(Transform::FlipLr, [3, 2], &mut x, &mut m, &mut s, 0);
        assert_eq!(x, [2.0, 1.0, 4.0, 3.0, 6.0, 5.0]);
        assert_eq!(s, [0, 1, 0, 0, 0, 0]);
        let (mut x, mut m, mut s) = base();
        apply_transform(Transform::Noise, [3, 2], &mut x, &mut m, &mut s, 9);
        assert_eq!([x[1], x[4], x[5]], [2.0, 5.0, 6.0], "background untouched");
        assert!([x[0], x[2], x[3]].iter().all(|v| v.is_finite()));
        assert_ne!([x[0], x[2], x[3]], [1.0, 3.0, 4.0]);
        assert!(s.iter().all(|&v| v == 0));
        let (mut y, mut m2, mut s2) = base();
        apply_transform(Transform::Noise, [3, 2], &mut y, &mut m2, &mut s2, 9);
        assert_eq!(x, y, "seeded");
    }

    #[test]
    fn blobs_add_a_gaussian_lesion_inside_the_brain_and_label_it() {
        let (h, w) = (32, 32);
        // A brain disc of radius 12 in the middle.
        let mask: Vec<f32> = (0..h * w)
            .map(|p| {
                let (r, c) = ((p / w) as f64 - 15.5, (p % w) as f64 - 15.5);
                f32::from(u8::from(r * r + c * c < 144.0))
            })
            .collect();
        let mut with_blob = 0;
        for seed in 0..40 {
            let mut x = vec![0.0f32; h * w];
            let mut m = mask.clone();
            let mut s = vec![0u8; h * w];
            apply_transform(Transform::Blobs, [h, w], &mut x, &mut m, &mut s, seed);
            assert_eq!(m, mask, "the brain mask is kept");
            for p in 0..h * w {
                if mask[p] == 0.0 {
                    assert!(x[p] == 0.0 && s[p] == 0, "nothing outside the brain");
                }
                if s[p] == 1 {
                    // Labelled where the blob adds more than exp(-1/2).
                    assert!(f64::from(x[p]) > 0.6, "{}", x[p]);
                }
            }
            let peak = x.iter().copied().fold(0.0f32, f32::max);
            if peak > 0.0 {
                with_blob += 1;
                // 1000 / (2 pi sigma^2) for sigma in 4..=10.
                assert!((1.58..=9.95).contains(&peak), "peak {peak}");
                assert!(s.contains(&1));
            } else {
                assert!(s.iter().all(|&v| v == 0));
            }
            let (mut y, mut s2) = (vec![0.0f32; h * w], vec![0u8; h * w]);
            apply_transform(Transform::Blobs, [h, w], &mut y, &mut m, &mut s2, seed);
            assert_eq!((x, s), (y, s2), "seeded");
        }
        // Three in four slices get a blob (40 draws: far from 0 and from 40).
        assert!((20..=38).contains(&with_blob), "{with_blob} of 40");
        // A tiny brain gets none.
        let mut tiny = vec![0.0f32; h * w];
        tiny[..5].fill(1.0);
        let mut x = vec![0.0f32; h * w];
        let mut s = vec![0u8; h * w];
        for seed in 0..10 {
            apply_transform(Transform::Blobs, [h, w], &mut x, &mut tiny, &mut s, seed);
        }
        assert!(x.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn pooled_pixel_counts_at_a_threshold() {
        let scores = [0.1f32, 0.9, 0.6, 0.2, 0.7];
        let lesion = [false, true, true, true, false];
        // Split over two accumulators, as two scans or two shards would be.
        let mut a = RankAccumulator::new();
        a.push(&scores[..2], &lesion[..2]).unwrap();
        let mut b = RankAccumulator::new();
        b.push(&scores[2..], &lesion[2..]).unwrap();
        let ranked = pooled(&[a, b]);
        // > 0.5: TP = 2 (0.9, 0.6), FP = 1 (0.7), FN = 1 (0.2), healthy = 2.
        assert_eq!(counts(&ranked, 0.5), (2, 1, 1, 2));
        // Ties at the threshold are not above it.
        assert_eq!(counts(&ranked, f64::from(0.6f32)), (1, 1, 2, 2));
        let mut curves = Curves::default();
        let m = pixel_metrics("m", false, &ranked, 0.5, 50, &mut curves).unwrap();
        assert_eq!(m.dice_at_threshold.unwrap().value, 4.0 / 6.0);
        assert_eq!(m.healthy_fpr_at_threshold.unwrap().value, 0.5);
        // Lesion scores 0.9, 0.6, 0.2 vs healthy 0.1, 0.7: 4 of 6 pairs ordered.
        assert!((m.auroc.unwrap().value - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(curves.roc.len(), 1);
        // Without lesions only the FPR is defined.
        let healthy = RankedScores::from_scores(&scores, &[false; 5]).unwrap();
        let m = pixel_metrics("m", false, &healthy, 0.5, 50, &mut curves).unwrap();
        assert!(m.auroc.is_none() && m.dice_at_threshold.is_none());
        assert_eq!(m.healthy_fpr_at_threshold.unwrap().value, 3.0 / 5.0);
    }

    #[test]
    fn a_model_crate_refusing_a_setting_is_a_config_error() {
        let width = blindspot_core::InvalidConfig::new("width", 0, "> 0");
        assert!(RunError::ModelConfig(width).is_config());
        let core = blindspot_core::InvalidConfig::new("batch_size", 0, ">= 1");
        assert!(RunError::Model(core.into()).is_config());
        let runtime = blindspot_core::Error::NoCheckpoint {
            dir: "x".into(),
            which: "last",
        };
        assert!(!RunError::Model(runtime).is_config());
    }
}
