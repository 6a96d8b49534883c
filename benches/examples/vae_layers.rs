//! Per-layer timing of the VAE's building blocks (inference mode) on the bench backend, to see
//! which op limits the CPU speed:
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p blindspot-benches --example vae_layers

use std::time::Instant;

use blindspot_benches::Cpu;
use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
use burn::nn::{BatchNormConfig, LeakyReluConfig, PaddingConfig2d};
use burn::tensor::{Distribution, Tensor};

fn time<F: FnMut() -> Tensor<Cpu, 4>>(name: &str, mut f: F) {
    let _ = f().into_data();
    let t = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        let _ = f().into_data();
    }
    println!(
        "{name:<40} {:>9.1} ms",
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
}

fn main() {
    let d = Default::default();
    let x = Tensor::<Cpu, 4>::random([32, 1, 128, 128], Distribution::Default, &d);
    let h = Tensor::<Cpu, 4>::random([32, 32, 64, 64], Distribution::Default, &d);
    let conv1 = Conv2dConfig::new([1, 32], [5, 5])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
        .init::<Cpu>(&d);
    let conv2 = Conv2dConfig::new([32, 64], [5, 5])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
        .init::<Cpu>(&d);
    let convt = ConvTranspose2dConfig::new([32, 32], [5, 5])
        .with_stride([2, 2])
        .with_padding([2, 2])
        .with_padding_out([1, 1])
        .init::<Cpu>(&d);
    let bn = BatchNormConfig::new(32).init::<Cpu>(&d);
    let act = LeakyReluConfig::new().init();
    time("conv 1->32 5x5/2 128->64", || conv1.forward(x.clone()));
    time("conv 32->64 5x5/2 64->32", || conv2.forward(h.clone()));
    time("convT 32->32 5x5/2 64->128", || convt.forward(h.clone()));
    time("batchnorm (eval) 32x32x64x64", || bn.forward(h.clone()));
    time("leaky relu 32x32x64x64", || act.forward(h.clone()));
    time("abs*mask 32x32x64x64", || h.clone().abs() * h.clone());
}
