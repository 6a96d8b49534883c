//! Mutation fuzzing of blindspot's readers on stable Rust, without a fuzzing engine.
//!
//! Four targets, each a reader that must answer any input with a value or an error, never a
//! panic, an abort or an allocation without bound:
//!
//! - [`Target::Nifti`]: `blindspot_io::read_nifti` (header, data, gzip) on `.nii.gz` files;
//! - [`Target::Cache`]: `SliceCache::open` and a read of every slice of the cache;
//! - [`Target::Config`]: the TOML config loader (`RunConfig::from_toml_str`);
//! - [`Target::Shard`]: the merge reader of `evaluate --merge` on one shard file.
//!
//! Seeds are real files (the phantom's outputs, the volumes of `BLINDSPOT_REAL_DATA`, the
//! configs of `configs/`, the shard file in `corpus/shard/`). The [`Mutator`] flips bits,
//! overwrites bytes and integers with boundary values, inserts, deletes, duplicates and splices
//! ranges; for compressed or checksummed formats it mutates the content half of the time and
//! then repairs the container (re-gzips, recomputes the cache's CRC-32s), so that mutations
//! reach the parsers behind the checksums.
//!
//! [`fuzz`] runs a target in-process and catches panics; `cargo xtask fuzz` runs the
//! `blindspot-fuzz` binary in a child process under an address-space limit and restarts it
//! when it dies, so aborts, stack overflows and unbounded allocations are caught too: the input
//! being read is always in `<work>/current.*`. Every failing input is saved under
//! `regressions/<target>/`, and `tests/regressions.rs` replays them all.

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A fuzz target: one reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// NIfTI-1 volumes, plain or gzip.
    Nifti,
    /// Slice caches.
    Cache,
    /// Experiment configs (TOML).
    Config,
    /// Partial results of `evaluate --shard` (gzip JSON) through the merge.
    Shard,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 4] = [Target::Nifti, Target::Cache, Target::Config, Target::Shard];

    /// The target's name on the command line and in `regressions/`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Nifti => "nifti",
            Target::Cache => "cache",
            Target::Config => "config",
            Target::Shard => "shard",
        }
    }

    /// The target called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The file name the input is written to in the work folder.
    fn file_name(self) -> &'static str {
        match self {
            Target::Nifti => "current.nii.gz",
            Target::Cache => "current.slices",
            Target::Config => "current.toml",
            // beside it, the intact shard 1 of 2 (see [`Harness::new`])
            Target::Shard => "run/eval-shards/shard-0-of-2.json.gz",
        }
    }
}

/// The crate's folder (at run time when cargo says so, so a binary reused from another clone
/// finds this one's files).
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
}

/// Where the failing inputs of `target` are kept (in the repository).
pub fn regression_dir(target: Target) -> PathBuf {
    crate_dir().join("regressions").join(target.name())
}

/// The config the shard seed was evaluated with (the merge refuses files of another config).
pub fn shard_config() -> anyhow::Result<blindspot_runner::config::RunConfig> {
    let path = crate_dir().join("corpus/shard/tiny.toml");
    Ok(blindspot_runner::config::RunConfig::load(&path)?)
}

/// A reusable context: the work folder the inputs are written into, and the shard config.
#[derive(Debug)]
pub struct Harness {
    work: PathBuf,
    shard_config: Option<blindspot_runner::config::RunConfig>,
}

impl Harness {
    /// A harness writing its inputs under `work` (created).
    ///
    /// # Errors
    /// When `work` cannot be created or the shard config does not load.
    pub fn new(work: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(work.join("run/eval-shards"))?;
        // the merge reads both shards: the mutated shard 0 and this intact shard 1
        let other = "shard-1-of-2.json.gz";
        std::fs::copy(
            crate_dir().join("corpus/shard").join(other),
            work.join("run/eval-shards").join(other),
        )?;
        Ok(Self {
            work: work.to_owned(),
            shard_config: Some(shard_config()?),
        })
    }

