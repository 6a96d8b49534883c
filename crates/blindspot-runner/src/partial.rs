//! Partial results of a sharded evaluation (`blindspot evaluate --shard i/n`) and their exact
//! merge (`blindspot evaluate --merge`).
//!
//! A shard infers its chunks of slices and writes `eval-shards/shard-i-of-n.json.gz` in the
//! run directory (atomically). The file holds, per evaluated set, the shard's slice records
//! (statistic values as IEEE-754 bit patterns), the pixel scores as
//! [`RankAccumulator`]s (bit patterns too) and the example slices of the report's grids.
//! Nothing is rounded on the way, so the merged sets are those one process would have
//! inferred, and the evaluation that follows gives the same bytes.
//!
//! The merge refuses, naming the file: a missing shard, two files for one shard, files of
//! different shard counts, a file written with another config (the `[gate]` aside), a file
//! whose content does not match its name, and overlapping or incomplete slices.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use blindspot_metrics::RankAccumulator;
use blindspot_ood::{SliceId, SliceRecord, Statistic};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::RunError;
use crate::inference::{Example, SetData, SetSpec, evaluated_sets};
use crate::shard::Shard;

type Result<T> = std::result::Result<T, RunError>;

/// The folder of the partial results, inside the run directory.
pub const SHARD_DIR: &str = "eval-shards";

/// Format number of a partial result file.
const FORMAT: u32 = 2;

/// The file name of shard `index` of `count`.
pub fn shard_file_name(shard: Shard) -> String {
    format!("shard-{}-of-{}.json.gz", shard.index, shard.count)
}

/// The shard a file name stands for (`shard-i-of-n.json.gz`).
fn parse_file_name(name: &str) -> Option<Shard> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(".json.gz")?;
    let (i, n) = rest.split_once("-of-")?;
    let (index, count) = (i.parse().ok()?, n.parse().ok()?);
    (index < count).then_some(Shard { index, count })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialFile {
    format: u32,
    shard: usize,
    shards: usize,
    /// The resolved config (TOML) the shard ran with.
    config: String,
    /// Wall time of the shard's inference.
    seconds: f64,
    sets: Vec<WireSet>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSet {
    name: String,
    subjects: Vec<String>,
    total_slices: usize,
    /// The cache index of each record's slice.
    slices: Vec<usize>,
    records: Vec<WireRecord>,
    /// Per record: each member's `rec_err` as bit patterns.
    member_rec_err: Vec<Vec<u64>>,
    /// Per subject.
    pixels: Vec<RankAccumulator<f32>>,
    intensity: RankAccumulator<f32>,
    examples: Vec<WireExample>,
}

/// A [`SliceRecord`] with its floats as bit patterns (exact, and ±inf survive JSON).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord {
    id: SliceId,
    mask_pixels: u32,
    lesion_pixels: u32,
    values: BTreeMap<Statistic, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latent_mean: Option<Vec<u32>>,
}

impl From<&SliceRecord> for WireRecord {
    fn from(r: &SliceRecord) -> Self {
        Self {
            id: r.id.clone(),
            mask_pixels: r.mask_pixels,
            lesion_pixels: r.lesion_pixels,
            values: r.values.iter().map(|(&s, v)| (s, v.to_bits())).collect(),
            latent_mean: r
                .latent_mean
                .as_ref()
                .map(|v| v.iter().map(|x| x.to_bits()).collect()),
        }
    }
}

