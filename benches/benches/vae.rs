//! criterion benchmark of the paper's VAE at batch 32, 128×128, on the backend selected by
//! the crate's feature (burn-flex by default):
//!
//!     RAYON_NUM_THREADS=2 cargo bench -p blindspot-benches --bench vae
//!     RAYON_NUM_THREADS=2 cargo bench -p blindspot-benches --bench vae --no-default-features --features ndarray

use blindspot_benches::{BACKEND, VaeBench, infer};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;

fn vae(c: &mut Criterion) {
    let (batch, size) = (32, 128);
    let mut group = c.benchmark_group("vae");
    group.sample_size(10);
    let mut bench = VaeBench::new(batch, size, 1.0);
    group.bench_function(
        BenchmarkId::new(format!("train_step/{BACKEND}"), format!("b{batch}_s{size}")),
        |b| b.iter(|| bench.train_step()),
    );
    let (model, data) = bench.inference_parts();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    group.bench_function(
        BenchmarkId::new(format!("infer/{BACKEND}"), format!("b{batch}_s{size}")),
        |b| b.iter(|| infer(&model, &data, &mut rng)),
    );
    group.finish();
}

criterion_group!(benches, vae);
criterion_main!(benches);
