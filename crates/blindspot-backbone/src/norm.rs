//! Batch normalisation over `[N, C, H, W]` maps, through `blindspot-kernels`' fused op.
//!
//! burn 0.21's `nn::BatchNorm` gathers each channel with `swap_dims(0, 1)` + `reshape`, a full
//! strided copy of the map, and its backward runs through every elementary op of the forward.
//! This module computes the same function (biased batch variance for normalising, running
//! statistics updated with `momentum`) with [`blindspot_kernels::batch_norm`]: one op forward
//! and one backward, fused on backends that have kernels for it (burn-flex), composed of
//! reductions over contiguous axes and `[N, C, 1]` broadcasts elsewhere. Its parameters and
//! running statistics carry the same names as burn's module, so checkpoints keep their keys.

use blindspot_kernels::{ConvBackend, NormTensors, batch_norm, batch_norm_inference};
use burn::config::Config;
use burn::module::{Module, Param, RunningState};
use burn::nn::Initializer;
use burn::tensor::Tensor;

/// Settings of [`BatchNorm2d`] (burn's defaults: momentum 0.1, epsilon 1e-5).
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Number of channels.
    pub num_features: usize,
    /// Numerical-stability term added to the variance.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the newest batch in the running statistics.
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl BatchNorm2dConfig {
    /// Builds the module: `gamma = 1`, `beta = 0`, running mean 0 and variance 1.
    pub fn init<B: ConvBackend>(&self, device: &B::Device) -> BatchNorm2d<B> {
        BatchNorm2d {
            gamma: Initializer::Ones.init([self.num_features], device),
            beta: Initializer::Zeros.init([self.num_features], device),
            running_mean: RunningState::new(Tensor::zeros([self.num_features], device)),
            running_var: RunningState::new(Tensor::ones([self.num_features], device)),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }
}

/// Per-channel batch normalisation of `[N, C, H, W]` maps: batch statistics when the backend
/// tracks gradients (training), running statistics otherwise (inference).
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: ConvBackend> {
    /// Learned scale, one per channel.
    pub gamma: Param<Tensor<B, 1>>,
    /// Learned shift, one per channel.
    pub beta: Param<Tensor<B, 1>>,
    /// Running mean of the batch means.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running mean of the (biased) batch variances.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f64,
    /// Numerical-stability term added to the variance.
    pub epsilon: f64,
}

impl<B: ConvBackend> BatchNorm2d<B> {
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if Self::is_inference(&x.device()) {
            self.forward_inference(x)
        } else {
            self.forward_train(x)
        }
    }

    fn forward_train(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = x.device();
        let (y, mean, var) = batch_norm(x, self.gamma.val(), self.beta.val(), self.epsilon);
        let m = self.momentum;
        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        self.running_mean.update(
            running_mean
                .mul_scalar(1.0 - m)
                .add(mean.detach().mul_scalar(m))
                .detach(),
        );
        self.running_var.update(
            running_var
                .mul_scalar(1.0 - m)
                .add(var.detach().mul_scalar(m))
                .detach(),
        );
        y
    }

    fn forward_inference(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let n = self.inference(&x.device());
        batch_norm_inference(x, n.gamma, n.beta, n.mean, n.var, n.epsilon)
    }

    /// Whether [`forward`](Self::forward) normalises with the running statistics (no autodiff
    /// on `device`): then [`inference`](Self::inference) says how.
    pub fn is_inference(device: &B::Device) -> bool {
        !B::ad_enabled(device)
    }

    /// The parameters and running statistics that normalise at inference, on `device` (for a
    /// convolution that applies them as it writes its output).
    pub fn inference(&self, device: &B::Device) -> NormTensors<B> {
        NormTensors {
            gamma: self.gamma.val(),
            beta: self.beta.val(),
            mean: self.running_mean.value().to_device(device),
            var: self.running_var.value().to_device(device),
            epsilon: self.epsilon,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blindspot_testkit::{TestAutodiffBackend as AB, TestBackend as B};
    use burn::module::AutodiffModule;
    use burn::nn::BatchNormConfig;
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Tolerance};

    fn input<Bk: Backend>(device: &Bk::Device) -> Tensor<Bk, 4> {
        Tensor::<Bk, 4>::random([3, 4, 5, 6], Distribution::Normal(1.5, 2.0), device)
    }

    /// Matches burn's `nn::BatchNorm` in training (output, input gradient, running statistics)
    /// and in inference.
    #[test]
    fn matches_burn_batch_norm() {
        let device = Default::default();
        <AB as Backend>::seed(&device, 3);
        let ours = BatchNorm2dConfig::new(4).init::<AB>(&device);
        let theirs = BatchNormConfig::new(4).init::<AB>(&device);
        // Non-trivial gamma/beta so that both affine terms are exercised.
        let gamma = Tensor::<AB, 1>::from_floats([0.5, 1.0, 2.0, -1.0], &device);
        let beta = Tensor::<AB, 1>::from_floats([0.1, -0.2, 0.3, 0.0], &device);
        let ours = BatchNorm2d {
            gamma: Param::from_tensor(gamma.clone()),
            beta: Param::from_tensor(beta.clone()),
            ..ours
        };
        let theirs = burn::nn::BatchNorm {
            gamma: Param::from_tensor(gamma),
            beta: Param::from_tensor(beta),
            ..theirs
        };
        let tol = Tolerance::<f32>::absolute(1e-4);
        for _ in 0..3 {
            // Two independent leaves holding the same values, each read right after its own
            // backward pass.
            let data = input::<AB>(&device).into_data();
            let w = input::<AB>(&device).into_data();
            let grad_of = |y: Tensor<AB, 4>, x: &Tensor<AB, 4>| {
                let g = y
                    .mul(Tensor::from_data(w.clone(), &device))
                    .sum()
                    .backward();
                x.grad(&g)
                    .expect("the input takes part in the output")
                    .into_data()
            };
            let xa = Tensor::<AB, 4>::from_data(data.clone(), &device).require_grad();
            let a = ours.forward(xa.clone());
            let xb = Tensor::<AB, 4>::from_data(data, &device).require_grad();
            let b = theirs.forward(xb.clone());
            a.to_data().assert_approx_eq::<f32>(&b.to_data(), tol);
            let ga = grad_of(a, &xa);
            let gb = grad_of(b, &xb);
            ga.assert_approx_eq::<f32>(&gb, tol);
        }
        ours.running_mean
            .value_sync()
            .to_data()
            .assert_approx_eq::<f32>(&theirs.running_mean.value_sync().to_data(), tol);
        ours.running_var
            .value_sync()
            .to_data()
            .assert_approx_eq::<f32>(&theirs.running_var.value_sync().to_data(), tol);

        let ours = ours.valid();
        let theirs = theirs.valid();
        let x = input::<B>(&device);
        ours.forward(x.clone())
            .to_data()
            .assert_approx_eq::<f32>(&theirs.forward(x).to_data(), tol);
    }

    /// A batch of one sample normalises over its pixels alone and stays finite.
    #[test]
    fn single_sample_batch() {
        let device = Default::default();
        let bn = BatchNorm2dConfig::new(4).init::<AB>(&device);
        let x = input::<AB>(&device).narrow(0, 0, 1);
        let y = bn.forward(x).into_data().to_vec::<f32>().unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
        let mean = y[..30].iter().sum::<f32>() / 30.0;
        assert!(mean.abs() < 1e-4, "channel mean after normalising: {mean}");
    }
}
