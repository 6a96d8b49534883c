//! Behaviour of the VAE on the CPU test backend: parameter count, shapes, loss terms,
//! learning, lesion sensitivity, training loop (resume, checkpoints, NaN guard).

use blindspot_core::{
    Batch, Checkpoints, Duration, InMemorySlices, InvalidConfig, Model, ModelStat, TrainConfig,
    Trainer, Which, load_model, save_model, seeded, trainable_params,
};
use blindspot_testkit::{TestAutodiffBackend, TestBackend, add_blob, device, phantom_slices};
use blindspot_vae::{BackboneConfig, BetaSchedule, VaeConfig, VaeFamily, VaeSettings};
use burn::module::{AutodiffModule, Module};
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny(size: usize) -> VaeConfig {
    VaeConfig::new()
        .with_backbone(BackboneConfig::new().with_input_size(size).with_width(0.25))
        .with_latent_dim(16)
        .with_beta(BetaSchedule::Constant { beta: 0.01 })
}

fn weights<M: Module<TestBackend>>(m: &M) -> Vec<f32> {
    let mut out = Vec::new();
    struct V<'a>(&'a mut Vec<f32>);
    impl burn::module::ModuleVisitor<TestBackend> for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<TestBackend, D>>) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    m.visit(&mut V(&mut out));
    out
}

#[test]
fn paper_architecture_has_1_758_481_trainable_parameters() {
    let _rng = blindspot_testkit::backend_rng();
    let vae = VaeConfig::new()
        .init::<TestAutodiffBackend>(&device())
        .unwrap();
    assert_eq!(trainable_params(&vae), 1_758_481);
    // BatchNorm running statistics are stored but not trained: 2 x (368 + 384) of them.
    assert_eq!(vae.num_params(), 1_758_481 + 2 * (368 + 384));
}

#[test]
fn output_shapes_for_every_input_size() {
    let _rng = blindspot_testkit::backend_rng();
    for size in [64, 128, 256] {
        let cfg = VaeConfig::new()
            .with_backbone(
                BackboneConfig::new()
                    .with_input_size(size)
                    .with_width(0.125),
            )
            .with_latent_dim(8);
        let vae = cfg.init::<TestBackend>(&device()).unwrap();
        let x = Tensor::<TestBackend, 4>::zeros([2, 1, size, size], &device());
        let out = vae.forward(x, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(out.x_hat.dims(), [2, 1, size, size]);
        assert_eq!(out.mu.dims(), [2, 8]);
        assert_eq!(out.z.dims(), [2, 8]);
    }
}

#[test]
fn invalid_configs_name_the_key() {
    let _rng = blindspot_testkit::backend_rng();
    let bad = VaeConfig::new().with_backbone(BackboneConfig::new().with_input_size(100));
    assert!(matches!(
        bad.init::<TestBackend>(&device()),
        Err(InvalidConfig {
            key: "input_size",
            ..
        })
    ));
    let bad = VaeConfig::new().with_latent_dim(0);
    assert!(matches!(
        bad.validate(),
        Err(InvalidConfig {
            key: "latent_dim",
            ..
        })
    ));
    let bad = VaeConfig::new().with_backbone(BackboneConfig::new().with_width(-1.0));
    assert!(matches!(
        bad.validate(),
        Err(InvalidConfig { key: "width", .. })
    ));
}

fn host(t: Tensor<TestBackend, 1>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn loss_is_masked_mean_l1_plus_beta_mean_kl() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let cfg = tiny(32).with_beta(BetaSchedule::Monotonic {
        start: 0.0,
        end: 1.0,
        steps: 10,
    });
    seeded::<TestBackend>(&d, 3);
    let vae = cfg.init::<TestBackend>(&d).unwrap();
    let (images, masks) = phantom_slices(2, 32, 1);
    let batch =
        Batch::<TestBackend>::from_host(images.clone(), masks.clone(), [2, 32, 32], &d).unwrap();
    let out = vae.loss(&batch, 5, &mut ChaCha8Rng::seed_from_u64(9));
    // The same noise again: recompute the terms by hand on the host.
    let fw = vae.forward(batch.images.clone(), &mut ChaCha8Rng::seed_from_u64(9));
    let xh = fw.x_hat.into_data().to_vec::<f32>().unwrap();
    let mu = fw.mu.into_data().to_vec::<f32>().unwrap();
    let lv = fw.logvar.into_data().to_vec::<f32>().unwrap();
    let mut rec = [0f64; 2];
    let mut kl = [0f64; 2];
    for k in 0..2 {
        let (mut s, mut m) = (0.0, 0.0);
        for i in k * 1024..(k + 1) * 1024 {
            s += f64::from((images[i] - xh[i]).abs() * masks[i]);
            m += f64::from(masks[i]);
        }
        rec[k] = s / m.max(1.0);
        let mut acc = 0.0;
        for j in k * 16..(k + 1) * 16 {
            let (u, v) = (f64::from(mu[j]), f64::from(lv[j]));
            acc += 1.0 + v - u * u - v.exp();
        }
        kl[k] = -0.5 * acc / 16.0;
    }
    let terms: Vec<Vec<f32>> = out.terms.into_iter().map(|(_, t)| host(t)).collect();
    for k in 0..2 {
        assert!((f64::from(terms[0][k]) - rec[k]).abs() < 1e-4);
        assert!((f64::from(terms[1][k]) - kl[k]).abs() < 1e-4);
        assert!(kl[k] >= 0.0);
    }
    let expected = (rec[0] + rec[1]) / 2.0 + 0.5 * (kl[0] + kl[1]) / 2.0;
    assert!((f64::from(host(out.loss)[0]) - expected).abs() < 1e-4);
}

#[test]
fn masking_starts_at_the_configured_step() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    seeded::<TestBackend>(&d, 4);
    let vae = tiny(32)
        .with_mask_start_step(3)
        .init::<TestBackend>(&d)
        .unwrap();
    let (images, masks) = phantom_slices(1, 32, 2);
    let batch = Batch::<TestBackend>::from_host(images, masks, [1, 32, 32], &d).unwrap();
    let rec = |step| {
        host(
            vae.loss(&batch, step, &mut ChaCha8Rng::seed_from_u64(1))
                .terms[0]
                .1
                .clone(),
        )[0]
    };
    let all = Batch::<TestBackend> {
        images: batch.images.clone(),
        masks: batch.masks.ones_like(),
    };
    let rec_all = host(
        vae.loss(&all, 10, &mut ChaCha8Rng::seed_from_u64(1)).terms[0]
            .1
            .clone(),
    )[0];
    assert_eq!(rec(2), rec_all, "before the start step every pixel counts");
    assert_ne!(
        rec(3),
        rec(2),
        "from the start step on only the brain counts"
    );
}

