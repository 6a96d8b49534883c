//! The `[synth]` TOML section: plain serde structs with documented defaults, validated once.
//!
//! ```toml
//! [synth]
//! seed = 42
//! dims = [96, 120, 64]
//! spacing = [2.0, 2.0, 2.0]
//!
//! [[synth.sets]]
//! name = "train"
//! split = "train"
//! count = 30
//! ```
//!
//! See `configs/synth.toml` for every key with its default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SynthError, invalid};
use crate::site::SiteParams;

/// MRI weighting of a generated image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contrast {
    /// T1-weighted: WM > GM > CSF.
    T1,
    /// T2-weighted: CSF > GM > WM (the paper's training modality).
    T2,
    /// Fluid-attenuated inversion recovery: CSF dark, GM > WM, lesions bright.
    Flair,
    /// Proton density: CSF >= GM > WM, low contrast.
    Pd,
}

impl Contrast {
    /// The name used in TOML and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Contrast::T1 => "t1",
            Contrast::T2 => "t2",
            Contrast::Flair => "flair",
            Contrast::Pd => "pd",
        }
    }
}

/// Kind of a real-world-like lesion drawn into a subject (with a voxel mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LesionKind {
    /// Healthy subject (empty lesion mask).
    None,
    /// Glioma-like: necrotic core, enhancing rim, oedema, irregular boundary.
    Tumour,
    /// Multiple-sclerosis-like: several small ovoid periventricular white-matter lesions.
    Ms,
    /// Stroke-like: a cortical wedge reaching into the white matter.
    Stroke,
}

impl LesionKind {
    /// The name used in TOML and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            LesionKind::None => "none",
            LesionKind::Tumour => "tumour",
            LesionKind::Ms => "ms",
            LesionKind::Stroke => "stroke",
        }
    }
}

/// A transformation that makes a set out-of-distribution on purpose.
///
/// Another site and another modality are not transforms: they come from a set's `site` and
/// `contrast`, and the manifest labels them `site` / `modality` against the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OodTransform {
    /// No transform.
    None,
    /// Mirror left-right (voxel axis x; the affine is kept, so the anatomy is mirrored in the world).
    FlipLr,
    /// Mirror up-down in the axial slice view, i.e. anterior-posterior (voxel axis y), as the
    /// paper's "VFlip" of axial slices.
    FlipUd,
    /// Not skull-stripped: skull, diploe, scalp and background noise stay in the image.
    Skull,
    /// Pure Gaussian noise, N(0, 1) in every voxel; the brain mask is the whole volume.
    Noise,
    /// Intensity inversion inside the brain (`p99 + p1 - I`).
    Inversion,
    /// Motion ghosting: attenuated copies shifted along the phase-encoding axis (y).
    Ghosting,
    /// The paper's artificial "lesions": one Gaussian blob added to a healthy volume
    /// (docs/method.md 1.7), centred on the sampled brain voxel.
    Blobs,
}

impl OodTransform {
    /// The name used in TOML and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            OodTransform::None => "none",
            OodTransform::FlipLr => "flip_lr",
            OodTransform::FlipUd => "flip_ud",
            OodTransform::Skull => "skull",
            OodTransform::Noise => "noise",
            OodTransform::Inversion => "inversion",
            OodTransform::Ghosting => "ghosting",
            OodTransform::Blobs => "blobs",
        }
    }
}

/// Role of a set in the experiment (the manifest's `split` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data (healthy, in-distribution).
    Train,
    /// Validation data (healthy, in-distribution).
    Val,
    /// A test set.
    Test,
}

impl Split {
    /// The name used in TOML and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// One named set of subjects (`[[synth.sets]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// Set name, `[A-Za-z0-9_]+` (it prefixes subject ids: `<name>-<index>`). Required.
    pub name: String,
    /// Role of the set. Default `test`.
    #[serde(default = "default_split")]
    pub split: Split,
    /// Number of subjects, 1..=10000. Required.
    pub count: usize,
    /// Site name (a built-in `A`, `B`, `C` or one of `[synth.sites.*]`). Default `A`.
    #[serde(default = "default_site")]
    pub site: String,
    /// Weighting. Default `t2`.
    #[serde(default = "default_contrast")]
    pub contrast: Contrast,
    /// Lesion kinds given, round-robin, to the lesional subjects. Default `[]`.
    #[serde(default)]
    pub lesions: Vec<LesionKind>,
    /// Fraction of subjects with a lesion, in [0, 1]: the first `round(rate * count)` are
    /// lesional. Default 1.0 when `lesions` is non-empty, else 0.
    #[serde(default)]
    pub lesion_rate: Option<f64>,
    /// Out-of-distribution transform. Default `none`.
    #[serde(default = "default_ood")]
    pub ood: OodTransform,
}

