//! Dataset layouts: where the images and masks of each subject are, read from TOML.
//!
//! A layout is either **generic** (glob patterns) or a named **preset** ([`Preset`]: `camcan`,
//! `brats`, `ixi`, `ibsr`, `candi`). Keys (all paths relative to the dataset root, `/` as
//! separator):
//!
//! | key           | type            | meaning |
//! |---------------|-----------------|---------|
//! | `image`       | glob            | every file it matches is one subject's image (`*`, `?`, `[..]`, `**/` for any depth) |
//! | `id_regex`    | regex           | applied to the image path; its named group `id` is the subject id. Default `(?P<id>[^/]+?)\.nii(?:\.gz)?$` (the file name without extension) |
//! | `brain_mask`  | glob + placeholders | the subject's brain mask; absent: the non-zero voxels of the image |
//! | `lesion_mask` | glob + placeholders | the subject's lesion mask (any non-zero value is lesion); absent: no lesion masks |
//! | `exclude`     | list of regexes | image paths matching any of them are skipped |
//! | `split`       | table           | keep one part of a seeded subject-level split: `{ train = 0.6, val = 0.2, test = 0.2, seed = 1, part = "val" }` ([`SplitSelect`]) |
//! | `max_subjects`| integer >= 1    | keep only the first N subjects in id order (after `split`) |
//! | `preset`      | name            | use a preset instead of `image`, `id_regex`, `brain_mask`, `lesion_mask` |
//! | `modality`    | name            | the preset's modality (see [`Preset::modalities`]) |
//!
//! Placeholders in the mask patterns: `{id}` and any other named group of `id_regex`, and
//! `{dir}`, the image's directory (relative to the root, `.` at the top). A mask pattern must
//! match **exactly one** file per subject.
//!
//! The dataset written by `blindspot-synth` reads with:
//!
//! ```toml
//! image = "images/*.nii.gz"
//! brain_mask = "brain_masks/{id}.nii.gz"
//! lesion_mask = "lesion_masks/{id}.nii.gz"
//! id_regex = 'images/(?P<id>[^/]+)\.nii\.gz$'
//! ```
//!
//! and BraTS 2020 with `preset = "brats"` and `modality = "t2"`. [`LayoutConfig`] is the
//! unchecked TOML form; [`LayoutConfig::check`] turns it into a [`Layout`], whose
//! [`Layout::discover`] lists the subjects of a dataset folder.

mod presets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};
use crate::split::{Part, SplitConfig};
pub use presets::Preset;

/// The default `id_regex`: the file name without `.nii` / `.nii.gz`.
pub const DEFAULT_ID_REGEX: &str = r"(?P<id>[^/]+?)\.nii(?:\.gz)?$";

/// A dataset layout as written in TOML (unchecked; see the module docs for the keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutConfig {
    /// A named layout, instead of `image` / `id_regex` / `brain_mask` / `lesion_mask`.
    pub preset: Option<Preset>,
    /// The preset's modality; default: the preset's first.
    pub modality: Option<String>,
    /// Glob of the image files.
    pub image: Option<String>,
    /// Regex with a named group `id`, applied to each image path.
    pub id_regex: Option<String>,
    /// Pattern of the brain mask of a subject.
    pub brain_mask: Option<String>,
    /// Pattern of the lesion mask of a subject.
    pub lesion_mask: Option<String>,
    /// Regexes of image paths to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Keep one part of a subject-level split.
    pub split: Option<SplitSelect>,
    /// Keep only the first N subjects (in id order, after `split`).
    pub max_subjects: Option<usize>,
}

/// One part of a seeded subject-level split ([`SplitConfig::split`]), as a layout's `split`
/// key: three layouts over one folder that differ only in `part` give disjoint train,
/// validation and test sets, fixed by the fractions and the seed. The split is drawn over the
/// subjects left after `exclude`, so every layout of one split must exclude the same files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSelect {
    /// Fraction of subjects for training.
    pub train: f64,
    /// Fraction for validation.
    pub val: f64,
    /// Fraction for testing.
    pub test: f64,
    /// Shuffle seed.
    pub seed: u64,
    /// The part this layout keeps.
    pub part: Part,
}

impl SplitSelect {
    fn config(&self) -> SplitConfig {
        SplitConfig {
            train: self.train,
            val: self.val,
            test: self.test,
            seed: self.seed,
        }
    }
}