fn phantom_source(n: usize, seed: u64) -> InMemorySlices {
    let (images, masks) = phantom_slices(n, 32, seed);
    InMemorySlices::new(images, masks, [32, 32]).unwrap()
}

fn quick(steps: u64) -> TrainConfig {
    TrainConfig {
        learning_rate: 3e-3,
        batch_size: 8,
        duration: Duration::Steps(steps),
        seed: 11,
        val_every: 0,
        checkpoint_every: 0,
        log_every: 1,
        progress: false,
        ..TrainConfig::default()
    }
}

#[test]
fn training_lowers_the_loss_and_reconstructs_healthy_tissue_better_than_lesions() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    let train = phantom_source(32, 5);
    seeded::<TestAutodiffBackend>(&d, 1);
    let vae = tiny(32).init::<TestAutodiffBackend>(&d).unwrap();
    let fitted = Trainer::new(quick(60), dir.path())
        .unwrap()
        .fit(vae, &train, None, &d)
        .unwrap();
    let log = blindspot_core::read_log(dir.path()).unwrap();
    // every record carries the KL weight of its step
    assert!(
        log.iter()
            .all(|l| l.terms.contains(&("beta".to_owned(), 0.01)))
    );
    let first: f64 = log[..5].iter().filter_map(|l| l.loss).sum::<f64>() / 5.0;
    let last: f64 = log[log.len() - 5..]
        .iter()
        .filter_map(|l| l.loss)
        .sum::<f64>()
        / 5.0;
    assert!(last < 0.6 * first, "loss {first} -> {last}");

    // A held-out phantom with a bright blob: the residual is larger on the blob.
    let (mut images, masks) = phantom_slices(1, 32, 77);
    let blob = add_blob(&mut images, &masks, 32, 0, (16.0, 14.0), 2.5, 3.0);
    let model = fitted.model.valid();
    let batch =
        Batch::<TestBackend>::from_host(images.clone(), masks.clone(), [1, 32, 32], &d).unwrap();
    let out = model
        .infer(&batch, &mut ChaCha8Rng::seed_from_u64(2))
        .into_host()
        .unwrap();
    let (mut on, mut n_on, mut off, mut n_off) = (0.0, 0, 0.0, 0);
    for i in 0..1024 {
        let r = (images[i] - out.map[i]).abs();
        if blob[i] {
            on += r;
            n_on += 1;
        } else if masks[i] > 0.5 {
            off += r;
            n_off += 1;
        }
    }
    let (on, off) = (on / n_on as f32, off / n_off as f32);
    assert!(on > 2.0 * off, "lesion residual {on} vs healthy {off}");
    assert_eq!(out.stat(ModelStat::RecErr).unwrap().len(), 1);
    let kl = out.stat(ModelStat::KlDiv).unwrap()[0];
    assert!(kl.is_finite() && kl >= 0.0, "kl {kl}");
    let reported: Vec<ModelStat> = out.stats.iter().map(|(s, _)| *s).collect();
    assert_eq!(reported, [ModelStat::RecErr, ModelStat::KlDiv]);
    assert_eq!(out.latent_mean.as_ref().unwrap().0, 16);
}

