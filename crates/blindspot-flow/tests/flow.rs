//! Flow invertibility, exact log-determinant (against finite differences), likelihood
//! bookkeeping and learning, on the CPU test backend.

use blindspot_core::InvalidConfig;
use blindspot_core::{
    Batch, Duration, InMemorySlices, Model, ModelStat, TrainConfig, Trainer, seeded,
};
use blindspot_flow::{Flow, FlowConfig, FlowFamily, FlowSettings, squeeze, unsqueeze};
use blindspot_testkit::{TestAutodiffBackend, TestBackend, device, phantom_slices};
use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = TestBackend;

/// Moves every parameter away from the identity-like initialisation.
struct Jitter(ChaCha8Rng, f32);
impl ModuleMapper<B> for Jitter {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (rng, scale) = (&mut self.0, self.1);
        param.map(|t| {
            let dims = t.dims();
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
            let noise = Tensor::<B, D>::from_data(TensorData::new(v, dims), &t.device());
            t + noise
        })
    }
}

fn jittered(size: usize, levels: usize, seed: u64) -> Flow<B> {
    let d = device();
    seeded::<B>(&d, seed);
    let flow = FlowConfig::new()
        .with_input_size(size)
        .with_levels(levels)
        .with_steps_per_level(2)
        .with_hidden(8)
        .init::<B>(&d)
        .unwrap();
    flow.map(&mut Jitter(ChaCha8Rng::seed_from_u64(seed), 0.2))
}

fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn random_images(n: usize, size: usize, seed: u64) -> Tensor<B, 4> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * size * size)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    Tensor::from_data(TensorData::new(v, [n, 1, size, size]), &device())
}

#[test]
fn squeeze_round_trips() {
    let x = random_images(2, 8, 1);
    let s = squeeze(x.clone());
    assert_eq!(s.dims(), [2, 4, 4, 4]);
    assert_eq!(host(unsqueeze(s)), host(x));
}

#[test]
fn x_to_z_to_x_within_1e_4() {
    let _rng = blindspot_testkit::backend_rng();
    let flow = jittered(16, 3, 3);
    let x = random_images(3, 16, 2);
    let (zs, _) = flow.forward(x.clone());
    let dims: usize = zs
        .iter()
        .map(|z| z.dims()[1..].iter().product::<usize>())
        .sum();
    assert_eq!(dims, 16 * 16, "the flow keeps the dimension");
    let back = flow.inverse(zs);
    let err = host(back)
        .iter()
        .zip(host(x))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-4, "reconstruction error {err}");
}

/// log|det| of a row-major n×n matrix by LU with partial pivoting (f64).
fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut acc = 0.0;
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs()))
            .unwrap();
        for k in 0..n {
            a.swap(col * n + k, piv * n + k);
        }
        let p = a[col * n + col];
        acc += p.abs().ln();
        for r in col + 1..n {
            let f = a[r * n + col] / p;
            for k in col..n {
                a[r * n + k] -= f * a[col * n + k];
            }
        }
    }
    acc
}

#[test]
fn log_determinant_matches_finite_differences() {
    let _rng = blindspot_testkit::backend_rng();
    let flow = jittered(4, 2, 5);
    let x0 = host(random_images(1, 4, 6));
    let n = 16;
    let z_of = |x: &[f32]| -> Vec<f64> {
        let t = Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), [1, 1, 4, 4]), &device());
        let (zs, _) = flow.forward(t);
        zs.into_iter().flat_map(host).map(f64::from).collect()
    };
    let eps = 1e-2f32;
    let mut jac = vec![0f64; n * n];
    for j in 0..n {
        let (mut xp, mut xm) = (x0.clone(), x0.clone());
        xp[j] += eps;
        xm[j] -= eps;
        let (zp, zm) = (z_of(&xp), z_of(&xm));
        for i in 0..n {
            jac[i * n + j] = (zp[i] - zm[i]) / (2.0 * f64::from(eps));
        }
    }
    let numeric = log_abs_det(jac, n);
    let t = Tensor::<B, 4>::from_data(TensorData::new(x0, [1, 1, 4, 4]), &device());
    let analytic = f64::from(host(flow.forward(t).1)[0]);
    assert!(
        analytic.abs() > 0.1,
        "the jittered flow is not volume preserving: {analytic}"
    );
    assert!(
        (numeric - analytic).abs() < 2e-2,
        "finite differences {numeric} vs {analytic}"
    );
}

#[test]
fn nll_map_sums_to_the_exact_likelihood_and_bits_per_dim_agree() {
    let _rng = blindspot_testkit::backend_rng();
    let flow = jittered(8, 2, 7);
    let x = random_images(2, 8, 8);
    let masks = x.ones_like();
    let out = flow
        .infer(
            &Batch { images: x, masks },
            &mut ChaCha8Rng::seed_from_u64(0),
        )
        .into_host()
        .unwrap();
    let ll = out.stat(ModelStat::LogLikelihood).unwrap();
    let bpd = out.stat(ModelStat::BitsPerDim).unwrap();
    for k in 0..2 {
        let map_sum: f64 = out.map_of(k).iter().map(|&v| f64::from(v)).sum();
        assert!(
            (map_sum + ll[k]).abs() < 1e-3 * ll[k].abs().max(1.0),
            "{map_sum} vs {}",
            ll[k]
        );
        assert!((bpd[k] + ll[k] / (64.0 * std::f64::consts::LN_2)).abs() < 1e-4);
    }
}

