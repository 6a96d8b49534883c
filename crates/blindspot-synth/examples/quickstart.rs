//! Write the quickstart dataset from a `[synth]` TOML file and report time and size.
//!
//! `cargo run --release -p blindspot-synth --example quickstart -- [config.toml] [out dir]`
//! (defaults: `configs/synth.toml`, `target/synth-quickstart`). Uses every core rayon sees;
//! set `RAYON_NUM_THREADS` to limit them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use blindspot_synth::{SynthConfig, write_dataset};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let config_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| "configs/synth.toml".into());
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| "target/synth-quickstart".into());
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = SynthConfig::from_toml_str(&text)?;
    let start = Instant::now();
    let summary = write_dataset(&config, &out)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} subjects of {:?} voxels in {:.1} s on {} threads: {:.1} MB in {}",
        summary.subjects,
        config.dims,
        secs,
        rayon::current_num_threads(),
        summary.bytes as f64 / 1e6,
        out.display()
    );
    Ok(())
}
