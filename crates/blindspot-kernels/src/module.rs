//! [`Conv2d`] and [`ConvTranspose2d`]: burn's modules of the same names with their forward
//! through [`ConvBackend`].
//!
//! The configs have burn's fields and defaults, and `init` builds burn's module and moves its
//! parameters over, so the parameters are the same tensors drawn in the same order (a seeded run
//! initialises identically) under the same record names (`weight`, `bias`): checkpoints written
//! with burn's modules load unchanged.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv as burn_conv;
use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, PadMode};

use crate::backend::{
    ConvBackend, NormTensors, conv_transpose2d, conv_transpose2d_norm_leaky, conv2d,
    conv2d_norm_leaky,
};

/// Configuration of [`Conv2d`]: the fields and defaults of burn's `Conv2dConfig`.
#[derive(Config, Debug)]
pub struct Conv2dConfig {
    /// `[channels_in, channels_out]`.
    pub channels: [usize; 2],
    /// Kernel size `[KH, KW]`.
    pub kernel_size: [usize; 2],
    /// Stride.
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Dilation.
    #[config(default = "[1, 1]")]
    pub dilation: [usize; 2],
    /// Groups.
    #[config(default = "1")]
    pub groups: usize,
    /// Padding.
    #[config(default = "PaddingConfig2d::Valid")]
    pub padding: PaddingConfig2d,
    /// Whether the convolution has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of weight and bias (burn's default: Kaiming uniform, gain `1/√3`).
    #[config(
        default = "Initializer::KaimingUniform{gain: 1.0 / 3.0f64.sqrt(), fan_out_only: false}"
    )]
    pub initializer: Initializer,
}

impl Conv2dConfig {
    /// burn's config with the same settings.
    pub fn to_burn(&self) -> burn_conv::Conv2dConfig {
        burn_conv::Conv2dConfig::new(self.channels, self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_padding(self.padding.clone())
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
    }

    /// Builds the module, parameters drawn exactly as burn's `Conv2dConfig::init` draws them.
    ///
    /// # Panics
    /// When the channels are not divisible by `groups` (as burn's).
    pub fn init<B: ConvBackend>(&self, device: &B::Device) -> Conv2d<B> {
        self.to_burn().init(device).into()
    }
}

/// A 2-D convolution: burn's `nn::conv::Conv2d` computed by [`ConvBackend::conv2d_forward`].
#[derive(Module, Debug)]
pub struct Conv2d<B: ConvBackend> {
    /// `[Cout, Cin / groups, KH, KW]`.
    pub weight: Param<Tensor<B, 4>>,
    /// `[Cout]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Stride.
    pub stride: [usize; 2],
    /// Kernel size.
    pub kernel_size: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Padding.
    pub padding: PaddingConfig2d,
}

impl<B: ConvBackend> From<burn_conv::Conv2d<B>> for Conv2d<B> {
    fn from(c: burn_conv::Conv2d<B>) -> Self {
        Self {
            weight: c.weight,
            bias: c.bias,
            stride: c.stride,
            kernel_size: c.kernel_size,
            dilation: c.dilation,
            groups: c.groups,
            padding: c.padding,
        }
    }
}

/// burn-nn's `calculate_same_padding` (private there): `(start, end)` padding that keeps
/// `ceil(size / stride)` outputs.
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = if out > 0 {
        ((out - 1) * stride + kernel).saturating_sub(size)
    } else {
        0
    };
    (total / 2, total - total / 2)
}

impl<B: ConvBackend> Conv2d<B> {
    /// # Shapes
    /// `[N, Cin, H, W]` → `[N, Cout, H', W']`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (x, options) = self.padded(x);
        conv2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
            options,
        )
    }

    /// The block `leaky_relu(norm(conv(x)), slope)` at inference, with the normalisation's
    /// running statistics, through [`ConvBackend::conv2d_norm_leaky`] (one pass over the output
    /// where the backend fuses them).
    ///
    /// # Shapes
    /// `[N, Cin, H, W]` → `[N, Cout, H', W']`, the normalisation's tensors `[Cout]`
    pub fn forward_norm_leaky(
        &self,
        x: Tensor<B, 4>,
        norm: NormTensors<B>,
        slope: f64,
    ) -> Tensor<B, 4> {
        let (x, options) = self.padded(x);
        conv2d_norm_leaky(
            x,
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
            options,
            norm,
            slope,
        )
    }

    /// `x` and the options of the convolution: symmetric padding goes into the options,
    /// asymmetric padding is applied to the input first, as `burn::tensor::module::conv2d`
    /// does.
    fn padded(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, ConvOptions<2>) {
        let [_, _, h, w] = x.dims();
        let ((top, bottom), (left, right)) = match self.padding {
            PaddingConfig2d::Valid => ((0, 0), (0, 0)),
            PaddingConfig2d::Same => (
                same_padding(self.kernel_size[0], self.stride[0], h),
                same_padding(self.kernel_size[1], self.stride[1], w),
            ),
            PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        };
        let (x, padding) = if top == bottom && left == right {
            (x, [top, left])
        } else {
            (
                x.pad((left, right, top, bottom), PadMode::Constant(0.0)),
                [0, 0],
            )
        };
        let options = ConvOptions::new(self.stride, padding, self.dilation, self.groups);
        (x, options)
    }
}

