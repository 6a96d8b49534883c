//! [`ConvBackend`] for burn-flex: `f32` convolutions with `groups = 1` and `dilation = 1` (all
//! the models use) on the kernels of [`crate::cpu`]; anything else goes to burn-flex's own op.

use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn::tensor::{DType, TensorData, TensorMetadata};
use burn_flex::{Flex, FlexTensor};

use crate::ConvBackend;
use crate::cpu::{self, MatRef, Window};

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

fn fast_conv(o: &ConvOptions<2>) -> bool {
    o.groups == 1 && o.dilation == [1, 1]
}

fn fast_transposed(o: &ConvTransposeOptions<2>) -> bool {
    o.groups == 1 && o.dilation == [1, 1]
}

impl ConvBackend for Flex {
    fn conv2d_forward(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let (xs, ws) = (dims4(&x), dims4(&weight));
        let win = conv_window(xs, [ws[2], ws[3]], options.stride, options.padding);
        match win {
            Some(win)
                if fast_conv(&options)
                    && plain(&[&x, &weight])
                    && bias.as_ref().is_none_or(|b| plain(&[b])) =>
            {
                let (x, weight) = (contiguous(x), contiguous(weight));
                let bias = bias.map(contiguous);
                let y = cpu::lower(
                    MatRef::row_major(values(&weight), ws[0], win.rows()),
                    values(&x),
                    xs[0],
                    &win,
                    bias.as_ref().map(values),
                );
                tensor(y, [xs[0], ws[0], win.grid[0], win.grid[1]])
            }
            _ => <Flex as ModuleOps<Flex>>::conv2d(x, weight, bias, options),
        }
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
                    MatRef::row_major(values(&weight), ws[0], win.rows()).t(),
                    values(&dy),
                    xs[0],
                    &win,
                    None,
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
        let (xs, ws) = (dims4(&x), dims4(&weight));
        let win = transposed_window(xs, ws[1], [ws[2], ws[3]], &options);
        match win {
            Some(win)
                if fast_transposed(&options)
                    && plain(&[&x, &weight])
                    && bias.as_ref().is_none_or(|b| plain(&[b])) =>
            {
                let (x, weight) = (contiguous(x), contiguous(weight));
                let bias = bias.map(contiguous);
                let y = cpu::raise(
                    MatRef::row_major(values(&weight), ws[0], win.rows()).t(),
                    values(&x),
                    xs[0],
                    &win,
                    bias.as_ref().map(values),
                );
                tensor(y, [xs[0], ws[1], win.image[0], win.image[1]])
            }
            _ => <Flex as ModuleOps<Flex>>::conv_transpose2d(x, weight, bias, options),
        }
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
                    && ys[1] == ws[1]
                    && plain(&[&weight, &output_grad]) =>
            {
                let (weight, dy) = (contiguous(weight), contiguous(output_grad));
                let dx = cpu::lower(
                    MatRef::row_major(values(&weight), ws[0], win.rows()),
                    values(&dy),
                    ys[0],
                    &win,
                    None,
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