    /// The path `target`'s input is written to before it is read (left in place if the
    /// process dies while reading it).
    pub fn input_path(&self, target: Target) -> PathBuf {
        self.work.join(target.file_name())
    }

    /// Runs `target` on `input`: `Ok` with a short description of what was read, or the
    /// reader's error as text. A panic propagates (see [`run_caught`]).
    ///
    /// # Errors
    /// The reader's error, as text.
    pub fn run(&self, target: Target, input: &[u8]) -> Result<String, String> {
        let path = self.input_path(target);
        std::fs::write(&path, input).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let text = |e: &dyn std::fmt::Display| e.to_string();
        match target {
            Target::Nifti => {
                let img = blindspot_io::read_nifti::<f32>(&path, &Default::default())
                    .map_err(|e| text(&e))?;
                Ok(format!("{:?}", img.volume.dims))
            }
            Target::Cache => {
                let cache = blindspot_io::SliceCache::open(&path).map_err(|e| text(&e))?;
                let mut sum = 0.0f64;
                for i in 0..cache.len() {
                    let _ = cache.identity(i);
                    sum += f64::from(cache.image(i).first().copied().unwrap_or(0.0));
                    sum += f64::from(cache.brain(i).first().copied().unwrap_or(0));
                    sum += f64::from(cache.lesion(i).first().copied().unwrap_or(0));
                }
                Ok(format!("{} slices, {sum}", cache.len()))
            }
            Target::Config => {
                let text_in = String::from_utf8_lossy(input);
                let config = blindspot_runner::config::RunConfig::from_toml_str(&text_in)
                    .map_err(|e| text(&e))?;
                config.to_toml_string().map_err(|e| text(&e))
            }
            Target::Shard => {
                let config = self.shard_config.as_ref().ok_or("no shard config")?;
                let sets =
                    blindspot_runner::partial::merged_summary(config, &self.work.join("run"))
                        .map_err(|e| text(&e))?;
                Ok(format!("{} sets", sets.len()))
            }
        }
    }
}

/// Runs `target` on `input`, catching a panic: `Err(message)` for a panic, `Ok(_)` for a value
/// or an error of the reader (both fine).
pub fn run_caught(
    harness: &Harness,
    target: Target,
    input: &[u8],
) -> Result<Result<String, String>, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| harness.run(target, input))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// Length of a slice cache's header (its two CRC-32s are at 56 and 60).
const CACHE_HEADER: usize = 64;

/// Recomputes the two CRC-32s of a slice cache, so that a mutation reaches the parser.
fn fix_cache_checksums(b: &mut [u8]) {
    if b.len() < CACHE_HEADER {
        return;
    }
    let body = crc32fast::hash(&b[CACHE_HEADER..]);
    b[56..60].copy_from_slice(&body.to_le_bytes());
    let head = crc32fast::hash(&b[..60]);
    b[60..64].copy_from_slice(&head.to_le_bytes());
}

/// Values that sit on the edges of integer and float fields.
const INTERESTING: [i64; 14] = [
    0,
    1,
    -1,
    2,
    127,
    255,
    256,
    32767,
    -32768,
    65535,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    i64::MAX,
];

/// Seeded mutations of seed inputs.
#[derive(Debug)]
pub struct Mutator {
    rng: ChaCha8Rng,
}

impl Mutator {
    /// A mutator drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A mutated copy of one of `seeds`, in `target`'s container.
    pub fn next(&mut self, target: Target, seeds: &[Vec<u8>]) -> Vec<u8> {
        let seed = &seeds[self.rng.random_range(0..seeds.len())];
        let other = &seeds[self.rng.random_range(0..seeds.len())];
        let content_then_repair = self.rng.random_bool(0.5);
        match target {
            Target::Nifti | Target::Shard if content_then_repair => match gunzip(seed) {
                Some(mut plain) => {
                    let other = gunzip(other).unwrap_or_default();
                    self.mutate(&mut plain, &other, target == Target::Nifti);
                    gzip(&plain)
                }
                None => self.raw(seed, other, target),
            },
            Target::Cache if content_then_repair => {
                let mut b = seed.clone();
                self.mutate(&mut b, other, true);
                fix_cache_checksums(&mut b);
                b
            }
            _ => self.raw(seed, other, target),
        }
    }

