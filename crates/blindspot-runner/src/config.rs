//! The experiment configuration: one TOML file describes a whole run (`blindspot run CONFIG`).
//!
//! User TOML is read into plain serde structs with `deny_unknown_fields` and explicit
//! defaults (a misspelled key is an error, a missing one takes its documented default), then
//! validated once by [`RunConfig::from_toml_str`]: every error names the key, the value and
//! what is allowed. The sections of other crates are their own plain configs, checked by
//! their own validators: `[synth]` ([`SynthConfig`]), `[preprocess]` ([`PreprocessConfig`]),
//! `[train]` ([`TrainConfig`]), `[gate]` ([`GateConfig`]), `[model]` ([`ModelConfig`]: `kind`
//! picks a model family, whose crate owns the other keys) and the dataset layouts
//! ([`LayoutConfig`]). The resolved configuration (every default
//! filled in) is saved beside the run's outputs ([`RunConfig::save_resolved`]).
//!
//! Sections: `name`, `seed`, `[data]` (required: `train`, `validation` and at least one
//! `[[data.test]]`), `[synth]`, `[preprocess]`, `[model]`, `[train]`, `[ensemble]`,
//! `[threshold]`, `[evaluation]`, `[gate]` (absent: no gate), `[report]`. See
//! `configs/quickstart.toml` for every key with its default.

use std::path::{Path, PathBuf};

use blindspot_core::TrainConfig;
use blindspot_io::histmatch::HistMatchConfig;
use blindspot_io::{LayoutConfig, PreprocessConfig};
use blindspot_ood::{GateConfig, Statistic};
use blindspot_synth::SynthConfig;
use serde::{Deserialize, Serialize};

pub use crate::models::ModelConfig;

/// File name of the resolved configuration inside a run directory.
pub const RESOLVED_FILE: &str = "config.resolved.toml";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML of the schema: syntax, an unknown key, a wrong type (toml's message names the
    /// key and the line).
    #[error("{origin}: {message}")]
    Parse {
        /// The file (or `<string>`).
        origin: String,
        /// toml's message.
        message: String,
    },
    /// A value outside what is allowed.
    #[error("`{key}` = {value}: expected {allowed}")]
    Invalid {
        /// Dotted key (`threshold.target_fpr`, `data.test[2].name`).
        key: String,
        /// The offending value.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A section refused by its own crate's validator.
    #[error("[{section}] {message}")]
    Section {
        /// The section (`synth`, `preprocess`, `train`, `model`, `gate`, `data.train.layout`).
        section: String,
        /// The validator's message (it names the key).
        message: String,
    },
    /// A `--set KEY=VALUE` override could not be applied.
    #[error("--set {setting}: {why}")]
    Override {
        /// The override as given.
        setting: String,
        /// What is wrong.
        why: String,
    },
    /// An environment variable used in a path is not set.
    #[error(
        "`{key}` uses ${{{var}}}, which is not set: export it (for example {var}=/path/to/data)"
    )]
    MissingEnv {
        /// The key whose value uses the variable.
        key: String,
        /// The variable.
        var: String,
    },
    /// The resolved configuration could not be serialised (a bug).
    #[error("cannot serialise the resolved configuration: {0}")]
    Serialize(String),
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

fn invalid<T>(
    key: impl Into<String>,
    value: impl std::fmt::Display,
    allowed: impl Into<String>,
) -> Result<T> {
    Err(ConfigError::Invalid {
        key: key.into(),
        value: value.to_string(),
        allowed: allowed.into(),
    })
}

fn section<E: std::fmt::Display>(name: &str) -> impl Fn(E) -> ConfigError + '_ {
    move |e| ConfigError::Section {
        section: name.to_string(),
        message: e.to_string(),
    }
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The experiment's name: outputs go to `runs/<name>/`. Letters, digits, `-` and `_`.
    pub name: String,
    /// Master seed (default 0): training, ensemble members, bootstrap and the gate's split
    /// derive their seeds from it.
    #[serde(default)]
    pub seed: u64,
    /// Where the data comes from.
    pub data: DataConfig,
    /// The synthetic phantom, for `synth_set` references (absent: no phantom).
    #[serde(default)]
    pub synth: Option<SynthConfig>,
    /// Preprocessing of every volume (default: the paper's, 128x128 slices).
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    /// The model.
    #[serde(default)]
    pub model: ModelConfig,
    /// Training of each model (or ensemble member).
    #[serde(default)]
    pub train: TrainConfig,
    /// The ensemble (for WAIC).
    #[serde(default)]
    pub ensemble: EnsembleConfig,
    /// The pixel threshold.
    #[serde(default)]
    pub threshold: ThresholdConfig,
    /// What is evaluated.
    #[serde(default)]
    pub evaluation: EvaluationConfig,
    /// The OOD gate (absent: not run).
    #[serde(default)]
    pub gate: Option<GateConfig>,
    /// The report.
    #[serde(default)]
    pub report: ReportConfig,
}