impl From<WireRecord> for SliceRecord {
    fn from(w: WireRecord) -> Self {
        let mut r = SliceRecord::new(w.id, w.mask_pixels, w.lesion_pixels);
        r.values = w
            .values
            .into_iter()
            .map(|(s, b)| (s, f64::from_bits(b)))
            .collect();
        r.latent_mean = w
            .latent_mean
            .map(|v| v.into_iter().map(f32::from_bits).collect());
        r
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireExample {
    slice: usize,
    label: String,
    input: Vec<u32>,
    reconstruction: Vec<u32>,
    residual: Vec<u32>,
    lesion: Vec<u32>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn floats(v: Vec<u32>) -> Vec<f32> {
    v.into_iter().map(f32::from_bits).collect()
}

impl From<&Example> for WireExample {
    fn from(e: &Example) -> Self {
        Self {
            slice: e.slice,
            label: e.label.clone(),
            input: bits(&e.input),
            reconstruction: bits(&e.reconstruction),
            residual: bits(&e.residual),
            lesion: bits(&e.lesion),
        }
    }
}

impl From<WireExample> for Example {
    fn from(w: WireExample) -> Self {
        Self {
            slice: w.slice,
            label: w.label,
            input: floats(w.input),
            reconstruction: floats(w.reconstruction),
            residual: floats(w.residual),
            lesion: floats(w.lesion),
        }
    }
}

/// The config a partial result depends on, as TOML: the whole run config but the gate, which
/// only reads the merged records. So gate variants (`cargo xtask study` of a gate study) are
/// evaluated from one inference.
fn inference_config(config: &RunConfig) -> Result<String> {
    let mut c = config.clone();
    c.gate = None;
    Ok(c.to_toml_string()?)
}

/// Writes the partial result of `shard` (its inferred `sets`, validation first) to
/// `dir/eval-shards/shard-i-of-n.json.gz`, atomically. Returns the path.
pub(crate) fn write(
    config: &RunConfig,
    dir: &Path,
    shard: Shard,
    sets: &[SetData],
    seconds: f64,
) -> Result<PathBuf> {
    let folder = dir.join(SHARD_DIR);
    std::fs::create_dir_all(&folder).map_err(|source| RunError::Io {
        path: folder.clone(),
        source,
    })?;
    let path = folder.join(shard_file_name(shard));
    let file = PartialFile {
        format: FORMAT,
        shard: shard.index,
        shards: shard.count,
        config: inference_config(config)?,
        seconds,
        sets: sets
            .iter()
            .map(|s| WireSet {
                name: s.name.clone(),
                subjects: s.subjects.clone(),
                total_slices: s.total_slices,
                slices: s.record_slices.clone(),
                records: s.records.iter().map(WireRecord::from).collect(),
                member_rec_err: s
                    .member_rec_err
                    .iter()
                    .map(|v| v.iter().map(|x| x.to_bits()).collect())
                    .collect(),
                pixels: s.pixels.clone(),
                intensity: s.intensity.clone(),
                examples: s.examples.iter().map(WireExample::from).collect(),
            })
            .collect(),
    };
    blindspot_io::atomic::write_atomic(&path, |w| {
        let mut gz = GzEncoder::new(w, Compression::fast());
        serde_json::to_writer(&mut gz, &file)?;
        gz.finish()?.flush()
    })
    .map_err(|source| RunError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The partial result of `shard` already in `dir/eval-shards/`, when it is readable and was
/// inferred with this config (what `evaluate --shard` reuses instead of inferring again).
pub(crate) fn finished(config: &RunConfig, dir: &Path, shard: Shard) -> Option<PathBuf> {
    let path = dir.join(SHARD_DIR).join(shard_file_name(shard));
    if !path.is_file() {
        return None;
    }
    let partial = read_file(&path).ok()?;
    let same = partial.shard == shard.index
        && partial.shards == shard.count
        && inference_config(config).ok()? == partial.config;
    same.then_some(path)
}

fn shard_error(path: &Path, why: impl Into<String>) -> RunError {
    RunError::Shard {
        path: path.to_owned(),
        why: why.into(),
    }
}

fn read_file(path: &Path) -> Result<PartialFile> {
    let file = std::fs::File::open(path).map_err(|source| RunError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(|e| shard_error(path, format!("not a readable gzip file: {e}")))?;
    let partial: PartialFile = serde_json::from_slice(&bytes)
        .map_err(|e| shard_error(path, format!("not a partial result: {e}")))?;
    if partial.format != FORMAT {
        return Err(shard_error(
            path,
            format!(
                "format {} (this blindspot reads format {FORMAT}); rerun the shard",
                partial.format
            ),
        ));
    }
    Ok(partial)
}

/// What every partial result must match: the config it was inferred with (the gate aside) and
/// the sets the config evaluates, in order.
struct Expected {
    config: String,
    sets: Vec<SetSpec>,
}

impl Expected {
    fn of(config: &RunConfig) -> Result<Self> {
        Ok(Self {
            config: inference_config(config)?,
            sets: evaluated_sets(config),
        })
    }
}

/// The partial results read, by shard index, each with its file.
type ShardFiles = BTreeMap<usize, (PathBuf, PartialFile)>;

/// Reads every shard's partial result from `dir/eval-shards/` and merges them into the sets
/// one unsharded inference would have produced (validation first). Also returns the summed
/// inference time of the shards.
pub(crate) fn read_all(config: &RunConfig, dir: &Path) -> Result<(Vec<SetData>, f64)> {
    let expected = Expected::of(config)?;
    let folder = dir.join(SHARD_DIR);
    let (files, count) = list_shards(&folder)?;
    let (by_index, seconds) = read_shards(files, count, &expected.config)?;
    if let Some(k) = (0..count).find(|k| !by_index.contains_key(k)) {
        let shard = Shard { index: k, count };
        return Err(shard_error(
            &folder.join(shard_file_name(shard)),
            format!(
                "missing: shard {k}/{count} has not written its partial result (run \
                 `blindspot evaluate CONFIG --shard {k}/{count}`)"
            ),
        ));
    }
    let sets = split_by_set(by_index, &expected.sets)?
        .into_iter()
        .map(merge_set)
        .collect::<Result<Vec<_>>>()?;
    Ok((sets, seconds))
}

/// The files named `shard-i-of-n.json.gz` in `folder`, sorted, and their shard count `n`
/// (which they must share).
fn list_shards(folder: &Path) -> Result<(Vec<(PathBuf, Shard)>, usize)> {
    let hint = "run `blindspot evaluate CONFIG --shard i/n` for every i first";
    let entries = std::fs::read_dir(folder)
        .map_err(|e| shard_error(folder, format!("no partial results ({e}); {hint}")))?;
    let mut files: Vec<(PathBuf, Shard)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RunError::Io {
            path: folder.to_owned(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(shard) = parse_file_name(&name) {
            files.push((entry.path(), shard));
        }
    }
    files.sort_by_key(|(p, s)| (s.count, s.index, p.clone()));
    let Some((first_path, first)) = files.first().cloned() else {
        return Err(shard_error(
            folder,
            format!("no shard-i-of-n.json.gz file; {hint}"),
        ));
    };
    let count = first.count;
    if let Some((path, s)) = files.iter().find(|(_, s)| s.count != count) {
        return Err(shard_error(
            path,
            format!(
                "is one of {} shards but {} is one of {count}: remove the files of the \
                 other sharding",
                s.count,
                first_path.display()
            ),
        ));
    }
    Ok((files, count))
}

/// Reads the `files` (of `count` shards), each checked against its name, the `config` and the
/// files before it (no shard twice). Also returns their summed inference time.
fn read_shards(
    files: Vec<(PathBuf, Shard)>,
    count: usize,
    config: &str,
) -> Result<(ShardFiles, f64)> {
    let mut by_index = ShardFiles::new();
    let mut seconds = 0.0;
    for (path, named) in files {
        let partial = read_file(&path)?;
        if partial.shard != named.index || partial.shards != named.count {
            return Err(shard_error(
                &path,
                format!(
                    "holds shard {}/{} but is named for {}/{} (a renamed or copied file?)",
                    partial.shard, partial.shards, named.index, named.count
                ),
            ));
        }
        if partial.config != config {
            return Err(shard_error(
                &path,
                "was evaluated with another config than the one given: rerun this shard",
            ));
        }
        if let Some((other, _)) = by_index.get(&partial.shard) {
            return Err(shard_error(
                &path,
                format!(
                    "duplicate of shard {}/{count}, also in {}",
                    partial.shard,
                    other.display()
                ),
            ));
        }
        seconds += partial.seconds;
        by_index.insert(partial.shard, (path, partial));
    }
    Ok((by_index, seconds))
}

/// Per expected set, every shard's part of it (in shard order), each checked against the
/// set's name.
fn split_by_set(
    by_index: ShardFiles,
    expected: &[SetSpec],
) -> Result<Vec<Vec<(PathBuf, SetData)>>> {
    let mut per_set: Vec<Vec<(PathBuf, SetData)>> = expected.iter().map(|_| Vec::new()).collect();
    for (path, part) in by_index.into_values() {
        if part.sets.len() != expected.len() {
            return Err(shard_error(
                &path,
                format!(
                    "holds {} sets, the config evaluates {}: rerun this shard",
                    part.sets.len(),
                    expected.len()
                ),
            ));
        }
        for ((wire, spec), parts) in part.sets.into_iter().zip(expected).zip(&mut per_set) {
            if wire.name != spec.name {
                return Err(shard_error(
                    &path,
                    format!(
                        "holds set `{}` where the config has `{}`",
                        wire.name, spec.name
                    ),
                ));
            }
            let set = unwire(wire, spec.role).map_err(|why| shard_error(&path, why))?;
            parts.push((path.clone(), set));
        }
    }
    Ok(per_set)
}

/// Reads and merges the partial results in `dir/eval-shards/` as `evaluate --merge` does, and
/// returns each merged set's name and number of slice records: a check of shard files for
/// tools (the fuzz targets of `blindspot-fuzz`).
///
/// # Errors
/// [`RunError::Shard`] naming the file for anything missing, duplicated, unreadable, from
/// another config or inconsistent; [`RunError::Io`] for an unreadable folder.
pub fn merged_summary(config: &RunConfig, dir: &Path) -> Result<Vec<(String, usize)>> {
    let (sets, _) = read_all(config, dir)?;
    Ok(sets
        .into_iter()
        .map(|s| (s.name, s.records.len()))
        .collect())
}

/// One shard's part of a set, checked for consistency.
fn unwire(
    wire: WireSet,
    role: Option<crate::config::Role>,
) -> std::result::Result<SetData, String> {
    if wire.slices.len() != wire.records.len()
        || wire.member_rec_err.len() != wire.records.len()
        || wire.pixels.len() != wire.subjects.len()
    {
        return Err(format!(
            "set `{}` is inconsistent (records, slices and scans disagree)",
            wire.name
        ));
    }
    Ok(SetData {
        name: wire.name,
        role,
        scans: wire.subjects.len(),
        total_slices: wire.total_slices,
        records: wire.records.into_iter().map(SliceRecord::from).collect(),
        record_slices: wire.slices,
        member_rec_err: wire
            .member_rec_err
            .into_iter()
            .map(|v| v.into_iter().map(f64::from_bits).collect())
            .collect(),
        pixels: wire.pixels,
        intensity: wire.intensity,
        subjects: wire.subjects,
        maps: Vec::new(),
        examples: wire.examples.into_iter().map(Example::from).collect(),
    })
}

/// Every shard's part of one set (in shard order), merged: records and examples in slice
/// order, the pixel accumulators appended.
fn merge_set(parts: Vec<(PathBuf, SetData)>) -> Result<SetData> {
    let mut parts = parts.into_iter();
    let (first_path, mut set) = parts.next().expect("at least one shard");
    let name = set.name.clone();
    let mut items: Vec<(usize, PathBuf, SliceRecord, Vec<f64>)> = set
        .record_slices
        .drain(..)
        .zip(set.records.drain(..))
        .zip(set.member_rec_err.drain(..))
        .map(|((slice, r), m)| (slice, first_path.clone(), r, m))
        .collect();
    for (path, part) in parts {
        if part.subjects != set.subjects || part.total_slices != set.total_slices {
            return Err(shard_error(
                &path,
                format!(
                    "set `{name}` has other scans or slices than in {}: the caches changed \
                     between shards; rerun them all",
                    first_path.display()
                ),
            ));
        }
        for (acc, p) in set.pixels.iter_mut().zip(part.pixels) {
            acc.merge(p);
        }
        set.intensity.merge(part.intensity);
        set.examples.extend(part.examples);
        items.extend(
            part.record_slices
                .into_iter()
                .zip(part.records)
                .zip(part.member_rec_err)
                .map(|((slice, r), m)| (slice, path.clone(), r, m)),
        );
    }
    items.sort_by_key(|(slice, _, _, _)| *slice);
    for w in items.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(shard_error(
                &w[1].1,
                format!(
                    "slice {} of `{name}` is also in {}: the shards overlap",
                    w[1].2.id,
                    w[0].1.display()
                ),
            ));
        }
    }
    if items.len() != set.total_slices {
        return Err(shard_error(
            &first_path,
            format!(
                "the shards hold {} of the {} slices of `{name}`",
                items.len(),
                set.total_slices
            ),
        ));
    }
    for (slice, _, record, members) in items {
        set.record_slices.push(slice);
        set.records.push(record);
        set.member_rec_err.push(members);
    }
    set.examples.sort_by_key(|e| e.slice);
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_name_their_shard() {
        let s = Shard {
            index: 3,
            count: 16,
        };
        assert_eq!(shard_file_name(s), "shard-3-of-16.json.gz");
        assert_eq!(parse_file_name(&shard_file_name(s)), Some(s));
        for bad in [
            "shard-3-of-3.json.gz",
            "shard-a-of-3.json.gz",
            "shard-1-of-3.json",
            ".shard-1-of-3.json.gz.x1.tmp",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_and_examples_cross_the_wire_bit_for_bit() {
        let mut r = SliceRecord::new(SliceId::new("02-t", "subject-1", 7), 300, 12);
        r.set(Statistic::RecErr, 0.1 + 0.2);
        r.set(Statistic::Kl, f64::INFINITY);
        r.set(Statistic::NegElbo, -0.0);
        r.set(Statistic::Entropy, f64::MIN_POSITIVE / 3.0);
        r.latent_mean = Some(vec![1.0e-40, -2.5]);
        let json = serde_json::to_vec(&WireRecord::from(&r)).unwrap();
        let back = SliceRecord::from(serde_json::from_slice::<WireRecord>(&json).unwrap());
        assert_eq!(back.id, r.id);
        for (s, v) in &r.values {
            assert_eq!(back.values[s].to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(back.latent_mean, r.latent_mean);

        let e = Example {
            slice: 4,
            label: "s z4".into(),
            input: vec![0.1, -0.0],
            reconstruction: vec![f32::NEG_INFINITY, 1.0],
            residual: vec![0.3, 0.0],
            lesion: vec![1.0, 0.0],
        };
        let json = serde_json::to_vec(&WireExample::from(&e)).unwrap();
        let back = Example::from(serde_json::from_slice::<WireExample>(&json).unwrap());
        assert_eq!(back.slice, 4);
        assert_eq!(bits(&back.input), bits(&e.input));
        assert_eq!(back.reconstruction, e.reconstruction);
    }
}
