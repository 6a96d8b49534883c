//! The training log (`log.jsonl`, `log.csv`): one record per logged step with the loss, its
//! terms, the model's logged scalars, the learning rate, the speed and the validation loss;
//! fresh runs start fresh logs, resumed runs continue them without duplicates.

use std::path::Path;

use blindspot_core::{
    Batch, Duration, InMemorySlices, Inference, LogLine, LossOutput, MapKind, Model, ModelStat,
    TrainConfig, Trainer, load_model, masked_l1, read_log, save_model, standard_normal,
};
use blindspot_testkit::{TestAutodiffBackend, TestDevice, copy_dir, device, phantom_slices};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand_chacha::ChaCha8Rng;

const SIZE: usize = 8;

/// A tiny noisy linear autoencoder whose objective has a step-dependent weight (like the
/// VAE's beta) that it reports through `logged_scalars`.
#[derive(Module, Debug)]
struct Tiny<B: Backend> {
    enc: Linear<B>,
    dec: Linear<B>,
}

impl<B: Backend> Tiny<B> {
    fn new(device: &B::Device) -> Self {
        Self {
            enc: LinearConfig::new(SIZE * SIZE, 4).init(device),
            dec: LinearConfig::new(4, SIZE * SIZE).init(device),
        }
    }

    fn weight(step: u64) -> f64 {
        (step as f64 / 4.0).min(1.0)
    }

    /// Reconstruction and the per-sample latent energy.
    fn terms(&self, batch: &Batch<B>, rng: &mut ChaCha8Rng) -> (Tensor<B, 4>, Tensor<B, 1>) {
        let [n, _, h, w] = batch.images.dims();
        let x: Tensor<B, 2> = batch.images.clone().reshape([n, h * w]);
        let z = self.enc.forward(x);
        let noise = standard_normal::<B, 2>([n, 4], rng, &z.device()).mul_scalar(0.1);
        let energy: Tensor<B, 1> = z.clone().square().mean_dim(1).reshape([n]);
        let x_hat = self.dec.forward(z + noise).reshape([n, 1, h, w]);
        (x_hat, energy)
    }
}

impl<B: Backend> Model<B> for Tiny<B> {
    fn family(&self) -> &'static str {
        "tiny"
    }

    fn loss(&self, batch: &Batch<B>, step: u64, rng: &mut ChaCha8Rng) -> LossOutput<B> {
        let (x_hat, energy) = self.terms(batch, rng);
        let rec = masked_l1(batch.images.clone(), x_hat, batch.masks.clone());
        let loss = rec.clone().mean() + energy.clone().mean().mul_scalar(Self::weight(step));
        LossOutput {
            loss,
            terms: vec![("rec_err", rec), ("energy", energy)],
        }
    }

    fn logged_scalars(&self, step: u64) -> Vec<(&'static str, f64)> {
        vec![("beta", Self::weight(step))]
    }

    fn infer(&self, batch: &Batch<B>, rng: &mut ChaCha8Rng) -> Inference<B> {
        let (x_hat, _) = self.terms(batch, rng);
        let rec = masked_l1(batch.images.clone(), x_hat.clone(), batch.masks.clone());
        Inference {
            map: x_hat,
            map_kind: MapKind::Reconstruction,
            stats: vec![(ModelStat::RecErr, rec)],
            latent_mean: None,
        }
    }
}

fn slices(n: usize, seed: u64) -> InMemorySlices {
    let (images, masks) = phantom_slices(n, SIZE, seed);
    InMemorySlices::new(images, masks, [SIZE, SIZE]).unwrap()
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        learning_rate: 1e-2,
        batch_size: 4,
        duration: Duration::Steps(steps),
        seed: 3,
        val_every: 3,
        checkpoint_every: 4,
        log_every: 2,
        progress: false,
        ..TrainConfig::default()
    }
}

