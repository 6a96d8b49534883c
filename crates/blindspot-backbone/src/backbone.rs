//! The Baur et al. (2020) convolutional encoder and decoder shared by the VAE and the
//! autoencoders (docs/method.md 2.1).

use blindspot_kernels::{
    Conv2d, Conv2dConfig, ConvBackend, ConvTranspose2d, ConvTranspose2dConfig, NormTensors,
    leaky_relu,
};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{LeakyRelu, LeakyReluConfig, PaddingConfig2d};
use burn::tensor::Tensor;

use crate::norm::{BatchNorm2d, BatchNorm2dConfig};
use blindspot_core::InvalidConfig;

/// Channels of the bottleneck feature map (fixed by the architecture).
pub const BOTTLENECK_CHANNELS: usize = 16;

/// Encoder/decoder geometry.
#[derive(Config, Debug, PartialEq)]
pub struct BackboneConfig {
    /// Side of the square input: 64, 128 (the paper) or 256; any multiple of 16 works.
    #[config(default = 128)]
    pub input_size: usize,
    /// Width multiplier of the 32-64-128-128 channel ladder.
    #[config(default = 1.0)]
    pub width: f64,
}

impl BackboneConfig {
    /// Checks the geometry.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.input_size < 16 || !self.input_size.is_multiple_of(16) {
            return Err(InvalidConfig::new(
                "input_size",
                self.input_size,
                "a multiple of 16 (64, 128 or 256)",
            ));
        }
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= 16.0) {
            return Err(InvalidConfig::new(
                "width",
                self.width,
                "a number in (0, 16]",
            ));
        }
        Ok(())
    }

    /// The four channel counts of the conv ladder.
    pub fn channels(&self) -> [usize; 4] {
        [32, 64, 128, 128].map(|c| ((c as f64 * self.width).round() as usize).max(1))
    }

    /// Side of the bottleneck feature map (`input_size / 16`).
    pub fn bottleneck_side(&self) -> usize {
        self.input_size / 16
    }

    /// Length of the flattened bottleneck (`16 · side²`, 1024 at 128²).
    pub fn flat_features(&self) -> usize {
        BOTTLENECK_CHANNELS * self.bottleneck_side() * self.bottleneck_side()
    }

    /// Builds the encoder.
    pub fn init_encoder<B: ConvBackend>(&self, device: &B::Device) -> Encoder<B> {
        let c = self.channels();
        let down = |cin, cout| ConvBlock::down(cin, cout, device);
        Encoder {
            blocks: vec![
                down(1, c[0]),
                down(c[0], c[1]),
                down(c[1], c[2]),
                down(c[2], c[3]),
                ConvBlock::pointwise(c[3], BOTTLENECK_CHANNELS, device),
            ],
        }
    }

    /// Builds the decoder (without the dense layer from the latent).
    pub fn init_decoder<B: ConvBackend>(&self, device: &B::Device) -> Decoder<B> {
        let c = self.channels();
        Decoder {
            side: self.bottleneck_side(),
            entry: ConvBlock::pointwise(BOTTLENECK_CHANNELS, c[3], device),
            up: vec![
                UpBlock::new(c[3], c[2], device),
                UpBlock::new(c[2], c[1], device),
                UpBlock::new(c[1], c[0], device),
                UpBlock::new(c[0], c[0], device),
            ],
            out: Conv2dConfig::new([c[0], 1], [1, 1]).init(device),
        }
    }
}

/// Conv → BatchNorm → LeakyReLU(0.01).
#[derive(Module, Debug)]
pub struct ConvBlock<B: ConvBackend> {
    conv: Conv2d<B>,
    norm: BatchNorm2d<B>,
    act: LeakyRelu,
}