#[test]
fn resumed_training_matches_uninterrupted_training() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let train = phantom_source(24, 6);
    let val = phantom_source(8, 7);
    let cfg = |steps| TrainConfig {
        val_every: 2,
        checkpoint_every: 2,
        ..quick(steps)
    };
    // Every run starts from the same saved weights (the backend's generator is shared by the
    // tests running in parallel, so seeding it is not enough here).
    let start = tempfile::tempdir().unwrap();
    let start = start.path().join("start.safetensors");
    save_model(&tiny(32).init::<TestAutodiffBackend>(&d).unwrap(), &start).unwrap();
    let init = || load_model(tiny(32).init::<TestAutodiffBackend>(&d).unwrap(), &start).unwrap();
    // 3 batches per epoch: 7 steps cross two epoch boundaries.
    let a = tempfile::tempdir().unwrap();
    let full = Trainer::new(cfg(7), a.path())
        .unwrap()
        .fit(init(), &train, Some(&val), &d)
        .unwrap();

    let b = tempfile::tempdir().unwrap();
    let part = Trainer::new(cfg(4), b.path())
        .unwrap()
        .fit(init(), &train, Some(&val), &d)
        .unwrap();
    assert_eq!(part.steps, 4);
    let resumed = Trainer::new(cfg(7), b.path())
        .unwrap()
        .fit(init(), &train, Some(&val), &d)
        .unwrap();
    assert_eq!(resumed.resumed_from, 4);
    assert_eq!(resumed.steps, 7);
    assert_eq!(resumed.last_loss, full.last_loss);
    assert_eq!(
        weights(&resumed.model.valid()),
        weights(&full.model.valid())
    );
    assert_eq!(resumed.best_val, full.best_val);

    let log_a = blindspot_core::read_log(a.path()).unwrap();
    let log_b = blindspot_core::read_log(b.path()).unwrap();
    let losses = |l: &[blindspot_core::LogLine]| {
        l.iter()
            .map(|x| (x.step, x.loss, x.val_loss))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&log_a), losses(&log_b));

    // best and last checkpoints load back into a fresh model.
    let ck = Checkpoints::new(b.path());
    let last = ck
        .load_model(tiny(32).init::<TestBackend>(&d).unwrap(), Which::Last)
        .unwrap();
    assert_eq!(weights(&last), weights(&full.model.valid()));
    assert!(ck.find(Which::Best).unwrap().is_some());

    // A different learning rate cannot silently continue this run.
    let other = TrainConfig {
        learning_rate: 1.0,
        ..cfg(9)
    };
    let err = Trainer::new(other, b.path())
        .unwrap()
        .fit(init(), &train, None, &d)
        .unwrap_err();
    assert!(err.to_string().contains("learning_rate"), "{err}");
}

