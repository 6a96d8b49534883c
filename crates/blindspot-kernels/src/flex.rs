//! [`ConvBackend`] for burn-flex: `f32` convolutions with `groups = 1` and `dilation = 1` (all
//! the models use), batch normalisation and leaky ReLU on the kernels of [`crate::cpu`];
//! anything else goes to burn-flex's own ops. Element-wise results are written in place when
//! the tensor is not shared (the autodiff graph keeps what it needs by reference count).

use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn::tensor::{DType, TensorData, TensorMetadata};
use burn_flex::{Flex, FlexTensor};

use crate::ConvBackend;
use crate::backend::NormInference;
use crate::backend::fallback;
use crate::cpu::{self, Window};

/// Whether every tensor is `f32` with no zero-sized axis.
fn plain(tensors: &[&FlexTensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.dtype() == DType::F32 && t.shape().iter().all(|&d| d > 0))
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

/// `t` with a contiguous layout (a copy only when it has none).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a contiguous `f32` tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

/// `t` as a contiguous tensor that owns its buffer alone, so that writing to it changes no
/// other tensor (a copy only when `t` is shared or a view).
fn owned(t: FlexTensor) -> FlexTensor {
    let whole = t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * core::mem::size_of::<f32>();
    if t.is_contiguous() && whole && t.is_unique() {
        t
    } else {
        let shape = t.shape().to_vec();
        let t = contiguous(t);
        tensor(values(&t).to_vec(), shape)
    }
}

/// The values of a tensor made by [`owned`].
fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    t.try_storage_mut::<f32>()
        .expect("an unshared f32 tensor (made by `owned`)")
}