/// The datasets of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Root of the layouts' relative paths; `${VAR}` is replaced by the environment
    /// variable (default: the current directory).
    #[serde(default)]
    pub root: Option<String>,
    /// Healthy in-distribution training data.
    pub train: DatasetSpec,
    /// Healthy in-distribution validation data (threshold and gate calibration).
    pub validation: DatasetSpec,
    /// The test sets, in report order (the in-distribution one first by convention).
    pub test: Vec<TestSetSpec>,
}

/// A dataset: a set of the phantom or a layout under `data.root` (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Folder of the layout, relative to `data.root` (default: `data.root` itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Name of a `[[synth.sets]]` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth_set: Option<String>,
    /// A dataset layout (see `blindspot_io::layout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutConfig>,
}

/// The role of a test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Same distribution as training (it may contain lesions).
    InDistribution,
    /// A shift in site, contrast, orientation, or a corrupted input.
    OutOfDistribution,
}

/// A transformation applied to a test set's slices after preprocessing (the paper's
/// synthetic OOD sets built from real data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// As loaded.
    #[default]
    None,
    /// Mirrored left-right.
    FlipLr,
    /// Mirrored up-down.
    FlipUd,
    /// Replaced by Gaussian noise inside the brain mask.
    Noise,
    /// Gaussian-blob "lesions" added (docs/method.md 1.7).
    Blobs,
}

/// One test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSetSpec {
    /// Its name in the report, unique.
    pub name: String,
    /// In or out of distribution.
    pub role: Role,
    /// Folder of the layout, relative to `data.root` (default: `data.root` itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Name of a `[[synth.sets]]` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth_set: Option<String>,
    /// A dataset layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutConfig>,
    /// Applied after preprocessing (default `none`).
    #[serde(default)]
    pub transform: Transform,
    /// Histogram matching of this set's scans to the training set (Nyúl landmarks, before
    /// clipping and z-scoring; the reference is the mean of the training scans' landmarks).
    /// `{}` takes the defaults of `blindspot_io::histmatch::HistMatchConfig`. Default: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_match: Option<HistMatchConfig>,
}

/// The ensemble.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleConfig {
    /// Members, 1 to 64 (default 1; WAIC needs at least 2). Member `m` trains with seed
    /// `seed + m`.
    pub members: usize,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        Self { members: 1 }
    }
}

/// How the pixel threshold is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMethod {
    /// The threshold reaching `target_fpr` healthy-pixel FPR on the validation data.
    #[default]
    HealthyFpr,
    /// The fixed `value`.
    Fixed,
}

/// The pixel threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdConfig {
    /// `healthy_fpr` (default) or `fixed`.
    pub method: ThresholdMethod,
    /// Target healthy-pixel FPR, in (0, 1) (default 0.05, the paper).
    pub target_fpr: f64,
    /// The threshold of `method = "fixed"` (required there, finite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            method: ThresholdMethod::HealthyFpr,
            target_fpr: 0.05,
            value: None,
        }
    }
}

/// What is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// Slice statistics for OOD detection and disentangling (default: every statistic of
    /// blindspot-ood that a single VAE provides; add `waic` with an ensemble).
    pub statistics: Vec<Statistic>,
    /// Statistics that encode prior knowledge about lesions, contrasted with the others in the
    /// report (default `entropy`, `entropy_clean`).
    pub prior_knowledge: Vec<Statistic>,
    /// Bootstrap resamples for the intervals, 0 (none) or at least 100 (default 1000).
    pub bootstrap_resamples: usize,
    /// Coverage of the intervals, in (0, 1) (default 0.95).
    pub confidence: f64,
    /// A slice with more lesion pixels than this is lesional (default 20, the paper's WAIC rule).
    pub lesional_pixels: usize,
    /// Evaluate every n-th slice of a scan, at least 1 (default 1: all).
    pub slice_stride: usize,
    /// The adequacy every member must reach for the findings to be interpretable (default
    /// 0.5: half-way from the position-mean image to the σ = 1 blur; see docs/method.md).
    pub min_adequacy: f64,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            statistics: vec![
                Statistic::RecErr,
                Statistic::Kl,
                Statistic::CodedElbo,
                Statistic::NegElbo,
                Statistic::Dose,
                Statistic::Entropy,
                Statistic::EntropyClean,
            ],
            prior_knowledge: vec![Statistic::Entropy, Statistic::EntropyClean],
            bootstrap_resamples: 1000,
            confidence: 0.95,
            lesional_pixels: 20,
            slice_stride: 1,
            min_adequacy: 0.5,
        }
    }
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Points kept per ROC/PR curve, 10 to 10000 (default 200).
    pub curve_points: usize,
    /// Bins of the score histograms, 5 to 1000 (default 40).
    pub histogram_bins: usize,
    /// Example slices per slice grid, 0 to 16 (default 3).
    pub grid_examples: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            curve_points: 200,
            histogram_bins: 40,
            grid_examples: 3,
        }
    }
}

