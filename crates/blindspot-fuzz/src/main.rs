//! `blindspot-fuzz TARGET`: mutation fuzzing of one reader (see the crate docs). Usually run
//! through `cargo xtask fuzz`, which restarts it when the process dies and keeps the input.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use blindspot_fuzz::{Budget, Harness, Target, fuzz, regression_dir, seeds};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "blindspot-fuzz",
    about = "Mutation fuzzing of blindspot's readers"
)]
struct Cli {
    /// nifti | cache | config | shard
    target: String,
    /// Run this long.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Run this many cases instead (reproducible: the same seed gives the same cases).
    #[arg(long)]
    cases: Option<u64>,
    /// Seed of the mutator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Real volumes (a folder laid out like ../shared/data/real); default $BLINDSPOT_REAL_DATA.
    #[arg(long)]
    real: Option<PathBuf>,
    /// The phantom's outputs or a run directory (its NIfTI files and slice caches are seeds).
    #[arg(long)]
    phantom: Option<PathBuf>,
    /// Where the inputs are written while they are read.
    #[arg(long)]
    work: PathBuf,
    /// A case that runs longer than this is a hang: the process aborts and the input stays.
    #[arg(long, default_value_t = 30)]
    hang_seconds: u64,
}

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// One progress line (`cargo xtask fuzz` reads the case count from it).
fn show(target: Target, r: &blindspot_fuzz::Report, start: Instant, what: &str) {
    let s = start.elapsed().as_secs_f64();
    println!(
        "fuzz {}: {what}{} cases in {s:.0} s ({:.0}/s), {} read without error, {} panics",
        target.name(),
        r.cases,
        r.cases as f64 / s,
        r.accepted,
        r.panics.len()
    );
}

/// Exit code when inputs panicked (they are saved); 2 is any other failure.
const FOUND: u8 = 3;

fn main() -> std::process::ExitCode {
    match fuzz_main() {
        Ok(true) => std::process::ExitCode::from(FOUND),
        Ok(false) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs the fuzzer; `Ok(true)` when inputs panicked.
fn fuzz_main() -> Result<bool> {
    let cli = Cli::parse();
    let Some(target) = Target::parse(&cli.target) else {
        bail!(
            "unknown target `{}`: allowed nifti, cache, config, shard",
            cli.target
        );
    };
    let real = cli
        .real
        .or_else(|| std::env::var_os("BLINDSPOT_REAL_DATA").map(PathBuf::from));
    let seeds = seeds(target, real.as_deref(), cli.phantom.as_deref())?;
    let harness = Harness::new(&cli.work).context("preparing the work folder")?;
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string();
        }
    }));

    // the watchdog: a case that does not finish in time is a hang
    static HEARTBEAT: AtomicU64 = AtomicU64::new(0);
    let hang = Duration::from_secs(cli.hang_seconds);
    let input = harness.input_path(target);
    std::thread::spawn(move || {
        let (mut seen, mut since) = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = HEARTBEAT.load(Ordering::Relaxed);
            if now != seen {
                (seen, since) = (now, Instant::now());
            } else if since.elapsed() > hang {
                eprintln!(
                    "hang: a case ran over {hang:?}; its input is {}",
                    input.display()
                );
                std::process::abort();
            }
        }
    });

    let budget = cli.cases.map_or(
        Budget::Time(Duration::from_secs(cli.seconds)),
        Budget::Cases,
    );
    let save = regression_dir(target);
    let start = Instant::now();
    // `cargo xtask fuzz` keeps this file when the process dies
    println!(
        "fuzz {}: input file {}",
        target.name(),
        harness.input_path(target).display()
    );
    println!(
        "fuzz {}: {} seed inputs, mutator seed {}",
        target.name(),
        seeds.len(),
        cli.seed
    );
    let report = fuzz(
        &harness,
        target,
        &seeds,
        cli.seed,
        budget,
        Some(&save),
        Some(&HEARTBEAT),
        |r| show(target, r, start, ""),
    )?;
    show(target, &report, start, "done: ");
    if !report.panics.is_empty() {
        let last = LAST_PANIC.lock().map(|l| l.clone()).unwrap_or_default();
        for (_, message) in report.panics.iter().take(5) {
            eprintln!("panic: {message}");
        }
        eprintln!("last panic: {last}");
        eprintln!(
            "{} inputs panicked; saved in {} (tests/regressions.rs replays them)",
            report.panics.len(),
            save.display()
        );
        return Ok(true);
    }
    Ok(false)
}