impl SetConfig {
    /// A set of `count` healthy subjects of site A, T2, no transform.
    pub fn new(name: &str, split: Split, count: usize) -> Self {
        SetConfig {
            name: name.to_owned(),
            split,
            count,
            site: default_site(),
            contrast: default_contrast(),
            lesions: Vec::new(),
            lesion_rate: None,
            ood: OodTransform::None,
        }
    }

    /// The same set with all three lesion kinds on every subject.
    pub fn lesional(mut self) -> Self {
        self.lesions = vec![LesionKind::Tumour, LesionKind::Ms, LesionKind::Stroke];
        self
    }

    /// The same set at another site.
    pub fn at_site(mut self, site: &str) -> Self {
        self.site = site.to_owned();
        self
    }

    /// The same set in another weighting.
    pub fn with_contrast(mut self, contrast: Contrast) -> Self {
        self.contrast = contrast;
        self
    }

    /// The same set with an OOD transform.
    pub fn with_ood(mut self, ood: OodTransform) -> Self {
        self.ood = ood;
        self
    }

    /// The lesion rate in effect.
    pub fn effective_lesion_rate(&self) -> f64 {
        self.lesion_rate
            .unwrap_or(if self.lesions.is_empty() { 0.0 } else { 1.0 })
    }
}

/// Lesion sizes (`[synth.lesions]`). Volumes are in millilitres (1 mL = 1000 mm^3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LesionConfig {
    /// Whole-tumour volume (core, rim and oedema), mL. Default `[35.0, 120.0]`.
    ///
    /// Chosen by measurement against real gliomas: two BraTS 2013 cases (1 mm, FLAIR z-scored)
    /// have whole tumours of 112 and 63 mL in brains of 1488 and 1585 mL; over axial slices with
    /// lesion, the lesion share of the slice's brain pixels has median 0.109 / 0.083 (p90
    /// 0.137 / 0.111) and the FLAIR contrast (mean lesion - mean other brain) / brain std has
    /// median 1.87 / 1.99. Published BraTS whole-tumour volumes are about 20-250 mL, median
    /// near 100 mL. On the quickstart grid the former `[15, 60]` gave tumours of 35-54 mL with
    /// a median slice share of 0.063; `[35, 120]` gives 73-104 mL, share median 0.102 (p90
    /// 0.143) and FLAIR contrast 2.08 (6 subjects; 0.099 over 24). The phantom's brains
    /// (0.8-1.5 L) are smaller than BraTS ones, so the same share takes slightly less volume.
    /// Rerun: `cargo run --release -p blindspot-synth --example lesion_sizes -- [REAL_DIR]`.
    #[serde(default = "default_tumour_ml")]
    pub tumour_ml: [f64; 2],
    /// Number of MS-like lesions per subject. Default `[4, 10]`.
    #[serde(default = "default_ms_count")]
    pub ms_count: [usize; 2],
    /// Volume of each MS-like lesion, mL. Default `[0.1, 0.8]`.
    #[serde(default = "default_ms_ml")]
    pub ms_ml: [f64; 2],
    /// Stroke wedge volume, mL. Default `[8.0, 40.0]`.
    #[serde(default = "default_stroke_ml")]
    pub stroke_ml: [f64; 2],
}

impl Default for LesionConfig {
    fn default() -> Self {
        LesionConfig {
            tumour_ml: default_tumour_ml(),
            ms_count: default_ms_count(),
            ms_ml: default_ms_ml(),
            stroke_ml: default_stroke_ml(),
        }
    }
}

/// The paper's Gaussian-blob "lesions" (`[synth.blobs]`, docs/method.md 1.7).
///
/// The blob adds `weight / (2 pi s^2) * exp(-r^2 / (2 sigma^2))` brain standard deviations,
/// with `s = sigma / pixel_mm` the width in the paper's 128-pixel slice units; its mask is
/// where the added value exceeds `exp(-1/2)` standard deviations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobConfig {
    /// Blob weight (the paper's `blob_weight`). Default 1000.
    #[serde(default = "default_blob_weight")]
    pub weight: f64,
    /// Width range in paper pixels (`std_min_max`). Default `[4.0, 10.0]`.
    #[serde(default = "default_blob_sigma")]
    pub sigma_px: [f64; 2],
    /// Millimetres per paper pixel (200 mm crop resized to 128). Default 1.5625.
    #[serde(default = "default_blob_pixel_mm")]
    pub pixel_mm: f64,
}

