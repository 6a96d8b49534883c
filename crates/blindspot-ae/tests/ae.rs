//! Autoencoder and denoising autoencoder behaviour on the CPU test backend.

use blindspot_ae::{AeError, AutoencoderConfig, CoarseNoiseConfig};
use blindspot_core::{
    Batch, Duration, InMemorySlices, Model, TrainConfig, Trainer, seeded, stat, trainable_params,
};
use blindspot_testkit::{TestAutodiffBackend, TestBackend, device, phantom_slices};
use blindspot_vae::{BackboneConfig, VaeConfig};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny() -> AutoencoderConfig {
    AutoencoderConfig::new()
        .with_backbone(BackboneConfig::new().with_input_size(32).with_width(0.25))
        .with_latent_dim(16)
}

#[test]
fn shares_the_vae_backbone_without_the_variance_head() {
    let d = device();
    let ae = AutoencoderConfig::new()
        .init::<TestAutodiffBackend>(&d)
        .unwrap();
    let vae = VaeConfig::new().init::<TestAutodiffBackend>(&d).unwrap();
    // The VAE has one more 1024 -> 128 head (log-variance).
    assert_eq!(
        trainable_params(&vae) - trainable_params(&ae),
        1024 * 128 + 128
    );
}

#[test]
fn deterministic_inference_with_shapes() {
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
    assert_eq!(a.stat(stat::REC_ERR).unwrap().len(), 3);
    assert_eq!(
        ae.infer_samples(&batch, 5, &mut ChaCha8Rng::seed_from_u64(1))
            .len(),
        1
    );
}

#[test]
fn coarse_noise_is_smooth_and_stays_inside_the_brain() {
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
        Err(AeError::InvalidConfig {
            key: "noise.resolution",
            ..
        })
    ));
}

#[test]
fn denoising_autoencoder_learns() {
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
