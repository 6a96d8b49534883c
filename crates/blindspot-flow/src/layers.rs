//! The flow's invertible layers. Each `forward` returns the output and `log|det|` per sample.

use blindspot_kernels::{Conv2d, Conv2dConfig, ConvBackend, conv2d};
use burn::module::{Module, Param};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};

/// Space-to-depth: every 2×2 block becomes 4 channels.
///
/// # Shapes
/// `[N, C, H, W]` → `[N, 4C, H/2, W/2]`
pub fn squeeze<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / 2, 2, w / 2, 2])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([n, c * 4, h / 2, w / 2])
}

/// The inverse of [`squeeze`].
///
/// # Shapes
/// `[N, 4C, H, W]` → `[N, C, 2H, 2W]`
pub fn unsqueeze<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c4, h, w] = x.dims();
    let c = c4 / 4;
    x.reshape([n, c, 2, 2, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([n, c, h * 2, w * 2])
}

fn per_sample<B: Backend>(x: &Tensor<B, 4>, value: Tensor<B, 1>) -> Tensor<B, 1> {
    let n = x.dims()[0];
    value.reshape([1]).expand([n])
}

/// Per-channel affine normalisation `y = (x + b)·exp(s)` (identity at initialisation).
#[derive(Module, Debug)]
pub struct ActNorm<B: Backend> {
    log_scale: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> ActNorm<B> {
    fn new(c: usize, device: &B::Device) -> Self {
        Self {
            log_scale: Initializer::Zeros.init([c], device),
            bias: Initializer::Zeros.init([c], device),
        }
    }

    fn params(&self, c: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (
            self.log_scale.val().reshape([1, c, 1, 1]),
            self.bias.val().reshape([1, c, 1, 1]),
        )
    }

    /// # Shapes
    /// `[N, C, H, W]` → (`[N, C, H, W]`, `[N]`)
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 1>) {
        let [_, c, h, w] = x.dims();
        let (s, b) = self.params(c);
        let ld = per_sample(&x, self.log_scale.val().sum().mul_scalar((h * w) as f64));
        ((x + b) * s.exp(), ld)
    }

    /// The inverse map.
    pub fn inverse(&self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = y.dims()[1];
        let (s, b) = self.params(c);
        y * s.neg().exp() - b
    }
}

/// Invertible 1×1 convolution `W = P·L·(U + diag(exp(s)))` (Glow's LU form) with `P` the fixed
/// channel reversal; `log|det W| = Σ s`. Starts as the reversal.
#[derive(Module, Debug)]
pub struct InvConv1x1<B: ConvBackend> {
    lower: Param<Tensor<B, 2>>,
    upper: Param<Tensor<B, 2>>,
    log_s: Param<Tensor<B, 1>>,
}

impl<B: ConvBackend> InvConv1x1<B> {
    fn new(c: usize, device: &B::Device) -> Self {
        Self {
            lower: Initializer::Zeros.init([c, c], device),
            upper: Initializer::Zeros.init([c, c], device),
            log_s: Initializer::Zeros.init([c], device),
        }
    }

    /// The weight matrix `[C, C]`.
    pub fn weight(&self) -> Tensor<B, 2> {
        let [c, _] = self.lower.val().dims();
        let device = self.lower.val().device();
        let tri = |lower: bool| {
            let v: Vec<f32> = (0..c * c)
                .map(|k| {
                    let (i, j) = (k / c, k % c);
                    if (lower && j < i) || (!lower && j > i) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            Tensor::<B, 2>::from_data(TensorData::new(v, [c, c]), &device)
        };
        let eye = Tensor::<B, 2>::eye(c, &device);
        let l = self.lower.val() * tri(true) + eye.clone();
        let u = self.upper.val() * tri(false) + eye * self.log_s.val().exp().reshape([1, c]);
        let lu = l.matmul(u);
        // P = channel reversal: row i of W is row c-1-i of L·U.
        lu.flip([0])
    }

    fn apply(x: Tensor<B, 4>, w: Tensor<B, 2>) -> Tensor<B, 4> {
        let [c, _] = w.dims();
        conv2d(
            x,
            w.reshape([c, c, 1, 1]),
            None,
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        )
    }

    /// # Shapes
    /// `[N, C, H, W]` → (`[N, C, H, W]`, `[N]`)
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 1>) {
        let [_, _, h, w] = x.dims();
        let ld = per_sample(&x, self.log_s.val().sum().mul_scalar((h * w) as f64));
        (Self::apply(x, self.weight()), ld)
    }

    /// The inverse map (the matrix inverse is computed on the host in f64).
    ///
    /// # Panics
    /// If the weight cannot be read back (a backend failure).
    pub fn inverse(&self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        let w = self.weight();
        let [c, _] = w.dims();
        let device = w.device();
        let v: Vec<f64> = w
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("reading a weight back to the host");
        let inv = invert(&v, c);
        let inv = Tensor::<B, 2>::from_data(
            TensorData::new(
                inv.into_iter().map(|x| x as f32).collect::<Vec<_>>(),
                [c, c],
            ),
            &device,
        );
        Self::apply(y, inv)
    }
}

/// Gauss-Jordan inverse with partial pivoting of a `c × c` row-major matrix. The matrix is
/// invertible by construction (a permuted product of unit-lower and positive-diagonal upper
/// triangular factors).
fn invert(a: &[f64], c: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; c * c];
    for i in 0..c {
        inv[i * c + i] = 1.0;
    }
    for col in 0..c {
        let piv = (col..c)
            .max_by(|&x, &y| m[x * c + col].abs().total_cmp(&m[y * c + col].abs()))
            .unwrap_or(col);
        if piv != col {
            for k in 0..c {
                m.swap(col * c + k, piv * c + k);
                inv.swap(col * c + k, piv * c + k);
            }
        }
        let p = m[col * c + col];
        for k in 0..c {
            m[col * c + k] /= p;
            inv[col * c + k] /= p;
        }
        for r in 0..c {
            if r != col {
                let f = m[r * c + col];
                if f != 0.0 {
                    for k in 0..c {
                        m[r * c + k] -= f * m[col * c + k];
                        inv[r * c + k] -= f * inv[col * c + k];
                    }
                }
            }
        }
    }
    inv
}

/// Affine coupling: the first half of the channels predicts a shift and a scale
/// `sigmoid(h + 2)` for the second half.
#[derive(Module, Debug)]
pub struct AffineCoupling<B: ConvBackend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    conv3: Conv2d<B>,
}