#[test]
fn nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    let (mut images, masks) = phantom_slices(16, 32, 8);
    let train_ok = InMemorySlices::new(images.clone(), masks.clone(), [32, 32]).unwrap();
    seeded::<TestAutodiffBackend>(&d, 2);
    let vae = tiny(32).init::<TestAutodiffBackend>(&d).unwrap();
    let cfg = TrainConfig {
        checkpoint_every: 2,
        ..quick(2)
    };
    Trainer::new(cfg.clone(), dir.path())
        .unwrap()
        .fit(vae, &train_ok, None, &d)
        .unwrap();
    let good = Checkpoints::new(dir.path()).get(Which::Last).unwrap();
    let good_bytes = std::fs::read(good.join(blindspot_core::MODEL_FILE)).unwrap();

    images[5] = f32::NAN;
    let train_bad = InMemorySlices::new(images, masks, [32, 32]).unwrap();
    let vae = tiny(32).init::<TestAutodiffBackend>(&d).unwrap();
    let err = Trainer::new(
        TrainConfig {
            duration: Duration::Steps(20),
            ..cfg
        },
        dir.path(),
    )
    .unwrap()
    .fit(vae, &train_bad, None, &d)
    .unwrap_err();
    match err {
        blindspot_core::Error::NonFiniteLoss {
            last_checkpoint, ..
        } => {
            assert_eq!(last_checkpoint.as_deref(), Some(good.as_path()))
        }
        other => panic!("expected NonFiniteLoss, got {other}"),
    }
    assert_eq!(Checkpoints::new(dir.path()).get(Which::Last).unwrap(), good);
    assert_eq!(
        std::fs::read(good.join(blindspot_core::MODEL_FILE)).unwrap(),
        good_bytes
    );
}

#[test]
fn safetensors_round_trip_and_mismatch_errors() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vae.safetensors");
    seeded::<TestBackend>(&d, 5);
    let vae = tiny(32).init::<TestBackend>(&d).unwrap();
    save_model(&vae, &path).unwrap();
    let fresh = tiny(32).init::<TestBackend>(&d).unwrap();
    assert_ne!(weights(&fresh), weights(&vae));
    let back = load_model(fresh, &path).unwrap();
    assert_eq!(weights(&back), weights(&vae));

    let wider = tiny(32)
        .with_backbone(BackboneConfig::new().with_input_size(32).with_width(0.5))
        .init::<TestBackend>(&d)
        .unwrap();
    let err = load_model(wider, &path).expect_err("shape mismatch must fail");
    assert!(err.to_string().contains("vae.safetensors"), "{err}");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    assert!(load_model(tiny(32).init::<TestBackend>(&d).unwrap(), &path).is_err());
}

#[test]
fn several_samples_differ_and_seeds_reproduce() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    seeded::<TestBackend>(&d, 6);
    let vae = tiny(32).init::<TestBackend>(&d).unwrap();
    let (images, masks) = phantom_slices(2, 32, 3);
    let batch = Batch::<TestBackend>::from_host(images, masks, [2, 32, 32], &d).unwrap();
    let s = vae.infer_samples(&batch, 3, &mut ChaCha8Rng::seed_from_u64(4));
    assert_eq!(s.len(), 3);
    let h: Vec<_> = s.into_iter().map(|i| i.into_host().unwrap()).collect();
    assert_ne!(h[0].map, h[1].map);
    let again = vae
        .infer(&batch, &mut ChaCha8Rng::seed_from_u64(4))
        .into_host()
        .unwrap();
    assert_eq!(again, h[0]);
}