impl Default for BlobConfig {
    fn default() -> Self {
        BlobConfig {
            weight: default_blob_weight(),
            sigma_px: default_blob_sigma(),
            pixel_mm: default_blob_pixel_mm(),
        }
    }
}

/// The whole `[synth]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    /// Master seed; each subject's seed is derived from it, the set name and the index.
    /// Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Volume size in voxels `[x, y, z]`, each 16..=512. Default `[96, 120, 64]`.
    #[serde(default = "default_dims")]
    pub dims: [usize; 3],
    /// Voxel size in mm, each in [0.5, 8]. The field of view `dims * spacing` must hold a
    /// brain: at least 170 x 200 x 120 mm. Default `[2.0, 2.0, 2.0]`.
    #[serde(default = "default_spacing")]
    pub spacing: [f64; 3],
    /// The in-distribution site (OOD labels `site` are given against it). Default `A`.
    #[serde(default = "default_site")]
    pub reference_site: String,
    /// The in-distribution weighting (OOD label `modality`). Default `t2`.
    #[serde(default = "default_contrast")]
    pub reference_contrast: Contrast,
    /// Extra or replaced sites, by name; `A`, `B`, `C` are built in (see [`SiteParams`]).
    #[serde(default)]
    pub sites: BTreeMap<String, SiteParams>,
    /// Lesion sizes.
    #[serde(default)]
    pub lesions: LesionConfig,
    /// Gaussian-blob parameters.
    #[serde(default)]
    pub blobs: BlobConfig,
    /// The sets to generate. Default: [`SynthConfig::quickstart`]'s.
    #[serde(default = "default_sets")]
    pub sets: Vec<SetConfig>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self::quickstart()
    }
}

/// The document shape `[synth]` + other sections that belong to other crates.
#[derive(Deserialize)]
struct Document {
    synth: SynthConfig,
}

impl SynthConfig {
    /// The quickstart configuration: training and validation on healthy site-A T2, and the
    /// test sets `id_lesion` (site A T2 with lesions), `site_b_healthy`, `site_b_lesion`,
    /// `t1_healthy`, `t1_lesion`, `flip_lr`, `flip_ud`, `skull`, `noise`, `blobs`,
    /// `inversion`, `ghosting`.
    pub fn quickstart() -> Self {
        SynthConfig {
            seed: default_seed(),
            dims: default_dims(),
            spacing: default_spacing(),
            reference_site: default_site(),
            reference_contrast: default_contrast(),
            sites: BTreeMap::new(),
            lesions: LesionConfig::default(),
            blobs: BlobConfig::default(),
            sets: default_sets(),
        }
    }

