//! Named layouts of the public datasets the paper uses (docs/method.md 1.1-1.2).
//!
//! | preset   | modalities (default first)   | image file                                   | brain mask                     | lesion mask        |
//! |----------|------------------------------|----------------------------------------------|--------------------------------|--------------------|
//! | `camcan` | `t2`, `t1`                   | `<id>_T2w_unbiased.nii.gz` (`_T1w_`)          | non-zero voxels                | none               |
//! | `brats`  | `t2`, `t1`, `t1ce`, `flair`  | `<id>_t2.nii.gz`, ids `Brats17_*`, `Brats18_*`, `BraTS19_*`, `BraTS20_Training_*`, `BraTS2021_*` | non-zero voxels | `<id>_seg.nii.gz` beside the image (labels 1, 2, 4 become 1) |
//! | `ixi`    | `t2`, `t1`, `pd`             | `IXI<nnn>-<site>-<nnnn>-T2.nii.gz` (`-T1`, `-PD`) | non-zero voxels            | none               |
//! | `ibsr`   | `t1`                         | `IBSR_<nn>_ana.nii.gz`                        | `<id>_ana_brainmask.nii.gz` beside it | none        |
//! | `candi`  | `t1`                         | `<id>_procimg.nii.gz`                         | `<id>_seg.nii.gz` beside it (any label) | none      |
//!
//! Images are searched anywhere below the dataset root (`**/`). The paper drops the BraTS
//! subjects `Brats17_2013_*` (`exclude = ["Brats17_2013_"]`) and keeps the first 10 IBSR and
//! CANDI subjects (`max_subjects = 10`); both are ordinary layout keys.

use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};

/// A named dataset layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Cam-CAN (healthy; the paper's training set).
    Camcan,
    /// BraTS 2017 to 2021 training data (gliomas, with segmentations).
    Brats,
    /// IXI (healthy).
    Ixi,
    /// IBSR v2.0 (healthy T1).
    Ibsr,
    /// CANDI SchizBull 2008 (T1).
    Candi,
}

/// The generic layout keys a preset stands for.
pub(super) struct Expanded {
    pub image: String,
    pub id_regex: String,
    pub brain_mask: Option<String>,
    pub lesion_mask: Option<String>,
}

impl Preset {
    /// The modalities this preset knows, the default first.
    pub fn modalities(self) -> &'static [&'static str] {
        match self {
            Self::Camcan => &["t2", "t1"],
            Self::Brats => &["t2", "t1", "t1ce", "flair"],
            Self::Ixi => &["t2", "t1", "pd"],
            Self::Ibsr | Self::Candi => &["t1"],
        }
    }

    /// The generic keys for `modality` (`None`: the default one).
    pub(super) fn expand(self, modality: Option<&str>) -> Result<Expanded> {
        let allowed = self.modalities();
        let m = match modality {
            None => allowed[0],
            Some(m) => allowed.iter().copied().find(|a| *a == m).ok_or_else(|| {
                IoError::InvalidParameter {
                    key: "modality".into(),
                    value: m.to_owned(),
                    expected: format!("one of {allowed:?} for preset `{}`", self.name()),
                }
            })?,
        };
        Ok(match self {
            Self::Camcan => {
                let tag = if m == "t1" { "T1w" } else { "T2w" };
                Expanded {
                    image: format!("**/sub-CC*_{tag}_unbiased.nii.gz"),
                    id_regex: format!(r"(?:^|/)(?P<id>sub-CC\d+)_{tag}_unbiased\.nii\.gz$"),
                    brain_mask: None,
                    lesion_mask: None,
                }
            }
            Self::Brats => Expanded {
                image: format!("**/*_{m}.nii.gz"),
                id_regex: format!(
                    r"(?:^|/)(?P<id>(?:Brats17|Brats18|BraTS19|BraTS20_Training|BraTS2021)_[^/]+)_{m}\.nii\.gz$"
                ),
                brain_mask: None,
                lesion_mask: Some("{dir}/{id}_seg.nii.gz".into()),
            },
            Self::Ixi => {
                let tag = m.to_uppercase();
                Expanded {
                    image: format!("**/IXI*-{tag}.nii.gz"),
                    id_regex: format!(r"(?:^|/)(?P<id>IXI\d+-[A-Za-z]+-\d+)-{tag}\.nii\.gz$"),
                    brain_mask: None,
                    lesion_mask: None,
                }
            }
            Self::Ibsr => Expanded {
                image: "**/IBSR_*_ana.nii.gz".into(),
                id_regex: r"(?:^|/)(?P<id>IBSR_\d+)_ana\.nii\.gz$".into(),
                brain_mask: Some("{dir}/{id}_ana_brainmask.nii.gz".into()),
                lesion_mask: None,
            },
            Self::Candi => Expanded {
                image: "**/*_procimg.nii.gz".into(),
                id_regex: r"(?:^|/)(?P<id>[^/]+)_procimg\.nii\.gz$".into(),
                brain_mask: Some("{dir}/{id}_seg.nii.gz".into()),
                lesion_mask: None,
            },
        })
    }

    /// The name used in TOML.
    pub fn name(self) -> &'static str {
        match self {
            Self::Camcan => "camcan",
            Self::Brats => "brats",
            Self::Ixi => "ixi",
            Self::Ibsr => "ibsr",
            Self::Candi => "candi",
        }
    }
}
