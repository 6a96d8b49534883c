//! Inference of the ensemble over the validation set and the test sets: fixed chunks of
//! [`INFER_BATCH`] slices, each with its own random stream, turned into [`SliceRecord`]s and
//! pixel-score accumulators ([`SetData`]).
//!
//! The run config reaches inference once, as [`InferenceSettings`]; each set comes as a
//! [`SetSpec`] and its place in a sharded evaluation as a [`ChunkPlan`]. A set's inference
//! reads a chunk ([`ChunkInput`]), runs the members on it, and adds its slices to the set
//! ([`SetBuilder`]); the set's WAIC comes last, from every member's records.

use blindspot_core::{Batch, MapKind, Members, ModelStat, SliceOutputs, SliceSource};
use blindspot_metrics::RankAccumulator;
use blindspot_ood::slice::{
    PostprocessConfig, ResidualSource, SliceInput, SliceStatsConfig, postprocess_residual,
    slice_record,
};
use blindspot_ood::waic::{WaicKind, ensemble_waic};
use blindspot_ood::{SliceId, SliceRecord};
use burn::tensor::backend::Backend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{Role, RunConfig, Transform};
use crate::error::{Result, RunError};
use crate::shard::Shard;
use crate::slices::CacheSlices;
use crate::transforms::apply_transform;

/// Slices per inference batch.
pub(crate) const INFER_BATCH: usize = 32;

/// What inference reads from the run config, built once ([`InferenceSettings::of`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InferenceSettings {
    /// Every `slice_stride`-th slice of a cache is inferred (`evaluation.slice_stride`).
    pub(crate) slice_stride: usize,
    /// The model's latent dimension, which the slice records' ELBO reads.
    pub(crate) latent_dim: usize,
    /// The seed of the test-set transforms (the run's `seed`).
    pub(crate) transform_seed: u64,
    /// Which slices a set keeps as examples for its grid.
    pub(crate) examples: ExampleSettings,
    /// Whether every inferred slice's post-processed residual is kept ([`SetData::maps`]).
    pub(crate) keep_maps: bool,
    /// Whether inference shows a progress bar (`train.progress`).
    pub(crate) progress: bool,
}

impl InferenceSettings {
    /// The settings of `config` (keeping no maps: only scoring keeps them).
    pub(crate) fn of(config: &RunConfig) -> Self {
        Self {
            slice_stride: config.evaluation.slice_stride,
            latent_dim: config.model.latent_dims(),
            transform_seed: config.seed,
            examples: ExampleSettings {
                count: config.report.grid_examples,
                lesional_pixels: config.evaluation.lesional_pixels,
            },
            keep_maps: false,
            progress: config.train.progress,
        }
    }
}

/// Which example slices a set keeps for the report's slice grid ([`example_slices`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExampleSettings {
    /// How many (`report.grid_examples`; 0: none).
    pub(crate) count: usize,
    /// A slice with more lesion pixels than this is lesional (`evaluation.lesional_pixels`).
    pub(crate) lesional_pixels: usize,
}

/// One dataset to infer.
#[derive(Debug, Clone)]
pub(crate) struct SetSpec {
    /// The dataset of its slices' ids (`01-validation`: the cache's number and the name).
    pub(crate) dataset: String,
    /// The set's name in the config.
    pub(crate) name: String,
    /// Its role (`None`: the validation set, or a scan being scored).
    pub(crate) role: Option<Role>,
    /// The transform applied to its slices before inference.
    pub(crate) transform: Transform,
}

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
pub(crate) fn example_slices(
    cache: &CacheSlices,
    indices: &[usize],
    settings: ExampleSettings,
) -> Vec<usize> {
    let k = settings.count;
    if k == 0 || indices.is_empty() {
        return Vec::new();
    }
    let c = cache.cache();
    let lesion = |i: usize| c.lesion(i).iter().filter(|&&v| v != 0).count();
    let mut lesional: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| lesion(i) > settings.lesional_pixels)
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

/// The evaluated datasets in order (validation, then the test sets); the set at position `i`
/// is cache `i + 1` of the run.
pub(crate) fn evaluated_sets(config: &RunConfig) -> Vec<SetSpec> {
    std::iter::once(("validation".to_owned(), None, Transform::None))
        .chain(
            config
                .data
                .test
                .iter()
                .map(|t| (t.name.clone(), Some(t.role), t.transform)),
        )
        .enumerate()
        .map(|(i, (name, role, transform))| SetSpec {
            dataset: format!("{:02}-{name}", i + 1),
            name,
            role,
            transform,
        })
        .collect()
}

/// The number of chunks of [`INFER_BATCH`] slices inference splits `cache` into.
pub(crate) fn chunk_count(cache: &CacheSlices, slice_stride: usize) -> usize {
    inferred_slices(cache, slice_stride)
        .len()
        .div_ceil(INFER_BATCH)
}

