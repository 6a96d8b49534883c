//! Autoencoder and denoising autoencoder behaviour on the CPU test backend.

use blindspot_ae::{
    AeFamily, AeSettings, AutoencoderConfig, CoarseNoiseConfig, DaeFamily, DaeSettings,
};
use blindspot_backbone::BackboneConfig;
use blindspot_core::{
    Batch, Duration, InMemorySlices, InvalidConfig, Model, ModelStat, TrainConfig, Trainer, seeded,
    trainable_params,
};
use blindspot_testkit::{TestAutodiffBackend, TestBackend, device, phantom_slices};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny() -> AutoencoderConfig {
    AutoencoderConfig::new()
        .with_backbone(BackboneConfig::new().with_input_size(32).with_width(0.25))
        .with_latent_dim(16)
}

/// The paper's VAE at 1×128×128 has 1,758,481 trainable parameters (docs/method.md 2.1).
const PAPER_VAE_PARAMETERS: usize = 1_758_481;

#[test]
fn shares_the_vae_backbone_without_the_variance_head() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let ae = AutoencoderConfig::new()
        .init::<TestAutodiffBackend>(&d)
        .unwrap();
    // The VAE has one more 1024 -> 128 head (log-variance).
    assert_eq!(
        PAPER_VAE_PARAMETERS - trainable_params(&ae),
        1024 * 128 + 128
    );
}

#[test]
fn deterministic_inference_with_shapes() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    seeded::<TestBackend>(&d, 1);
    let ae = tiny().init::<TestBackend>(&d).unwrap();
    assert_eq!(ae.family(), "ae");
    assert!(!ae.is_stochastic());
    let (i, m) = phantom_slices(3, 32, 1);
    let batch = Batch::<TestBackend>::from_host(i, m, [3, 32, 32], &d).unwrap();
    let a = ae
        .infer(&batch, &mut ChaCha8Rng::seed_from_u64(1))
        .into_host()
        .unwrap();
    let b = ae
        .infer(&batch, &mut ChaCha8Rng::seed_from_u64(2))
        .into_host()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!((a.n, a.height, a.width), (3, 32, 32));
    assert_eq!(a.stat(ModelStat::RecErr).unwrap().len(), 3);
    assert_eq!(
        ae.infer_samples(&batch, 5, &mut ChaCha8Rng::seed_from_u64(1))
            .len(),
        1
    );
}

#[test]
fn coarse_noise_is_smooth_and_stays_inside_the_brain() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let dae = tiny()
        .with_noise(Some(
            CoarseNoiseConfig::new().with_resolution(4).with_std(1.0),
        ))
        .init::<TestBackend>(&d)
        .unwrap();
    assert_eq!(dae.family(), "dae");
    let (_, m) = phantom_slices(2, 32, 2);
    let masks = Tensor::<TestBackend, 4>::from_data(
        burn::tensor::TensorData::new(m.clone(), [2, 1, 32, 32]),
        &d,
    );
    let noise = dae
        .coarse_noise(&masks, &mut ChaCha8Rng::seed_from_u64(3))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let mut energy = 0.0;
    let mut jump = 0.0f32;
    for k in 0..2 {
        for y in 0..32 {
            for x in 0..32 {
                let i = k * 1024 + y * 32 + x;
                if m[i] < 0.5 {
                    assert_eq!(noise[i], 0.0);
                } else {
                    energy += noise[i] * noise[i];
                    if x + 1 < 32 && m[i + 1] > 0.5 {
                        jump = jump.max((noise[i + 1] - noise[i]).abs());
                    }
                }
            }
        }
    }
    assert!(energy > 1.0, "noise is present");
    // 4x4 grid upsampled to 32: neighbouring pixels differ by far less than the noise scale.
    assert!(jump < 0.6, "coarse noise is smooth, max jump {jump}");
    let bad = tiny().with_noise(Some(CoarseNoiseConfig::new().with_resolution(0)));
    assert!(matches!(
        bad.validate(),
        Err(InvalidConfig {
            key: "noise.resolution",
            ..
        })
    ));
}