#[test]
fn identity_flow_gives_the_standard_normal_likelihood() {
    let _rng = blindspot_testkit::backend_rng();
    // Freshly initialised, the flow is a fixed permutation (couplings output zero shift and
    // scale sigmoid(2) though): check against the closed form with those scales.
    let d = device();
    let flow = FlowConfig::new()
        .with_input_size(4)
        .with_levels(1)
        .with_steps_per_level(1)
        .with_hidden(4)
        .init::<B>(&d)
        .unwrap();
    let x = Tensor::<B, 4>::zeros([1, 1, 4, 4], &d);
    let (ll, _) = flow.log_likelihood(x);
    let s = 1.0 / (1.0 + (-2.0f64).exp());
    // z = 0 everywhere; the coupling scales 2 of 4 channels at 2x2 positions: 8 factors.
    let expected = -16.0 * 0.5 * (2.0 * std::f64::consts::PI).ln() + 8.0 * s.ln();
    assert!((f64::from(host(ll)[0]) - expected).abs() < 1e-4);
}

#[test]
fn training_lowers_bits_per_dim() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let (i, m) = phantom_slices(16, 16, 9);
    let train = InMemorySlices::new(i, m, [16, 16]).unwrap();
    seeded::<TestAutodiffBackend>(&d, 3);
    let flow = FlowConfig::new()
        .with_input_size(16)
        .with_levels(2)
        .with_steps_per_level(2)
        .with_hidden(16)
        .init::<TestAutodiffBackend>(&d)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        learning_rate: 1e-2,
        batch_size: 8,
        duration: Duration::Steps(30),
        checkpoint_every: 0,
        log_every: 1,
        progress: false,
        ..TrainConfig::default()
    };
    Trainer::new(cfg, dir.path())
        .unwrap()
        .fit(flow, &train, None, &d)
        .unwrap();
    let log = blindspot_core::read_log(dir.path()).unwrap();
    let (first, last) = (log[0].loss.unwrap(), log.last().unwrap().loss.unwrap());
    assert!(last < first - 0.5, "bits/dim {first} -> {last}");
}

#[test]
fn invalid_configs_name_the_key() {
    let bad = FlowConfig::new().with_input_size(20).with_levels(3);
    assert!(matches!(
        bad.validate(),
        Err(InvalidConfig {
            key: "input_size",
            ..
        })
    ));
    let bad = FlowConfig::new().with_levels(0);
    assert!(matches!(
        bad.validate(),
        Err(InvalidConfig { key: "levels", .. })
    ));
}

/// The flow's counterpart of the autoencoders' memorisation test: trained on 8 slices that
/// differ from each other, it must give them a far higher likelihood than 8 held-out slices of
/// the same kind, so it reads its input rather than a population average.
#[test]
fn memorises_eight_slices() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let n = 8;
    let (i, m) = blindspot_testkit::textured_slices(n, 16, 31);
    let train = InMemorySlices::new(i.clone(), m.clone(), [16, 16]).unwrap();
    seeded::<TestAutodiffBackend>(&d, 5);
    let flow = FlowConfig::new()
        .with_input_size(16)
        .with_levels(2)
        .with_steps_per_level(2)
        .with_hidden(32)
        .init::<TestAutodiffBackend>(&d)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        learning_rate: 3e-3,
        batch_size: 8,
        duration: Duration::Steps(300),
        checkpoint_every: 0,
        log_every: 50,
        progress: false,
        ..TrainConfig::default()
    };
    let model = Trainer::new(cfg, dir.path())
        .unwrap()
        .fit(flow, &train, None, &d)
        .unwrap()
        .model
        .valid();
    let bpd = |images: Vec<f32>, masks: Vec<f32>| -> f64 {
        let batch = Batch::<B>::from_host(images, masks, [n, 16, 16], &d).unwrap();
        let out = model
            .infer(&batch, &mut ChaCha8Rng::seed_from_u64(0))
            .into_host()
            .unwrap();
        out.stat(ModelStat::BitsPerDim).unwrap().iter().sum::<f64>() / n as f64
    };
    let (held_i, held_m) = blindspot_testkit::textured_slices(n, 16, 32);
    let (seen, held) = (bpd(i, m), bpd(held_i, held_m));
    assert!(
        seen < held - 1.0,
        "bits/dim {seen:.2} on the training slices, {held:.2} on held-out ones"
    );
}

#[test]
fn the_family_declares_the_statistics_its_inference_reports() {
    blindspot_testkit::check_family_statistics::<FlowFamily>(&FlowSettings {
        width: 0.25,
        levels: 2,
        steps_per_level: 1,
    });
}
