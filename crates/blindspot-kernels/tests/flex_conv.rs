//! burn-flex's fast convolutions against burn's own ops: forward values and the input, weight and
//! bias gradients, on `Flex` (the ops one by one) and on `Autodiff<Flex>` (through a backward
//! pass), for proptest-drawn shapes and for every layer of the paper's VAE.

#![cfg(feature = "flex")]

use blindspot_kernels::{ConvBackend, NormInference, conv_transpose2d, conv2d};
use burn::backend::Autodiff;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, ModuleOps};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_flex::Flex;
use proptest::prelude::*;

type Ad = Autodiff<Flex>;

/// One convolution: shapes and options.
#[derive(Debug, Clone)]
struct Case {
    transposed: bool,
    batch: usize,
    cin: usize,
    cout: usize,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    padding_out: [usize; 2],
    bias: bool,
    seed: u64,
}

impl Case {
    fn weight_shape(&self) -> [usize; 4] {
        let [kh, kw] = self.kernel;
        if self.transposed {
            [self.cin, self.cout, kh, kw]
        } else {
            [self.cout, self.cin, kh, kw]
        }
    }

    fn output_shape(&self) -> [usize; 4] {
        let out = |a: usize| {
            if self.transposed {
                (self.size[a] - 1) * self.stride[a] + self.kernel[a] + self.padding_out[a]
                    - 2 * self.padding[a]
            } else {
                (self.size[a] + 2 * self.padding[a] - self.kernel[a]) / self.stride[a] + 1
            }
        };
        [self.batch, self.cout, out(0), out(1)]
    }

    fn conv_options(&self) -> ConvOptions<2> {
        ConvOptions::new(self.stride, self.padding, [1, 1], 1)
    }

    fn transposed_options(&self) -> ConvTransposeOptions<2> {
        ConvTransposeOptions::new(self.stride, self.padding, self.padding_out, [1, 1], 1)
    }
}

/// Deterministic values in [-1, 1) (splitmix64).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor<B: burn::tensor::backend::Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
) -> Tensor<B, D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(values(n, seed), shape), &Default::default())
}

fn prim<const D: usize>(t: Tensor<Flex, D>) -> FloatTensor<Flex> {
    t.into_primitive().tensor()
}

fn data(t: FloatTensor<Flex>) -> TensorData {
    Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(t)).into_data()
}

/// `max |got − want| <= 1e-4 · max |want|` (relative to the tensor's scale).
fn check(got: &TensorData, want: &TensorData, what: &str, case: &Case) {
    assert_eq!(got.shape, want.shape, "{what}: shape, {case:?}");
    let (g, w) = (
        got.to_vec::<f32>().expect("f32"),
        want.to_vec::<f32>().expect("f32"),
    );
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let err = g
        .iter()
        .zip(&w)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-4 * scale,
        "{what}: max error {err} against scale {scale}, {case:?}"
    );
}

/// The ops one by one on `Flex`: ours against `ModuleOps`'.
fn check_ops(case: &Case) {
    let x = || {
        tensor::<Flex, 4>(
            [case.batch, case.cin, case.size[0], case.size[1]],
            case.seed,
        )
    };
    let w = || tensor::<Flex, 4>(case.weight_shape(), case.seed ^ 1);
    let b = || tensor::<Flex, 1>([case.cout], case.seed ^ 2);
    let dy = || tensor::<Flex, 4>(case.output_shape(), case.seed ^ 3);
    let bias = || case.bias.then(|| prim(b()));
    type M = Flex;
    if case.transposed {
        let o = case.transposed_options();
        let ours =
            <M as ConvBackend>::conv_transpose2d_forward(prim(x()), prim(w()), bias(), o.clone());
        let theirs = <M as ModuleOps<M>>::conv_transpose2d(prim(x()), prim(w()), bias(), o.clone());
        check(&data(ours), &data(theirs), "forward", case);
        let ours =
            <M as ConvBackend>::conv_transpose2d_input_grad(prim(w()), prim(dy()), o.clone());
        let theirs =
            <M as ModuleOps<M>>::conv_transpose2d_x_backward(prim(w()), prim(dy()), o.clone());
        check(&data(ours), &data(theirs), "input grad", case);
        let ours = <M as ConvBackend>::conv_transpose2d_weight_grad(
            prim(x()),
            prim(w()),
            prim(dy()),
            o.clone(),
        );
        let theirs = <M as ModuleOps<M>>::conv_transpose2d_weight_backward(
            prim(x()),
            prim(w()),
            prim(dy()),
            o,
        );
        check(&data(ours), &data(theirs), "weight grad", case);
        let ours = <M as ConvBackend>::conv_transpose2d_bias_grad(prim(x()), prim(b()), prim(dy()));
        let theirs =
            <M as ModuleOps<M>>::conv_transpose2d_bias_backward(prim(x()), prim(b()), prim(dy()));
        check(&data1(ours), &data1(theirs), "bias grad", case);
    } else {
        let o = case.conv_options();
        let ours = <M as ConvBackend>::conv2d_forward(prim(x()), prim(w()), bias(), o.clone());
        let theirs = <M as ModuleOps<M>>::conv2d(prim(x()), prim(w()), bias(), o.clone());
        check(&data(ours), &data(theirs), "forward", case);
        let ours =
            <M as ConvBackend>::conv2d_input_grad(prim(x()), prim(w()), prim(dy()), o.clone());
        let theirs =
            <M as ModuleOps<M>>::conv2d_x_backward(prim(x()), prim(w()), prim(dy()), o.clone());
        check(&data(ours), &data(theirs), "input grad", case);
        let ours =
            <M as ConvBackend>::conv2d_weight_grad(prim(x()), prim(w()), prim(dy()), o.clone());
        let theirs =
            <M as ModuleOps<M>>::conv2d_weight_backward(prim(x()), prim(w()), prim(dy()), o);
        check(&data(ours), &data(theirs), "weight grad", case);
        let ours = <M as ConvBackend>::conv2d_bias_grad(prim(x()), prim(b()), prim(dy()));
        let theirs = <M as ModuleOps<M>>::conv2d_bias_backward(prim(x()), prim(b()), prim(dy()));
        check(&data1(ours), &data1(theirs), "bias grad", case);
    }
}

