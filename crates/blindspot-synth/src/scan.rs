//! A generated subject as data: the image and its masks ([`Subject`]), which generation
//! ([`crate::subject`]) builds and the OOD transforms ([`crate::ood`]) change.

use blindspot_io::Volume;

use crate::config::OodTransform;
use crate::contrast::Tissue;

/// A generated subject: the image and its masks, all on one grid with one RAS affine.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The image (float, scanner units of the site; N(0, 1) for `noise`).
    pub image: Volume<f32>,
    /// Brain mask, 0/1 (the whole volume for `noise`).
    pub brain_mask: Volume<u8>,
    /// Lesion mask, 0/1 (empty for healthy subjects).
    pub lesion_mask: Volume<u8>,
    /// Dominant [`Tissue`] of every voxel, as `u8` (all background for `noise`).
    pub tissue: Volume<u8>,
    /// Lesion volume in mL (lesion-mask voxels times the voxel volume).
    pub lesion_ml: f64,
}

impl Subject {
    /// The mask a dataset folder ships with this subject: the brain mask, except for a scan
    /// that was not skull-stripped (`skull`), which comes with its head (every voxel that is not
    /// background), the foreground a user has before brain extraction. Shipping the true brain
    /// mask there would let preprocessing (z-score inside the mask, background outside) strip
    /// the skull again and turn the set back into an in-distribution scan.
    pub fn shipped_mask(&self, ood: OodTransform) -> Volume<u8> {
        if ood != OodTransform::Skull {
            return self.brain_mask.clone();
        }
        let background = Tissue::Background as u8;
        let data = self
            .tissue
            .data
            .iter()
            .zip(&self.brain_mask.data)
            .map(|(&t, &b)| u8::from(t != background || b != 0))
            .collect();
        Volume {
            data,
            ..self.brain_mask.clone()
        }
    }
}