    fn raw(&mut self, seed: &[u8], other: &[u8], target: Target) -> Vec<u8> {
        let mut b = seed.to_vec();
        self.mutate(&mut b, other, target != Target::Config);
        b
    }

    /// One to eight mutations of `b`; `header_first` sends half of the position draws to the
    /// first 400 bytes, where binary formats keep their header.
    fn mutate(&mut self, b: &mut Vec<u8>, other: &[u8], header_first: bool) {
        let n = 1 + self.rng.random_range(0..8);
        for _ in 0..n {
            let pos = |rng: &mut ChaCha8Rng, len: usize| -> usize {
                if len == 0 {
                    0
                } else if header_first && rng.random_bool(0.5) {
                    rng.random_range(0..len.min(400))
                } else {
                    rng.random_range(0..len)
                }
            };
            match self.rng.random_range(0..9) {
                0 if !b.is_empty() => {
                    let i = pos(&mut self.rng, b.len());
                    b[i] ^= 1 << self.rng.random_range(0..8);
                }
                1 if !b.is_empty() => {
                    let i = pos(&mut self.rng, b.len());
                    b[i] = self.rng.random();
                }
                2 if b.len() >= 8 => {
                    // an integer field with a boundary value, 1, 2, 4 or 8 bytes, either order
                    let width = [1, 2, 4, 8][self.rng.random_range(0..4)];
                    let i = pos(&mut self.rng, b.len() - width + 1).min(b.len() - width);
                    let v = INTERESTING[self.rng.random_range(0..INTERESTING.len())];
                    let bytes = if self.rng.random_bool(0.5) {
                        v.to_le_bytes()
                    } else {
                        v.to_be_bytes()
                    };
                    let from = if self.rng.random_bool(0.5) {
                        0
                    } else {
                        8 - width
                    };
                    b[i..i + width].copy_from_slice(&bytes[from..from + width]);
                }
                3 => {
                    let i = pos(&mut self.rng, b.len());
                    let k = 1 + self.rng.random_range(0..16);
                    let fill: u8 = self.rng.random();
                    b.splice(i..i, std::iter::repeat_n(fill, k));
                }
                4 if !b.is_empty() => {
                    let i = pos(&mut self.rng, b.len());
                    let k = (1 + self.rng.random_range(0..64)).min(b.len() - i);
                    b.drain(i..i + k);
                }
                5 if !b.is_empty() => {
                    // truncate
                    let i = self.rng.random_range(0..b.len());
                    b.truncate(i);
                }
                6 if !b.is_empty() => {
                    // duplicate a range
                    let i = pos(&mut self.rng, b.len());
                    let k = (1 + self.rng.random_range(0..256)).min(b.len() - i);
                    let chunk = b[i..i + k].to_vec();
                    let at = pos(&mut self.rng, b.len());
                    b.splice(at..at, chunk);
                }
                7 if !other.is_empty() => {
                    // splice in a range of another seed
                    let i = self.rng.random_range(0..other.len());
                    let k = (1 + self.rng.random_range(0..512)).min(other.len() - i);
                    let at = pos(&mut self.rng, b.len());
                    let end = (at + k).min(b.len());
                    b.splice(at..end, other[i..i + k].iter().copied());
                }
                8 if !b.is_empty() => {
                    // an ASCII digit or sign, for text formats
                    let i = pos(&mut self.rng, b.len());
                    b[i] = b"0123456789-.e+[]{}\"="[self.rng.random_range(0..20)];
                }
                _ => {}
            }
        }
    }
}

