//! One subject: anatomy + lesions -> ideal image -> acquisition -> OOD transform.

use blindspot_io::Volume;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::anatomy::Anatomy;
use crate::config::{Contrast, LesionKind, OodTransform, Split, SynthConfig};
use crate::contrast::{N_TISSUES, Tissue, subject_means};
use crate::error::{Result, invalid};
use crate::field::{V3, Waves, fnv1a, normal, point_spread_blur, ramp, stream_seed};
use crate::lesion::Lesions;
use crate::scan::Subject;
use crate::site::SiteParams;

/// Everything that identifies one generated subject (one manifest row, before measuring).
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectSpec {
    /// Subject id, `<set>-<index>` (the file stem).
    pub id: String,
    /// Name of the set it belongs to.
    pub set: String,
    /// Role of the set.
    pub split: Split,
    /// The subject's own seed (derived from the master seed, the set name and the index).
    pub seed: u64,
    /// Site name.
    pub site: String,
    /// Weighting.
    pub contrast: Contrast,
    /// Lesion kind (`None` for a healthy subject).
    pub lesion: LesionKind,
    /// OOD transform.
    pub ood: OodTransform,
}

/// The RAS+ affine of a volume of `dims` voxels of `spacing` mm centred on the origin.
pub fn ras_affine(dims: [usize; 3], spacing: [f64; 3]) -> blindspot_io::Affine {
    let mut a = [[0.0; 4]; 4];
    for ax in 0..3 {
        a[ax][ax] = spacing[ax];
        a[ax][3] = -spacing[ax] * (dims[ax] as f64 - 1.0) / 2.0;
    }
    a[3][3] = 1.0;
    a
}

const STREAM_ANATOMY: u64 = 1;
const STREAM_LESION: u64 = 2;
const STREAM_CONTRAST: u64 = 3;
const STREAM_ACQUISITION: u64 = 4;
const STREAM_OOD: u64 = 5;

/// Generate one subject. The same `config` grid and `spec` give the same bytes on every
/// machine and thread; the anatomy depends on `spec.seed` only, so two specs that differ in
/// site, contrast, lesion or OOD transform show the same brain.
///
/// # Errors
/// [`crate::SynthError::Invalid`] if `config` does not validate or `spec.site` is not one of
/// its sites.
pub fn generate_subject(config: &SynthConfig, spec: &SubjectSpec) -> Result<Subject> {
    config.validate()?;
    let site = config.site(&spec.site).ok_or_else(|| {
        invalid(
            format!("subject {}: site", spec.id),
            &spec.site,
            "a site of the config (A, B, C or [synth.sites.*])",
        )
    })?;
    let dims = config.dims;
    let spacing = config.spacing;
    let affine = ras_affine(dims, spacing);

    let anatomy = Anatomy::sample(&mut rng(spec.seed, STREAM_ANATOMY));
    let lesions = Lesions::sample(
        spec.lesion,
        &config.lesions,
        &anatomy,
        &mut rng(spec.seed, STREAM_LESION),
    );
    let means = subject_means(
        spec.contrast,
        site.contrast_jitter,
        fnv1a(&spec.site) ^ fnv1a(spec.contrast.name()),
        &mut rng(spec.seed, STREAM_CONTRAST),
    );
    let skull = spec.ood == OodTransform::Skull;
    let mut r = render(&anatomy, &lesions, &means, dims, spacing, &affine, skull);
    let gm_level = means[Tissue::Gm as usize];
    // Skull-stripped images need the acquisition inside the brain only.
    let keep = (!skull).then_some(r.brain.as_slice());
    acquire(
        &mut r.image,
        keep,
        dims,
        spacing,
        &affine,
        &site,
        gm_level,
        &mut rng(spec.seed, STREAM_ACQUISITION),
    );
    if !skull {
        for (v, &m) in r.image.iter_mut().zip(&r.brain) {
            if m == 0 {
                *v = 0.0;
            }
        }
    }
    fn vol<T>(
        data: Vec<T>,
        dims: [usize; 3],
        affine: blindspot_io::Affine,
        spacing: [f64; 3],
    ) -> Volume<T> {
        Volume {
            dims,
            data,
            affine,
            spacing,
        }
    }
    let mut s = Subject {
        image: vol(r.image, dims, affine, spacing),
        brain_mask: vol(r.brain, dims, affine, spacing),
        lesion_mask: vol(r.lesion, dims, affine, spacing),
        tissue: vol(r.tissue, dims, affine, spacing),
        lesion_ml: 0.0,
    };
    crate::ood::apply(
        spec.ood,
        &mut s,
        &config.blobs,
        &mut rng(spec.seed, STREAM_OOD),
    );
    let voxel_ml = spacing.iter().product::<f64>() / 1000.0;
    s.lesion_ml = s.lesion_mask.data.iter().filter(|&&v| v != 0).count() as f64 * voxel_ml;
    Ok(s)
}

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stream_seed(seed, stream))
}

struct Rendered {
    image: Vec<f32>,
    brain: Vec<u8>,
    lesion: Vec<u8>,
    tissue: Vec<u8>,
}