/// The progress bar of inference over the chunks `shard` owns.
pub(crate) fn progress_for(
    settings: &InferenceSettings,
    caches: &[CacheSlices],
    shard: Shard,
) -> indicatif::ProgressBar {
    if !settings.progress {
        return indicatif::ProgressBar::hidden();
    }
    let total: usize = caches
        .iter()
        .flat_map(|c| {
            inferred_slices(c, settings.slice_stride)
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

pub(crate) fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
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

/// Where one set's inference sits in the evaluation: its shard, the global index of the
/// set's first chunk (chunks are numbered over all evaluated sets, so shards stay balanced),
/// and the seed of the inference randomness (chunk `c` draws from stream `c` of it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkPlan {
    pub(crate) shard: Shard,
    pub(crate) first_chunk: usize,
    pub(crate) seed: u64,
}

impl ChunkPlan {
    /// The random stream of the chunk with global index `chunk`.
    fn rng(&self, chunk: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(chunk as u64);
        rng
    }
}

/// The slices of `cache` that are inferred: every `slice_stride`-th one.
pub(crate) fn inferred_slices(cache: &CacheSlices, slice_stride: usize) -> Vec<usize> {
    (0..cache.len()).step_by(slice_stride).collect()
}

/// The ensemble on its device, with what the inference of every set shares: the settings and
/// the progress bar.
pub(crate) struct EnsembleInference<'a, B: Backend> {
    pub(crate) ensemble: &'a dyn Members<B>,
    pub(crate) device: &'a B::Device,
    pub(crate) settings: InferenceSettings,
    pub(crate) bar: &'a indicatif::ProgressBar,
}

impl<B: Backend> EnsembleInference<'_, B> {
    /// Inference of the ensemble on every `stride`-th slice of `cache`, in fixed chunks of
    /// [`INFER_BATCH`] slices, keeping the chunks `plan.shard` owns. Each chunk draws from its
    /// own random stream, so a slice's outputs do not depend on the sharding.
    pub(crate) fn infer_set(
        &self,
        cache: &CacheSlices,
        spec: &SetSpec,
        plan: ChunkPlan,
    ) -> Result<SetData> {
        let indices = inferred_slices(cache, self.settings.slice_stride);
        let mut set = SetBuilder::new(cache, spec, &self.settings, &indices, self.ensemble.len());
        for (j, chunk) in indices.chunks(INFER_BATCH).enumerate() {
            let global = plan.first_chunk + j;
            if !plan.shard.owns(global) {
                continue;
            }
            let input = ChunkInput::read(cache, chunk, spec, self.settings.transform_seed)?;
            let outs = self.infer_chunk(&input, plan.rng(global))?;
            set.push_chunk(&input, &outs)?;
            self.bar.inc(chunk.len() as u64);
        }
        set.finish()
    }

    /// Every member's outputs on one chunk, drawing from `rng`.
    fn infer_chunk(
        &self,
        input: &ChunkInput<'_>,
        mut rng: ChaCha8Rng,
    ) -> Result<Vec<SliceOutputs>> {
        let [h, w] = input.shape;
        let batch = Batch::<B>::from_host(
            input.images.clone(),
            input.masks.clone(),
            [input.slices.len(), h, w],
            self.device,
        )?;
        Ok(self.ensemble.infer(&batch, &mut rng)?)
    }
}

/// One chunk's slices as the model sees them (the set's transform applied), `n x h x w`.
struct ChunkInput<'c> {
    /// The cache index of each slice.
    slices: &'c [usize],
    shape: [usize; 2],
    images: Vec<f32>,
    masks: Vec<f32>,
    segs: Vec<u8>,
}

impl<'c> ChunkInput<'c> {
    /// Reads the slices `chunk` of `cache` and applies the set's transform (slice `i` with the
    /// seed `seed ^ i * 0x9e37_79b9_7f4a_7c15`).
    fn read(cache: &CacheSlices, chunk: &'c [usize], spec: &SetSpec, seed: u64) -> Result<Self> {
        let [h, w] = cache.shape();
        let hw = h * w;
        let n = chunk.len();
        let mut images = vec![0.0f32; n * hw];
        let mut masks = vec![0.0f32; n * hw];
        let mut segs = vec![0u8; n * hw];
        for (k, &i) in chunk.iter().enumerate() {
            let at = k * hw..(k + 1) * hw;
            cache
                .read(i, &mut images[at.clone()], &mut masks[at.clone()])
                .map_err(|message| RunError::Empty {
                    dataset: spec.name.clone(),
                    why: message,
                })?;
            segs[at.clone()].copy_from_slice(cache.cache().lesion(i));
            apply_transform(
                spec.transform,
                [h, w],
                &mut images[at.clone()],
                &mut masks[at.clone()],
                &mut segs[at],
                seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
        }
        Ok(Self {
            slices: chunk,
            shape: [h, w],
            images,
            masks,
            segs,
        })
    }

    /// Slice `k` of the chunk, its mask and segmentation as booleans.
    fn slice(&self, k: usize) -> InputSlice<'_> {
        let [h, w] = self.shape;
        let at = k * h * w..(k + 1) * h * w;
        InputSlice {
            index: self.slices[k],
            shape: self.shape,
            image: &self.images[at.clone()],
            mask: self.masks[at.clone()].iter().map(|&b| b > 0.5).collect(),
            seg: self.segs[at].iter().map(|&b| b != 0).collect(),
        }
    }
}