impl<B: ConvBackend> ConvBlock<B> {
    fn down(cin: usize, cout: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [5, 5])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            norm: BatchNorm2dConfig::new(cout).init(device),
            act: LeakyReluConfig::new().with_negative_slope(0.01).init(),
        }
    }

    fn pointwise(cin: usize, cout: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [1, 1]).init(device),
            norm: BatchNorm2dConfig::new(cout).init(device),
            act: LeakyReluConfig::new().with_negative_slope(0.01).init(),
        }
    }

    /// # Shapes
    /// `[N, Cin, H, W]` → `[N, Cout, H', W']`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        block(
            x,
            &self.norm,
            self.act.negative_slope,
            |x| self.conv.forward(x),
            |x, norm, slope| self.conv.forward_norm_leaky(x, norm, slope),
        )
    }
}

/// `leaky_relu(norm(conv(x)), slope)`: in training the three ops (the normalisation with the
/// batch's statistics), at inference one call of `fused` (the convolution applies the running
/// statistics and the activation as it writes its output).
fn block<B: ConvBackend>(
    x: Tensor<B, 4>,
    norm: &BatchNorm2d<B>,
    slope: f64,
    conv: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
    fused: impl FnOnce(Tensor<B, 4>, NormTensors<B>, f64) -> Tensor<B, 4>,
) -> Tensor<B, 4> {
    let device = x.device();
    if BatchNorm2d::<B>::is_inference(&device) {
        return fused(x, norm.inference(&device), slope);
    }
    leaky_relu(norm.forward(conv(x)), slope)
}

/// Transposed conv 5×5 stride 2 (2× upsampling) → BatchNorm → LeakyReLU(0.01).
#[derive(Module, Debug)]
pub struct UpBlock<B: ConvBackend> {
    conv: ConvTranspose2d<B>,
    norm: BatchNorm2d<B>,
    act: LeakyRelu,
}

impl<B: ConvBackend> UpBlock<B> {
    fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        Self {
            conv: ConvTranspose2dConfig::new([cin, cout], [5, 5])
                .with_stride([2, 2])
                .with_padding([2, 2])
                .with_padding_out([1, 1])
                .init(device),
            norm: BatchNorm2dConfig::new(cout).init(device),
            act: LeakyReluConfig::new().with_negative_slope(0.01).init(),
        }
    }

    /// # Shapes
    /// `[N, Cin, H, W]` → `[N, Cout, 2H, 2W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        block(
            x,
            &self.norm,
            self.act.negative_slope,
            |x| self.conv.forward(x),
            |x, norm, slope| self.conv.forward_norm_leaky(x, norm, slope),
        )
    }
}

/// Four 5×5 stride-2 conv blocks and a 1×1 block to 16 channels, flattened (C-major).
#[derive(Module, Debug)]
pub struct Encoder<B: ConvBackend> {
    blocks: Vec<ConvBlock<B>>,
}

impl<B: ConvBackend> Encoder<B> {
    /// # Shapes
    /// `[N, 1, S, S]` → `[N, 16 · (S/16)²]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let h = self.blocks.iter().fold(x, |h, b| b.forward(h));
        h.flatten(1, 3)
    }
}

/// The mirrored decoder: 1×1 block, four transposed-conv blocks, a linear 1×1 output conv.
#[derive(Module, Debug)]
pub struct Decoder<B: ConvBackend> {
    side: usize,
    entry: ConvBlock<B>,
    up: Vec<UpBlock<B>>,
    out: Conv2d<B>,
}

impl<B: ConvBackend> Decoder<B> {
    /// # Shapes
    /// `[N, 16 · (S/16)²]` → `[N, 1, S, S]`
    pub fn forward(&self, h: Tensor<B, 2>) -> Tensor<B, 4> {
        let n = h.dims()[0];
        let h = h.reshape([n, BOTTLENECK_CHANNELS, self.side, self.side]);
        let h = self.entry.forward(h);
        let h = self.up.iter().fold(h, |h, b| b.forward(h));
        self.out.forward(h)
    }
}
