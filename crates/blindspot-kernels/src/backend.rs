//! The [`ConvBackend`] extension trait, its functional forms, and the backends that keep burn's
//! ops.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ActivationOps, ConvOptions, ConvTransposeOptions, FloatTensor, ModuleOps};
use burn::tensor::{Tensor, TensorPrimitive};

/// The statistics and parameters of a batch normalisation at inference, per channel (`[C]`).
#[derive(Clone, Debug)]
pub struct NormInference<B: Backend> {
    /// Scale `γ`.
    pub gamma: FloatTensor<B>,
    /// Shift `β`.
    pub beta: FloatTensor<B>,
    /// Running mean `μ`.
    pub mean: FloatTensor<B>,
    /// Running variance `σ²`.
    pub var: FloatTensor<B>,
    /// `ε` added to the variance.
    pub epsilon: f64,
}

/// A backend with kernels of its own for the layers of a convolutional backbone: 2-D
/// convolution and transposed convolution, and the batch normalisation and leaky ReLU that
/// follow them.
///
/// The convolution methods have the semantics, shapes and options of burn's
/// `ModuleOps::conv2d`, `conv2d_x_backward`, `conv2d_weight_backward`, `conv2d_bias_backward`,
/// `conv_transpose2d` and `conv_transpose2d_{x,weight,bias}_backward`, under other names so that
/// neither trait shadows the other. Every method defaults to burn's ops: a backend without
/// kernels of its own writes `impl ConvBackend for X {}`.
///
/// # Shapes
/// - `conv2d_*`: x `[N, Cin, H, W]`, weight `[Cout, Cin / groups, KH, KW]`, bias `[Cout]`,
///   output (and output gradient) `[N, Cout, H', W']`.
/// - `conv_transpose2d_*`: x `[N, Cin, H, W]`, weight `[Cin, Cout / groups, KH, KW]`,
///   bias `[Cout]`, output `[N, Cout, H', W']`.
/// - `batch_norm_*`: x and output `[N, C, H, W]`, per-channel values `[C]`.
pub trait ConvBackend: Backend {
    /// 2-D convolution (burn's `ModuleOps::conv2d`).
    fn conv2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d(x, weight, bias, options)
    }

    /// Gradient of [`ConvBackend::conv2d_forward`] with respect to `x`
    /// (burn's `ModuleOps::conv2d_x_backward`).
    fn conv2d_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`ConvBackend::conv2d_forward`] with respect to the weight
    /// (burn's `ModuleOps::conv2d_weight_backward`).
    fn conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`ConvBackend::conv2d_forward`] with respect to the bias
    /// (burn's `ModuleOps::conv2d_bias_backward`).
    fn conv2d_bias_grad(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_bias_backward(x, bias, output_grad)
    }

    /// 2-D transposed convolution (burn's `ModuleOps::conv_transpose2d`).
    fn conv_transpose2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose2d(x, weight, bias, options)
    }

    /// Gradient of [`ConvBackend::conv_transpose2d_forward`] with respect to `x`
    /// (burn's `ModuleOps::conv_transpose2d_x_backward`).
    fn conv_transpose2d_input_grad(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose2d_x_backward(weight, output_grad, options)
    }

    /// Gradient of [`ConvBackend::conv_transpose2d_forward`] with respect to the weight
    /// (burn's `ModuleOps::conv_transpose2d_weight_backward`).
    fn conv_transpose2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose2d_weight_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`ConvBackend::conv_transpose2d_forward`] with respect to the bias
    /// (burn's `ModuleOps::conv_transpose2d_bias_backward`).
    fn conv_transpose2d_bias_grad(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose2d_bias_backward(x, bias, output_grad)
    }

    /// A convolution block at inference: `leaky_relu(batch_norm_inference(conv2d(x)))`. A
    /// backend may apply the normalisation and the activation while it writes the output,
    /// instead of two more passes over it; the default composes the three methods (and is what
    /// an autodiff backend, which differentiates the ops one by one, keeps).
    fn conv2d_norm_leaky(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
        norm: NormInference<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        let y = Self::conv2d_forward(x, weight, bias, options);
        let y =
            Self::batch_norm_inference(y, norm.gamma, norm.beta, norm.mean, norm.var, norm.epsilon);
        Self::leaky_relu_forward(y, slope)
    }

    /// [`ConvBackend::conv2d_norm_leaky`] for a transposed convolution.
    fn conv_transpose2d_norm_leaky(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvTransposeOptions<2>,
        norm: NormInference<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        let y = Self::conv_transpose2d_forward(x, weight, bias, options);
        let y =
            Self::batch_norm_inference(y, norm.gamma, norm.beta, norm.mean, norm.var, norm.epsilon);
        Self::leaky_relu_forward(y, slope)
    }

    /// Leaky ReLU (burn's `ActivationOps::leaky_relu`): `x` where `x >= 0`, `x·slope` where
    /// `x < 0`.
    fn leaky_relu_forward(x: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::leaky_relu(x, slope.into())
    }

    /// Gradient of [`ConvBackend::leaky_relu_forward`]: `output_grad·slope` where `y < 0`,
    /// `output_grad` elsewhere, with `y` the op's input, or its output when `slope > 0` (then
    /// both have the same sign).
    fn leaky_relu_grad(
        y: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        fallback::leaky_relu_grad::<Self>(y, output_grad, slope)
    }

    /// Batch normalisation with the batch's statistics: `y = (x − μ)·γ/√(σ² + ε) + β` per
    /// channel, with `μ` and the biased variance `σ²` over batch and pixels. Returns
    /// `(y, μ, σ²)`; `μ` and `σ²` carry no gradient.
    fn batch_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::batch_norm_forward::<Self>(x, gamma, beta, epsilon)
    }

    /// Gradients of [`ConvBackend::batch_norm_forward`] with respect to `x`, `γ` and `β`, from
    /// its input, `γ` and the `μ`, `σ²` it returned.
    fn batch_norm_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::batch_norm_grad::<Self>(x, gamma, mean, var, epsilon, output_grad)
    }

    /// Batch normalisation with given statistics (inference): `x·s + (β − μ·s)` per channel,
    /// `s = γ/√(σ² + ε)`.
    fn batch_norm_inference(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        fallback::batch_norm_inference::<Self>(x, gamma, beta, mean, var, epsilon)
    }
}