/// One inferred slice's input: its cache index, shape, image, brain mask and lesion
/// segmentation.
struct InputSlice<'a> {
    index: usize,
    shape: [usize; 2],
    image: &'a [f32],
    mask: Vec<bool>,
    seg: Vec<bool>,
}

impl InputSlice<'_> {
    /// The input of [`slice_record`] for this slice with `residual` and the statistics given.
    fn record_input<'s>(
        &'s self,
        id: SliceId,
        residual: ResidualSource<'s>,
        statistics: SliceStatistics,
        latent_dim: usize,
    ) -> SliceInput<'s> {
        let [h, w] = self.shape;
        SliceInput {
            id,
            width: w,
            height: h,
            residual,
            mask: &self.mask,
            segmentation: Some(&self.seg),
            rec_err: statistics.rec_err,
            kl: statistics.kl,
            latent_dim,
            elbo: statistics.elbo,
            log_likelihood: statistics.log_likelihood,
            latent_mean: None,
            image: Some(self.image),
        }
    }
}

/// The model statistics of one slice's record.
#[derive(Debug, Clone, Copy)]
struct SliceStatistics {
    rec_err: Option<f64>,
    kl: Option<f64>,
    elbo: Option<f64>,
    log_likelihood: Option<f64>,
}

/// A set's [`SetData`] as its chunks arrive, with each member's own records for WAIC.
struct SetBuilder<'c> {
    cache: &'c CacheSlices,
    dataset: &'c str,
    latent_dim: usize,
    keep_maps: bool,
    stats: SliceStatsConfig,
    post: PostprocessConfig,
    /// The example slices to keep.
    wanted: Vec<usize>,
    /// Per member, its records in slice order.
    member_records: Vec<Vec<SliceRecord>>,
    set: SetData,
}

impl<'c> SetBuilder<'c> {
    /// An empty set of `spec`, of which `indices` are inferred, for an ensemble of `members`.
    fn new(
        cache: &'c CacheSlices,
        spec: &'c SetSpec,
        settings: &InferenceSettings,
        indices: &[usize],
        members: usize,
    ) -> Self {
        let subjects = cache.cache().subjects();
        Self {
            cache,
            dataset: &spec.dataset,
            latent_dim: settings.latent_dim,
            keep_maps: settings.keep_maps,
            stats: SliceStatsConfig::default(),
            post: PostprocessConfig::default(),
            wanted: example_slices(cache, indices, settings.examples),
            member_records: vec![Vec::new(); members],
            set: SetData {
                name: spec.name.clone(),
                role: spec.role,
                scans: subjects.len(),
                total_slices: indices.len(),
                records: Vec::new(),
                record_slices: Vec::new(),
                member_rec_err: Vec::new(),
                pixels: vec![RankAccumulator::new(); subjects.len()],
                intensity: RankAccumulator::new(),
                subjects: subjects.to_vec(),
                maps: Vec::new(),
                examples: Vec::new(),
            },
        }
    }

    /// Adds every slice of an inferred chunk (`outs`: each member's outputs on it).
    fn push_chunk(&mut self, input: &ChunkInput<'_>, outs: &[SliceOutputs]) -> Result<()> {
        for k in 0..input.slices.len() {
            let members: Vec<MemberSlice<'_>> =
                outs.iter().map(|o| MemberSlice::of(o, k)).collect();
            self.push_slice(&input.slice(k), &members)?;
        }
        Ok(())
    }