impl RunConfig {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError::Io`] when it cannot be read; otherwise those of [`RunConfig::from_toml_str`].
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &[])
    }

    /// Reads a configuration file, applies `overrides` (`KEY=VALUE` with a dotted key such as
    /// `train.learning_rate=3e-4` or `model.beta={ kind = "constant", beta = 0.1 }`; the value is
    /// TOML, or a plain string when it does not parse as TOML), then validates the result.
    ///
    /// # Errors
    /// [`ConfigError::Override`] for a malformed override or a key path through a value that
    /// is not a table; otherwise those of [`RunConfig::load`].
    pub fn load_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        if overrides.is_empty() {
            return Self::parse(&text, &origin);
        }
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let text = toml::to_string(&doc).map_err(|e| ConfigError::Override {
            setting: overrides.join(" "),
            why: e.to_string(),
        })?;
        Self::parse(
            &text,
            &format!("{origin} with --set {}", overrides.join(" --set ")),
        )
    }

    /// Parses and validates a configuration.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for bad TOML, an unknown key or a wrong type;
    /// [`ConfigError::Invalid`], [`ConfigError::Section`] for a value out of range.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse(text, "<string>")
    }

    fn parse(text: &str, origin: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value once (called by the constructors), section by section in the order
    /// of the file.
    ///
    /// # Errors
    /// The first offending key, as [`ConfigError::Invalid`] or [`ConfigError::Section`].
    pub fn validate(&self) -> Result<()> {
        self.validate_name()?;
        if let Some(s) = &self.synth {
            s.validate().map_err(section("synth"))?;
        }
        self.validate_preprocess()?;
        self.validate_data()?;
        self.model
            .validate(self.preprocess.slice_size[0])
            .map_err(section("model"))?;
        self.train.validate().map_err(section("train"))?;
        if !(1..=64).contains(&self.ensemble.members) {
            return invalid("ensemble.members", self.ensemble.members, "1 to 64 members");
        }
        self.threshold.validate()?;
        self.validate_statistics()?;
        self.evaluation.validate_numbers()?;
        if let Some(g) = &self.gate {
            validate_gate_numbers(g)?;
        }
        self.report.validate()
    }

    /// `name`: letters, digits, `-` and `_`.
    fn validate_name(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(
                "name",
                format!("{:?}", self.name),
                "a non-empty name of letters, digits, `-` and `_`",
            );
        }
        Ok(())
    }

    /// `[preprocess]`: its own checks, then square slices whose side the models can halve four
    /// times.
    fn validate_preprocess(&self) -> Result<()> {
        self.preprocess.check().map_err(section("preprocess"))?;
        let [h, w] = self.preprocess.slice_size;
        if h != w || h % 16 != 0 {
            return invalid(
                "preprocess.slice_size",
                format!("[{h}, {w}]"),
                "square slices whose side is a multiple of 16 (64, 128, 256)",
            );
        }
        Ok(())
    }

    /// The statistics asked for (`evaluation.statistics`, `evaluation.prior_knowledge` and the
    /// gate's components): provided by the model, and an ensemble for WAIC.
    fn validate_statistics(&self) -> Result<()> {
        let e = &self.evaluation;
        if e.statistics.is_empty() {
            return invalid("evaluation.statistics", "[]", "at least one statistic");
        }
        let provided = self.model.statistics();
        let allowed = || {
            format!(
                "statistics the `{}` model provides: {}",
                self.model.kind(),
                provided
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if let Some(s) = e.statistics.iter().find(|s| !provided.contains(s)) {
            return invalid("evaluation.statistics", s.name(), allowed());
        }
        if let Some(g) = &self.gate {
            for (part, components) in [("shift", &g.shift), ("lesion", &g.lesion)] {
                if let Some((i, c)) = components
                    .iter()
                    .enumerate()
                    .find(|(_, c)| !provided.contains(&c.statistic))
                {
                    return invalid(
                        format!("gate.{part}[{i}].statistic"),
                        c.statistic.name(),
                        allowed(),
                    );
                }
            }
        }
        let needs_ensemble = [Statistic::Waic, Statistic::WaicNegElbo];
        if let Some(s) = e.statistics.iter().find(|s| needs_ensemble.contains(s))
            && self.ensemble.members < 2
        {
            return invalid(
                "evaluation.statistics",
                s.name(),
                format!(
                    "an ensemble of at least 2 members for {} (ensemble.members is {})",
                    s.name(),
                    self.ensemble.members
                ),
            );
        }
        if let Some(s) = e.prior_knowledge.iter().find(|s| !e.statistics.contains(s)) {
            return invalid(
                "evaluation.prior_knowledge",
                s.name(),
                "statistics that are also listed in evaluation.statistics",
            );
        }
        Ok(())
    }

    /// `[data]`: the root's syntax, the training and validation sets, then the test sets.
    fn validate_data(&self) -> Result<()> {
        let d = &self.data;
        if let Some(root) = &d.root {
            // the syntax only: a variable must be set where data is read (`data_root`), not
            // where a finished run scores new scans
            expand_env_with("data.root", root, |_| Some(String::new()))?;
        }
        for (key, spec) in [("data.train", &d.train), ("data.validation", &d.validation)] {
            self.validate_source(
                key,
                spec.dir.as_deref(),
                spec.synth_set.as_deref(),
                spec.layout.as_ref(),
            )?;
        }
        if d.test.is_empty() {
            return invalid("data.test", "[]", "at least one [[data.test]] set");
        }
        for i in 0..d.test.len() {
            self.validate_test_set(i)?;
        }
        Ok(())
    }

    /// `data.test[i]`: a name of its own, its source and its histogram matching.
    fn validate_test_set(&self, i: usize) -> Result<()> {
        let tests = &self.data.test;
        let t = &tests[i];
        let key = format!("data.test[{i}]");
        if t.name.trim().is_empty() {
            return invalid(
                format!("{key}.name"),
                format!("{:?}", t.name),
                "a non-empty name",
            );
        }
        if tests[..i].iter().any(|o| o.name == t.name) {
            return invalid(
                format!("{key}.name"),
                format!("{:?}", t.name),
                "a name not used by another test set",
            );
        }
        self.validate_source(
            &key,
            t.dir.as_deref(),
            t.synth_set.as_deref(),
            t.layout.as_ref(),
        )?;
        if let Some(h) = &t.histogram_match {
            h.check()
                .map_err(section(&format!("{key}.histogram_match")))?;
        }
        Ok(())
    }

    /// Where the dataset at `key` comes from: a `dir` (for a layout: relative, without `..`),
    /// and exactly one of a `synth_set` of `[synth]` and a layout.
    fn validate_source(
        &self,
        key: &str,
        dir: Option<&str>,
        synth_set: Option<&str>,
        layout: Option<&LayoutConfig>,
    ) -> Result<()> {
        if let Some(dir) = dir {
            validate_dir(key, dir, synth_set.is_some())?;
        }
        match (synth_set, layout) {
            (Some(name), None) => self.validate_synth_set(key, name),
            (None, Some(layout)) => layout
                .check()
                .map(|_| ())
                .map_err(section(&format!("{key}.layout"))),
            (Some(_), Some(_)) => invalid(
                key,
                "both synth_set and layout",
                "exactly one of synth_set and layout",
            ),
            (None, None) => invalid(
                key,
                "neither synth_set nor layout",
                "exactly one of synth_set and layout",
            ),
        }
    }

    /// `key.synth_set = name`: a set of `[synth]`.
    fn validate_synth_set(&self, key: &str, name: &str) -> Result<()> {
        let Some(synth) = &self.synth else {
            return invalid(
                format!("{key}.synth_set"),
                format!("{name:?}"),
                "a [synth] section to take the set from",
            );
        };
        if !synth.sets.iter().any(|s| s.name == name) {
            let names: Vec<&str> = synth.sets.iter().map(|s| s.name.as_str()).collect();
            return invalid(
                format!("{key}.synth_set"),
                format!("{name:?}"),
                format!("one of the [[synth.sets]]: {}", names.join(", ")),
            );
        }
        Ok(())
    }

    /// `data.root` with environment variables expanded (the current directory when unset).
    ///
    /// # Errors
    /// [`ConfigError::MissingEnv`] when a variable it uses is not set.
    pub fn data_root(&self) -> Result<PathBuf> {
        Ok(PathBuf::from(match &self.data.root {
            Some(root) => expand_env("data.root", root)?,
            None => ".".into(),
        }))
    }

    /// The resolved configuration as TOML, every default written out.
    ///
    /// # Errors
    /// [`ConfigError::Serialize`] (a bug: every value of a valid config serialises).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }

    /// The resolved configuration as JSON, for `results.json`.
    ///
    /// # Errors
    /// [`ConfigError::Serialize`] (a bug).
    pub fn to_json_value(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }

    /// Writes the resolved configuration to `dir/config.resolved.toml`, atomically.
    ///
    /// # Errors
    /// [`ConfigError::Io`] when it cannot be written.
    pub fn save_resolved(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(RESOLVED_FILE);
        let text = format!(
            "# Resolved configuration of run `{}`: every default written out.\n{}",
            self.name,
            self.to_toml_string()?
        );
        blindspot_report::write_atomic(&path, text.as_bytes()).map_err(|e| match e {
            blindspot_report::ReportError::Io { path, source } => ConfigError::Io { path, source },
            other => ConfigError::Serialize(other.to_string()),
        })?;
        Ok(path)
    }
}

/// `key.dir`: only beside a layout (`with_synth_set` says it is beside a phantom set), and a
/// folder relative to `data.root` without `..`.
fn validate_dir(key: &str, dir: &str, with_synth_set: bool) -> Result<()> {
    if with_synth_set {
        return invalid(
            format!("{key}.dir"),
            format!("{dir:?}"),
            "no `dir` with `synth_set` (it is for layouts)",
        );
    }
    let path = Path::new(dir);
    if path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return invalid(
            format!("{key}.dir"),
            format!("{dir:?}"),
            "a folder relative to data.root, without `..`",
        );
    }
    Ok(())
}

impl ThresholdConfig {
    /// A target FPR strictly between 0 and 1, and a finite value exactly with
    /// `method = "fixed"`.
    fn validate(&self) -> Result<()> {
        if !(self.target_fpr > 0.0 && self.target_fpr < 1.0) {
            return invalid(
                "threshold.target_fpr",
                self.target_fpr,
                "a rate strictly between 0 and 1 (0.05 for the paper)",
            );
        }
        match (self.method, self.value) {
            (ThresholdMethod::Fixed, None) => invalid(
                "threshold.value",
                "(missing)",
                "a finite threshold when method = \"fixed\"",
            ),
            (ThresholdMethod::Fixed, Some(v)) if !v.is_finite() => {
                invalid("threshold.value", v, "a finite threshold")
            }
            (ThresholdMethod::HealthyFpr, Some(v)) => invalid(
                "threshold.value",
                v,
                "no value with method = \"healthy_fpr\" (set method = \"fixed\" to use it)",
            ),
            _ => Ok(()),
        }
    }
}

impl EvaluationConfig {
    /// The numbers of `[evaluation]` (its statistics are checked against the model by
    /// `RunConfig::validate_statistics`).
    fn validate_numbers(&self) -> Result<()> {
        if self.bootstrap_resamples != 0 && self.bootstrap_resamples < 100 {
            return invalid(
                "evaluation.bootstrap_resamples",
                self.bootstrap_resamples,
                "0 (no intervals) or at least 100",
            );
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return invalid(
                "evaluation.confidence",
                self.confidence,
                "a coverage strictly between 0 and 1 (0.95)",
            );
        }
        if self.slice_stride == 0 {
            return invalid("evaluation.slice_stride", 0, "an integer >= 1");
        }
        if !(self.min_adequacy.is_finite() && self.min_adequacy <= 1.0) {
            return invalid(
                "evaluation.min_adequacy",
                self.min_adequacy,
                "a number <= 1 (0.5; 1 means as good as a 1-pixel blur)",
            );
        }
        Ok(())
    }
}

/// The numbers of `[gate]`: its rates, at least one shift component, and its goals (its
/// statistics are checked against the model by `RunConfig::validate_statistics`).
fn validate_gate_numbers(g: &GateConfig) -> Result<()> {
    for (key, a) in [
        ("gate.alpha", g.alpha),
        ("gate.lesion_alpha", g.lesion_alpha),
        ("gate.fit_fraction", g.fit_fraction),
    ] {
        if !(a > 0.0 && a < 1.0) {
            return invalid(key, a, "a fraction strictly between 0 and 1");
        }
    }
    if g.shift.is_empty() {
        return invalid("gate.shift", "[]", "at least one global-shift component");
    }
    let goals = &g.goals;
    for (key, v) in [
        ("gate.goals.id_acceptance", goals.id_acceptance),
        ("gate.goals.lesional_acceptance", goals.lesional_acceptance),
        ("gate.goals.lesion_sensitivity", goals.lesion_sensitivity),
        ("gate.goals.healthy_flag_rate", goals.healthy_flag_rate),
        ("gate.goals.lesion_auroc", goals.lesion_auroc),
        ("gate.goals.harmful_rejection", goals.harmful_rejection),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return invalid(key, v, "a share of scans (or an AUROC) in [0, 1]");
        }
    }
    for (key, v) in [
        ("gate.goals.harmful_fpr_ratio", goals.harmful_fpr_ratio),
        ("gate.goals.accepted_fpr_ratio", goals.accepted_fpr_ratio),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return invalid(key, v, "a positive multiple of threshold.target_fpr (1.5)");
        }
    }
    Ok(())
}

impl ReportConfig {
    /// Curve points, histogram bins and grid examples within their ranges.
    fn validate(&self) -> Result<()> {
        if !(10..=10_000).contains(&self.curve_points) {
            return invalid(
                "report.curve_points",
                self.curve_points,
                "10 to 10000 points",
            );
        }
        if !(5..=1000).contains(&self.histogram_bins) {
            return invalid(
                "report.histogram_bins",
                self.histogram_bins,
                "5 to 1000 bins",
            );
        }
        if self.grid_examples > 16 {
            return invalid(
                "report.grid_examples",
                self.grid_examples,
                "0 to 16 examples",
            );
        }
        Ok(())
    }
}

/// Applies one `KEY=VALUE` override to a parsed config document.
fn apply_override(doc: &mut toml::Table, setting: &str) -> Result<()> {
    let fail = |why: String| ConfigError::Override {
        setting: setting.to_string(),
        why,
    };
    let (key, raw) = setting
        .split_once('=')
        .ok_or_else(|| fail("expected KEY=VALUE, for example train.learning_rate=3e-4".into()))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(fail(format!(
            "`{key}` is not a dotted key such as train.batch_size"
        )));
    }
    // The value as TOML (a number, a boolean, an array, an inline table, a quoted string),
    // else as a bare string.
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let (last, path) = parts.split_last().expect("at least one part");
    let mut table = doc;
    for (i, part) in path.iter().enumerate() {
        let shown = parts[..=i].join(".");
        // `name[k]`: element k of an array of tables (`synth.sets[0].count=96`)
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => {
                let k = rest
                    .strip_suffix(']')
                    .and_then(|k| k.parse::<usize>().ok())
                    .ok_or_else(|| fail(format!("`{part}`: an index is written name[0]")))?;
                (name, Some(k))
            }
            None => (*part, None),
        };
        let entry = match index {
            None => table
                .entry(name.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new())),
            Some(k) => {
                let array = table
                    .get_mut(name)
                    .and_then(toml::Value::as_array_mut)
                    .ok_or_else(|| fail(format!("`{name}` is not an array of sections")))?;
                let len = array.len();
                array.get_mut(k).ok_or_else(|| {
                    fail(format!("`{shown}`: `{name}` has {len} entries (0..{len})"))
                })?
            }
        };
        table = entry.as_table_mut().ok_or_else(|| {
            fail(format!(
                "`{shown}` is not a section, so it has no key `{}`",
                parts[i + 1]
            ))
        })?;
    }
    table.insert((*last).to_string(), value);
    Ok(())
}

/// Replaces each `${VAR}` in `value` by the environment variable `VAR`.
fn expand_env(key: &str, value: &str) -> Result<String> {
    expand_env_with(key, value, |var| std::env::var(var).ok())
}

/// Replaces each `${VAR}` in `value` by `lookup(VAR)`; `key` names the setting in errors.
fn expand_env_with(
    key: &str,
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return invalid(
                key,
                format!("{value:?}"),
                "`${VAR}` references closed by `}`",
            );
        };
        let var = &after[..end];
        match lookup(var) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(ConfigError::MissingEnv {
                    key: key.into(),
                    var: var.into(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blindspot_vae::BetaSchedule;

    fn repo_config(name: &str) -> PathBuf {
        // at run time: a test binary reused from a clone at another path finds this clone's
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
            .join("../../configs")
            .join(name)
    }

    const MINIMAL: &str = r#"
name = "tiny"
[synth]
[[synth.sets]]
name = "train"
split = "train"
count = 2
[[synth.sets]]
name = "val"
split = "val"
count = 1
[[synth.sets]]
name = "t1"
count = 1
contrast = "t1"
[data]
train = { synth_set = "train" }
validation = { synth_set = "val" }
[[data.test]]
name = "T1"
role = "out_of_distribution"
synth_set = "t1"
"#;

    #[test]
    fn overrides_set_dotted_keys_with_toml_values_and_name_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let sets = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = RunConfig::load_with(
            &path,
            &sets(&[
                "train.learning_rate=3e-4",
                "ensemble.members = 3",
                "model.kind=dae",
                "model.noise_std=0.5",
                "synth.sets[0].count=5",
                "evaluation.statistics=[\"rec_err\", \"entropy\"]",
                "evaluation.prior_knowledge=[\"entropy\"]",
                "name=\"renamed\"",
            ]),
        )
        .unwrap();
        assert_eq!(c.train.learning_rate, 3e-4);
        assert_eq!(c.ensemble.members, 3);
        let ModelConfig::Dae(dae) = &c.model else {
            panic!("{:?}", c.model)
        };
        assert_eq!(dae.noise_std, 0.5);
        let beta = RunConfig::load_with(
            &path,
            &sets(&["model.beta={ kind = \"constant\", beta = 0.25 }"]),
        )
        .unwrap();
        let ModelConfig::Vae(vae) = &beta.model else {
            panic!("{:?}", beta.model)
        };
        assert_eq!(vae.beta, BetaSchedule::Constant { beta: 0.25 });
        assert_eq!(c.name, "renamed");
        assert_eq!(c.synth.as_ref().unwrap().sets[0].count, 5);
        assert_eq!(
            c.evaluation.statistics,
            [Statistic::RecErr, Statistic::Entropy]
        );
        // the same file without overrides is untouched
        assert_eq!(RunConfig::load(&path).unwrap().ensemble.members, 1);
        for (setting, needle) in [
            ("train.learning_rate", "expected KEY=VALUE"),
            ("train..x=1", "not a dotted key"),
            ("name.first=1", "`name` is not a section"),
            ("synth.sets[3].count=1", "`sets` has 3 entries"),
            ("synth.sets[x].count=1", "name[0]"),
            ("train[0].x=1", "`train` is not an array"),
            ("train.learnign_rate=1", "learnign_rate"),
            ("train.learning_rate=-1", "`learning_rate`"),
        ] {
            let err = RunConfig::load_with(&path, &sets(&[setting]))
                .expect_err(setting)
                .to_string();
            assert!(err.contains(needle), "{setting}: {err}");
        }
    }

    /// Parses `MINIMAL` with `extra` appended, expecting an error whose text contains every
    /// needle.
    fn check_err(extra: &str, needles: &[&str]) {
        let text = format!("{MINIMAL}\n{extra}");
        let err = RunConfig::from_toml_str(&text)
            .expect_err(extra)
            .to_string();
        for n in needles {
            assert!(err.contains(n), "error for {extra:?} lacks {n:?}: {err}");
        }
    }

    #[test]
    fn minimal_config_takes_the_documented_defaults() {
        let c = RunConfig::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.seed, 0);
        assert_eq!(c.threshold, ThresholdConfig::default());
        assert_eq!(c.threshold.target_fpr, 0.05);
        assert_eq!(c.model, ModelConfig::default());
        assert_eq!(c.model.latent_dims(), 128);
        assert_eq!(c.ensemble.members, 1);
        assert!(c.gate.is_none());
        assert_eq!(c.preprocess.slice_size, [128, 128]);
        // a single model cannot provide WAIC: it is not a default
        assert!(!c.evaluation.statistics.contains(&Statistic::Waic));
        assert!(c.evaluation.statistics.contains(&Statistic::Entropy));
    }

    #[test]
    fn unknown_key_fails_naming_it() {
        check_err(
            "[threshold]\ntarget_fp = 0.05",
            &["target_fp", "unknown field"],
        );
        check_err("colour = 1", &["colour"]);
    }

    #[test]
    fn wrong_type_fails_naming_the_key() {
        check_err(
            "[ensemble]\nmembers = \"five\"",
            &["members", "invalid type"],
        );
        check_err(
            "[evaluation]\nstatistics = [\"rec_error\"]",
            &["rec_error", "rec_err"],
        );
    }

    #[test]
    fn out_of_range_values_fail_with_key_value_and_allowed() {
        for (extra, needles) in [
            (
                "[threshold]\ntarget_fpr = 1.5",
                &["threshold.target_fpr", "1.5", "between 0 and 1"][..],
            ),
            (
                "[ensemble]\nmembers = 0",
                &["ensemble.members", "= 0", "1 to 64"],
            ),
            (
                "[model]\nwidth = -1.0",
                &["[model]", "width", "-1", "(0, 16]"],
            ),
            (
                "[preprocess]\nslice_size = [64, 80]",
                &["preprocess.slice_size", "multiple of 16"],
            ),
            (
                "[threshold]\nmethod = \"fixed\"",
                &["threshold.value", "missing"],
            ),
            (
                "[evaluation]\nbootstrap_resamples = 10",
                &["evaluation.bootstrap_resamples", "at least 100"],
            ),
            (
                "[report]\ncurve_points = 3",
                &["report.curve_points", "10 to 10000"],
            ),
            ("[train]\nbatch_size = 0", &["[train]", "batch_size"]),
        ] {
            check_err(extra, needles);
        }
    }

    #[test]
    fn statistics_a_model_cannot_provide_are_refused_naming_both() {
        let with = |kind: &str, stats: &str| {
            RunConfig::from_toml_str(&MINIMAL.replace(
                "name = \"tiny\"",
                &format!(
                    "name = \"tiny\"\n[model]\nkind = \"{kind}\"\n[evaluation]\n\
                     statistics = [{stats}]\nprior_knowledge = []"
                ),
            ))
        };
        let err = with("ae", "\"rec_err\", \"kl\"").unwrap_err().to_string();
        assert!(
            err.contains("evaluation.statistics") && err.contains("kl") && err.contains("`ae`"),
            "{err}"
        );
        assert!(
            err.contains("rec_err, entropy"),
            "lists what is allowed: {err}"
        );
        let err = with("flow", "\"rec_err\"").unwrap_err().to_string();
        assert!(err.contains("rec_err") && err.contains("`flow`"), "{err}");
        assert!(with("flow", "\"neg_elbo\", \"log_likelihood\"").is_ok());
        assert!(with("ae", "\"rec_err\", \"dose\"").is_ok());
    }

    #[test]
    fn waic_needs_an_ensemble() {
        let err = RunConfig::from_toml_str(&MINIMAL.replace(
            "name = \"tiny\"",
            "name = \"tiny\"\n[evaluation]\nstatistics = [\"waic\"]\nprior_knowledge = []",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("evaluation.statistics") && err.contains("at least 2 members"),
            "{err}"
        );
    }

    #[test]
    fn dataset_references_are_checked() {
        let text = MINIMAL.replace("synth_set = \"t1\"", "synth_set = \"t2\"");
        let err = RunConfig::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            err.contains("data.test[0].synth_set") && err.contains("train, val, t1"),
            "{err}"
        );
        let text = MINIMAL.replace("train = { synth_set = \"train\" }", "train = { }");
        let err = RunConfig::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            err.contains("data.train") && err.contains("exactly one"),
            "{err}"
        );
    }

    #[test]
    fn missing_environment_variable_is_named() {
        let text = MINIMAL.replace(
            "[data]",
            "[data]\nroot = \"${BLINDSPOT_SURELY_UNSET_VAR}/x\"",
        );
        // the config itself is valid (a finished run scores without its data's variables);
        // reading its data names the variable
        let config = RunConfig::from_toml_str(&text).unwrap();
        let err = config.data_root().unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingEnv { var, .. } if var == "BLINDSPOT_SURELY_UNSET_VAR"),
            "{err}"
        );
        let unclosed = MINIMAL.replace("[data]", "[data]\nroot = \"${BLINDSPOT_X/x\"");
        let err = RunConfig::from_toml_str(&unclosed).unwrap_err().to_string();
        assert!(
            err.contains("data.root") && err.contains("closed by"),
            "{err}"
        );
    }

    #[test]
    fn resolved_config_roundtrips() {
        let c = RunConfig::from_toml_str(MINIMAL).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = c.save_resolved(dir.path()).unwrap();
        assert_eq!(RunConfig::load(&path).unwrap(), c);
        assert_eq!(c.to_json_value().unwrap()["threshold"]["target_fpr"], 0.05);
    }

    #[test]
    fn shipped_configs_are_valid() {
        let quick = RunConfig::load(&repo_config("quickstart.toml")).unwrap();
        assert!(quick.ensemble.members >= 2 && quick.gate.is_some());
        assert_eq!(quick.preprocess.slice_size, [64, 64]);
        // paper and ixi-t1 read their roots from the environment
        let with_root = |file: &str, var: &str| {
            let text = std::fs::read_to_string(repo_config(file)).unwrap();
            assert!(text.contains(var), "{file} uses {var}");
            RunConfig::from_toml_str(&text.replace(var, "/data")).unwrap()
        };
        let paper = with_root("paper.toml", "${BLINDSPOT_DATA}");
        assert_eq!(
            (
                paper.train.batch_size,
                paper.ensemble.members,
                paper.preprocess.slice_size
            ),
            (128, 5, [128, 128])
        );
        let ixi = with_root("ixi-t1.toml", "${BLINDSPOT_REAL_DATA}");
        assert_eq!(ixi.ensemble.members, 3);
        assert_eq!(ixi.data_root().unwrap(), PathBuf::from("/data"));
    }
}
