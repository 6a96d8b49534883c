//! `blindspot`: the command-line entry point. It selects the backend (cargo features `flex`
//! (default), `ndarray`, `cuda`) and runs experiments (`run`), checks configs (`check`),
//! scores new scans (`score`), submits to SLURM (`slurm`) and re-renders reports (`report`).
//! Benchmarks live in `benches/` (`vae-timer`) and `cargo xtask`, not here.
//!
//! Errors are printed as `error: ...` with their causes; the exit code is 2 for a bad
//! configuration or usage and 1 for a failure at run time.

// The doc comments of the CLI types below are `blindspot --help`'s text, written for a terminal
// (`<out>`, `[synth]`), not rustdoc's markdown.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod backend;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use blindspot_runner::config;
use blindspot_runner::pipeline::{self, Shard};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "blindspot",
    version,
    about = "OOD-aware unsupervised lesion detection in brain MRI"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// An experiment config, the run directory and the overrides: what every command that runs
/// (part of) an experiment takes.
#[derive(Args)]
struct Experiment {
    /// The experiment config (TOML), for example configs/quickstart.toml.
    config: PathBuf,
    /// The run directory (default: runs/<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a config value, `KEY=VALUE` with a dotted key (repeatable), for example
    /// `--set train.learning_rate=3e-4 --set ensemble.members=3`; the value is TOML.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a whole experiment: synthesise, prepare, train, infer, evaluate, report.
    Run {
        #[command(flatten)]
        experiment: Experiment,
    },
    /// Step 1 of `run`: write the phantom of [synth] into <out>/data.
    Synth {
        #[command(flatten)]
        experiment: Experiment,
    },
    /// Step 2 of `run`: preprocess every dataset into a slice cache under <out>/cache.
    Prepare {
        #[command(flatten)]
        experiment: Experiment,
        /// Only the datasets of shard `i/n` (position modulo n equals i).
        #[arg(long, default_value = "0/1")]
        shard: Shard,
    },
    /// Step 3 of `run`: train the ensemble members into <out>/model (resumes).
    Train {
        #[command(flatten)]
        experiment: Experiment,
        /// Only the members of shard `i/n` (member index modulo n equals i).
        #[arg(long, default_value = "0/1")]
        shard: Shard,
    },
    /// Step 4 of `run`: infer with every member, evaluate, write results.json and the report.
    ///
    /// With `--shard i/n` only inference runs, on a share of the slices, and writes
    /// <out>/eval-shards/shard-i-of-n.json.gz; `--merge` then evaluates the n partial results
    /// (exactly what a single `evaluate` gives).
    Evaluate {
        #[command(flatten)]
        experiment: Experiment,
        /// Only infer the slice chunks of shard `i/n` (chunk index modulo n equals i) and write
        /// a partial result.
        #[arg(long, conflicts_with = "merge")]
        shard: Option<Shard>,
        /// Merge the partial results of every shard in <out>/eval-shards and evaluate.
        #[arg(long)]
        merge: bool,
    },
    /// Score NIfTI scans with a finished run: an anomaly map on each scan's own grid
    /// (`<stem>.anomaly.nii.gz`) and the gate's verdict (`<stem>.verdict.json`).
    Score {
        /// The run directory (holding config.resolved.toml and model/).
        #[arg(long)]
        run: PathBuf,
        /// Where the maps and verdicts go (default: <run>/scores).
        #[arg(long)]
        scores: Option<PathBuf>,
        /// The brain mask of the scan (only with a single scan; default: its non-zero voxels).
        #[arg(long)]
        brain_mask: Option<PathBuf>,
        /// Which volume of a 4-D file to score (0-based); a 4-D file is refused without it.
        #[arg(long)]
        volume: Option<usize>,
        /// The scans (.nii or .nii.gz).
        #[arg(required = true)]
        scans: Vec<PathBuf>,
    },
    /// Submit a whole experiment to SLURM: job scripts in <out>/slurm/ (synth once; prepare,
    /// train and evaluate as arrays of --array tasks; then the merge and report), chained with
    /// `--dependency=afterok`. Resubmitting after a failure reuses every finished step. The run
    /// directory must be on a file system every node can write.
    Slurm {
        #[command(flatten)]
        experiment: Experiment,
        /// Tasks per array step; more tasks than datasets, members or slice chunks is harmless.
        #[arg(long)]
        array: usize,
        /// The partition of every job.
        #[arg(long)]
        partition: Option<String>,
        /// The time limit of every job (SLURM's format, for example 02:00:00).
        #[arg(long)]
        time: Option<String>,
        /// GPUs per task (with a binary built with the `cuda` feature).
        #[arg(long)]
        gpus_per_task: Option<u32>,
        /// A further sbatch option for every job, repeatable (`--sbatch-arg=--mem=16G`).
        #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
        sbatch_arg: Vec<String>,
        /// Write the scripts and print the sbatch commands without submitting.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check an experiment config and print it resolved (every default written out).
    Check {
        /// The experiment config (TOML), for example configs/quickstart.toml.
        config: PathBuf,
        /// Override a config value, `KEY=VALUE` with a dotted key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Rebuild report.md, report.html, tables/ and plots/ from a run's results.json.
    Report {
        /// The run directory (holding results.json), for example runs/quickstart.
        dir: PathBuf,
    },
    /// Print the compiled-in backend and check that its device is usable.
    Backend,
}

fn main() -> ExitCode {
    // SAFETY: the first statement of `main`: no other thread exists yet.
    #[allow(unsafe_code)] // glibc's allocator tuning is a C call (see the function's docs)
    unsafe {
        blindspot_kernels::keep_freed_memory();
    }
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            let config_error = err.chain().any(|e| {
                e.downcast_ref::<config::ConfigError>().is_some()
                    || e.downcast_ref::<blindspot_runner::pipeline::RunError>()
                        .is_some_and(|r| r.is_config())
            });
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

/// The error and its causes, each said once: our error types already write their cause into
/// their own message (`{path}: {source}`) and also report it as their source, so a plain
/// `{:#}` would print "Is a directory (os error 21): Is a directory (os error 21)".
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Synth { experiment } => {
            let (config, dir) = experiment.load()?;
            pipeline::synth(&config, &dir)?;
            println!("{}", dir.join("data").display());
            Ok(())
        }
        Cmd::Prepare { experiment, shard } => {
            let (config, dir) = experiment.load()?;
            let built = pipeline::prepare(&config, &dir, shard)?;
            println!(
                "{built} slice caches built in {}",
                dir.join("cache").display()
            );
            Ok(())
        }
        Cmd::Train { experiment, shard } => {
            let (config, dir) = experiment.load()?;
            let device = backend::device()?;
            pipeline::train::<backend::TrainBackend>(&config, &dir, shard, &device)?;
            println!("{}", dir.join("model").display());
            Ok(())
        }
        Cmd::Evaluate {
            experiment,
            shard,
            merge,
        } => evaluate(&experiment, shard, merge),
        Cmd::Slurm {
            experiment,
            array,
            partition,
            time,
            gpus_per_task,
            sbatch_arg,
            dry_run,
        } => {
            let options = blindspot_runner::slurm::SlurmOptions {
                array,
                partition,
                time,
                gpus_per_task,
                sbatch_args: sbatch_arg,
                overrides: experiment.set.clone(),
            };
            slurm(&experiment, &options, dry_run)
        }
        Cmd::Run { experiment } => {
            let (config, dir) = experiment.load()?;
            let device = backend::device()?;
            eprintln!(
                "run `{}` on {} into {}",
                config.name,
                backend::NAME,
                dir.display()
            );
            let summary = pipeline::run::<backend::TrainBackend>(&config, &dir, &device)?;
            if let Some(line) = summary.adequacy_line() {
                eprintln!("{line}");
            }
            println!(
                "{}\n{}\nfinished in {:.1} s",
                summary.results.display(),
                summary.report.display(),
                summary.seconds
            );
            Ok(())
        }
        Cmd::Score {
            run,
            scores,
            brain_mask,
            volume,
            scans,
        } => score(&run, scores, brain_mask.as_deref(), volume, &scans),
        Cmd::Check { config: path, set } => {
            let config = config::RunConfig::load_with(&path, &set)?;
            // `check` answers whether the config can run here, so the data's variables count
            config.data_root()?;
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
    }
}

impl Experiment {
    /// The config with its overrides, and the run directory (default `runs/<name>`). The data's
    /// environment variables must be set: every step that takes an experiment reads its data
    /// or plans a run that will.
    fn load(&self) -> Result<(config::RunConfig, PathBuf)> {
        let config = config::RunConfig::load_with(&self.config, &self.set)?;
        config.data_root()?;
        let dir = self
            .out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(&config.name));
        Ok((config, dir))
    }
}

/// `blindspot evaluate`: all at once, one shard's inference, or the merge of the shards.
fn evaluate(experiment: &Experiment, shard: Option<Shard>, merge: bool) -> Result<()> {
    let (config, dir) = experiment.load()?;
    let summary = if merge {
        pipeline::merge_shards(&config, &dir)?
    } else {
        let device = backend::device()?;
        match shard {
            Some(shard) if shard != Shard::ALL => {
                let path =
                    pipeline::evaluate_shard::<backend::Backend>(&config, &dir, shard, &device)?;
                println!("{}", path.display());
                return Ok(());
            }
            _ => pipeline::evaluate::<backend::Backend>(&config, &dir, &device)?,
        }
    };
    println!(
        "{}\n{}",
        summary.results.display(),
        summary.report.display()
    );
    if let Some(line) = summary.adequacy_line() {
        eprintln!("{line}");
    }
    Ok(())
}

/// `blindspot score`: one line per scan (the scan, its map, the verdict) and the verdict's reason.
fn score(
    run: &Path,
    scores: Option<PathBuf>,
    brain_mask: Option<&Path>,
    volume: Option<usize>,
    scans: &[PathBuf],
) -> Result<()> {
    if brain_mask.is_some() && scans.len() != 1 {
        return Err(blindspot_runner::pipeline::RunError::Unsupported {
            key: "--brain-mask".into(),
            value: format!("with {} scans", scans.len()),
            allowed: "one scan per --brain-mask",
        }
        .into());
    }
    let device = backend::device()?;
    let scorer = blindspot_runner::score::Scorer::<backend::Backend>::load(run, &device)?;
    let out = scores.unwrap_or_else(|| run.join("scores"));
    for scan in scans {
        let s = scorer
            .score(scan, brain_mask, volume, &out)
            .with_context(|| format!("scoring {}", scan.display()))?;
        let decision = s
            .decision
            .map_or_else(|| "no gate".to_owned(), |d| d.to_string());
        println!("{}\t{}\t{decision}", scan.display(), s.map.display());
        if let Some(why) = &s.why {
            println!("  {why}");
        }
    }
    Ok(())
}

/// `blindspot slurm`: writes the job scripts, then submits them or (`dry_run`) prints how.
fn slurm(
    experiment: &Experiment,
    options: &blindspot_runner::slurm::SlurmOptions,
    dry_run: bool,
) -> Result<()> {
    use blindspot_runner::slurm;
    slurm::check(options)?;
    let (config, dir) = experiment.load()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let absolute =
        |p: &Path| std::fs::canonicalize(p).with_context(|| format!("resolving {}", p.display()));
    let (dir, config_file) = (absolute(&dir)?, absolute(&experiment.config)?);
    let binary = absolute(&std::env::current_exe().context("locating the blindspot binary")?)?;
    let plan = slurm::write_plan(&config.name, &binary, &config_file, &dir, options)?;
    let logs = dir.join("slurm").join("logs");
    if dry_run {
        println!(
            "# job scripts written to {}; submit them with:",
            dir.join("slurm").display()
        );
        for line in slurm::sbatch_lines(&plan) {
            println!("{line}");
        }
        return Ok(());
    }
    let ids = slurm::submit(&plan, Path::new("sbatch"))?;
    for (script, id) in plan.scripts.iter().zip(&ids) {
        let kind = if script.array {
            format!("array of {}", options.array)
        } else {
            "single".to_owned()
        };
        println!("{id}\t{}\t{kind}\t{}", script.step, script.path.display());
    }
    println!("follow:  squeue -j {}", ids.join(","));
    println!("logs:    {}", logs.display());
    println!(
        "results: {} when job {} has finished",
        dir.join("results.json").display(),
        ids.last().map_or("", String::as_str)
    );
    println!(
        "rerun one failed array task alone: sbatch --array=<i> {}/<step>.sh; \
         or run `blindspot slurm` again: finished steps are reused",
        dir.join("slurm").display()
    );
    Ok(())
}
