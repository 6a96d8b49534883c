//! `Conv2d` and `ConvTranspose2d` are burn's modules as far as checkpoints and seeds go: the same
//! parameters drawn from the same seed, and safetensors written from burn's modules load into
//! ours under the same names.

#![cfg(feature = "flex")]

use blindspot_kernels::{
    Conv2d, Conv2dConfig, ConvBackend, ConvTranspose2d, ConvTranspose2dConfig,
};
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv as burn_conv;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use burn_flex::Flex;
use burn_store::{ModuleSnapshot, SafetensorsStore};

/// Burn's layers, under the field names a model uses.
#[derive(Module, Debug)]
struct Theirs<B: Backend> {
    down: burn_conv::Conv2d<B>,
    up: burn_conv::ConvTranspose2d<B>,
}

/// Ours, under the same names.
#[derive(Module, Debug)]
struct Ours<B: ConvBackend> {
    down: Conv2d<B>,
    up: ConvTranspose2d<B>,
}

/// burn-flex's generator is process-wide: the tests of this file take turns seeding it.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn down() -> Conv2dConfig {
    Conv2dConfig::new([3, 8], [5, 5])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
}

fn up() -> ConvTranspose2dConfig {
    ConvTranspose2dConfig::new([8, 4], [5, 5])
        .with_stride([2, 2])
        .with_padding([2, 2])
        .with_padding_out([1, 1])
}

fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec().expect("f32")
}

/// A module's float parameters, in visiting order.
fn params<M: Module<Flex>>(m: &M) -> Vec<Vec<f32>> {
    struct V(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor<Flex> for V {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<Flex, D>>) {
            self.0.push(values(p.val()));
        }
    }
    let mut v = V(Vec::new());
    m.visit(&mut v);
    v.0
}

#[test]
fn same_seed_same_parameters_as_burn() {
    let _turn = turn();
    let d = Default::default();
    // burn draws a parameter when it is first read: read each model right after seeding
    Flex::seed(&d, 11);
    let theirs = params(&Theirs::<Flex> {
        down: down().to_burn().init(&d),
        up: up().to_burn().init(&d),
    });
    Flex::seed(&d, 11);
    let ours = params(&Ours::<Flex> {
        down: down().init(&d),
        up: up().init(&d),
    });
    assert!(theirs == ours, "other parameters than burn's");
    assert_eq!(ours.len(), 4, "weight and bias of each layer");
}

#[test]
fn burn_checkpoints_load_unchanged() {
    let _turn = turn();
    let d = Default::default();
    Flex::seed(&d, 12);
    let theirs = Theirs::<Flex> {
        down: down().to_burn().init(&d),
        up: up().to_burn().init(&d),
    };
    let _ = params(&theirs);
    let mut store = SafetensorsStore::from_bytes(None);
    theirs.save_into(&mut store).expect("saves");
    let bytes = store.get_bytes().expect("bytes");

    Flex::seed(&d, 13);
    let mut ours = Ours::<Flex> {
        down: down().init(&d),
        up: up().init(&d),
    };
    assert!(params(&theirs) != params(&ours));
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = ours.load_from(&mut store).expect("loads");
    assert!(
        result.errors.is_empty() && result.missing.is_empty() && result.unused.is_empty(),
        "{result:?}"
    );
    assert!(params(&theirs) == params(&ours), "loaded other values");

    // and computes what burn's layers compute
    let x = Tensor::<Flex, 4>::random([2, 3, 16, 16], Distribution::Default, &d);
    let a = theirs.up.forward(theirs.down.forward(x.clone()));
    let b = ours.up.forward(ours.down.forward(x));
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), burn::tensor::Tolerance::rel_abs(1e-4, 1e-5));
}
