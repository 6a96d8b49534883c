//! `blindspot score`: a trained run applied to new NIfTI scans. Each scan is preprocessed as
//! in training, scored by the ensemble, and its anomaly map (the post-processed residual of
//! the ensemble-mean reconstruction) is written back on the scan's own voxel grid and affine
//! (`<stem>.anomaly.nii.gz`), with the gate's verdict beside it (`<stem>.verdict.json`).

use std::path::{Path, PathBuf};

use blindspot_core::Members;
use blindspot_io::preprocess::{SliceView, crop_or_pad};
use blindspot_io::resize::resize_bilinear;
use blindspot_io::{
    CacheWriter, Pipeline, ReadOptions, Reorientation, Volume, read_header, read_nifti,
    read_volume, write_f32,
};
use blindspot_kernels::ConvBackend;
use blindspot_ood::{Decision, Dose};

use crate::config::{RESOLVED_FILE, RunConfig};
use crate::error::RunError;
use crate::evaluation::{SCORING_FILE, ScoringState};
use crate::inference::{ChunkPlan, EnsembleInference, InferenceSettings, SetSpec};
use crate::pipeline::load_members;
use crate::shard::Shard;
use crate::slices::CacheSlices;

type Result<T> = std::result::Result<T, RunError>;

/// What scoring one scan wrote.
#[derive(Debug, Clone)]
pub struct ScanScore {
    /// The anomaly map, on the input's grid and affine.
    pub map: PathBuf,
    /// The gate's verdict (JSON), when the run has a gate.
    pub verdict: Option<PathBuf>,
    /// The gate's decision, when the run has a gate.
    pub decision: Option<Decision>,
    /// Why, in one line ([`blindspot_ood::ScanVerdict::summary`]), when the run has a gate.
    pub why: Option<String>,
    /// Slices scored.
    pub slices: usize,
}

/// A trained run, loaded once, that scores scans.
pub struct Scorer<B: ConvBackend> {
    config: RunConfig,
    ensemble: Box<dyn Members<B>>,
    scoring: ScoringState,
    dose: Dose,
    pipeline: Pipeline,
    device: B::Device,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Io {
        path: path.to_owned(),
        source: e.into(),
    })
}

impl<B: ConvBackend> Scorer<B> {
    /// Loads the run in `run_dir` (its resolved config, the ensemble's last checkpoints and
    /// `model/scoring.json`).
    ///
    /// # Errors
    /// [`RunError::Config`] for the config, [`RunError::Model`] for a missing checkpoint,
    /// [`RunError::Io`] for a missing or unreadable `scoring.json` (run `blindspot run` first).
    pub fn load(run_dir: &Path, device: &B::Device) -> Result<Self> {
        let config = RunConfig::load(&run_dir.join(RESOLVED_FILE))?;
        let scoring: ScoringState = read_json(&run_dir.join("model").join(SCORING_FILE))?;
        let ensemble = load_members::<B>(&config, run_dir, device)?;
        let dose = Dose::fit(&scoring.healthy_validation, &config.model.dose_statistics())?;
        let pipeline = Pipeline::new(config.preprocess.clone(), None)?;
        Ok(Self {
            config,
            ensemble,
            scoring,
            dose,
            pipeline,
            device: device.clone(),
        })
    }