    /// Adds one slice: each member's record, the ensemble's record (the mean map, the mean of
    /// each statistic every member has), its pixel scores, and its example and map when kept.
    fn push_slice(&mut self, slice: &InputSlice<'_>, members: &[MemberSlice<'_>]) -> Result<()> {
        let cache = self.cache;
        let c = cache.cache();
        let id = c.identity(slice.index);
        let slice_id = SliceId::new(self.dataset, id.subject, id.index as u32);
        for (m, member) in members.iter().enumerate() {
            let input = slice.record_input(
                slice_id.clone(),
                member.residual(slice.image),
                member.statistics(),
                self.latent_dim,
            );
            self.member_records[m].push(slice_record(&input, &self.stats)?);
        }
        let mean = mean_map(members, slice.image.len());
        let source = if members[0].map_kind == MapKind::Reconstruction {
            ResidualSource::Reconstruction {
                input: slice.image,
                reconstruction: &mean,
            }
        } else {
            ResidualSource::AnomalyMap(&mean)
        };
        let input = slice.record_input(
            slice_id,
            source,
            ensemble_statistics(members),
            self.latent_dim,
        );
        self.set.records.push(slice_record(&input, &self.stats)?);
        self.set.record_slices.push(slice.index);
        self.set
            .member_rec_err
            .push(members.iter().filter_map(|m| m.rec_err).collect());
        let [h, w] = slice.shape;
        let residual = postprocess_residual(source, &slice.mask, w, h, &self.post)?;
        let scan = c
            .subjects()
            .iter()
            .position(|s| s == id.subject)
            .unwrap_or(0);
        if self.wanted.contains(&slice.index) {
            let label = format!("{} z{}", id.subject, id.index);
            self.set
                .examples
                .push(Example::of(slice, label, &mean, &residual));
        }
        self.set.pixels[scan].push_masked(&residual, &slice.seg, &slice.mask)?;
        self.set
            .intensity
            .push_masked(slice.image, &slice.seg, &slice.mask)?;
        if self.keep_maps {
            self.set.maps.push((slice.index, residual));
        }
        Ok(())
    }

    /// The set, with the ensemble's WAIC of each kind the members' records have added to its
    /// records (an ensemble of two members or more).
    fn finish(mut self) -> Result<SetData> {
        if self.member_records.len() < 2 {
            return Ok(self.set);
        }
        let members: Vec<&[SliceRecord]> = self.member_records.iter().map(Vec::as_slice).collect();
        for kind in [WaicKind::Paper, WaicKind::NegElbo] {
            if members[0]
                .first()
                .is_some_and(|r| r.get(kind.member_statistic()).is_err())
            {
                continue; // the model has no such statistic (checked against the config)
            }
            let scores = ensemble_waic(&members, kind)?;
            blindspot_ood::record::insert_scores(
                &mut self.set.records,
                kind.output_statistic(),
                &scores,
            )?;
        }
        Ok(self.set)
    }
}

/// The ensemble's map of one slice: the mean of the members' maps.
fn mean_map(members: &[MemberSlice<'_>], pixels: usize) -> Vec<f32> {
    let mut mean = vec![0.0f32; pixels];
    for member in members {
        for (a, b) in mean.iter_mut().zip(member.map) {
            *a += b / members.len() as f32;
        }
    }
    mean
}

/// The ensemble's statistics of one slice: the mean of each statistic every member has (the
/// ensemble's `rec_err` is computed from its mean map).
fn ensemble_statistics(members: &[MemberSlice<'_>]) -> SliceStatistics {
    let mean_of = |f: fn(&MemberSlice<'_>) -> Option<f64>| {
        let v: Option<Vec<f64>> = members.iter().map(f).collect();
        v.map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    SliceStatistics {
        rec_err: None,
        kl: mean_of(|m| m.kl),
        elbo: mean_of(|m| m.log_likelihood),
        log_likelihood: mean_of(|m| m.log_likelihood),
    }
}

impl Example {
    /// `slice` as a grid example with the ensemble's `mean` map and post-processed `residual`.
    fn of(slice: &InputSlice<'_>, label: String, mean: &[f32], residual: &[f32]) -> Self {
        Self {
            slice: slice.index,
            label,
            input: slice.image.to_vec(),
            // inside the brain only: the masked loss leaves the rest unconstrained, and the
            // input's background there keeps the grid readable
            reconstruction: mean
                .iter()
                .zip(&slice.mask)
                .zip(slice.image)
                .map(|((&r, &m), &xi)| if m { r } else { xi })
                .collect(),
            residual: residual.to_vec(),
            lesion: slice.seg.iter().map(|&b| f32::from(u8::from(b))).collect(),
        }
    }
}

/// One member's outputs for one slice.
pub(crate) struct MemberSlice<'a> {
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
            rec_err: out.stat(ModelStat::RecErr).map(|v| v[k]),
            kl: out.stat(ModelStat::KlDiv).map(|v| v[k]),
            log_likelihood: out.stat(ModelStat::LogLikelihood).map(|v| v[k]),
        }
    }

    /// The statistics of the member's record. The VAE's `elbo` is the paper's coded
    /// `rec - kl`, not nats: the record derives its own (see `neg_elbo_laplace`). A flow's
    /// ELBO is exact: its log-likelihood.
    fn statistics(&self) -> SliceStatistics {
        SliceStatistics {
            rec_err: self.rec_err,
            kl: self.kl,
            elbo: self.log_likelihood,
            log_likelihood: self.log_likelihood,
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
