//! Criterion bench of DoSE's exact KDE.
//!
//! Run: `cargo bench -p blindspot-ood --bench kde` (the side-by-side comparison with scipy is
//! `cargo xtask bench kde`).

use std::hint::black_box;

use blindspot_ood::GaussianKde;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` standard-normal draws (Box-Muller on a seeded ChaCha8).
fn normal(n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

/// `n` points spread over `[-4, 4]`, as `scipy_kde.py` evaluates.
fn grid(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| -4.0 + 8.0 * i as f64 / (n - 1) as f64)
        .collect()
}

fn kde(c: &mut Criterion) {
    let mut group = c.benchmark_group("kde");
    group.sample_size(10);
    for &n in &[2_000usize, 20_000] {
        let (x, pts) = (normal(n), grid(n));
        group.bench_with_input(
            BenchmarkId::new("fit_and_log_density", format!("fit={n}/eval={n}")),
            &(x, pts),
            |b, (x, pts)| {
                b.iter(|| {
                    let kde = GaussianKde::fit(black_box(x)).unwrap();
                    black_box(kde.log_density_many(black_box(pts)))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, kde);
criterion_main!(benches);