#[test]
fn ensembles_train_and_load_as_one_unit() {
    let _rng = blindspot_testkit::backend_rng();
    use blindspot_core::Ensemble;
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    let train = phantom_source(16, 12);
    let cfg = TrainConfig {
        seed: 100,
        ..quick(3)
    };
    let fitted = Ensemble::fit::<TestAutodiffBackend, _>(
        3,
        &cfg,
        dir.path(),
        |_seed| tiny(32).init::<TestAutodiffBackend>(&d).unwrap(),
        &train,
        None,
        &d,
    )
    .unwrap();
    assert_eq!(fitted.len(), 3);
    let w: Vec<_> = fitted.valid().members.iter().map(weights).collect();
    assert_ne!(w[0], w[1], "members differ by seed");
    let loaded = Ensemble::load::<TestBackend>(dir.path(), 3, Which::Last, |_| {
        Ok(tiny(32).init::<TestBackend>(&d)?)
    })
    .unwrap();
    for (a, b) in loaded.members.iter().zip(&w) {
        assert_eq!(&weights(a), b);
    }
    let (images, masks) = phantom_slices(2, 32, 13);
    let batch = Batch::<TestBackend>::from_host(images, masks, [2, 32, 32], &d).unwrap();
    let outs = loaded.infer(&batch, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(outs.len(), 3);
    assert!(
        Ensemble::load::<TestBackend>(dir.path(), 4, Which::Last, |_| {
            Ok(tiny(32).init::<TestBackend>(&d)?)
        })
        .is_err()
    );
}

/// Mean absolute difference of two `[n, 32, 32]` image stacks inside `masks`, per slice.
fn masked_mae_per_slice(a: &[f32], b: &[f32], masks: &[f32], n: usize) -> Vec<f64> {
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
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The checks that rule out a defect making every reconstruction the population mean: trained
/// on 8 slices that differ from each other, the VAE (with a small KL weight, so that the
/// objective allows it) must reconstruct each one far better than their mean image does, and
/// closer to itself than to any other; training mode (batch statistics) and evaluation mode
/// (running statistics) must agree on the same inputs; and the decoder must answer to `z`.
#[test]
fn memorises_eight_slices_reading_its_input_in_both_modes() {
    let _rng = blindspot_testkit::backend_rng();
    let d = device();
    let n = 8;
    let (images, masks) = blindspot_testkit::textured_slices(n, 32, 21);
    let train = InMemorySlices::new(images.clone(), masks.clone(), [32, 32]).unwrap();
    seeded::<TestAutodiffBackend>(&d, 3);
    let vae = tiny(32)
        .with_beta(BetaSchedule::Constant { beta: 1e-4 })
        .init::<TestAutodiffBackend>(&d)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fitted = Trainer::new(quick(300), dir.path())
        .unwrap()
        .fit(vae, &train, None, &d)
        .unwrap();

    // The input-free reference: the mean image of the 8 slices (inside each brain).
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
    let e_mean = mean(&masked_mae_per_slice(&images, &tiled, &masks, n));

    let model = fitted.model;
    let eval = model.valid();
    let batch =
        Batch::<TestBackend>::from_host(images.clone(), masks.clone(), [n, 32, 32], &d).unwrap();
    let out = eval
        .infer(&batch, &mut ChaCha8Rng::seed_from_u64(1))
        .into_host()
        .unwrap();
    let e_model = mean(&masked_mae_per_slice(&images, &out.map, &masks, n));
    assert!(
        e_model < 0.25 * e_mean,
        "reconstruction error {e_model:.3} against {e_mean:.3} for the mean image"
    );
    // each reconstruction is closest to its own input
    for k in 0..n {
        let own = &out.map[k * hw..(k + 1) * hw];
        let errs: Vec<f64> = (0..n)
            .map(|j| {
                let tile: Vec<f32> = own.to_vec();
                masked_mae_per_slice(
                    &images[j * hw..(j + 1) * hw],
                    &tile,
                    &masks[j * hw..(j + 1) * hw],
                    1,
                )[0]
            })
            .collect();
        let best = (0..n).min_by(|&a, &b| errs[a].total_cmp(&errs[b])).unwrap();
        assert_eq!(best, k, "slice {k}: errors against every input {errs:?}");
    }

    // training mode (batch statistics, on the autodiff backend) gives the same reconstructions
    let train_batch =
        Batch::<TestAutodiffBackend>::from_host(images.clone(), masks.clone(), [n, 32, 32], &d)
            .unwrap();
    let out_train = model
        .infer(&train_batch, &mut ChaCha8Rng::seed_from_u64(1))
        .into_host()
        .unwrap();
    let modes = mean(&masked_mae_per_slice(&out.map, &out_train.map, &masks, n));
    assert!(
        modes < 0.05 * e_mean,
        "train and eval mode differ by {modes:.4} (mean-image error {e_mean:.3})"
    );

    // the decoder answers to z: the latent means of two slices decode to different images
    let (dim, mu) = out.latent_mean.clone().unwrap();
    let z = Tensor::<TestBackend, 2>::from_data(burn::tensor::TensorData::new(mu, [n, dim]), &d);
    let decoded = eval.decode(z.clone()).into_data().to_vec::<f32>().unwrap();
    let swapped: Vec<f32> = (0..n)
        .flat_map(|k| decoded[((k + 1) % n) * hw..((k + 1) % n + 1) * hw].to_vec())
        .collect();
    let apart = mean(&masked_mae_per_slice(&decoded, &swapped, &masks, n));
    assert!(
        apart > 0.5 * e_mean,
        "decoding another slice's z moves the output by {apart:.3} only"
    );
    let shifted = eval
        .decode(z.add_scalar(2.0))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    // a decoder that ignored z would not move at all; measured against the images' own scale
    // (an absolute 0.1 depended on the seeded training run)
    let moved = mean(&masked_mae_per_slice(&decoded, &shifted, &masks, n));
    assert!(
        moved > 0.05 * e_mean,
        "z + 2 moves the output by {moved:.4} only (mean-image error {e_mean:.3})"
    );
}

#[test]
fn the_family_declares_the_statistics_its_inference_reports() {
    blindspot_testkit::check_family_statistics::<VaeFamily>(&VaeSettings {
        width: 0.25,
        latent_dim: 8,
        ..VaeSettings::default()
    });
}