fn tensor(values: Vec<f32>, shape: impl Into<Vec<usize>>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// The window of a convolution of `x` (`[N, C, H, W]`) by a `kernel`, or `None` when the
/// kernel does not fit the padded input.
fn conv_window(
    x: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<Window> {
    let out = |a: usize| {
        (x[2 + a] + 2 * padding[a])
            .checked_sub(kernel[a])
            .map(|d| d / stride[a] + 1)
    };
    Some(Window {
        channels: x[1],
        image: [x[2], x[3]],
        grid: [out(0)?, out(1)?],
        kernel,
        stride,
        padding,
    })
}

/// The window of a transposed convolution of `x` (`[N, C, H, W]`, the grid) into a
/// `channels`-channel output (the image), or `None` when the output would be empty.
fn transposed_window(
    x: [usize; 4],
    channels: usize,
    kernel: [usize; 2],
    options: &ConvTransposeOptions<2>,
) -> Option<Window> {
    let out = |a: usize| {
        (x[2 + a].checked_sub(1)? * options.stride[a] + kernel[a] + options.padding_out[a])
            .checked_sub(2 * options.padding[a])
            .filter(|&o| o > 0)
    };
    Some(Window {
        channels,
        image: [out(0)?, out(1)?],
        grid: [x[2], x[3]],
        kernel,
        stride: options.stride,
        padding: options.padding,
    })
}

/// Grids of at most this many positions are convolved forward (`W · col(x)`) by burn-flex's own
/// `conv2d`: its NHWC im2col tiles beat the phase planes there (measured on the VAE's 8×8 and 4×4
/// layers, `examples/conv_layers.rs`); its gradients and transposed convolution never do.
const FLEX_FORWARD_MAX_POSITIONS: usize = 64;

fn fast_conv(o: &ConvOptions<2>) -> bool {
    o.groups == 1 && o.dilation == [1, 1]
}

fn fast_transposed(o: &ConvTransposeOptions<2>) -> bool {
    o.groups == 1 && o.dilation == [1, 1]
}

/// `[N, C, H·W]` of a 4-D tensor.
fn ncl(t: &FlexTensor) -> [usize; 3] {
    let [n, c, h, w] = dims4(t);
    [n, c, h * w]
}

/// The per-channel `(scale, shift)` of a batch normalisation at inference (plain tensors).
fn scale_shift(n: &NormInference<Flex>) -> (Vec<f32>, Vec<f32>) {
    let [gamma, beta, mean, var] =
        [&n.gamma, &n.beta, &n.mean, &n.var].map(|t| contiguous(t.clone()));
    cpu::norm_affine(
        values(&gamma),
        values(&beta),
        values(&mean),
        values(&var),
        n.epsilon,
    )
}

/// Whether the fused kernels can take this block's bias and normalisation (all plain `f32`).
fn plain_block(bias: Option<&FlexTensor>, norm: Option<&NormInference<Flex>>) -> bool {
    bias.is_none_or(|b| plain(&[b]))
        && norm.is_none_or(|n| plain(&[&n.gamma, &n.beta, &n.mean, &n.var]))
}

/// Runs a fused kernel (`kernel(weight, x, epilogue)`) on contiguous operands, its epilogue the
/// block's bias, the normalisation's `(scale, shift)` and the activation's slope.
fn fused(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    norm: Option<&NormInference<Flex>>,
    slope: Option<f64>,
    kernel: impl FnOnce(&[f32], &[f32], &cpu::Epilogue<'_>) -> Vec<f32>,
) -> Vec<f32> {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let bias = bias.map(contiguous);
    let affine = norm.map(scale_shift);
    let epi = cpu::Epilogue {
        bias: bias.as_ref().map(values),
        affine: affine.as_ref().map(|(s, t)| (s.as_slice(), t.as_slice())),
        leaky: slope.map(|s| s as f32),
    };
    kernel(values(&weight), values(&x), &epi)
}

/// The rest of a block after a convolution done by burn-flex's own op: the separate ops.
fn finish(y: FlexTensor, norm: Option<NormInference<Flex>>, slope: Option<f64>) -> FlexTensor {
    let y = match norm {
        Some(n) => Flex::batch_norm_inference(y, n.gamma, n.beta, n.mean, n.var, n.epsilon),
        None => y,
    };
    match slope {
        Some(slope) => Flex::leaky_relu_forward(y, slope),
        None => y,
    }
}

/// A convolution, optionally followed by a batch normalisation at inference and a leaky ReLU,
/// which the kernels apply per unit of images (bit for bit the separate ops).
fn conv2d_with(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: ConvOptions<2>,
    norm: Option<NormInference<Flex>>,
    slope: Option<f64>,
) -> FlexTensor {
    let (xs, ws) = (dims4(&x), dims4(&weight));
    let win = conv_window(xs, [ws[2], ws[3]], options.stride, options.padding);
    match win {
        Some(win)
            if fast_conv(&options)
                && win.positions() > FLEX_FORWARD_MAX_POSITIONS
                && plain(&[&x, &weight])
                && plain_block(bias.as_ref(), norm.as_ref()) =>
        {
            let y = fused(x, weight, bias, norm.as_ref(), slope, |w, x, epi| {
                cpu::lower(w, ws[0], x, xs[0], &win, epi)
            });
            tensor(y, [xs[0], ws[0], win.grid[0], win.grid[1]])
        }
        _ => finish(
            <Flex as ModuleOps<Flex>>::conv2d(x, weight, bias, options),
            norm,
            slope,
        ),
    }
}

/// [`conv2d_with`] for a transposed convolution.
fn conv_transpose2d_with(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: ConvTransposeOptions<2>,
    norm: Option<NormInference<Flex>>,
    slope: Option<f64>,
) -> FlexTensor {
    let (xs, ws) = (dims4(&x), dims4(&weight));
    let win = transposed_window(xs, ws[1], [ws[2], ws[3]], &options);
    match win {
        Some(win)
            if fast_transposed(&options)
                && plain(&[&x, &weight])
                && plain_block(bias.as_ref(), norm.as_ref()) =>
        {
            let y = fused(x, weight, bias, norm.as_ref(), slope, |w, x, epi| {
                cpu::raise(w, ws[0], x, xs[0], &win, epi)
            });
            tensor(y, [xs[0], ws[1], win.image[0], win.image[1]])
        }
        _ => finish(
            <Flex as ModuleOps<Flex>>::conv_transpose2d(x, weight, bias, options),
            norm,
            slope,
        ),
    }
}

impl ConvBackend for Flex {
    fn leaky_relu_forward(x: FlexTensor, slope: f64) -> FlexTensor {
        if !plain(&[&x]) {
            return <Flex as burn::tensor::ops::ActivationOps<Flex>>::leaky_relu(x, slope.into());
        }
        let mut y = owned(x);
        cpu::leaky_relu(values_mut(&mut y), slope as f32);
        y
    }

    fn leaky_relu_grad(y: FlexTensor, output_grad: FlexTensor, slope: f64) -> FlexTensor {
        if !plain(&[&y, &output_grad]) || y.shape() != output_grad.shape() {
            return fallback::leaky_relu_grad::<Flex>(y, output_grad, slope);
        }
        let y = contiguous(y);
        let mut g = owned(output_grad);
        cpu::leaky_relu_grad(values(&y), values_mut(&mut g), slope as f32);
        g
    }

    fn batch_norm_forward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !plain(&[&x, &gamma, &beta]) {
            return fallback::batch_norm_forward::<Flex>(x, gamma, beta, epsilon);
        }
        let [n, c, l] = ncl(&x);
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let (mean, var) = cpu::batch_stats(values(&x), n, c, l);
        let (scale, shift) = cpu::norm_affine(values(&gamma), values(&beta), &mean, &var, epsilon);
        // the input stays alive for the backward: the output is a new buffer
        let y = cpu::channel_affine_from(values(&x), c, l, &scale, &shift);
        (
            tensor(y, x.shape().to_vec()),
            tensor(mean, [c]),
            tensor(var, [c]),
        )
    }

    fn batch_norm_grad(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !plain(&[&x, &gamma, &mean, &var, &output_grad]) {
            return fallback::batch_norm_grad::<Flex>(x, gamma, mean, var, epsilon, output_grad);
        }
        let [n, c, l] = ncl(&x);
        let (x, gamma, mean, var) = (
            contiguous(x),
            contiguous(gamma),
            contiguous(mean),
            contiguous(var),
        );
        let mut dx = owned(output_grad);
        let (dgamma, dbeta) = cpu::batch_norm_grad(
            values(&x),
            values_mut(&mut dx),
            n,
            c,
            l,
            values(&gamma),
            values(&mean),
            values(&var),
            epsilon,
        );
        (dx, tensor(dgamma, [c]), tensor(dbeta, [c]))
    }

    fn batch_norm_inference(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        if !plain(&[&x, &gamma, &beta, &mean, &var]) {
            return fallback::batch_norm_inference::<Flex>(x, gamma, beta, mean, var, epsilon);
        }
        let [_, c, l] = ncl(&x);
        let (scale, shift) = scale_shift(&NormInference {
            gamma,
            beta,
            mean,
            var,
            epsilon,
        });
        let mut y = owned(x);
        cpu::channel_affine(values_mut(&mut y), c, l, &scale, &shift);
        y
    }

    fn conv2d_forward(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        conv2d_with(x, weight, bias, options, None, None)
    }

    fn conv2d_norm_leaky(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        options: ConvOptions<2>,
        norm: NormInference<Flex>,
        slope: f64,
    ) -> FlexTensor {
        conv2d_with(x, weight, bias, options, Some(norm), Some(slope))
    }

    fn conv2d_input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let (xs, ws) = (dims4(&x), dims4(&weight));
        let win = conv_window(xs, [ws[2], ws[3]], options.stride, options.padding);
        match win {
            Some(win) if fast_conv(&options) && plain(&[&x, &weight, &output_grad]) => {
                let (weight, dy) = (contiguous(weight), contiguous(output_grad));
                let dx = cpu::raise(
                    values(&weight),
                    ws[0],
                    values(&dy),
                    xs[0],
                    &win,
                    &cpu::Epilogue::default(),
                );
                tensor(dx, xs)
            }
            _ => <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, weight, output_grad, options),
        }
    }

    fn conv2d_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let (xs, ws) = (dims4(&x), dims4(&weight));
        let win = conv_window(xs, [ws[2], ws[3]], options.stride, options.padding);
        match win {
            Some(win) if fast_conv(&options) && plain(&[&x, &weight, &output_grad]) => {
                let (x, dy) = (contiguous(x), contiguous(output_grad));
                let dw = cpu::correlate(values(&dy), ws[0], values(&x), xs[0], &win);
                tensor(dw, ws)
            }
            _ => <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, output_grad, options),
        }
    }

    fn conv2d_bias_grad(x: FlexTensor, bias: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        if plain(&[&output_grad]) {
            let [n, c, h, w] = dims4(&output_grad);
            let dy = contiguous(output_grad);
            tensor(cpu::channel_sums(values(&dy), n, c, h * w), [c])
        } else {
            <Flex as ModuleOps<Flex>>::conv2d_bias_backward(x, bias, output_grad)
        }
    }

    fn conv_transpose2d_forward(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        options: ConvTransposeOptions<2>,
    ) -> FlexTensor {
        conv_transpose2d_with(x, weight, bias, options, None, None)
    }

    fn conv_transpose2d_norm_leaky(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        options: ConvTransposeOptions<2>,
        norm: NormInference<Flex>,
        slope: f64,
    ) -> FlexTensor {
        conv_transpose2d_with(x, weight, bias, options, Some(norm), Some(slope))
    }

    fn conv_transpose2d_input_grad(
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvTransposeOptions<2>,
    ) -> FlexTensor {
        let (ys, ws) = (dims4(&output_grad), dims4(&weight));
        // The input size the forward had: H' = (H − 1)·s − 2p + KH + padding_out.
        let input = |a: usize| {
            (ys[2 + a] + 2 * options.padding[a])
                .checked_sub(ws[2 + a] + options.padding_out[a])
                .filter(|d| d % options.stride[a] == 0)
                .map(|d| d / options.stride[a] + 1)
        };
        let win = match (input(0), input(1)) {
            (Some(h), Some(w)) => Some(Window {
                channels: ws[1],
                image: [ys[2], ys[3]],
                grid: [h, w],
                kernel: [ws[2], ws[3]],
                stride: options.stride,
                padding: options.padding,
            }),
            _ => None,
        };
        match win {
            Some(win)
                if fast_transposed(&options)
                    && win.positions() > FLEX_FORWARD_MAX_POSITIONS
                    && ys[1] == ws[1]
                    && plain(&[&weight, &output_grad]) =>
            {
                let (weight, dy) = (contiguous(weight), contiguous(output_grad));
                let dx = cpu::lower(
                    values(&weight),
                    ws[0],
                    values(&dy),
                    ys[0],
                    &win,
                    &cpu::Epilogue::default(),
                );
                tensor(dx, [ys[0], ws[0], win.grid[0], win.grid[1]])
            }
            _ => {
                <Flex as ModuleOps<Flex>>::conv_transpose2d_x_backward(weight, output_grad, options)
            }
        }
    }

    fn conv_transpose2d_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvTransposeOptions<2>,
    ) -> FlexTensor {
        let (xs, ws) = (dims4(&x), dims4(&weight));
        let win = transposed_window(xs, ws[1], [ws[2], ws[3]], &options);
        match win {
            Some(win)
                if fast_transposed(&options)
                    && dims4(&output_grad) == [xs[0], ws[1], win.image[0], win.image[1]]
                    && plain(&[&x, &weight, &output_grad]) =>
            {
                let (x, dy) = (contiguous(x), contiguous(output_grad));
                let dw = cpu::correlate(values(&x), ws[0], values(&dy), xs[0], &win);
                tensor(dw, ws)
            }
            _ => <Flex as ModuleOps<Flex>>::conv_transpose2d_weight_backward(
                x,
                weight,
                output_grad,
                options,
            ),
        }
    }

    fn conv_transpose2d_bias_grad(
        x: FlexTensor,
        bias: FlexTensor,
        output_grad: FlexTensor,
    ) -> FlexTensor {
        if plain(&[&output_grad]) {
            let [n, c, h, w] = dims4(&output_grad);
            let dy = contiguous(output_grad);
            tensor(cpu::channel_sums(values(&dy), n, c, h * w), [c])
        } else {
            <Flex as ModuleOps<Flex>>::conv_transpose2d_bias_backward(x, bias, output_grad)
        }
    }
}