    /// Scores `scan` (with its brain mask when given; otherwise its non-zero voxels are the
    /// brain) and writes the map and the verdict into `out_dir`. A file of several volumes
    /// (4-D) needs `volume`, the 0-based index of the one to score; its outputs are then named
    /// `<stem>.vol<N>`, and so is the scan in the verdict.
    ///
    /// # Errors
    /// Reading or preprocessing errors naming the file; [`RunError::Refused`] for a 4-D
    /// file without `volume`; [`RunError::Empty`] when no slice holds brain; write errors.
    pub fn score(
        &self,
        scan: &Path,
        brain: Option<&Path>,
        volume: Option<usize>,
        out_dir: &Path,
    ) -> Result<ScanScore> {
        let count = read_header(scan)?.num_volumes();
        if count > 1 && volume.is_none() {
            return Err(RunError::Refused {
                path: scan.to_owned(),
                why: format!("a 4-D file of {count} volumes"),
                hint: "a scan is scored one volume at a time: pick it with --volume N (0-based)",
            });
        }
        std::fs::create_dir_all(out_dir).map_err(|source| RunError::Io {
            path: out_dir.to_owned(),
            source,
        })?;
        let mut stem = scan_stem(scan);
        if count > 1 {
            stem = format!("{stem}.vol{}", volume.unwrap_or(0));
        }
        let options = ReadOptions {
            volume: volume.unwrap_or(0),
            ..ReadOptions::default()
        };
        let image = read_nifti::<f32>(scan, &options)?.volume;
        let brain = match brain {
            Some(p) => Some(binary(&read_volume(p)?)),
            None => None,
        };
        let reo = Reorientation::new(image.dims, &image.affine, image.spacing)?;
        let slices = self.pipeline.run_native(image, brain, None)?;
        if slices.slices.is_empty() {
            return Err(RunError::Empty {
                dataset: scan.display().to_string(),
                why: "no slice with brain after preprocessing".into(),
            });
        }
        // The slices go through a slice cache so that scoring is exactly the run's inference.
        let cache_path = out_dir.join(format!(".{stem}.slices.tmp"));
        let mut writer = CacheWriter::create(
            &cache_path,
            slices.height,
            slices.width,
            self.pipeline.params_json(),
        )?;
        writer.push_subject(&stem, &slices)?;
        writer.finish()?;
        let cache = CacheSlices::open(&cache_path);
        let _ = std::fs::remove_file(&cache_path); // the map stays valid until dropped
        let cache = cache?;
        let mut config = self.config.clone();
        config.evaluation.slice_stride = 1;
        let plan = ChunkPlan {
            shard: Shard::ALL,
            first_chunk: 0,
            seed: config.seed ^ 0x5c0e,
        };
        let inference = EnsembleInference {
            ensemble: self.ensemble.as_ref(),
            device: &self.device,
            settings: InferenceSettings {
                keep_maps: true,
                ..InferenceSettings::of(&config)
            },
            bar: &indicatif::ProgressBar::hidden(),
        };
        let spec = SetSpec {
            dataset: "score".into(),
            name: stem.clone(),
            role: None,
            transform: crate::config::Transform::None,
        };
        let mut set = inference.infer_set(&cache, &spec, plan)?;
        self.dose.annotate(&mut set.records)?;

        let map = self.map_to_original(&reo, &cache, &set.maps)?;
        let map_path = out_dir.join(format!("{stem}.anomaly.nii.gz"));
        write_f32(&map_path, &map)?;
        let (verdict, decision, why) = match &self.scoring.gate {
            Some(gate) => {
                let v = gate.decide(&set.records)?;
                let path = out_dir.join(format!("{stem}.verdict.json"));
                v.write_json(&path)?;
                (Some(path), Some(v.decision), Some(v.summary()))
            }
            None => (None, None, None),
        };
        Ok(ScanScore {
            map: map_path,
            verdict,
            decision,
            why,
            slices: set.maps.len(),
        })
    }

    /// The pixel threshold of the run (a map value above it is called lesion).
    pub fn threshold(&self) -> f64 {
        self.scoring.threshold
    }

    /// Puts the slice maps back into a RAS volume (inverse resize, view and crop), then onto
    /// the input's grid.
    fn map_to_original(
        &self,
        reo: &Reorientation,
        cache: &CacheSlices,
        maps: &[(usize, Vec<f32>)],
    ) -> Result<Volume<f32>> {
        let pre = &self.config.preprocess;
        let ras_dims = reo.ras_dims();
        let dims = pre.crop.unwrap_or(ras_dims);
        let [nx, ny, nz] = dims;
        let [oh, ow] = pre.slice_size;
        let mut data = vec![0.0f32; nx * ny * nz];
        for (i, map) in maps {
            let z = cache.cache().identity(*i).index;
            if z >= nz {
                continue;
            }
            let plane = resize_bilinear(map, (oh, ow), (ny, nx));
            for r in 0..ny {
                let y = ny - 1 - r;
                for c in 0..nx {
                    let x = match pre.view {
                        SliceView::Radiological => nx - 1 - c,
                        SliceView::Neurological => c,
                    };
                    data[x + nx * (y + ny * z)] = plane[r * nx + c].max(0.0);
                }
            }
        }
        let mut vol = Volume {
            dims,
            data,
            affine: *reo.ras_affine(),
            spacing: [1.0; 3],
        };
        if pre.crop.is_some() {
            let origin = [0, 1, 2].map(|a| -(ras_dims[a] as i64 - dims[a] as i64).div_euclid(2));
            vol = crop_or_pad(&vol, origin, ras_dims, 0.0);
        }
        Ok(reo.to_original(&vol)?)
    }
}

fn binary(v: &Volume<f32>) -> Volume<u8> {
    Volume {
        dims: v.dims,
        data: v.data.iter().map(|&x| u8::from(x != 0.0)).collect(),
        affine: v.affine,
        spacing: v.spacing,
    }
}

/// The file name without `.nii.gz` / `.nii`.
fn scan_stem(scan: &Path) -> String {
    let name = scan
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scan".into());
    name.strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .unwrap_or(&name)
        .to_owned()
}