/// A file of initial weights that every run of a test loads, so that all start alike (the
/// backend's generator is shared by the tests running in parallel, so seeding it is not
/// enough). Keep the folder alive while the path is used.
fn same_start(d: &TestDevice) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let start = dir.path().join("start.safetensors");
    save_model(&Tiny::<TestAutodiffBackend>::new(d), &start).unwrap();
    (dir, start)
}

/// The rows of `log.csv`, each split into fields, after checking the header.
fn read_csv(run_dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(run_dir.join("log.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "step,epoch,loss,rec_err,energy,beta,learning_rate,images_per_s,val_loss,val_rec_err,val_energy"
        )
    );
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// A log without its timings (the only fields that differ between identical runs).
fn untimed(log: &[LogLine]) -> Vec<LogLine> {
    log.iter()
        .map(|l| LogLine {
            images_per_s: None,
            ..l.clone()
        })
        .collect()
}

#[test]
fn every_logged_step_is_one_record_in_both_logs() {
    let d = device();
    let dir = tempfile::tempdir().unwrap();
    // A stale log of an earlier run that never reached a checkpoint is replaced.
    std::fs::write(dir.path().join("log.jsonl"), "{\"step\":99,\"epoch\":0}\n").unwrap();
    let (train, val) = (slices(8, 1), slices(4, 2));
    Trainer::new(config(6), dir.path())
        .unwrap()
        .fit(Tiny::<TestAutodiffBackend>::new(&d), &train, Some(&val), &d)
        .unwrap();

    let log = read_log(dir.path()).unwrap();
    // log_every 2 gives 2, 4, 6; validation (every 3 steps) adds 3; 6 is validated and last.
    let steps: Vec<u64> = log.iter().map(|l| l.step).collect();
    assert_eq!(steps, [2, 3, 4, 6]);
    for l in &log {
        assert_eq!(l.epoch, (l.step - 1) / 2, "2 batches per epoch");
        assert!(l.loss.unwrap().is_finite());
        assert_eq!(l.learning_rate, Some(1e-2));
        assert!(l.images_per_s.unwrap() > 0.0);
        assert_eq!(l.val_loss.is_some(), l.step % 3 == 0, "step {}", l.step);
        if let Some(v) = l.val_loss {
            // the validation terms are the loss terms (not the logged scalars), and the
            // validation loss is rec + beta * energy of the validated step
            let names: Vec<&str> = l.val_terms.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["rec_err", "energy"]);
            let beta = Tiny::<TestAutodiffBackend>::weight(l.step);
            let (rec, energy) = (l.val_terms[0].1, l.val_terms[1].1);
            assert!((v - (rec + beta * energy)).abs() < 1e-5, "{l:?}");
        } else {
            assert!(l.val_terms.is_empty());
        }
        let names: Vec<&str> = l.terms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["rec_err", "energy", "beta"]);
        // the weight of the step that was taken (0-based step - 1)
        assert_eq!(
            l.terms[2].1,
            Tiny::<TestAutodiffBackend>::weight(l.step - 1)
        );
        // the loss is rec + beta * energy, up to f32 rounding
        let (rec, energy, beta) = (l.terms[0].1, l.terms[1].1, l.terms[2].1);
        assert!((l.loss.unwrap() - (rec + beta * energy)).abs() < 1e-5);
    }

    // log.csv holds the same records, absent values as empty cells. (serde_json reads floats
    // back to within an ulp, so the values are compared to that precision.)
    let rows = read_csv(dir.path());
    assert_eq!(rows.len(), log.len());
    let num = |s: &str| (!s.is_empty()).then(|| s.parse::<f64>().unwrap());
    let same = |csv: &str, json: Option<f64>| match (num(csv), json) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-14 * b.abs(),
        (a, b) => a == b,
    };
    for (row, l) in rows.iter().zip(&log) {
        assert_eq!(row.len(), 11);
        assert_eq!(row[0], l.step.to_string());
        assert_eq!(row[1], l.epoch.to_string());
        assert!(same(&row[2], l.loss), "{row:?} vs {l:?}");
        for (k, (_, v)) in l.terms.iter().enumerate() {
            assert!(same(&row[3 + k], Some(*v)), "{row:?} vs {l:?}");
        }
        assert!(same(&row[6], l.learning_rate), "{row:?} vs {l:?}");
        assert!(same(&row[7], l.images_per_s), "{row:?} vs {l:?}");
        assert!(same(&row[8], l.val_loss), "{row:?} vs {l:?}");
        for k in 0..2 {
            let v = l.val_terms.get(k).map(|(_, v)| *v);
            assert!(same(&row[9 + k], v), "{row:?} vs {l:?}");
        }
    }
}