/// A checked layout, ready to [`discover`](Layout::discover) subjects.
#[derive(Debug, Clone)]
pub struct Layout {
    image: Pattern,
    id_regex: Regex,
    brain_mask: Option<Template>,
    lesion_mask: Option<Template>,
    exclude: Vec<Regex>,
    split: Option<SplitSelect>,
    max_subjects: Option<usize>,
}

/// One subject's files (absolute, or relative to the working directory like the root given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectFiles {
    /// Subject id.
    pub id: String,
    /// The image.
    pub image: PathBuf,
    /// The brain mask, if the layout has one.
    pub brain_mask: Option<PathBuf>,
    /// The lesion mask, if the layout has one.
    pub lesion_mask: Option<PathBuf>,
}

/// A mask pattern with `{name}` placeholders.
#[derive(Debug, Clone)]
struct Template {
    key: &'static str,
    text: String,
}

fn invalid(key: &str, value: &str, expected: impl Into<String>) -> IoError {
    IoError::InvalidParameter {
        key: key.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// Glob options: `*` and `?` never cross `/`.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn check_relative(key: &str, pattern: &str) -> Result<()> {
    if pattern.is_empty() || pattern.starts_with('/') || pattern.split('/').any(|c| c == "..") {
        return Err(invalid(
            key,
            pattern,
            "a non-empty pattern relative to the dataset root, without `..`",
        ));
    }
    Ok(())
}

impl Template {
    fn new(key: &'static str, text: &str, regex: &Regex) -> Result<Self> {
        check_relative(key, text)?;
        let groups: Vec<&str> = regex.capture_names().flatten().collect();
        let mut probe = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            probe.push_str(&rest[..open]);
            let close = match (rest.as_bytes()[open], rest[open..].find('}')) {
                (b'{', Some(c)) => open + c,
                _ => {
                    return Err(invalid(
                        key,
                        text,
                        "placeholders written `{name}`, braces balanced",
                    ));
                }
            };
            let name = &rest[open + 1..close];
            if name != "dir" && !groups.contains(&name) {
                return Err(invalid(
                    key,
                    text,
                    format!(
                        "placeholders `{{dir}}` or a named group of `id_regex` ({groups:?}); `{{{name}}}` is neither"
                    ),
                ));
            }
            probe.push('x');
            rest = &rest[close + 1..];
        }
        probe.push_str(rest);
        Pattern::new(&probe)
            .map_err(|e| invalid(key, text, format!("a valid glob pattern ({e})")))?;
        Ok(Self {
            key,
            text: text.to_owned(),
        })
    }

    /// The pattern with placeholders replaced (values glob-escaped).
    fn fill(&self, vars: &BTreeMap<&str, String>) -> String {
        let mut out = String::new();
        let mut rest = self.text.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = open + rest[open..].find('}').expect("checked in Template::new");
            let name = &rest[open + 1..close];
            out.push_str(&Pattern::escape(vars.get(name).map_or("", String::as_str)));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

impl LayoutConfig {
    /// Read a layout TOML file.
    ///
    /// # Errors
    ///
    /// [`IoError::Io`] if it cannot be read; [`IoError::LayoutFile`] if it is not valid TOML
    /// for a layout (unknown keys are refused, the message names them).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| IoError::Io {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| IoError::LayoutFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Validate and compile.
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidParameter`] naming the key and value: a preset combined with the
    /// generic keys, a missing `image`, a bad glob or regex, an unknown placeholder or
    /// modality, `max_subjects = 0`.
    pub fn check(&self) -> Result<Layout> {
        let (image, id_regex, brain_mask, lesion_mask) = match self.preset {
            Some(preset) => {
                for (key, v) in [
                    ("image", &self.image),
                    ("id_regex", &self.id_regex),
                    ("brain_mask", &self.brain_mask),
                    ("lesion_mask", &self.lesion_mask),
                ] {
                    if let Some(v) = v {
                        return Err(invalid(
                            key,
                            v,
                            format!(
                                "no `{key}` with `preset = \"{}\"` (the preset sets it)",
                                preset.name()
                            ),
                        ));
                    }
                }
                let e = preset.expand(self.modality.as_deref())?;
                (e.image, e.id_regex, e.brain_mask, e.lesion_mask)
            }
            None => {
                if let Some(m) = &self.modality {
                    return Err(invalid(
                        "modality",
                        m,
                        "`modality` only together with `preset`",
                    ));
                }
                let image = self.image.clone().ok_or_else(|| {
                    invalid(
                        "image",
                        "(missing)",
                        "a glob of the image files, or a `preset`",
                    )
                })?;
                let id_regex = self
                    .id_regex
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ID_REGEX.into());
                (
                    image,
                    id_regex,
                    self.brain_mask.clone(),
                    self.lesion_mask.clone(),
                )
            }
        };
        check_relative("image", &image)?;
        if image.contains(['{', '}']) {
            return Err(invalid("image", &image, "a glob without placeholders"));
        }
        let image_pattern = Pattern::new(&image)
            .map_err(|e| invalid("image", &image, format!("a valid glob pattern ({e})")))?;
        let id_regex_c = Regex::new(&id_regex)
            .map_err(|e| invalid("id_regex", &id_regex, format!("a valid regex ({e})")))?;
        if !id_regex_c.capture_names().flatten().any(|n| n == "id") {
            return Err(invalid(
                "id_regex",
                &id_regex,
                "a regex with a named group `(?P<id>...)`",
            ));
        }
        let brain_mask = brain_mask
            .map(|t| Template::new("brain_mask", &t, &id_regex_c))
            .transpose()?;
        let lesion_mask = lesion_mask
            .map(|t| Template::new("lesion_mask", &t, &id_regex_c))
            .transpose()?;
        let exclude = self
            .exclude
            .iter()
            .map(|r| {
                Regex::new(r).map_err(|e| invalid("exclude", r, format!("valid regexes ({e})")))
            })
            .collect::<Result<Vec<_>>>()?;
        if self.max_subjects == Some(0) {
            return Err(invalid("max_subjects", "0", "an integer >= 1, or no key"));
        }
        if let Some(split) = &self.split {
            split.config().check()?;
        }
        Ok(Layout {
            image: image_pattern,
            id_regex: id_regex_c,
            brain_mask,
            lesion_mask,
            exclude,
            split: self.split.clone(),
            max_subjects: self.max_subjects,
        })
    }
}

