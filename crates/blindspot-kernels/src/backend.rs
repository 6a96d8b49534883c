//! The [`ConvBackend`] extension trait, its functional forms, and the backends that keep burn's
//! ops.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, ModuleOps};
use burn::tensor::{Tensor, TensorPrimitive};

/// A backend with 2-D convolution and transposed convolution kernels of its own.
///
/// The methods have the semantics, shapes and options of burn's `ModuleOps::conv2d`,
/// `conv2d_x_backward`, `conv2d_weight_backward`, `conv2d_bias_backward`, `conv_transpose2d` and
/// `conv_transpose2d_{x,weight,bias}_backward`, under other names so that neither trait
/// shadows the other. Every method defaults to burn's op: a backend without kernels of its own
/// writes `impl ConvBackend for X {}`.
///
/// # Shapes
/// - `conv2d_*`: x `[N, Cin, H, W]`, weight `[Cout, Cin / groups, KH, KW]`, bias `[Cout]`,
///   output (and output gradient) `[N, Cout, H', W']`.
/// - `conv_transpose2d_*`: x `[N, Cin, H, W]`, weight `[Cin, Cout / groups, KH, KW]`,
///   bias `[Cout]`, output `[N, Cout, H', W']`.
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
    let (cin, wdims) = (x.dims()[1], weight.dims());
    assert_eq!(
        cin,
        wdims[1] * options.groups,
        "conv2d: x has {cin} channels, the weight {wdims:?} expects {} ({} groups)",
        wdims[1] * options.groups,
        options.groups
    );
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
    let (cin, wdims) = (x.dims()[1], weight.dims());
    assert_eq!(
        cin, wdims[0],
        "conv_transpose2d: x has {cin} channels, the weight {wdims:?} expects {}",
        wdims[0]
    );
    tensor(B::conv_transpose2d_forward(
        float(x),
        float(weight),
        bias.map(float),
        options,
    ))
}

// Backends without kernels of their own: burn's ops (the trait's default bodies).

#[cfg(feature = "ndarray")]
impl<E, I, Q> ConvBackend for burn_ndarray::NdArray<E, I, Q> where
    burn_ndarray::NdArray<E, I, Q>: Backend
{
}

#[cfg(feature = "cuda")]
impl<F, I> ConvBackend for burn_cuda::Cuda<F, I> where burn_cuda::Cuda<F, I>: Backend {}

#[cfg(feature = "candle")]
#[allow(deprecated)] // burn 0.21 deprecates burn-candle; the benches still measure it
impl<F, I> ConvBackend for burn_candle::Candle<F, I> where burn_candle::Candle<F, I>: Backend {}