fn data1(t: FloatTensor<Flex>) -> TensorData {
    Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(t)).into_data()
}

/// A backward pass on `Autodiff<Flex>` through our functional op and through burn's: output
/// and the gradients of input, weight and bias.
fn check_autodiff(case: &Case) {
    let run = |ours: bool| {
        let x = tensor::<Ad, 4>(
            [case.batch, case.cin, case.size[0], case.size[1]],
            case.seed,
        )
        .require_grad();
        let w = tensor::<Ad, 4>(case.weight_shape(), case.seed ^ 1).require_grad();
        let b = tensor::<Ad, 1>([case.cout], case.seed ^ 2).require_grad();
        let bias = case.bias.then(|| b.clone());
        let y = match (case.transposed, ours) {
            (false, true) => conv2d(x.clone(), w.clone(), bias, case.conv_options()),
            (false, false) => {
                burn::tensor::module::conv2d(x.clone(), w.clone(), bias, case.conv_options())
            }
            (true, true) => conv_transpose2d(x.clone(), w.clone(), bias, case.transposed_options()),
            (true, false) => burn::tensor::module::conv_transpose2d(
                x.clone(),
                w.clone(),
                bias,
                case.transposed_options(),
            ),
        };
        let r = tensor::<Ad, 4>(case.output_shape(), case.seed ^ 3);
        let grads = y.clone().mul(r).sum().backward();
        let gx = x.grad(&grads).expect("x takes part").into_data();
        let gw = w.grad(&grads).expect("w takes part").into_data();
        let gb = case
            .bias
            .then(|| b.grad(&grads).expect("b takes part").into_data());
        (y.into_data(), gx, gw, gb)
    };
    let (ours, theirs) = (run(true), run(false));
    check(&ours.0, &theirs.0, "autodiff forward", case);
    check(&ours.1, &theirs.1, "autodiff input grad", case);
    check(&ours.2, &theirs.2, "autodiff weight grad", case);
    if let (Some(a), Some(b)) = (&ours.3, &theirs.3) {
        check(a, b, "autodiff bias grad", case);
    }
}

