//! `blindspot slurm`: a whole experiment as a chain of SLURM jobs.
//!
//! [`write_plan`] writes one readable job script per step into `<out>/slurm/`: `synth` once,
//! `prepare`, `train` and `evaluate --shard` as job arrays of `n` tasks (task `i` runs shard
//! `i/n`, so `n` larger than the work is harmless: a task without datasets, members or slice
//! chunks finishes at once), and `evaluate --merge` once, which writes `results.json` and the
//! report. [`submit`] hands them to `sbatch --parsable`, each step `--dependency=afterok` on the
//! one before. Every path in a script is absolute, logs go to `<out>/slurm/logs/`, and each task
//! first checks that it can write the run directory. The steps resume, so resubmitting after a
//! failure reuses every finished cache, member and shard; one failed array task reruns alone with
//! `sbatch --array=<i> <out>/slurm/<step>.sh`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, RunError};

/// What the job scripts ask SLURM for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    /// Tasks per array step, at least 1.
    pub array: usize,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (SLURM's format, for example `02:00:00`).
    pub time: Option<String>,
    /// `--gpus-per-task` (with a `cuda` build of the binary).
    pub gpus_per_task: Option<u32>,
    /// Further `#SBATCH` lines, each one option as sbatch takes it (`--mem=16G`).
    pub sbatch_args: Vec<String>,
    /// The `--set KEY=VALUE` overrides, passed to every step.
    pub overrides: Vec<String>,
}

/// One step of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobScript {
    /// The step's name (`synth`, `prepare`, `train`, `evaluate`, `merge`).
    pub step: &'static str,
    /// Whether it is a job array of [`SlurmOptions::array`] tasks.
    pub array: bool,
    /// The script file.
    pub path: PathBuf,
}

/// The written scripts, in submission order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The run directory (absolute).
    pub dir: PathBuf,
    /// One script per step.
    pub scripts: Vec<JobScript>,
}

/// The steps: name, array or not, the `blindspot` subcommand and its shard argument.
const STEPS: [(&str, bool, &str, &str); 5] = [
    ("synth", false, "synth", ""),
    ("prepare", true, "prepare", "--shard"),
    ("train", true, "train", "--shard"),
    ("evaluate", true, "evaluate", "--shard"),
    ("merge", false, "evaluate", "--merge"),
];

/// `text` as one word for bash: single-quoted, with every `'` written `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn invalid(option: &str, value: impl std::fmt::Display, allowed: &'static str) -> RunError {
    RunError::BadOption {
        option: option.into(),
        value: value.to_string(),
        allowed,
    }
}

/// Checks the options: at least one task, no line breaks in what goes into a script.
///
/// # Errors
/// [`RunError::BadOption`] naming the option.
pub fn check(options: &SlurmOptions) -> Result<()> {
    if options.array == 0 {
        return Err(invalid("--array", 0, "a number of array tasks >= 1"));
    }
    let texts = options
        .partition
        .iter()
        .map(|p| ("--partition", p))
        .chain(options.time.iter().map(|t| ("--time", t)))
        .chain(options.sbatch_args.iter().map(|a| ("--sbatch-arg", a)));
    for (key, text) in texts {
        if text.is_empty() || text.contains(['\n', '\r']) {
            return Err(invalid(key, format!("{text:?}"), "one non-empty line"));
        }
    }
    if let Some(a) = options.sbatch_args.iter().find(|a| !a.starts_with('-')) {
        return Err(invalid(
            "--sbatch-arg",
            format!("{a:?}"),
            "an sbatch option such as --mem=16G",
        ));
    }
    Ok(())
}