/// The default bodies of the non-convolution methods, composed of burn's tensor ops, so that a
/// backend's kernels can fall back to them (for other dtypes).
pub(crate) mod fallback {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;

    use super::{float, per_sample, tensor};

    /// The default [`ConvBackend::leaky_relu_grad`](super::ConvBackend::leaky_relu_grad).
    pub(crate) fn leaky_relu_grad<B: Backend>(
        y: FloatTensor<B>,
        output_grad: FloatTensor<B>,
        slope: f64,
    ) -> FloatTensor<B> {
        let (y, g) = (tensor::<B, 4>(y), tensor::<B, 4>(output_grad));
        float(g.clone().mask_where(y.lower_elem(0.0), g.mul_scalar(slope)))
    }

    /// The default [`ConvBackend::batch_norm_forward`](super::ConvBackend::batch_norm_forward).
    pub(crate) fn batch_norm_forward<B: Backend>(
        x: FloatTensor<B>,
        gamma: FloatTensor<B>,
        beta: FloatTensor<B>,
        epsilon: f64,
    ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
        let x = tensor::<B, 4>(x);
        let [n, c, h, w] = x.dims();
        let x = x.reshape([n, c, h * w]);
        let mean = x.clone().mean_dim(2).mean_dim(0);
        let centred = x.sub(per_sample(mean.clone(), n));
        let var = centred.clone().square().mean_dim(2).mean_dim(0);
        let scale = tensor::<B, 1>(gamma)
            .reshape([1, c, 1])
            .div(var.clone().add_scalar(epsilon).sqrt());
        let shift = tensor::<B, 1>(beta).reshape([1, c, 1]);
        let y = centred.mul(per_sample(scale, n)).add(per_sample(shift, n));
        (
            float(y.reshape([n, c, h, w])),
            float(mean.reshape([c])),
            float(var.reshape([c])),
        )
    }

    /// The default [`ConvBackend::batch_norm_grad`](super::ConvBackend::batch_norm_grad).
    pub(crate) fn batch_norm_grad<B: Backend>(
        x: FloatTensor<B>,
        gamma: FloatTensor<B>,
        mean: FloatTensor<B>,
        var: FloatTensor<B>,
        epsilon: f64,
        output_grad: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
        let x = tensor::<B, 4>(x);
        let [n, c, h, w] = x.dims();
        let count = (n * h * w) as f64;
        let x = x.reshape([n, c, h * w]);
        let dy = tensor::<B, 4>(output_grad).reshape([n, c, h * w]);
        let inv = tensor::<B, 1>(var)
            .add_scalar(epsilon)
            .sqrt()
            .recip()
            .reshape([1, c, 1]);
        let mean = tensor::<B, 1>(mean).reshape([1, c, 1]);
        let xhat = x.sub(per_sample(mean, n)).mul(per_sample(inv.clone(), n));
        let dbeta = dy.clone().sum_dim(2).sum_dim(0);
        let dgamma = dy.clone().mul(xhat.clone()).sum_dim(2).sum_dim(0);
        // dx = γ/σ · (dy − Σdy/M − x̂·Σ(dy·x̂)/M)
        let k = tensor::<B, 1>(gamma).reshape([1, c, 1]).mul(inv);
        let dx = dy
            .sub(per_sample(dbeta.clone().div_scalar(count), n))
            .sub(xhat.mul(per_sample(dgamma.clone().div_scalar(count), n)))
            .mul(per_sample(k, n));
        (
            float(dx.reshape([n, c, h, w])),
            float(dgamma.reshape([c])),
            float(dbeta.reshape([c])),
        )
    }