/// `path` relative to `root`, with `/` separators.
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every file under `root` matching the relative pattern, sorted.
fn glob_under(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let full = format!("{}/{pattern}", Pattern::escape(&root.to_string_lossy()));
    let paths =
        glob::glob_with(&full, MATCH).map_err(|e| invalid("pattern", pattern, e.to_string()))?;
    let mut out = Vec::new();
    for p in paths {
        let p = p.map_err(|e| IoError::Io {
            path: e.path().to_owned(),
            source: std::io::Error::new(e.error().kind(), e.error().to_string()),
        })?;
        if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

impl Layout {
    /// Read, check and compile a layout TOML file.
    ///
    /// # Errors
    ///
    /// As [`LayoutConfig::from_file`] and [`LayoutConfig::check`].
    pub fn from_file(path: &Path) -> Result<Self> {
        LayoutConfig::from_file(path)?.check()
    }

    /// List the subjects of the dataset under `root`, sorted by id.
    ///
    /// # Errors
    ///
    /// [`IoError::NoMatch`] if `image` matches no file (or every match is excluded);
    /// [`IoError::IdMismatch`] if an image path does not match `id_regex`;
    /// [`IoError::DuplicateSubject`] if two images give one id; [`IoError::SubjectFile`] if a
    /// subject's mask pattern matches no file or several; [`IoError::Io`] on a directory that
    /// cannot be read.
    pub fn discover(&self, root: &Path) -> Result<Vec<SubjectFiles>> {
        let images = glob_under(root, self.image.as_str())?;
        let mut by_id: BTreeMap<String, (PathBuf, BTreeMap<&str, String>)> = BTreeMap::new();
        for path in images {
            let rel = relative(root, &path);
            if self.exclude.iter().any(|r| r.is_match(&rel)) {
                continue;
            }
            let caps = self
                .id_regex
                .captures(&rel)
                .ok_or_else(|| IoError::IdMismatch {
                    path: PathBuf::from(&rel),
                    regex: self.id_regex.as_str().to_owned(),
                })?;
            let mut vars: BTreeMap<&str, String> = self
                .id_regex
                .capture_names()
                .flatten()
                .filter_map(|n| caps.name(n).map(|m| (n, m.as_str().to_owned())))
                .collect();
            let id = vars.get("id").cloned().unwrap_or_default();
            if id.is_empty() {
                return Err(IoError::IdMismatch {
                    path: PathBuf::from(&rel),
                    regex: self.id_regex.as_str().to_owned(),
                });
            }
            let dir = rel.rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
            vars.insert("dir", dir);
            if let Some((first, _)) = by_id.get(&id) {
                return Err(IoError::DuplicateSubject {
                    id,
                    first: first.clone(),
                    second: path,
                });
            }
            by_id.insert(id, (path, vars));
        }
        if by_id.is_empty() {
            return Err(IoError::NoMatch {
                root: root.to_owned(),
                key: "image".into(),
                pattern: self.image.as_str().to_owned(),
            });
        }
        if let Some(select) = &self.split {
            let ids: Vec<String> = by_id.keys().cloned().collect();
            let total = ids.len();
            let split = select.config().split(ids, String::as_str)?;
            let keep: std::collections::BTreeSet<&String> =
                split.part(select.part).iter().collect();
            by_id.retain(|id, _| keep.contains(id));
            if by_id.is_empty() {
                return Err(invalid(
                    "split",
                    &format!("part = \"{}\" of {} subjects", select.part.name(), total),
                    "fractions that leave this part at least one subject",
                ));
            }
        }
        let take = self.max_subjects.unwrap_or(usize::MAX);
        by_id
            .into_iter()
            .take(take)
            .map(|(id, (image, vars))| {
                let find = |t: &Option<Template>| -> Result<Option<PathBuf>> {
                    let Some(t) = t else { return Ok(None) };
                    let pattern = t.fill(&vars);
                    let found = glob_under(root, &pattern)?;
                    match found.len() {
                        1 => Ok(found.into_iter().next()),
                        n => Err(IoError::SubjectFile {
                            subject: id.clone(),
                            key: t.key.into(),
                            pattern,
                            found: n,
                        }),
                    }
                };
                Ok(SubjectFiles {
                    brain_mask: find(&self.brain_mask)?,
                    lesion_mask: find(&self.lesion_mask)?,
                    id: id.clone(),
                    image,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    fn layout(toml_text: &str) -> Result<Layout> {
        toml::from_str::<LayoutConfig>(toml_text).unwrap().check()
    }

    const SYNTH: &str = r#"
        image = "images/*.nii.gz"
        brain_mask = "brain_masks/{id}.nii.gz"
        lesion_mask = "lesion_masks/{id}.nii.gz"
        id_regex = 'images/(?P<id>[^/]+)\.nii\.gz$'
    "#;

    #[test]
    fn synth_dataset_layout() {
        let dir = tempfile::tempdir().unwrap();
        for s in ["s002", "s001"] {
            touch(dir.path(), &format!("images/{s}.nii.gz"));
            touch(dir.path(), &format!("brain_masks/{s}.nii.gz"));
            touch(dir.path(), &format!("lesion_masks/{s}.nii.gz"));
        }
        touch(dir.path(), "manifest.csv");
        let subjects = layout(SYNTH).unwrap().discover(dir.path()).unwrap();
        assert_eq!(subjects.len(), 2);
        assert_eq!(subjects[0].id, "s001");
        assert_eq!(subjects[0].image, dir.path().join("images/s001.nii.gz"));
        assert_eq!(
            subjects[0].brain_mask,
            Some(dir.path().join("brain_masks/s001.nii.gz"))
        );
        assert_eq!(
            subjects[1].lesion_mask,
            Some(dir.path().join("lesion_masks/s002.nii.gz"))
        );
    }

    #[test]
    fn missing_mask_names_subject_and_pattern() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "images/a.nii.gz");
        touch(dir.path(), "brain_masks/a.nii.gz");
        let err = layout(SYNTH).unwrap().discover(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, IoError::SubjectFile { found: 0, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("`a`") && msg.contains("lesion_masks/a.nii.gz"),
            "{msg}"
        );
    }

    #[test]
    fn split_parts_are_disjoint_complete_and_fixed() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            touch(dir.path(), &format!("s{i:02}.nii.gz"));
        }
        touch(dir.path(), "bad.nii.gz");
        let part = |p: &str| -> Vec<String> {
            let text = format!(
                "image = \"*.nii.gz\"\nexclude = ['bad']\n\
                 split = {{ train = 0.6, val = 0.25, test = 0.15, seed = 5, part = \"{p}\" }}"
            );
            let found = layout(&text).unwrap().discover(dir.path()).unwrap();
            found.into_iter().map(|s| s.id).collect()
        };
        let (train, val, test) = (part("train"), part("val"), part("test"));
        assert_eq!((train.len(), val.len(), test.len()), (12, 5, 3));
        let mut all: Vec<&String> = train.iter().chain(&val).chain(&test).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20, "every subject in exactly one part");
        assert_eq!(part("val"), val, "the same split every time");
        // max_subjects takes the first of the part, not of the folder.
        let text = "image = \"*.nii.gz\"\nexclude = ['bad']\nmax_subjects = 2\n\
                    split = { train = 0.6, val = 0.25, test = 0.15, seed = 5, part = \"test\" }";
        let ids: Vec<String> = layout(text)
            .unwrap()
            .discover(dir.path())
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, test[..2]);
        // Bad fractions and an empty part are named.
        let err = layout("image = \"*.nii.gz\"\nsplit = { train = 0.6, val = 0.6, test = 0.0, seed = 1, part = \"val\" }")
            .unwrap_err();
        assert!(err.to_string().contains("split"), "{err}");
        let err = layout("image = \"*.nii.gz\"\nsplit = { train = 1.0, val = 0.0, test = 0.0, seed = 1, part = \"test\" }")
            .unwrap()
            .discover(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("part = \"test\""), "{err}");
        let bad = toml::from_str::<LayoutConfig>(
            "image = \"*.nii.gz\"\nsplit = { train = 1.0, val = 0.0, test = 0.0, seed = 1, part = \"holdout\" }",
        );
        assert!(bad.is_err());
    }

    #[test]
    fn no_match_names_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let err = layout(SYNTH).unwrap().discover(dir.path()).unwrap_err();
        assert!(matches!(err, IoError::NoMatch { .. }));
        assert!(err.to_string().contains("images/*.nii.gz"), "{err}");
    }

    #[test]
    fn default_id_regex_duplicates_and_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "a/x.nii.gz");
        touch(dir.path(), "b/x.nii");
        let l = layout(r#"image = "*/x.nii*""#).unwrap();
        let err = l.discover(dir.path()).unwrap_err();
        assert!(
            matches!(err, IoError::DuplicateSubject { ref id, .. } if id == "x"),
            "{err}"
        );
        let l = layout("image = \"*/x.nii*\"\nid_regex = '^(?P<id>a)/'").unwrap();
        let err = l.discover(dir.path()).unwrap_err();
        assert!(matches!(err, IoError::IdMismatch { .. }), "{err}");
        let l =
            layout("image = \"*/x.nii*\"\nid_regex = '^(?P<id>[ab])/'\nexclude = ['^b/']").unwrap();
        assert_eq!(l.discover(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn config_errors_name_keys() {
        let err = |t: &str, key: &str| {
            let e = layout(t).unwrap_err().to_string();
            assert!(e.contains(key), "{t}: {e}");
        };
        err("preset = \"brats\"\nimage = \"*.nii\"", "`image`");
        err("preset = \"brats\"\nmodality = \"dwi\"", "modality");
        err("modality = \"t1\"\nimage = \"*.nii\"", "modality");
        err("brain_mask = \"x\"", "`image`");
        err("image = \"/abs/*.nii\"", "`image`");
        err("image = \"../*.nii\"", "`image`");
        err("image = \"*.nii\"\nid_regex = \"(\"", "id_regex");
        err("image = \"*.nii\"\nid_regex = \"(?P<name>.*)\"", "id_regex");
        err(
            "image = \"*.nii\"\nbrain_mask = \"{subject}.nii\"",
            "brain_mask",
        );
        err(
            "image = \"*.nii\"\nlesion_mask = \"{id.nii\"",
            "lesion_mask",
        );
        err("image = \"*.nii\"\nmax_subjects = 0", "max_subjects");
        err("image = \"*.nii\"\nexclude = [\"[\"]", "exclude");
        let e = toml::from_str::<LayoutConfig>("image = \"*.nii\"\nimages = \"x\"").unwrap_err();
        assert!(e.to_string().contains("images"), "{e}");
        let e = toml::from_str::<LayoutConfig>("preset = \"bratz\"").unwrap_err();
        assert!(e.to_string().contains("bratz"), "{e}");
    }

    #[test]
    fn layout_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layout.toml");
        std::fs::write(&p, "imagez = 1").unwrap();
        let e = Layout::from_file(&p).unwrap_err();
        assert!(matches!(e, IoError::LayoutFile { .. }));
        assert!(
            e.to_string().contains("layout.toml") && e.to_string().contains("imagez"),
            "{e}"
        );
        assert!(matches!(
            Layout::from_file(&dir.path().join("none.toml")),
            Err(IoError::Io { .. })
        ));
    }

    #[test]
    fn brats_preset_all_namings() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [
            "HGG/Brats17_CBICA_AAB_1",
            "LGG/Brats17_2013_0_1",
            "BraTS19_TCIA01_131_1",
            "BraTS20_Training_001",
            "BraTS2021_00000",
        ];
        for id in ids {
            let name = id.rsplit('/').next().unwrap();
            for m in ["t1", "t1ce", "t2", "flair", "seg"] {
                touch(dir.path(), &format!("{id}/{name}_{m}.nii.gz"));
            }
        }
        let l =
            layout("preset = \"brats\"\nmodality = \"t1\"\nexclude = ['Brats17_2013_']").unwrap();
        let s = l.discover(dir.path()).unwrap();
        let got: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            got,
            [
                "BraTS19_TCIA01_131_1",
                "BraTS2021_00000",
                "BraTS20_Training_001",
                "Brats17_CBICA_AAB_1"
            ]
        );
        let aab = s.iter().find(|s| s.id == "Brats17_CBICA_AAB_1").unwrap();
        assert_eq!(
            aab.image,
            dir.path()
                .join("HGG/Brats17_CBICA_AAB_1/Brats17_CBICA_AAB_1_t1.nii.gz")
        );
        assert_eq!(
            aab.lesion_mask,
            Some(
                dir.path()
                    .join("HGG/Brats17_CBICA_AAB_1/Brats17_CBICA_AAB_1_seg.nii.gz")
            )
        );
        assert_eq!(aab.brain_mask, None);
        let flair = layout("preset = \"brats\"\nmodality = \"flair\"").unwrap();
        assert_eq!(flair.discover(dir.path()).unwrap().len(), 5);
    }

    #[test]
    fn other_presets() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(
            r,
            "camcan/sub-CC110033/anat/sub-CC110033_T2w_unbiased.nii.gz",
        );
        touch(
            r,
            "camcan/sub-CC110033/anat/sub-CC110033_T1w_unbiased.nii.gz",
        );
        touch(r, "ixi/IXI002-Guys-0828-T2.nii.gz");
        touch(r, "ixi/IXI002-Guys-0828-PD.nii.gz");
        for n in ["01", "02"] {
            touch(r, &format!("ibsr/IBSR_{n}/IBSR_{n}_ana.nii.gz"));
            touch(r, &format!("ibsr/IBSR_{n}/IBSR_{n}_ana_brainmask.nii.gz"));
        }
        touch(r, "candi/HC/HC_001/HC_001_procimg.nii.gz");
        touch(r, "candi/HC/HC_001/HC_001_seg.nii.gz");
        let ids = |t: &str| -> Vec<String> {
            layout(t)
                .unwrap()
                .discover(r)
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(ids("preset = \"camcan\""), ["sub-CC110033"]);
        assert_eq!(
            ids("preset = \"ixi\"\nmodality = \"pd\""),
            ["IXI002-Guys-0828"]
        );
        assert_eq!(ids("preset = \"ibsr\"\nmax_subjects = 1"), ["IBSR_01"]);
        let candi = layout("preset = \"candi\"").unwrap().discover(r).unwrap();
        assert_eq!(
            candi[0].brain_mask,
            Some(r.join("candi/HC/HC_001/HC_001_seg.nii.gz"))
        );
        let ibsr = layout("preset = \"ibsr\"").unwrap().discover(r).unwrap();
        assert_eq!(
            ibsr[1].brain_mask,
            Some(r.join("ibsr/IBSR_02/IBSR_02_ana_brainmask.nii.gz"))
        );
    }

    #[test]
    fn placeholders_are_escaped_and_globbed() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "img/a[1].nii");
        touch(dir.path(), "seg/a[1]_v2_seg.nii");
        let l = layout("image = \"img/*.nii\"\nlesion_mask = \"seg/{id}_*_seg.nii\"").unwrap();
        let s = l.discover(dir.path()).unwrap();
        assert_eq!(
            s[0].lesion_mask,
            Some(dir.path().join("seg/a[1]_v2_seg.nii"))
        );
        touch(dir.path(), "seg/a[1]_v3_seg.nii");
        let err = l.discover(dir.path()).unwrap_err();
        assert!(
            matches!(err, IoError::SubjectFile { found: 2, .. }),
            "{err}"
        );
        // `{dir}` at the top level is `.`.
        touch(dir.path(), "b.nii");
        touch(dir.path(), "b_mask.nii");
        let l = layout("image = \"b.nii\"\nbrain_mask = \"{dir}/{id}_mask.nii\"").unwrap();
        let s = l.discover(dir.path()).unwrap();
        let mask = s[0].brain_mask.as_deref();
        assert_eq!(mask.map(|p| p.ends_with("b_mask.nii")), Some(true));
    }
}
