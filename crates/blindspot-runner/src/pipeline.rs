//! `blindspot run`: the whole experiment of one [`RunConfig`] in a run directory, step by step.
//!
//! Steps (each timed into `results.json`): synthesise the phantom (`data/`), preprocess every
//! dataset into a slice cache (`cache/`), train the ensemble of the configured model family
//! (`model/member-i/`, through [`crate::models`]), infer on the validation set and every test
//! set (`inference.rs`), and evaluate (`evaluation.rs`: the healthy-pixel-FPR
//! threshold, pixel metrics beside a model-free baseline, OOD detection, disentangling, the
//! gate); the results go to `results.json`, the resolved config beside it, and the report is
//! rendered. `evaluate --shard` writes partial results instead ([`crate::partial`]).
//!
//! Generic over the training backend; the binary picks it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use blindspot_core::{Members, SliceSource, TrainJob};
use blindspot_io::histmatch::{HistMatchConfig, Landmarks};
use blindspot_io::{Pipeline, SubjectFiles};
use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
use blindspot_report::WallTime;

use crate::config::{DatasetSpec, RunConfig};
use crate::error::{Result, create_dir};
use crate::evaluation::{EvaluationSettings, evaluate_sets};
use crate::inference::{
    ChunkPlan, EnsembleInference, InferenceSettings, SetData, chunk_count, evaluated_sets,
    progress_for,
};
use crate::slices::CacheSlices;

pub use crate::error::RunError;
pub use crate::evaluation::{SCORING_FILE, ScoringState};
pub use crate::shard::Shard;

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
/// `i` with seed `seed + i`, as `blindspot_core::Ensemble::fit` does); a finished member is resumed, which
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
        seed: config.seed,
        config: &config.train,
        run_dir: &dir.join("model"),
        train: &train,
        val: Some(&val),
        device,
        observe: &|_| crate::progress::train_progress(config.train.progress),
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
/// [`evaluate`]. A partial result of the same shard already there, inferred with the same
/// config, is reused (a resubmitted job array skips the shards that finished).
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
    // A resubmitted job array reuses the shards that finished (same shard, same config).
    if let Some(path) = crate::partial::finished(config, dir, shard) {
        eprintln!(
            "evaluate --shard {}/{}: {} is already there for this config, reused",
            shard.index,
            shard.count,
            path.display()
        );
        return Ok(path);
    }
    let t = Instant::now();
    let sets = infer_sets::<B>(config, dir, shard, device)?;
    crate::partial::write(config, dir, shard, &sets, t.elapsed().as_secs_f64())
}

/// `blindspot evaluate --merge`: reads the partial results of every shard of
/// [`evaluate_shard`] from `dir/eval-shards/`, merges them (exactly: the records in slice
/// order, the pixel scores as `RankAccumulator`s) and evaluates as [`evaluate`] does. Needs
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
    let settings = EvaluationSettings::of(config)?;
    let (mut results, scoring) = evaluate_sets(&settings, dir, sets)?;
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

/// Inference of `shard` over the validation set and every test set with the run's ensemble.
fn infer_sets<B: ConvBackend>(
    config: &RunConfig,
    dir: &Path,
    shard: Shard,
    device: &B::Device,
) -> Result<Vec<SetData>> {
    let specs = evaluated_sets(config);
    let caches = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| open_cache(dir, i + 1, &spec.name))
        .collect::<Result<Vec<_>>>()?;
    let members = load_members::<B>(config, dir, device)?;
    let settings = InferenceSettings::of(config);
    let bar = progress_for(&settings, &caches, shard);
    let inference = EnsembleInference {
        ensemble: members.as_ref(),
        device,
        settings,
        bar: &bar,
    };
    let mut sets = Vec::new();
    let mut first_chunk = 0;
    for (spec, cache) in specs.iter().zip(&caches) {
        let plan = ChunkPlan {
            shard,
            first_chunk,
            seed: config.seed ^ 0x5eed_1f3e,
        };
        sets.push(inference.infer_set(cache, spec, plan)?);
        first_chunk += chunk_count(cache, settings.slice_stride);
    }
    bar.finish_and_clear();
    Ok(sets)
}

/// Every member's last checkpoint under `dir/model`.
///
/// # Errors
/// [`RunError::Model`] for a setting the model refuses or a missing or corrupt checkpoint.
pub(crate) fn load_members<B: ConvBackend>(
    config: &RunConfig,
    dir: &Path,
    device: &B::Device,
) -> Result<Box<dyn Members<B>>> {
    Ok(config.model.load::<B>(
        config.preprocess.slice_size[0],
        &dir.join("model"),
        config.ensemble.members,
        device,
    )?)
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
