//! `blindspot`: the command-line entry point. For now it selects the backend (cargo features
//! `flex` (default), `ndarray`, `cuda`) and offers a training smoke test of the paper's VAE;
//! the full CLI comes with a later issue.

mod backend;

use std::time::Instant;

use anyhow::{Context, Result};
use blindspot_core::{Batch, Model, seeded};
use blindspot_runner::config;
use blindspot_vae::{BackboneConfig, BetaSchedule, VaeConfig};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use clap::{Parser, Subcommand};
use rand::Rng;

#[derive(Parser)]
#[command(
    name = "blindspot",
    about = "OOD-aware unsupervised lesion detection in brain MRI"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check an experiment config and print it resolved (every default written out).
    Check {
        /// The experiment config (TOML), for example configs/quickstart.toml.
        config: std::path::PathBuf,
    },
    /// Rebuild report.md, report.html, tables/ and plots/ from a run's results.json.
    Report {
        /// The run directory (holding results.json), for example runs/quickstart.
        dir: std::path::PathBuf,
    },
    /// Print the compiled-in backend and check that its device is usable.
    Backend,
    /// Train the paper's VAE for a few steps on random slices and print loss and speed.
    TrainSmoke {
        /// Optimizer steps.
        #[arg(long, default_value_t = 5)]
        steps: u64,
        /// Slices per batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Input side (multiple of 16).
        #[arg(long, default_value_t = 128)]
        size: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check { config: path } => {
            let config = config::RunConfig::load(&path)?;
            print!("{}", config.to_toml_string()?);
            Ok(())
        }
        Cmd::Report { dir } => {
            let files = blindspot_report::rebuild_report(&dir)?;
            println!("{}", files.html.display());
            Ok(())
        }
        Cmd::Backend => {
            let _device = backend::device()?;
            println!("backend: {}", backend::NAME);
            Ok(())
        }
        Cmd::TrainSmoke {
            steps,
            batch,
            size,
            seed,
        } => train_smoke(steps, batch, size, seed),
    }
}

fn train_smoke(steps: u64, batch: usize, size: usize, seed: u64) -> Result<()> {
    let device = backend::device()?;
    let mut rng = seeded::<backend::TrainBackend>(&device, seed);
    let cfg = VaeConfig::new()
        .with_backbone(BackboneConfig::new().with_input_size(size))
        .with_beta(BetaSchedule::Constant { beta: 1.0 });
    let mut model = cfg
        .init::<backend::TrainBackend>(&device)
        .context("VAE config")?;
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let n = batch * size * size;
    let images: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let masks: Vec<f32> = (0..n).map(|_| f32::from(rng.random_bool(0.7))).collect();
    let data =
        Batch::<backend::TrainBackend>::from_host(images, masks, [batch, size, size], &device)?;
    println!(
        "backend {}: VAE {size}x{size}, batch {batch}",
        backend::NAME
    );
    for step in 0..steps {
        let t = Instant::now();
        let out = model.loss(&data, step, &mut rng);
        let loss: f32 = out.loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(1e-4, model, grads);
        println!(
            "step {step}: loss {loss:.4} in {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let inner = model.valid();
    let t = Instant::now();
    let _ = inner.infer(&data.inner(), &mut rng).into_host()?;
    println!("inference: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