/// The script of one step.
fn script(
    name: &str,
    (step, array, command, shard): (&str, bool, &str, &str),
    binary: &Path,
    config: &Path,
    dir: &Path,
    options: &SlurmOptions,
) -> String {
    let n = options.array;
    let logs = dir.join("slurm").join("logs");
    let mut s = String::from("#!/usr/bin/env bash\n");
    let _ = writeln!(
        s,
        "# blindspot: step `{step}` of run `{name}`, written by `blindspot slurm`."
    );
    if array {
        let _ = writeln!(
            s,
            "# Task i runs shard i/{n}. Rerun one failed task alone: sbatch --array=<i> {}",
            dir.join("slurm").join(format!("{step}.sh")).display()
        );
    }
    let _ = writeln!(s, "#SBATCH --job-name=blindspot-{name}-{step}");
    let pattern = if array { "%A_%a" } else { "%j" };
    let _ = writeln!(
        s,
        "#SBATCH --output={}",
        logs.join(format!("{step}-{pattern}.log")).display()
    );
    if array {
        let _ = writeln!(s, "#SBATCH --array=0-{}", n - 1);
    }
    if let Some(p) = &options.partition {
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    if let Some(t) = &options.time {
        let _ = writeln!(s, "#SBATCH --time={t}");
    }
    if let Some(g) = options.gpus_per_task {
        let _ = writeln!(s, "#SBATCH --gpus-per-task={g}");
    }
    for a in &options.sbatch_args {
        let _ = writeln!(s, "#SBATCH {a}");
    }
    s.push_str("set -euo pipefail\n");
    let _ = writeln!(s, "DIR={}", shell_quote(&dir.to_string_lossy()));
    s.push_str(concat!(
        "probe=\"$DIR/.slurm-write-test-$(hostname)-$$\"\n",
        "if ! touch \"$probe\" 2>/dev/null; then\n",
        "  echo \"error: the run directory $DIR is not writable from $(hostname):",
        " it must be on a file system every node can write\" >&2\n",
        "  exit 1\n",
        "fi\n",
        "rm -f \"$probe\"\n",
    ));
    let mut cmd = format!(
        "exec {} {command} {} --out \"$DIR\"",
        shell_quote(&binary.to_string_lossy()),
        shell_quote(&config.to_string_lossy())
    );
    match shard {
        "--shard" => {
            let _ = write!(cmd, " --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\"");
        }
        "" => {}
        other => {
            let _ = write!(cmd, " {other}");
        }
    }
    for o in &options.overrides {
        let _ = write!(cmd, " --set {}", shell_quote(o));
    }
    s.push_str(&cmd);
    s.push('\n');
    s
}

/// Writes the job scripts of run `name` into `<dir>/slurm/` (and creates `<dir>/slurm/logs/`).
/// `binary`, `config` and `dir` must be absolute: the tasks may start anywhere.
///
/// # Errors
/// As [`check`]; [`RunError::BadOption`] for a relative path; [`RunError::Io`] when a file
/// cannot be written.
pub fn write_plan(
    name: &str,
    binary: &Path,
    config: &Path,
    dir: &Path,
    options: &SlurmOptions,
) -> Result<Plan> {
    check(options)?;
    for (key, p) in [("binary", binary), ("config", config), ("--out", dir)] {
        if !p.is_absolute() {
            return Err(invalid(key, p.display(), "an absolute path"));
        }
    }
    let slurm = dir.join("slurm");
    crate::error::create_dir(&slurm.join("logs"))?;
    let mut scripts = Vec::new();
    for step in STEPS {
        let path = slurm.join(format!("{}.sh", step.0));
        let text = script(name, step, binary, config, dir, options);
        blindspot_report::write_atomic(&path, text.as_bytes()).map_err(|e| RunError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(
                |source| RunError::Io {
                    path: path.clone(),
                    source,
                },
            )?;
        }
        scripts.push(JobScript {
            step: step.0,
            array: step.1,
            path,
        });
    }
    Ok(Plan {
        dir: dir.to_owned(),
        scripts,
    })
}

/// The `sbatch` command lines of the chain, each step after the one before (`$JOB_<STEP>` stands
/// for a job id), as `--dry-run` prints them.
pub fn sbatch_lines(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    let mut previous: Option<&str> = None;
    for s in &plan.scripts {
        let dependency = previous
            .map(|p| format!(" --dependency=afterok:$JOB_{}", p.to_uppercase()))
            .unwrap_or_default();
        lines.push(format!(
            "JOB_{}=$(sbatch --parsable{dependency} {})",
            s.step.to_uppercase(),
            shell_quote(&s.path.to_string_lossy())
        ));
        previous = Some(s.step);
    }
    lines
}

/// Submits the chain with `sbatch` (the program `sbatch`, normally `"sbatch"`); returns the job
/// ids in step order.
///
/// # Errors
/// [`RunError::Submit`] when `sbatch` cannot be started, fails or prints no job id (its
/// message is kept).
pub fn submit(plan: &Plan, sbatch: &Path) -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    for s in &plan.scripts {
        let mut cmd = Command::new(sbatch);
        cmd.arg("--parsable");
        if let Some(previous) = ids.last() {
            cmd.arg(format!("--dependency=afterok:{previous}"));
        }
        cmd.arg(&s.path);
        let out = cmd.output().map_err(|e| RunError::Submit {
            script: s.path.clone(),
            why: format!(
                "cannot start `{}` ({e}): is this a SLURM submit host? \
                 `--dry-run` writes the scripts without submitting",
                sbatch.display()
            ),
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // `--parsable` prints `<id>` or `<id>;<cluster>`.
        let id = stdout
            .lines()
            .next()
            .and_then(|l| l.split(';').next())
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()));
        match (out.status.success(), id) {
            (true, Some(id)) => ids.push(id.to_owned()),
            _ => {
                return Err(RunError::Submit {
                    script: s.path.clone(),
                    why: format!(
                        "{} without a job id: {} {}",
                        out.status,
                        stdout.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn bad_options_are_named() {
        let o = SlurmOptions {
            array: 0,
            ..Default::default()
        };
        assert!(check(&o).unwrap_err().to_string().contains("--array"));
        let o = SlurmOptions {
            array: 2,
            time: Some("1:00\n#SBATCH --x".into()),
            ..Default::default()
        };
        assert!(check(&o).unwrap_err().to_string().contains("--time"));
        let o = SlurmOptions {
            array: 2,
            sbatch_args: vec!["mem=1G".into()],
            ..Default::default()
        };
        assert!(check(&o).unwrap_err().to_string().contains("--sbatch-arg"));
    }
}
