//! Times a training step and an inference pass of the paper's VAE and prints one JSON line
//! (the same fields as `../shared/bench/torch_vae.py`). Run by `cargo xtask bench model`:
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p blindspot-benches --bin vae-timer -- \
//!     --batch 32 --size 128 --steps 10
//! ```
//!
//! `--train-steps 1 --warmup 0 --steps 20` spends its time in inference (for `perf record`).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use blindspot_benches::{BACKEND, VaeBench, infer, median};
use rand::SeedableRng;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid value for {name}: {:?}", args.get(i + 1))),
        None => Ok(default),
    }
}

/// CPU time this process has used so far (user + system, all threads), in ms, from
/// `/proc/self/stat` (Linux; `None` elsewhere). On a shared machine it measures the work done
/// where wall time also counts the waits for a core.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the command name (which may hold spaces) end with ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the whole line, 12 and 13 after the name
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // the kernel's USER_HZ is 100 on every Linux architecture in use
    Some(ticks * 10.0)
}

/// Peak resident memory of this process so far, in MiB (`VmHWM` of `/proc/self/status`;
/// Linux, `None` elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<()> {
    // SAFETY: the first statement of `main`: no other thread exists yet.
    #[allow(unsafe_code)] // glibc's allocator tuning is a C call (see the function's docs)
    unsafe {
        blindspot_kernels::keep_freed_memory();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = arg(&args, "--batch", 32)?;
    let size: usize = arg(&args, "--size", 128)?;
    let width: f64 = arg(&args, "--width", 1.0)?;
    let steps: usize = arg(&args, "--steps", 10)?;
    let warmup: usize = arg(&args, "--warmup", 2)?;
    // fewer training steps than inference passes: a profile of inference (`perf record`)
    let train_steps: usize = arg(&args, "--train-steps", steps)?;
    if batch == 0
        || steps == 0
        || train_steps == 0
        || !size.is_multiple_of(16)
        || size == 0
        || width <= 0.0
    {
        bail!(
            "need --batch >= 1, --steps >= 1, --train-steps >= 1, --size a multiple of 16, --width > 0"
        );
    }
    let mut bench = VaeBench::new(batch, size, width);
    let mut train = Vec::with_capacity(train_steps);
    let mut cpu_train = None;
    for i in 0..warmup + train_steps {
        if i == warmup {
            cpu_train = cpu_ms();
        }
        let t = Instant::now();
        let loss = bench.train_step();
        if !loss.is_finite() {
            bail!("training step {i} gave loss {loss}");
        }
        if i >= warmup {
            train.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let cpu_train = cpu_ms()
        .zip(cpu_train)
        .map(|(b, a)| (b - a) / train_steps as f64);
    let (model, data) = bench.inference_parts();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut inference = Vec::with_capacity(steps);
    let mut cpu_infer = None;
    for i in 0..warmup + steps {
        if i == warmup {
            cpu_infer = cpu_ms();
        }
        let t = Instant::now();
        std::hint::black_box(infer(&model, &data, &mut rng));
        if i >= warmup {
            inference.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let cpu_infer = cpu_ms().zip(cpu_infer).map(|(b, a)| (b - a) / steps as f64);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let (t, i) = (median(&mut train), median(&mut inference));
    println!(
        "{}",
        serde_json::json!({
            "impl": "blindspot",
            "backend": BACKEND,
            "batch": batch, "size": size, "width": width, "threads": threads,
            "train_step_ms_median": t,
            "infer_ms_median": i,
            "train_images_per_s": batch as f64 / t * 1e3,
            "infer_images_per_s": batch as f64 / i * 1e3,
            "train_step_cpu_ms_mean": cpu_train,
            "infer_cpu_ms_mean": cpu_infer,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