/// The ideal (noise-free, unblurred) image with its label maps.
fn render(
    anatomy: &Anatomy,
    lesions: &Lesions,
    means: &[f64; N_TISSUES],
    dims: [usize; 3],
    spacing: [f64; 3],
    affine: &blindspot_io::Affine,
    skull: bool,
) -> Rendered {
    let n = dims.iter().product();
    let mut out = Rendered {
        image: vec![0.0; n],
        brain: vec![0; n],
        lesion: vec![0; n],
        tissue: vec![0; n],
    };
    let h = (spacing[0] + spacing[1] + spacing[2]) / 3.0;
    // beyond this distance outside the outline nothing is drawn (the scalp ends at 15.5 mm)
    let margin = if skull { 16.0 + 2.0 * h } else { 0.0 };
    let mut idx = 0;
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p: V3 = [
                    affine[0][0] * i as f64 + affine[0][3],
                    affine[1][1] * j as f64 + affine[1][3],
                    affine[2][2] * k as f64 + affine[2][3],
                ];
                let q = anatomy.to_brain(p);
                if anatomy.surely_outside(q, margin) {
                    idx += 1; // background: image 0, labels 0
                    continue;
                }
                let f = anatomy.fractions(q, h);
                let mut w = [0.0f64; N_TISSUES];
                if f.brain > 0.0 {
                    let par = f.gm + f.wm + f.dgm;
                    let mut keep = 1.0;
                    if !lesions.is_empty() {
                        let l = lesions.fractions(q, h);
                        let total = l.total();
                        if total > 0.0 {
                            let norm = if l.necrosis + l.rim + l.oedema + l.ms + l.stroke > 1.0 {
                                total / (l.necrosis + l.rim + l.oedema + l.ms + l.stroke)
                            } else {
                                1.0
                            };
                            // the faded part of the oedema keeps the tissue's contrast
                            let faded = l.oedema * (1.0 - l.oedema_strength) * norm;
                            keep = 1.0 - total + faded;
                            w[Tissue::Necrosis as usize] = par * l.necrosis * norm;
                            w[Tissue::Rim as usize] = par * l.rim * norm;
                            w[Tissue::Oedema as usize] = par * l.oedema * norm - par * faded;
                            w[Tissue::Ms as usize] = par * l.ms * norm;
                            w[Tissue::Stroke as usize] = par * l.stroke * norm;
                            if f.brain >= 0.5 && par * total >= 0.5 {
                                out.lesion[idx] = 1;
                            }
                        }
                    }
                    w[Tissue::Csf as usize] = f.csf;
                    w[Tissue::Gm as usize] = f.gm * keep;
                    w[Tissue::Wm as usize] = f.wm * keep;
                    w[Tissue::DeepGm as usize] = f.dgm * keep;
                    if f.brain >= 0.5 {
                        out.brain[idx] = 1;
                    }
                }
                if skull && f.brain < 1.0 {
                    let d = f.outline_sdf;
                    if d < 16.0 + h {
                        let within = |t: f64| ramp(d - t, h);
                        w[Tissue::Csf as usize] += within(2.5) - within(0.0);
                        w[Tissue::Bone as usize] =
                            within(4.5) - within(2.5) + within(9.5) - within(7.5);
                        w[Tissue::Marrow as usize] = within(7.5) - within(4.5);
                        w[Tissue::Scalp as usize] = within(15.5) - within(9.5);
                    }
                }
                let covered: f64 = w.iter().sum();
                w[Tissue::Background as usize] = (1.0 - covered).max(0.0);
                let mut value = 0.0;
                let mut best = 0;
                for t in 0..N_TISSUES {
                    value += w[t] * means[t];
                    if w[t] > w[best] {
                        best = t;
                    }
                }
                if f.brain > 0.0 {
                    value *= 1.0 + anatomy.texture(q);
                }
                out.image[idx] = value as f32;
                out.tissue[idx] = best as u8;
                idx += 1;
            }
        }
    }
    out
}

/// Blur (PSF and slice profile), bias field, gamma, scale, Rician noise; only where `keep`
/// is non-zero when given (elsewhere the value is left as blurred).
fn acquire(
    image: &mut [f32],
    keep: Option<&[u8]>,
    dims: [usize; 3],
    spacing: [f64; 3],
    affine: &blindspot_io::Affine,
    site: &SiteParams,
    gm_level: f64,
    rng: &mut ChaCha8Rng,
) {
    let slice_fwhm = (site.slice_mm * site.slice_mm - spacing[2] * spacing[2])
        .max(0.0)
        .sqrt();
    let sigma_z = (site.blur_mm * site.blur_mm + (slice_fwhm / 2.3548).powi(2)).sqrt();
    point_spread_blur(
        image,
        dims,
        [
            site.blur_mm / spacing[0],
            site.blur_mm / spacing[1],
            sigma_z / spacing[2],
        ],
    );
    let bias = Waves::random(rng, 4, [250.0, 450.0], [0.5, 1.0]);
    let noise_sigma = site.scale * gm_level.powf(site.gamma) / site.snr;
    let mut idx = 0;
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                if keep.is_some_and(|m| m[idx] == 0) {
                    idx += 1;
                    continue;
                }
                let v = f64::from(image[idx]);
                let signal = if v > 0.0 {
                    let p = [
                        affine[0][0] * i as f64 + affine[0][3],
                        affine[1][1] * j as f64 + affine[1][3],
                        affine[2][2] * k as f64 + affine[2][3],
                    ];
                    let field = (site.bias * 0.5 * bias.value(p)).exp();
                    let x = v * field;
                    site.scale
                        * if site.gamma == 1.0 {
                            x
                        } else {
                            x.powf(site.gamma)
                        }
                } else {
                    0.0
                };
                let re = signal + noise_sigma * normal(rng);
                let im = noise_sigma * normal(rng);
                image[idx] = (re * re + im * im).sqrt() as f32;
                idx += 1;
            }
        }
    }
}