    /// Read the `[synth]` table of a TOML document (other top-level tables are left to their
    /// owners) and validate it.
    ///
    /// # Errors
    /// [`SynthError::Parse`] for malformed TOML, a missing `[synth]` table or an unknown key
    /// inside it; [`SynthError::Invalid`] for a value out of range.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let doc: Document = toml::from_str(text).map_err(|e| SynthError::Parse {
            message: e.to_string(),
        })?;
        doc.synth.validate()?;
        Ok(doc.synth)
    }

    /// This configuration as a TOML document with a `[synth]` table (what
    /// [`SynthConfig::from_toml_str`] reads back).
    ///
    /// # Panics
    /// Never for a `SynthConfig`: every field is representable in TOML (a failure would be a
    /// programmer error in this type's definition).
    pub fn to_toml_string(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            synth: &'a SynthConfig,
        }
        toml::to_string_pretty(&Out { synth: self })
            .expect("every field of SynthConfig is representable in TOML")
    }

    /// The parameters of a site: `[synth.sites.<name>]` if given, else the built-in one.
    pub fn site(&self, name: &str) -> Option<SiteParams> {
        self.sites
            .get(name)
            .cloned()
            .or_else(|| SiteParams::builtin(name))
    }

    /// Check every value; the error names the key, the value and what is allowed.
    ///
    /// # Errors
    /// [`SynthError::Invalid`] for the first offending key.
    pub fn validate(&self) -> Result<()> {
        self.validate_grid()?;
        self.validate_sites()?;
        self.validate_lesions()?;
        if self.sets.is_empty() {
            return Err(invalid(
                "synth.sets",
                "[]",
                "at least one [[synth.sets]] entry",
            ));
        }
        for (i, set) in self.sets.iter().enumerate() {
            self.validate_set(i, set)?;
        }
        Ok(())
    }

    /// `dims` and `spacing`: a field of view a brain fits in, at most 2^26 voxels.
    fn validate_grid(&self) -> Result<()> {
        for (a, (&d, &s)) in self.dims.iter().zip(&self.spacing).enumerate() {
            if !(16..=512).contains(&d) {
                return Err(invalid(format!("synth.dims[{a}]"), d, "16..=512 voxels"));
            }
            if !(0.5..=8.0).contains(&s) {
                return Err(invalid(format!("synth.spacing[{a}]"), s, "0.5..=8.0 mm"));
            }
        }
        let fov: Vec<f64> = (0..3)
            .map(|a| self.dims[a] as f64 * self.spacing[a])
            .collect();
        for (a, need) in MIN_FOV_MM.iter().enumerate() {
            if fov[a] < *need {
                return Err(invalid(
                    "synth.dims * synth.spacing",
                    format!("{:.0} x {:.0} x {:.0} mm", fov[0], fov[1], fov[2]),
                    format!(
                        "a field of view of at least {} x {} x {} mm (a brain must fit)",
                        MIN_FOV_MM[0], MIN_FOV_MM[1], MIN_FOV_MM[2]
                    ),
                ));
            }
        }
        let voxels = self.dims.iter().product::<usize>();
        if voxels > 64 * 1024 * 1024 {
            return Err(invalid(
                "synth.dims",
                format!("{:?}", self.dims),
                "at most 2^26 voxels",
            ));
        }
        Ok(())
    }

    /// The sites' names and parameters, and the reference site.
    fn validate_sites(&self) -> Result<()> {
        for (name, site) in &self.sites {
            if !valid_name(name) {
                return Err(invalid(
                    format!("synth.sites.{name}"),
                    name,
                    "a name of [A-Za-z0-9_]",
                ));
            }
            site.validate(&format!("synth.sites.{name}"))?;
        }
        if self.site(&self.reference_site).is_none() {
            return Err(invalid(
                "synth.reference_site",
                &self.reference_site,
                self.site_names(),
            ));
        }
        Ok(())
    }

    /// `[synth.lesions]` and `[synth.blobs]`: volumes, counts and blob sizes in range.
    fn validate_lesions(&self) -> Result<()> {
        range_ok(
            "synth.lesions.tumour_ml",
            self.lesions.tumour_ml,
            0.5,
            400.0,
        )?;
        range_ok("synth.lesions.ms_ml", self.lesions.ms_ml, 0.02, 10.0)?;
        range_ok(
            "synth.lesions.stroke_ml",
            self.lesions.stroke_ml,
            0.5,
            200.0,
        )?;
        let [c0, c1] = self.lesions.ms_count;
        if c0 < 1 || c1 < c0 || c1 > 50 {
            return Err(invalid(
                "synth.lesions.ms_count",
                format!("[{c0}, {c1}]"),
                "[min, max] with 1 <= min <= max <= 50",
            ));
        }
        if !(self.blobs.weight > 0.0 && self.blobs.weight <= 1e6) {
            return Err(invalid("synth.blobs.weight", self.blobs.weight, "(0, 1e6]"));
        }
        range_ok("synth.blobs.sigma_px", self.blobs.sigma_px, 0.5, 64.0)?;
        if !(0.1..=10.0).contains(&self.blobs.pixel_mm) {
            return Err(invalid(
                "synth.blobs.pixel_mm",
                self.blobs.pixel_mm,
                "0.1..=10.0 mm",
            ));
        }
        Ok(())
    }

    /// The set at index `i`: a unique name, a count, a known site, lesion kinds and rate, and a
    /// split that fits its lesions and transform.
    fn validate_set(&self, i: usize, set: &SetConfig) -> Result<()> {
        let key = |k: &str| format!("synth.sets[{i}].{k}");
        if !valid_name(&set.name) {
            return Err(invalid(
                key("name"),
                format!("{:?}", set.name),
                "a non-empty name of [A-Za-z0-9_], at most 40 characters",
            ));
        }
        if self.sets[..i].iter().any(|s| s.name == set.name) {
            return Err(invalid(
                key("name"),
                &set.name,
                "a name not used by another set",
            ));
        }
        if !(1..=10_000).contains(&set.count) {
            return Err(invalid(key("count"), set.count, "1..=10000"));
        }
        if self.site(&set.site).is_none() {
            return Err(invalid(key("site"), &set.site, self.site_names()));
        }
        if set.lesions.contains(&LesionKind::None) {
            return Err(invalid(
                key("lesions"),
                "\"none\"",
                "kinds among tumour, ms, stroke (healthy subjects come from lesion_rate < 1)",
            ));
        }
        let rate = set.effective_lesion_rate();
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid(key("lesion_rate"), rate, "a fraction in [0, 1]"));
        }
        if rate > 0.0 && set.lesions.is_empty() {
            return Err(invalid(
                key("lesion_rate"),
                rate,
                "0 when `lesions` is empty",
            ));
        }
        if rate > 0.0 && matches!(set.ood, OodTransform::Noise | OodTransform::Blobs) {
            return Err(invalid(
                key("ood"),
                set.ood.name(),
                "a transform other than noise or blobs for a set with lesions (those sets are healthy by definition)",
            ));
        }
        if set.split != Split::Test && (rate > 0.0 || set.ood != OodTransform::None) {
            return Err(invalid(
                key("split"),
                set.split.name(),
                "`test` for a set with lesions or an OOD transform (train/val are healthy and in-distribution)",
            ));
        }
        Ok(())
    }

    fn site_names(&self) -> String {
        let mut names: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        names.extend(
            self.sites
                .keys()
                .filter(|k| !["A", "B", "C"].contains(&k.as_str()))
                .cloned(),
        );
        format!("one of the sites {}", names.join(", "))
    }
}