/// Seed inputs of `target`: files read from the repository, `real` (a folder laid out like
/// `../shared/data/real`, optional) and `phantom` (a folder of the phantom's outputs or a run
/// directory, optional).
///
/// # Errors
/// When a seed file cannot be read, or no seed is found.
pub fn seeds(
    target: Target,
    real: Option<&Path>,
    phantom: Option<&Path>,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut walk = |dir: &Path, keep: &dyn Fn(&str) -> bool, limit: usize| {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if keep(&p.file_name().unwrap_or_default().to_string_lossy()) {
                    found.push(p);
                }
            }
        }
        // the smallest files first: they read fastest, so they give the most cases
        found.sort_by_key(|p| std::fs::metadata(p).map_or(u64::MAX, |m| m.len()));
        files.extend(found.into_iter().take(limit));
    };
    let repo = crate_dir().join("../..");
    let corpus = crate_dir().join("corpus").join(target.name());
    match target {
        Target::Nifti => {
            let nifti = |n: &str| n.ends_with(".nii.gz") || n.ends_with(".nii");
            walk(&corpus, &nifti, 16);
            if let Some(r) = real {
                walk(r, &nifti, 12);
            }
            if let Some(p) = phantom {
                walk(p, &nifti, 12);
            }
        }
        Target::Cache => {
            walk(&corpus, &|n| n.ends_with(".bsc"), 16);
            if let Some(p) = phantom {
                walk(p, &|n| n.ends_with(".bsc"), 6);
            }
        }
        Target::Config => walk(&repo.join("configs"), &|n| n.ends_with(".toml"), 64),
        // shard 0 of 2 is mutated; shard 1 stays beside it intact
        Target::Shard => walk(&corpus, &|n| n == "shard-0-of-2.json.gz", 1),
    }
    // inputs that failed before are seeds too
    walk(&regression_dir(target), &|_| true, 256);
    let out = files
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if out.is_empty() {
        anyhow::bail!(
            "no seed inputs for target {}: give the phantom's outputs (--phantom DIR) or the real \
             volumes (--real DIR)",
            target.name()
        );
    }
    Ok(out)
}

/// How long [`fuzz`] runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many cases.
    Cases(u64),
    /// This long.
    Time(Duration),
}

/// What a fuzz run found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Cases run.
    pub cases: u64,
    /// Cases the reader accepted (the rest it refused with an error, as it should).
    pub accepted: u64,
    /// The inputs that panicked, with the panic message (saved under [`regression_dir`] when
    /// asked).
    pub panics: Vec<(Vec<u8>, String)>,
}

/// Fuzzes `target` from `seeds` with the mutator seeded by `seed`. Each panicking input is
/// written to `save` (when given) as `<crc32>.bin`. `heartbeat` (when given) counts the cases
/// as they finish (a watchdog can tell a hang from it); `progress` is called about every 10 s.
///
/// # Errors
/// When a failing input cannot be saved.
#[allow(clippy::too_many_arguments)] // the knobs of one run, named at the call
pub fn fuzz(
    harness: &Harness,
    target: Target,
    seeds: &[Vec<u8>],
    seed: u64,
    budget: Budget,
    save: Option<&Path>,
    heartbeat: Option<&std::sync::atomic::AtomicU64>,
    mut progress: impl FnMut(&Report),
) -> anyhow::Result<Report> {
    let mut mutator = Mutator::new(seed);
    let mut report = Report::default();
    let start = Instant::now();
    let mut shown = Instant::now();
    loop {
        match budget {
            Budget::Cases(n) if report.cases >= n => break,
            Budget::Time(t) if start.elapsed() >= t => break,
            _ => {}
        }
        let input = mutator.next(target, seeds);
        match run_caught(harness, target, &input) {
            Ok(Ok(_)) => report.accepted += 1,
            Ok(Err(_)) => {}
            Err(message) => {
                if let Some(dir) = save {
                    std::fs::create_dir_all(dir)?;
                    let name = format!("{:08x}.bin", crc32fast::hash(&input));
                    std::fs::write(dir.join(name), &input)?;
                }
                report.panics.push((input, message));
            }
        }
        report.cases += 1;
        if let Some(h) = heartbeat {
            h.store(report.cases, std::sync::atomic::Ordering::Relaxed);
        }
        if shown.elapsed() >= Duration::from_secs(10) {
            progress(&report);
            shown = Instant::now();
        }
    }
    Ok(report)
}
