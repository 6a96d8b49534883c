//! Inference of the ensemble over the validation set and the test sets: fixed chunks of
//! [`INFER_BATCH`] slices, each with its own random stream, turned into [`SliceRecord`]s and
//! pixel-score accumulators ([`SetData`]).

use blindspot_core::{Batch, MapKind, Members, SliceOutputs, SliceSource, stat};
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
    config: &RunConfig,
) -> Vec<usize> {
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

pub(crate) fn chunk_count(cache: &CacheSlices, config: &RunConfig) -> usize {
    inferred_slices(cache, config).len().div_ceil(INFER_BATCH)
}

/// The progress bar of inference over the chunks `shard` owns.
pub(crate) fn progress_for(
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
pub(crate) fn inferred_slices(cache: &CacheSlices, config: &RunConfig) -> Vec<usize> {
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
                    image: Some(x),
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
                image: Some(x),
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