#[test]
fn denoising_autoencoder_learns() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let (i, m) = phantom_slices(16, 32, 4);
    let train = InMemorySlices::new(i, m, [32, 32]).unwrap();
    seeded::<TestAutodiffBackend>(&d, 2);
    let dae = tiny()
        .with_noise(Some(CoarseNoiseConfig::new().with_resolution(4)))
        .init::<TestAutodiffBackend>(&d)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        learning_rate: 3e-3,
        batch_size: 8,
        duration: Duration::Steps(30),
        checkpoint_every: 0,
        log_every: 1,
        progress: false,
        ..TrainConfig::default()
    };
    let fitted = Trainer::new(cfg, dir.path())
        .unwrap()
        .fit(dae, &train, None, &d)
        .unwrap();
    let log = blindspot_core::read_log(dir.path()).unwrap();
    let first = log[0].loss.unwrap();
    let last = log.last().unwrap().loss.unwrap();
    assert!(last < 0.6 * first, "{first} -> {last}");
    let _ = fitted.model.valid();
}

/// Mean over slices of the masked mean absolute difference of two `[n, h, w]` stacks.
fn masked_mae(a: &[f32], b: &[f32], masks: &[f32], n: usize) -> f64 {
    let hw = a.len() / n;
    (0..n)
        .map(|k| {
            let r = k * hw..(k + 1) * hw;
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for ((x, y), m) in a[r.clone()].iter().zip(&b[r.clone()]).zip(&masks[r]) {
                num += f64::from((x - y).abs() * m);
                den += f64::from(*m);
            }
            num / den.max(1.0)
        })
        .sum::<f64>()
        / n as f64
}

/// Rules out a defect that would make every reconstruction the population mean: trained on 8
/// slices that differ from each other, the autoencoder reconstructs each far better than their
/// mean image, in evaluation mode as in training mode, and its decoder answers to the code.
#[test]
fn memorises_eight_slices_reading_its_input_in_both_modes() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let n = 8;
    let (images, masks) = blindspot_testkit::textured_slices(n, 32, 22);
    let train = InMemorySlices::new(images.clone(), masks.clone(), [32, 32]).unwrap();
    seeded::<TestAutodiffBackend>(&d, 4);
    let ae = tiny().init::<TestAutodiffBackend>(&d).unwrap();
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
        .fit(ae, &train, None, &d)
        .unwrap()
        .model;
    let hw = 32 * 32;
    let mut mean_image = vec![0.0f32; hw];
    let mut count = vec![0.0f32; hw];
    for k in 0..n {
        for p in 0..hw {
            mean_image[p] += images[k * hw + p] * masks[k * hw + p];
            count[p] += masks[k * hw + p];
        }
    }
    for (v, c) in mean_image.iter_mut().zip(&count) {
        *v /= c.max(1.0);
    }
    let tiled: Vec<f32> = (0..n).flat_map(|_| mean_image.iter().copied()).collect();
    let e_mean = masked_mae(&images, &tiled, &masks, n);

    let eval = model.valid();
    let batch =
        Batch::<TestBackend>::from_host(images.clone(), masks.clone(), [n, 32, 32], &d).unwrap();
    let out = eval
        .infer(&batch, &mut ChaCha8Rng::seed_from_u64(1))
        .into_host()
        .unwrap();
    let e_model = masked_mae(&images, &out.map, &masks, n);
    assert!(e_model < 0.25 * e_mean, "{e_model:.3} against {e_mean:.3}");

    let train_batch =
        Batch::<TestAutodiffBackend>::from_host(images.clone(), masks.clone(), [n, 32, 32], &d)
            .unwrap();
    let out_train = model
        .infer(&train_batch, &mut ChaCha8Rng::seed_from_u64(1))
        .into_host()
        .unwrap();
    let modes = masked_mae(&out.map, &out_train.map, &masks, n);
    assert!(modes < 0.05 * e_mean, "modes differ by {modes:.4}");

    let code = eval.encode(batch.images.clone());
    let decoded = eval
        .decode(code.clone())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let swapped: Vec<f32> = (0..n)
        .flat_map(|k| decoded[((k + 1) % n) * hw..((k + 1) % n + 1) * hw].to_vec())
        .collect();
    let apart = masked_mae(&decoded, &swapped, &masks, n);
    assert!(
        apart > 0.5 * e_mean,
        "another slice's code moves the output by {apart:.3}"
    );
}

#[test]
fn the_families_declare_the_statistics_their_inference_reports() {
    blindspot_testkit::check_family_statistics::<AeFamily>(&AeSettings {
        width: 0.25,
        latent_dim: 8,
        ..AeSettings::default()
    });
    blindspot_testkit::check_family_statistics::<DaeFamily>(&DaeSettings {
        width: 0.25,
        latent_dim: 8,
        noise_resolution: 4,
        ..DaeSettings::default()
    });
}