#[test]
fn a_resumed_run_continues_the_logs_without_duplicates() {
    let d = device();
    let (train, val) = (slices(8, 1), slices(4, 2));
    let (_keep, start) = same_start(&d);
    let init = || load_model(Tiny::<TestAutodiffBackend>::new(&d), &start).unwrap();
    let cfg = || TrainConfig {
        log_every: 1,
        ..config(6)
    };

    let full = tempfile::tempdir().unwrap();
    Trainer::new(cfg(), full.path())
        .unwrap()
        .fit(init(), &train, Some(&val), &d)
        .unwrap();

    // A run that died after step 5 with its newest checkpoint at step 4: the checkpoint of
    // step 6 never happened, and a torn line ends each log.
    let died = tempfile::tempdir().unwrap();
    let ckpts = died.path().join("checkpoints");
    Trainer::new(cfg(), died.path())
        .unwrap()
        .fit(init(), &train, Some(&val), &d)
        .unwrap();
    std::fs::remove_dir_all(ckpts.join("step-0000000006")).unwrap();
    std::fs::write(
        ckpts.join("last.json"),
        r#"{"dir":"step-0000000004","step":4}"#,
    )
    .unwrap();
    let drop_last_record = |file: &str, torn: &str| {
        let path = died.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.pop();
        std::fs::write(&path, format!("{}\n{torn}", lines.join("\n"))).unwrap();
    };
    drop_last_record("log.jsonl", r#"{"step":6,"epo"#);
    drop_last_record("log.csv", "6,2,0.4");
    assert_eq!(read_csv(died.path()).len(), 6, "5 records and a torn row");

    let resumed = Trainer::new(cfg(), died.path())
        .unwrap()
        .fit(init(), &train, Some(&val), &d)
        .unwrap();
    assert_eq!(resumed.resumed_from, 4);

    let (a, b) = (
        read_log(full.path()).unwrap(),
        read_log(died.path()).unwrap(),
    );
    let steps: Vec<u64> = b.iter().map(|l| l.step).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        untimed(&a),
        untimed(&b),
        "the same records as an uninterrupted run"
    );
    let without_speed = |rows: Vec<Vec<String>>| {
        rows.into_iter()
            .map(|mut r| {
                r.remove(7);
                r
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_speed(read_csv(full.path())),
        without_speed(read_csv(died.path()))
    );
}

fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

/// An observer that writes down what training told it.
#[derive(Clone, Default)]
struct Seen(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl blindspot_core::TrainObserver for Seen {
    fn started(&mut self, _run: &str, start: blindspot_core::TrainStart, total: u64) {
        self.0
            .lock()
            .unwrap()
            .push(format!("started {start:?} of {total}"));
    }
    fn stepped(&mut self, step: u64) {
        self.0.lock().unwrap().push(format!("step {step}"));
    }
    fn warning(&mut self, message: &str) {
        self.0.lock().unwrap().push(format!("warning: {message}"));
    }
    fn stopped(&mut self, finished: bool) {
        self.0.lock().unwrap().push(format!("stopped {finished}"));
    }
}

#[test]
fn a_corrupt_checkpoint_is_never_used() {
    use blindspot_core::{Checkpoints, Error, Which};
    let d = device();
    let (train, val) = (slices(8, 1), slices(4, 2));
    let (_keep, start) = same_start(&d);
    let init = || load_model(Tiny::<TestAutodiffBackend>::new(&d), &start).unwrap();
    let fit = |dir: &Path| {
        Trainer::new(config(8), dir)
            .unwrap()
            .fit(init(), &train, Some(&val), &d)
    };

    let full = tempfile::tempdir().unwrap();
    fit(full.path()).unwrap();
    // the tensor data of the last checkpoint (the safetensors header's metadata map has no
    // fixed key order, so the header is left out)
    let final_model = |dir: &Path| {
        let bytes =
            std::fs::read(dir.join("checkpoints/step-0000000008/model.safetensors")).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + header..].to_vec()
    };
    let want = final_model(full.path());
    // the checkpoint before the last (checkpoint_every, or a new best validation loss)
    let mut steps: Vec<String> = std::fs::read_dir(full.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    assert_eq!(steps.last().map(String::as_str), Some("step-0000000008"));
    let older = steps[steps.len() - 2].clone();
    let older_step: u64 = older["step-".len()..].parse().unwrap();

    for file in ["model.safetensors", "optimizer.mpk", "state.json"] {
        let run = tempfile::tempdir().unwrap();
        copy_dir(full.path(), run.path());
        flip_middle_byte(&run.path().join("checkpoints/step-0000000008").join(file));

        // loading for inference refuses it and names the older intact checkpoint
        let err = Checkpoints::new(run.path())
            .load_model(Tiny::<TestAutodiffBackend>::new(&d), Which::Last)
            .expect_err("a corrupt checkpoint must not load");
        let shown = err.to_string();
        assert!(
            matches!(err, Error::CorruptCheckpoint { .. }),
            "{file}: {shown}"
        );
        assert!(
            shown.contains(file) && shown.contains(&older),
            "{file}: {shown}"
        );

        // training resumes from the older one, tells its observer (not stderr) why, and ends
        // bit for bit where the intact run did
        let seen = Seen::default();
        let resumed = Trainer::new(config(8), run.path())
            .unwrap()
            .observed_by(Box::new(seen.clone()))
            .fit(init(), &train, Some(&val), &d)
            .unwrap();
        assert_eq!(resumed.resumed_from, older_step, "{file}");
        let events = seen.0.lock().unwrap().clone();
        assert!(
            events[0].starts_with("warning: ") && events[0].contains(file),
            "{events:?}"
        );
        assert_eq!(
            events[1],
            format!(
                "started {:?} of 8",
                blindspot_core::TrainStart::Resumed(older_step)
            )
        );
        assert_eq!(events.last().map(String::as_str), Some("stopped true"));
        // every step after the resume was reported, each logged step once
        let stepped = events.iter().filter(|e| e.starts_with("step ")).count();
        assert_eq!(stepped as u64, 8 - older_step, "{events:?}");
        assert_eq!(final_model(run.path()), want, "{file}");
        Checkpoints::new(run.path())
            .load_model(Tiny::<TestAutodiffBackend>::new(&d), Which::Last)
            .unwrap();
    }

    // with no intact checkpoint left, training refuses too and says how to start again
    let run = tempfile::tempdir().unwrap();
    copy_dir(full.path(), run.path());
    for step in &steps {
        flip_middle_byte(
            &run.path()
                .join("checkpoints")
                .join(step)
                .join("model.safetensors"),
        );
    }
    let shown = fit(run.path())
        .expect_err("nothing intact to resume from")
        .to_string();
    assert!(
        shown.contains("no older intact checkpoint") && shown.contains("remove"),
        "{shown}"
    );

    // a checkpoint written before checksums existed still loads
    let run = tempfile::tempdir().unwrap();
    copy_dir(full.path(), run.path());
    std::fs::remove_file(
        run.path()
            .join("checkpoints/step-0000000008/checksums.json"),
    )
    .unwrap();
    Checkpoints::new(run.path())
        .load_model(Tiny::<TestAutodiffBackend>::new(&d), Which::Last)
        .unwrap();
}