    /// The default [`ConvBackend::batch_norm_inference`](super::ConvBackend::batch_norm_inference).
    pub(crate) fn batch_norm_inference<B: Backend>(
        x: FloatTensor<B>,
        gamma: FloatTensor<B>,
        beta: FloatTensor<B>,
        mean: FloatTensor<B>,
        var: FloatTensor<B>,
        epsilon: f64,
    ) -> FloatTensor<B> {
        let x = tensor::<B, 4>(x);
        let [n, c, h, w] = x.dims();
        let scale = tensor::<B, 1>(gamma).div(tensor::<B, 1>(var).add_scalar(epsilon).sqrt());
        let shift = tensor::<B, 1>(beta).sub(tensor::<B, 1>(mean).mul(scale.clone()));
        let y = x
            .reshape([n, c, h * w])
            .mul(per_sample(scale.reshape([1, c, 1]), n))
            .add(per_sample(shift.reshape([1, c, 1]), n));
        float(y.reshape([n, c, h, w]))
    }
}

/// Repeats a `[1, C, 1]` per-channel tensor over the batch, so that broadcasting it against a
/// contiguous `[N, C, L]` map walks a contiguous `[N, C]` table (a fast path of CPU backends).
fn per_sample<B: Backend>(t: Tensor<B, 3>, n: usize) -> Tensor<B, 3> {
    if n == 1 { t } else { t.repeat_dim(0, n) }
}

/// A training backend whose convolutions and whose inner (inference) backend's convolutions
/// both go through [`ConvBackend`]: the one bound training code over models built from this
/// crate's modules needs (`Autodiff<B>` for any `B: ConvBackend`).
pub trait ConvAutodiffBackend: AutodiffBackend<InnerBackend: ConvBackend> + ConvBackend {}

impl<B> ConvAutodiffBackend for B where B: AutodiffBackend<InnerBackend: ConvBackend> + ConvBackend {}

fn float<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Panics unless `weight` takes the channels of `x`.
fn check_conv2d<B: Backend>(x: &Tensor<B, 4>, weight: &Tensor<B, 4>, options: &ConvOptions<2>) {
    let (cin, wdims) = (x.dims()[1], weight.dims());
    assert_eq!(
        cin,
        wdims[1] * options.groups,
        "conv2d: x has {cin} channels, the weight {wdims:?} expects {} ({} groups)",
        wdims[1] * options.groups,
        options.groups
    );
}

/// Panics unless `weight` takes the channels of `x`.
fn check_conv_transpose2d<B: Backend>(x: &Tensor<B, 4>, weight: &Tensor<B, 4>) {
    let (cin, wdims) = (x.dims()[1], weight.dims());
    assert_eq!(
        cin, wdims[0],
        "conv_transpose2d: x has {cin} channels, the weight {wdims:?} expects {}",
        wdims[0]
    );
}

/// Applies a 2-D convolution through [`ConvBackend::conv2d_forward`] (what
/// `burn::tensor::module::conv2d` does through `ModuleOps::conv2d`).
///
/// # Shapes
/// x `[N, Cin, H, W]`, weight `[Cout, Cin / groups, KH, KW]`, bias `[Cout]` → `[N, Cout, H', W']`
///
/// # Panics
/// When the channel counts of `x` and `weight` disagree.
pub fn conv2d<B: ConvBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    check_conv2d(&x, &weight, &options);
    tensor(B::conv2d_forward(
        float(x),
        float(weight),
        bias.map(float),
        options,
    ))
}

/// Applies a 2-D transposed convolution through [`ConvBackend::conv_transpose2d_forward`].
///
/// # Shapes
/// x `[N, Cin, H, W]`, weight `[Cin, Cout / groups, KH, KW]`, bias `[Cout]` →
/// `[N, Cout, H', W']` with `H' = (H − 1)·stride − 2·padding + dilation·(KH − 1) + padding_out + 1`
///
/// # Panics
/// When the channel counts of `x` and `weight` disagree.
pub fn conv_transpose2d<B: ConvBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<B, 4> {
    check_conv_transpose2d(&x, &weight);
    tensor(B::conv_transpose2d_forward(
        float(x),
        float(weight),
        bias.map(float),
        options,
    ))
}

