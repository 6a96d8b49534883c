//! `cargo xtask fuzz <target|all> --seconds N`: runs the `blindspot-fuzz` binary (release) on
//! one reader or on each in turn, in a child process under an address-space limit, and starts
//! it again when it dies. A death (abort, stack overflow, an allocation beyond the limit, a
//! hang caught by its watchdog) leaves the input being read in the work folder: it is saved
//! under `crates/blindspot-fuzz/regressions/<target>/` beside the panics the child saves
//! itself, and `tests/regressions.rs` replays them all.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, run, workspace_root};

/// The targets of `blindspot-fuzz`.
const TARGETS: [&str; 4] = ["nifti", "cache", "config", "shard"];

/// Address-space limit of the child (KiB for `ulimit -v`): an input that makes a reader ask
/// for more dies and is kept.
const MEMORY_LIMIT_KIB: u64 = 8 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// nifti | cache | config | shard | all (each in turn for --seconds)
    target: String,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the first child's mutator (each restart adds one).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The phantom's outputs or a run directory whose NIfTI files and caches are seeds too.
    #[arg(long)]
    phantom: Option<PathBuf>,
}

pub fn run_fuzz(args: Args) -> Result<()> {
    let root = workspace_root();
    let targets: Vec<&str> = if args.target == "all" {
        TARGETS.to_vec()
    } else if TARGETS.contains(&args.target.as_str()) {
        vec![args.target.as_str()]
    } else {
        bail!(
            "unknown fuzz target `{}`: allowed {} or all",
            args.target,
            TARGETS.join(", ")
        );
    };
    run(cargo()
        .current_dir(&root)
        .args(["build", "--release", "-p", "blindspot-fuzz"]))?;
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target_dir.join("release/blindspot-fuzz");
    let real = std::env::var_os("BLINDSPOT_REAL_DATA")
        .map(PathBuf::from)
        .or_else(|| Some(root.join("../shared/data/real")).filter(|p| p.is_dir()));
    let mut summary = Vec::new();
    for target in targets {
        let work = target_dir.join("fuzz-work").join(target);
        let (cases, deaths) = fuzz_one(&bin, target, &args, real.as_deref(), &work, &root)?;
        summary.push(format!(
            "{target}: {cases} cases in {} s, {deaths} process deaths",
            args.seconds
        ));
    }
    println!("fuzz summary:");
    for line in &summary {
        println!("  {line}");
    }
    Ok(())
}

/// Fuzzes one target for `args.seconds`, restarting the child when it dies. Returns the cases
/// run (as the children reported them) and the number of deaths.
fn fuzz_one(
    bin: &Path,
    target: &str,
    args: &Args,
    real: Option<&Path>,
    work: &Path,
    root: &Path,
) -> Result<(u64, u64)> {
    let start = Instant::now();
    let budget = Duration::from_secs(args.seconds);
    let (mut cases, mut deaths, mut seed) = (0u64, 0u64, args.seed);
    let mut panicked = false;
    let mut input: Option<PathBuf> = None;
    while start.elapsed() < budget {
        let left = (budget - start.elapsed()).as_secs().max(1);
        let mut line = format!(
            "ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" {target} --seconds {left} --seed {seed} --work \"$1\""
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c");
        let mut extra: Vec<PathBuf> = Vec::new();
        if let Some(r) = real {
            line.push_str(" --real \"$2\"");
            extra.push(r.to_owned());
        }
        if let Some(p) = &args.phantom {
            line.push_str(if extra.is_empty() {
                " --phantom \"$2\""
            } else {
                " --phantom \"$3\""
            });
            extra.push(p.clone());
        }
        cmd.arg(line).arg(bin).arg(work).args(&extra);
        // the fuzz crate finds its corpus and regressions through its manifest folder
        cmd.env("CARGO_MANIFEST_DIR", root.join("crates/blindspot-fuzz"));
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut seen = 0u64;
        if let Some(out) = child.stdout.take() {
            for l in BufReader::new(out).lines() {
                let l = l?;
                println!("{l}");
                // "fuzz T: input file PATH": where the child writes the input it reads
                if let Some((_, path)) = l.split_once(": input file ") {
                    input = Some(PathBuf::from(path));
                }
                // "fuzz T: [done: ]N cases in ..."
                if let Some(n) = l
                    .rsplit(": ")
                    .next()
                    .filter(|rest| rest.contains(" cases in "))
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    seen = n;
                }
            }
        }
        let status = child.wait()?;
        cases += seen;
        if status.success() {
            break;
        }
        match status.code() {
            // the child found panics and saved them; the time was used up
            Some(3) => {
                panicked = true;
                break;
            }
            Some(2) => bail!("fuzz {target}: the fuzzer could not run (see its error above)"),
            _ => {}
        }
        // died: keep the input it was reading
        deaths += 1;
        let why = status.signal().map_or_else(
            || format!("exit{}", status.code().unwrap_or(-1)),
            |s| format!("signal{s}"),
        );
        let read = input
            .as_deref()
            .ok_or_else(|| std::io::Error::other("it died before naming its input file"))
            .and_then(std::fs::read);
        match read {
            Ok(bytes) => {
                let dir = root.join("crates/blindspot-fuzz/regressions").join(target);
                std::fs::create_dir_all(&dir)?;
                let file = dir.join(format!("{:08x}.{why}.bin", crc32fast::hash(&bytes)));
                std::fs::write(&file, &bytes)?;
                eprintln!(
                    "fuzz {target}: the child died ({status}); its input is saved as {}",
                    file.display()
                );
            }
            Err(e) => eprintln!(
                "fuzz {target}: the child died ({status}) before an input was written ({e})"
            ),
        }
        seed += 1;
    }
    if panicked {
        bail!(
            "fuzz {target}: inputs panicked (saved under crates/blindspot-fuzz/regressions/{target})"
        );
    }
    Ok((cases, deaths))
}