/// The fused inference block (convolution, batch normalisation with given statistics, leaky
/// ReLU) against the three ops one after the other on `Flex`: the same values, bit for bit.
fn check_fused(case: &Case) {
    let x = || {
        tensor::<Flex, 4>(
            [case.batch, case.cin, case.size[0], case.size[1]],
            case.seed,
        )
    };
    let w = || tensor::<Flex, 4>(case.weight_shape(), case.seed ^ 1);
    let bias = || {
        case.bias
            .then(|| prim(tensor::<Flex, 1>([case.cout], case.seed ^ 2)))
    };
    let norm = || NormInference::<Flex> {
        gamma: prim(tensor::<Flex, 1>([case.cout], case.seed ^ 4)),
        beta: prim(tensor::<Flex, 1>([case.cout], case.seed ^ 5)),
        mean: prim(tensor::<Flex, 1>([case.cout], case.seed ^ 6)),
        var: prim(
            tensor::<Flex, 1>([case.cout], case.seed ^ 7)
                .abs()
                .add_scalar(0.1),
        ),
        epsilon: 1e-5,
    };
    let slope = 0.01;
    type M = Flex;
    let (fused, conv) = if case.transposed {
        let o = case.transposed_options();
        (
            M::conv_transpose2d_norm_leaky(prim(x()), prim(w()), bias(), o.clone(), norm(), slope),
            M::conv_transpose2d_forward(prim(x()), prim(w()), bias(), o),
        )
    } else {
        let o = case.conv_options();
        (
            M::conv2d_norm_leaky(prim(x()), prim(w()), bias(), o.clone(), norm(), slope),
            M::conv2d_forward(prim(x()), prim(w()), bias(), o),
        )
    };
    let n = norm();
    let apart = M::leaky_relu_forward(
        M::batch_norm_inference(conv, n.gamma, n.beta, n.mean, n.var, n.epsilon),
        slope,
    );
    let (fused, apart) = (data(fused), data(apart));
    assert_eq!(fused.shape, apart.shape, "{case:?}");
    let bits = |d: &TensorData| -> Vec<u32> {
        d.to_vec::<f32>()
            .expect("f32")
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    assert!(
        bits(&fused) == bits(&apart),
        "fused block differs: {case:?}"
    );
}

prop_compose! {
    fn case()(
        transposed in any::<bool>(),
        batch in 1usize..=8,
        cin in 1usize..=64,
        cout in 1usize..=64,
        size in (1usize..=12, 1usize..=12),
        kernel in (1usize..=5, 1usize..=5),
        stride in (1usize..=2, 1usize..=2),
        padding in (0usize..=2, 0usize..=2),
        padding_out in (0usize..=1, 0usize..=1),
        bias in any::<bool>(),
        seed in any::<u64>(),
    ) -> Case {
        let stride = [stride.0, stride.1];
        Case {
            transposed,
            batch,
            cin,
            cout,
            size: [size.0, size.1],
            kernel: [kernel.0, kernel.1],
            stride,
            padding: [padding.0, padding.1],
            // valid only below the stride
            padding_out: [padding_out.0 % stride[0], padding_out.1 % stride[1]],
            bias,
            seed,
        }
    }
}

/// Whether the output is non-empty.
fn valid(c: &Case) -> bool {
    (0..2).all(|a| {
        if c.transposed {
            (c.size[a] - 1) * c.stride[a] + c.kernel[a] + c.padding_out[a] > 2 * c.padding[a]
        } else {
            c.size[a] + 2 * c.padding[a] >= c.kernel[a]
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ops_match_burn(c in case().prop_filter("non-empty output", valid)) {
        check_ops(&c);
    }

    #[test]
    fn autodiff_matches_burn(c in case().prop_filter("non-empty output", valid)) {
        check_autodiff(&c);
    }

    #[test]
    fn fused_block_is_the_three_ops(c in case().prop_filter("non-empty output", valid)) {
        check_fused(&c);
    }
}

/// Every convolution of the paper's VAE (`blindspot-vae`'s backbone) at `size`, width `width`.
fn vae_layers(batch: usize, size: usize, width: f64) -> Vec<Case> {
    let c = [32.0, 64.0, 128.0, 128.0].map(|c: f64| ((c * width).round() as usize).max(1));
    let base = Case {
        transposed: false,
        batch,
        cin: 1,
        cout: 1,
        size: [size, size],
        kernel: [5, 5],
        stride: [2, 2],
        padding: [2, 2],
        padding_out: [0, 0],
        bias: true,
        seed: 7,
    };
    let down = |cin, cout, s: usize| Case {
        cin,
        cout,
        size: [s, s],
        seed: (cin * 1000 + cout + s) as u64,
        ..base.clone()
    };
    let point = |cin, cout, s: usize| Case {
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0, 0],
        ..down(cin, cout, s)
    };
    let up = |cin, cout, s: usize| Case {
        transposed: true,
        padding_out: [1, 1],
        ..down(cin, cout, s)
    };
    vec![
        down(1, c[0], size),
        down(c[0], c[1], size / 2),
        down(c[1], c[2], size / 4),
        down(c[2], c[3], size / 8),
        point(c[3], 16, size / 16),
        point(16, c[3], size / 16),
        up(c[3], c[2], size / 16),
        up(c[2], c[1], size / 8),
        up(c[1], c[0], size / 4),
        up(c[0], c[0], size / 2),
        point(c[0], 1, size),
    ]
}

#[test]
fn vae_layers_128_width_1() {
    for case in vae_layers(4, 128, 1.0) {
        check_ops(&case);
        check_autodiff(&case);
        check_fused(&case);
    }
}

#[test]
fn vae_layers_64_width_1() {
    for case in vae_layers(8, 64, 1.0) {
        check_ops(&case);
        check_autodiff(&case);
        check_fused(&case);
    }
}

#[test]
fn vae_layers_64_width_half() {
    for case in vae_layers(8, 64, 0.5) {
        check_ops(&case);
        check_autodiff(&case);
        check_fused(&case);
    }
}

/// Options the fast kernels leave to burn (groups, dilation) still give burn's values.
#[test]
fn other_options_fall_back_to_burn() {
    let x = tensor::<Ad, 4>([2, 4, 9, 9], 11).require_grad();
    let w = tensor::<Ad, 4>([6, 2, 3, 3], 12).require_grad();
    for options in [
        ConvOptions::new([1, 1], [1, 1], [1, 1], 2),
        ConvOptions::new([2, 1], [2, 1], [2, 2], 2),
    ] {
        let ours = conv2d(x.clone(), w.clone(), None, options.clone());
        let theirs = burn::tensor::module::conv2d(x.clone(), w.clone(), None, options);
        ours.into_data()
            .assert_approx_eq::<f32>(&theirs.into_data(), burn::tensor::Tolerance::default());
    }
}