/// A batch normalisation at inference as tensors (see [`NormInference`]).
#[derive(Clone, Debug)]
pub struct NormTensors<B: Backend> {
    /// Scale `γ`, `[C]`.
    pub gamma: Tensor<B, 1>,
    /// Shift `β`, `[C]`.
    pub beta: Tensor<B, 1>,
    /// Running mean, `[C]`.
    pub mean: Tensor<B, 1>,
    /// Running variance, `[C]`.
    pub var: Tensor<B, 1>,
    /// `ε` added to the variance.
    pub epsilon: f64,
}

impl<B: Backend> NormTensors<B> {
    fn primitive(self) -> NormInference<B> {
        NormInference {
            gamma: float(self.gamma),
            beta: float(self.beta),
            mean: float(self.mean),
            var: float(self.var),
            epsilon: self.epsilon,
        }
    }
}

/// A convolution block at inference through [`ConvBackend::conv2d_norm_leaky`]:
/// `leaky_relu(batch_norm_inference(conv2d(x, weight, bias)), slope)`.
///
/// # Shapes
/// as [`conv2d`], the normalisation's tensors `[Cout]`
///
/// # Panics
/// When the channel counts of `x` and `weight` disagree.
pub fn conv2d_norm_leaky<B: ConvBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
    norm: NormTensors<B>,
    slope: f64,
) -> Tensor<B, 4> {
    check_conv2d(&x, &weight, &options);
    tensor(B::conv2d_norm_leaky(
        float(x),
        float(weight),
        bias.map(float),
        options,
        norm.primitive(),
        slope,
    ))
}

/// A transposed convolution block at inference through
/// [`ConvBackend::conv_transpose2d_norm_leaky`].
///
/// # Shapes
/// as [`conv_transpose2d`], the normalisation's tensors `[Cout]`
///
/// # Panics
/// When the channel counts of `x` and `weight` disagree.
pub fn conv_transpose2d_norm_leaky<B: ConvBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvTransposeOptions<2>,
    norm: NormTensors<B>,
    slope: f64,
) -> Tensor<B, 4> {
    check_conv_transpose2d(&x, &weight);
    tensor(B::conv_transpose2d_norm_leaky(
        float(x),
        float(weight),
        bias.map(float),
        options,
        norm.primitive(),
        slope,
    ))
}

/// Leaky ReLU through [`ConvBackend::leaky_relu_forward`] (what
/// `burn::tensor::activation::leaky_relu` computes).
///
/// # Shapes
/// `[N, C, H, W]` → `[N, C, H, W]`
pub fn leaky_relu<B: ConvBackend>(x: Tensor<B, 4>, slope: f64) -> Tensor<B, 4> {
    tensor(B::leaky_relu_forward(float(x), slope))
}

/// Batch normalisation with the batch's statistics through [`ConvBackend::batch_norm_forward`]:
/// `(y, μ, σ²)`, the statistics detached.
///
/// # Shapes
/// x `[N, C, H, W]`, γ and β `[C]` → (`[N, C, H, W]`, `[C]`, `[C]`)
pub fn batch_norm<B: ConvBackend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let (y, mean, var) = B::batch_norm_forward(float(x), float(gamma), float(beta), epsilon);
    (tensor(y), tensor(mean), tensor(var))
}

/// Batch normalisation with given statistics through [`ConvBackend::batch_norm_inference`].
///
/// # Shapes
/// x `[N, C, H, W]`, the others `[C]` → `[N, C, H, W]`
pub fn batch_norm_inference<B: ConvBackend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    mean: Tensor<B, 1>,
    var: Tensor<B, 1>,
    epsilon: f64,
) -> Tensor<B, 4> {
    tensor(B::batch_norm_inference(
        float(x),
        float(gamma),
        float(beta),
        float(mean),
        float(var),
        epsilon,
    ))
}

// Backends without kernels of their own: burn's ops (the trait's default bodies), for the element
// types the binaries use.

#[cfg(feature = "ndarray")]
impl ConvBackend for burn_ndarray::NdArray<f32> {}

#[cfg(feature = "cuda")]
impl ConvBackend for burn_cuda::Cuda {}

#[cfg(feature = "candle")]
#[allow(deprecated)] // burn 0.21 deprecates burn-candle; the benches still measure it
impl ConvBackend for burn_candle::Candle<f32, i64> {}
