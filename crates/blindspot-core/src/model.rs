//! The contract every model crate implements: a loss on a batch for training, and inference
//! that returns per-pixel maps and per-slice statistics.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// A per-slice statistic a model computes itself (the keys of [`Inference::stats`] and of a
/// family's `STATISTICS`). Only these: every other statistic (the ELBOs, WAIC, the residual's
/// entropies and levels, DoSE) is computed from them and from the maps by the pipeline
/// (`blindspot_ood`), in one place; the runner maps each of these onto its pipeline statistic
/// with an exhaustive match, so a new one does not compile until the pipeline knows it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelStat {
    /// Mean absolute reconstruction error inside the brain mask (the paper's `rec_err`).
    RecErr,
    /// KL divergence of the posterior to the prior, averaged over latent dimensions (the
    /// paper's `kl_div`).
    KlDiv,
    /// Exact log-likelihood of the slice in nats (normalizing flows).
    LogLikelihood,
    /// Negative log-likelihood in bits per dimension (normalizing flows; the same information
    /// as `log_likelihood`, on the scale flows are trained and compared on).
    BitsPerDim,
}

impl ModelStat {
    /// Every model statistic.
    pub const ALL: [ModelStat; 4] = [
        ModelStat::RecErr,
        ModelStat::KlDiv,
        ModelStat::LogLikelihood,
        ModelStat::BitsPerDim,
    ];

    /// Its name in logs and files (`rec_err`, `kl_div`, `log_likelihood`, `bits_per_dim`).
    pub const fn name(self) -> &'static str {
        match self {
            ModelStat::RecErr => "rec_err",
            ModelStat::KlDiv => "kl_div",
            ModelStat::LogLikelihood => "log_likelihood",
            ModelStat::BitsPerDim => "bits_per_dim",
        }
    }
}

impl std::fmt::Display for ModelStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A batch of slices on a device.
///
/// # Shapes
/// - `images`: `[N, 1, H, W]`
/// - `masks`: `[N, 1, H, W]`, 1 inside the brain, 0 outside
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// The images.
    pub images: Tensor<B, 4>,
    /// The brain masks (0/1).
    pub masks: Tensor<B, 4>,
}

impl<B: Backend> Batch<B> {
    /// A batch from host buffers in row-major `[n, 1, h, w]` order.
    ///
    /// # Errors
    /// [`Error::BatchShape`] when a buffer does not hold `n * h * w` values.
    pub fn from_host(
        images: Vec<f32>,
        masks: Vec<f32>,
        [n, h, w]: [usize; 3],
        device: &B::Device,
    ) -> Result<Self> {
        let shape = [n, 1, h, w];
        let expected = n * h * w;
        for (what, got) in [("images", images.len()), ("masks", masks.len())] {
            if got != expected {
                return Err(Error::BatchShape {
                    what,
                    expected,
                    got,
                    shape,
                });
            }
        }
        Ok(Self {
            images: Tensor::from_data(TensorData::new(images, shape), device),
            masks: Tensor::from_data(TensorData::new(masks, shape), device),
        })
    }

    /// The number of slices.
    pub fn len(&self) -> usize {
        self.images.dims()[0]
    }

    /// Whether the batch has no slice.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the batch to another device or backend-compatible device.
    pub fn to_device(self, device: &B::Device) -> Self {
        Self {
            images: self.images.to_device(device),
            masks: self.masks.to_device(device),
        }
    }
}

impl<B: burn::tensor::backend::AutodiffBackend> Batch<B> {
    /// The same batch on the inner (non-autodiff) backend.
    pub fn inner(self) -> Batch<B::InnerBackend> {
        Batch {
            images: self.images.inner(),
            masks: self.masks.inner(),
        }
    }
}

/// The loss of one training (or validation) forward pass.
#[derive(Debug, Clone)]
pub struct LossOutput<B: Backend> {
    /// The scalar objective to minimise, shape `[1]`.
    pub loss: Tensor<B, 1>,
    /// Per-sample terms of the loss, each of shape `[N]`, not scaled by any weight, by the name
    /// the training log gives them (a [`ModelStat::name`] where the term is one, such as
    /// `rec_err` and `kl_div`; any other name for a term of the model's own).
    pub terms: Vec<(&'static str, Tensor<B, 1>)>,
}

/// What a per-pixel map means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    /// The model's reconstruction `x̂` (autoencoders).
    Reconstruction,
    /// The per-pixel negative log-likelihood in nats (normalizing flows).
    NegLogLikelihood,
}

/// Inference on a batch.
///
/// # Shapes
/// - `map`: `[N, 1, H, W]`
/// - each statistic: `[N]`
/// - `latent_mean`: `[N, D]`
#[derive(Debug, Clone)]
pub struct Inference<B: Backend> {
    /// The per-pixel map.
    pub map: Tensor<B, 4>,
    /// What the map means.
    pub map_kind: MapKind,
    /// Per-slice statistics: those of the family's `STATISTICS`.
    pub stats: Vec<(ModelStat, Tensor<B, 1>)>,
    /// The mean of the approximate posterior (latent models only).
    pub latent_mean: Option<Tensor<B, 2>>,
}

/// [`Inference`] read back to plain host data (what tensor-free crates such as the OOD gate
/// consume).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SliceOutputs {
    /// Number of slices.
    pub n: usize,
    /// Map height.
    pub height: usize,
    /// Map width.
    pub width: usize,
    /// What the map means.
    pub map_kind: MapKind,
    /// The maps, row-major `[n, h, w]`.
    pub map: Vec<f32>,
    /// Per-slice statistics, each `n` values.
    pub stats: Vec<(ModelStat, Vec<f64>)>,
    /// Latent dimension and the latent means, row-major `[n, dim]`.
    pub latent_mean: Option<(usize, Vec<f32>)>,
}