/// The smallest field of view, in mm, that holds every generated brain.
pub const MIN_FOV_MM: [f64; 3] = [170.0, 200.0, 120.0];

fn range_ok(key: &str, r: [f64; 2], lo: f64, hi: f64) -> Result<()> {
    if r[0] >= lo && r[1] >= r[0] && r[1] <= hi {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("[{}, {}]", r[0], r[1]),
            format!("[min, max] with {lo} <= min <= max <= {hi}"),
        ))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn default_seed() -> u64 {
    42
}
fn default_dims() -> [usize; 3] {
    [96, 120, 64]
}
fn default_spacing() -> [f64; 3] {
    [2.0, 2.0, 2.0]
}
fn default_site() -> String {
    "A".to_owned()
}
fn default_contrast() -> Contrast {
    Contrast::T2
}
fn default_split() -> Split {
    Split::Test
}
fn default_ood() -> OodTransform {
    OodTransform::None
}
fn default_tumour_ml() -> [f64; 2] {
    [35.0, 120.0]
}
fn default_ms_count() -> [usize; 2] {
    [4, 10]
}
fn default_ms_ml() -> [f64; 2] {
    [0.1, 0.8]
}
fn default_stroke_ml() -> [f64; 2] {
    [8.0, 40.0]
}
fn default_blob_weight() -> f64 {
    1000.0
}
fn default_blob_sigma() -> [f64; 2] {
    [4.0, 10.0]
}
fn default_blob_pixel_mm() -> f64 {
    1.5625
}

fn default_sets() -> Vec<SetConfig> {
    use OodTransform as O;
    use Split::{Test, Train, Val};
    let n = 6;
    vec![
        SetConfig::new("train", Train, 30),
        SetConfig::new("val", Val, 4),
        SetConfig::new("id_lesion", Test, n).lesional(),
        SetConfig::new("site_b_healthy", Test, n).at_site("B"),
        SetConfig::new("site_b_lesion", Test, n)
            .at_site("B")
            .lesional(),
        SetConfig::new("t1_healthy", Test, n).with_contrast(Contrast::T1),
        SetConfig::new("t1_lesion", Test, n)
            .with_contrast(Contrast::T1)
            .lesional(),
        SetConfig::new("flip_lr", Test, n).with_ood(O::FlipLr),
        SetConfig::new("flip_ud", Test, n).with_ood(O::FlipUd),
        SetConfig::new("skull", Test, n).with_ood(O::Skull),
        SetConfig::new("noise", Test, n).with_ood(O::Noise),
        SetConfig::new("blobs", Test, n).with_ood(O::Blobs),
        SetConfig::new("inversion", Test, n).with_ood(O::Inversion),
        SetConfig::new("ghosting", Test, n).with_ood(O::Ghosting),
    ]
}
