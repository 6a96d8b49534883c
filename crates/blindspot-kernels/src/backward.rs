//! [`ConvBackend`] for `Autodiff<B>`: the forward runs `B`'s kernel and registers a backward
//! step that calls `B`'s gradient kernels. The pattern is burn-autodiff 0.21's own
//! `ModuleOps::conv2d` (`src/ops/module.rs`): checkpoint the inputs, compute only the gradients
//! of the parents that require one.
//!
//! Leaky ReLU keeps its output (or, for a slope <= 0, its input) for the backward, batch
//! normalisation its input, `γ` and the batch statistics.
//!
//! The gradient methods of `Autodiff<B>` itself keep their default bodies (burn's autodiff ops):
//! they are only reached by differentiating a gradient, which no model here does.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor};

use crate::ConvBackend;

/// The options of the convolution a backward step differentiates.
#[derive(Debug, Clone)]
enum Conv {
    Plain(ConvOptions<2>),
    Transposed(ConvTransposeOptions<2>),
}

impl Conv {
    fn input_grad<B: ConvBackend>(
        &self,
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        match self {
            Conv::Plain(o) => B::conv2d_input_grad(x, weight, grad, o.clone()),
            Conv::Transposed(o) => B::conv_transpose2d_input_grad(weight, grad, o.clone()),
        }
    }

    fn weight_grad<B: ConvBackend>(
        &self,
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        match self {
            Conv::Plain(o) => B::conv2d_weight_grad(x, weight, grad, o.clone()),
            Conv::Transposed(o) => B::conv_transpose2d_weight_grad(x, weight, grad, o.clone()),
        }
    }

    fn bias_grad<B: ConvBackend>(
        &self,
        x: FloatTensor<B>,
        bias: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        match self {
            Conv::Plain(_) => B::conv2d_bias_grad(x, bias, grad),
            Conv::Transposed(_) => B::conv_transpose2d_bias_grad(x, bias, grad),
        }
    }
}

/// Backward of a convolution with a bias: parents `[x, weight, bias]`.
#[derive(Debug)]
struct ConvWithBias;

/// Backward of a convolution without a bias: parents `[x, weight]`.
#[derive(Debug)]
struct ConvNoBias;

impl<B: ConvBackend> Backward<B, 3> for ConvWithBias {
    type State = (NodeId, NodeId, NodeId, Conv);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, bias_state, conv) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        let bias = checkpointer.retrieve_node_output::<FloatTensor<B>>(bias_state);

        if let Some(node) = node_x {
            let g = conv.input_grad::<B>(x.clone(), weight.clone(), grad.clone());
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_weight {
            let g = conv.weight_grad::<B>(x.clone(), weight, grad.clone());
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_bias {
            let g = conv.bias_grad::<B>(x, bias, grad);
            grads.register::<B>(node.id, g);
        }
    }
}

impl<B: ConvBackend> Backward<B, 2> for ConvNoBias {
    type State = (NodeId, NodeId, Conv);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, conv) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);

        if let Some(node) = node_x {
            let g = conv.input_grad::<B>(x.clone(), weight.clone(), grad.clone());
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_weight {
            let g = conv.weight_grad::<B>(x, weight, grad);
            grads.register::<B>(node.id, g);
        }
    }
}

/// Runs `forward` on the inner backend and records the backward step of `conv`.
fn tracked<B: ConvBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: Option<FloatTensor<Autodiff<B, C>>>,
    conv: Conv,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match bias {
        Some(bias) => match ConvWithBias
            .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let bias_state = prep.checkpoint(&bias);
                prep.finish(
                    (x_state, weight_state, bias_state, conv),
                    forward(x.primitive, weight.primitive, Some(bias.primitive)),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(x.primitive, weight.primitive, Some(bias.primitive)))
            }
        },
        None => match ConvNoBias
            .prepare::<C>([x.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish(
                    (x_state, weight_state, conv),
                    forward(x.primitive, weight.primitive, None),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive, weight.primitive, None)),
        },
    }
}

/// Backward of leaky ReLU: parent `[x]`, state (input or output, slope).
#[derive(Debug)]
struct LeakyRelu;

impl<B: ConvBackend> Backward<B, 1> for LeakyRelu {
    type State = (FloatTensor<B>, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (y, slope) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::leaky_relu_grad(y, grad, slope));
        }
    }
}

/// Backward of batch normalisation: parents `[x, γ, β]`, state (x, γ, μ, σ², ε).
#[derive(Debug)]
struct BatchNorm;

impl<B: ConvBackend> Backward<B, 3> for BatchNorm {
    type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, mean, var, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let (dx, dgamma, dbeta) = B::batch_norm_grad(x, gamma, mean, var, epsilon, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

impl<B: ConvBackend, C: CheckpointStrategy> ConvBackend for Autodiff<B, C> {
    fn leaky_relu_forward(x: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        match LeakyRelu
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                if slope > 0.0 {
                    // the output has the input's sign: keep it, and let the input go
                    let y = B::leaky_relu_forward(x.primitive, slope);
                    prep.finish((y.clone(), slope), y)
                } else {
                    let y = B::leaky_relu_forward(x.primitive.clone(), slope);
                    prep.finish((x.primitive, slope), y)
                }
            }
            OpsKind::UnTracked(prep) => prep.finish(B::leaky_relu_forward(x.primitive, slope)),
        }
    }

    fn batch_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = BatchNorm
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful();
        let (y, mean, var) = match prep {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (y, mean, var) =
                    B::batch_norm_forward(x.primitive, gamma.primitive, beta.primitive, epsilon);
                let state = (x_state, gamma_state, mean.clone(), var.clone(), epsilon);
                (prep.finish(state, y), mean, var)
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) =
                    B::batch_norm_forward(x.primitive, gamma.primitive, beta.primitive, epsilon);
                (prep.finish(y), mean, var)
            }
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }

    fn conv2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let conv = Conv::Plain(options.clone());
        tracked::<B, C>(x, weight, bias, conv, |x, w, b| {
            B::conv2d_forward(x, w, b, options)
        })
    }

    fn conv_transpose2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        let conv = Conv::Transposed(options.clone());
        tracked::<B, C>(x, weight, bias, conv, |x, w, b| {
            B::conv_transpose2d_forward(x, w, b, options)
        })
    }
}