impl SliceOutputs {
    /// The values of a statistic, if the model reports it.
    pub fn stat(&self, which: ModelStat) -> Option<&[f64]> {
        self.stats
            .iter()
            .find(|(s, _)| *s == which)
            .map(|(_, v)| v.as_slice())
    }

    /// The map of slice `k`, row-major `[h, w]`.
    ///
    /// # Panics
    /// If `k >= n`.
    pub fn map_of(&self, k: usize) -> &[f32] {
        assert!(k < self.n, "slice {k} out of range 0..{}", self.n);
        let hw = self.height * self.width;
        &self.map[k * hw..(k + 1) * hw]
    }
}

pub(crate) fn read_f32<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    what: &str,
) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| Error::TensorRead {
            what: what.to_string(),
            message: format!("{e:?}"),
        })
}

impl<B: Backend> Inference<B> {
    /// Reads everything back to the host.
    ///
    /// # Errors
    /// [`Error::TensorRead`] when the backend cannot read a tensor back.
    pub fn into_host(self) -> Result<SliceOutputs> {
        let [n, _, height, width] = self.map.dims();
        let map = read_f32(self.map, "map")?;
        let stats = self
            .stats
            .into_iter()
            .map(|(which, t)| {
                read_f32(t, which.name()).map(|v| (which, v.into_iter().map(f64::from).collect()))
            })
            .collect::<Result<Vec<_>>>()?;
        let latent_mean = match self.latent_mean {
            Some(t) => {
                let dim = t.dims()[1];
                Some((dim, read_f32(t, "latent_mean")?))
            }
            None => None,
        };
        Ok(SliceOutputs {
            n,
            height,
            width,
            map_kind: self.map_kind,
            map,
            stats,
            latent_mean,
        })
    }
}

/// The contract every model implements. Generic over the backend, so the same model trains on
/// an autodiff backend and runs inference on its inner backend (BatchNorm then uses its running
/// statistics).
///
/// All randomness a model draws (latent samples, input noise) comes from the `rng` argument, so
/// that a training run is reproducible and resumable exactly.
pub trait Model<B: Backend>: Module<B> {
    /// A short name of the model family (`vae`, `ae`, `dae`, `flow`), saved with checkpoints.
    fn family(&self) -> &'static str;

    /// The training objective on a batch at global step `step` (0-based; schedules such as
    /// beta annealing and scheduled masking read it).
    fn loss(&self, batch: &Batch<B>, step: u64, rng: &mut ChaCha8Rng) -> LossOutput<B>;

    /// Inference on a batch: a per-pixel map and per-slice statistics. Stochastic models draw
    /// one sample.
    fn infer(&self, batch: &Batch<B>, rng: &mut ChaCha8Rng) -> Inference<B>;

    /// Scalars of the objective at step `step` worth logging beside the loss terms, such as the
    /// VAE's KL weight (`("beta", 0.5)`). The [`Trainer`](crate::Trainer) writes them into
    /// every record of `log.jsonl` and `log.csv`. None by default.
    fn logged_scalars(&self, step: u64) -> Vec<(&'static str, f64)> {
        let _ = step;
        Vec::new()
    }

    /// Whether [`Model::infer`] draws random samples.
    fn is_stochastic(&self) -> bool {
        false
    }

    /// `samples` inference passes for a stochastic model (one for a deterministic one).
    fn infer_samples(
        &self,
        batch: &Batch<B>,
        samples: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Inference<B>> {
        let samples = if self.is_stochastic() {
            samples.max(1)
        } else {
            1
        };
        (0..samples).map(|_| self.infer(batch, rng)).collect()
    }
}

/// A tensor of independent standard normal values drawn from `rng` on the host, so that noise
/// is reproducible on every backend and its stream can be checkpointed.
pub fn standard_normal<B: Backend, const D: usize>(
    shape: [usize; D],
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> Tensor<B, D> {
    use rand::Rng;
    let n: usize = shape.iter().product();
    let v: Vec<f32> = rng
        .sample_iter(rand_distr::StandardNormal)
        .take(n)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// The number of trainable parameters of a module on an autodiff backend (parameters that
/// require a gradient; BatchNorm running statistics are not counted).
pub fn trainable_params<B: Backend, M: Module<B>>(module: &M) -> usize {
    struct Counter(usize);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Counter {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let t = param.val();
            if t.is_require_grad() {
                self.0 += t.shape().num_elements();
            }
        }
    }
    let mut c = Counter(0);
    module.visit(&mut c);
    c.0
}

/// Per-sample mean absolute error inside a mask: `Σ |x − x̂|·m / max(1, Σ m)` (the paper's
/// `rec_err`, a Laplace NLL up to constants).
///
/// # Shapes
/// - `x`, `x_hat`, `mask`: `[N, C, H, W]`
/// - output: `[N]`
pub fn masked_l1<B: Backend>(
    x: Tensor<B, 4>,
    x_hat: Tensor<B, 4>,
    mask: Tensor<B, 4>,
) -> Tensor<B, 1> {
    let n = x.dims()[0];
    let err = (x - x_hat).abs() * mask.clone();
    let num: Tensor<B, 1> = err.flatten::<2>(1, 3).sum_dim(1).reshape([n]);
    let den: Tensor<B, 1> = mask
        .flatten::<2>(1, 3)
        .sum_dim(1)
        .reshape([n])
        .clamp_min(1.0);
    num / den
}