impl<B: ConvBackend> AffineCoupling<B> {
    fn new(c: usize, hidden: usize, device: &B::Device) -> Self {
        let ca = c / 2;
        let cb = c - ca;
        Self {
            conv1: Conv2dConfig::new([ca, hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            conv2: Conv2dConfig::new([hidden, hidden], [1, 1]).init(device),
            conv3: Conv2dConfig::new([hidden, 2 * cb], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    fn shift_scale(&self, xa: Tensor<B, 4>, cb: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let h = relu(self.conv1.forward(xa));
        let h = relu(self.conv2.forward(h));
        let h = self.conv3.forward(h);
        let shift = h.clone().narrow(1, 0, cb);
        let scale = sigmoid(h.narrow(1, cb, cb).add_scalar(2.0));
        (shift, scale)
    }

    /// # Shapes
    /// `[N, C, H, W]` → (`[N, C, H, W]`, `[N]`)
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 1>) {
        let [n, c, _, _] = x.dims();
        let ca = c / 2;
        let cb = c - ca;
        let xa = x.clone().narrow(1, 0, ca);
        let xb = x.narrow(1, ca, cb);
        let (shift, scale) = self.shift_scale(xa.clone(), cb);
        let yb = (xb + shift) * scale.clone();
        let ld = scale.log().flatten::<2>(1, 3).sum_dim(1).reshape([n]);
        (Tensor::cat(vec![xa, yb], 1), ld)
    }

    /// The inverse map.
    pub fn inverse(&self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = y.dims()[1];
        let ca = c / 2;
        let cb = c - ca;
        let ya = y.clone().narrow(1, 0, ca);
        let yb = y.narrow(1, ca, cb);
        let (shift, scale) = self.shift_scale(ya.clone(), cb);
        let xb = yb / scale - shift;
        Tensor::cat(vec![ya, xb], 1)
    }
}

/// ActNorm → invertible 1×1 conv → affine coupling.
#[derive(Module, Debug)]
pub struct FlowStep<B: ConvBackend> {
    norm: ActNorm<B>,
    mix: InvConv1x1<B>,
    coupling: AffineCoupling<B>,
}

impl<B: ConvBackend> FlowStep<B> {
    pub(crate) fn new(c: usize, hidden: usize, device: &B::Device) -> Self {
        Self {
            norm: ActNorm::new(c, device),
            mix: InvConv1x1::new(c, device),
            coupling: AffineCoupling::new(c, hidden, device),
        }
    }

    /// # Shapes
    /// `[N, C, H, W]` → (`[N, C, H, W]`, `[N]`)
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 1>) {
        let (x, a) = self.norm.forward(x);
        let (x, b) = self.mix.forward(x);
        let (x, c) = self.coupling.forward(x);
        (x, a + b + c)
    }

    /// The inverse map.
    pub fn inverse(&self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        self.norm
            .inverse(self.mix.inverse(self.coupling.inverse(y)))
    }
}

#[cfg(test)]
mod tests {
    use super::invert;

    #[test]
    fn gauss_jordan_inverts() {
        let a = [0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, 0.0, 1.0];
        let inv = invert(&a, 3);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }
}