/// Configuration of [`ConvTranspose2d`]: the fields and defaults of burn's
/// `ConvTranspose2dConfig`.
#[derive(Config, Debug)]
pub struct ConvTranspose2dConfig {
    /// `[channels_in, channels_out]`.
    pub channels: [usize; 2],
    /// Kernel size `[KH, KW]`.
    pub kernel_size: [usize; 2],
    /// Stride.
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Dilation.
    #[config(default = "[1, 1]")]
    pub dilation: [usize; 2],
    /// Groups.
    #[config(default = "1")]
    pub groups: usize,
    /// Padding.
    #[config(default = "[0, 0]")]
    pub padding: [usize; 2],
    /// Extra rows and columns added to one side of the output.
    #[config(default = "[0, 0]")]
    pub padding_out: [usize; 2],
    /// Whether the convolution has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of weight and bias (burn's default: Kaiming uniform, gain `1/√3`).
    #[config(
        default = "Initializer::KaimingUniform{gain: 1.0 / 3.0f64.sqrt(), fan_out_only: false}"
    )]
    pub initializer: Initializer,
}

impl ConvTranspose2dConfig {
    /// burn's config with the same settings.
    pub fn to_burn(&self) -> burn_conv::ConvTranspose2dConfig {
        burn_conv::ConvTranspose2dConfig::new(self.channels, self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_padding(self.padding)
            .with_padding_out(self.padding_out)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
    }

    /// Builds the module, parameters drawn exactly as burn's `ConvTranspose2dConfig::init`
    /// draws them.
    ///
    /// # Panics
    /// When the channels are not divisible by `groups` (as burn's).
    pub fn init<B: ConvBackend>(&self, device: &B::Device) -> ConvTranspose2d<B> {
        self.to_burn().init(device).into()
    }
}

/// A 2-D transposed convolution: burn's `nn::conv::ConvTranspose2d` computed by
/// [`ConvBackend::conv_transpose2d_forward`].
#[derive(Module, Debug)]
pub struct ConvTranspose2d<B: ConvBackend> {
    /// `[Cin, Cout / groups, KH, KW]`.
    pub weight: Param<Tensor<B, 4>>,
    /// `[Cout]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Stride.
    pub stride: [usize; 2],
    /// Kernel size.
    pub kernel_size: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Padding.
    pub padding: [usize; 2],
    /// Extra rows and columns added to one side of the output.
    pub padding_out: [usize; 2],
    /// `[channels_in, channels_out]`.
    pub channels: [usize; 2],
}

impl<B: ConvBackend> From<burn_conv::ConvTranspose2d<B>> for ConvTranspose2d<B> {
    fn from(c: burn_conv::ConvTranspose2d<B>) -> Self {
        Self {
            weight: c.weight,
            bias: c.bias,
            stride: c.stride,
            kernel_size: c.kernel_size,
            dilation: c.dilation,
            groups: c.groups,
            padding: c.padding,
            padding_out: c.padding_out,
            channels: c.channels,
        }
    }
}

impl<B: ConvBackend> ConvTranspose2d<B> {
    /// # Shapes
    /// `[N, Cin, H, W]` → `[N, Cout, H', W']` with
    /// `H' = (H − 1)·stride − 2·padding + dilation·(KH − 1) + padding_out + 1`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv_transpose2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
            self.options(),
        )
    }

    /// The block `leaky_relu(norm(conv_transpose(x)), slope)` at inference, through
    /// [`ConvBackend::conv_transpose2d_norm_leaky`] (see [`Conv2d::forward_norm_leaky`]).
    ///
    /// # Shapes
    /// as [`ConvTranspose2d::forward`], the normalisation's tensors `[Cout]`
    pub fn forward_norm_leaky(
        &self,
        x: Tensor<B, 4>,
        norm: NormTensors<B>,
        slope: f64,
    ) -> Tensor<B, 4> {
        conv_transpose2d_norm_leaky(
            x,
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
            self.options(),
            norm,
            slope,
        )
    }

    fn options(&self) -> ConvTransposeOptions<2> {
        ConvTransposeOptions::new(
            self.stride,
            self.padding,
            self.padding_out,
            self.dilation,
            self.groups,
        )
    }
}
