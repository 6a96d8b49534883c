//! Criterion benches of the ranking metrics and the post-processing kernels.
//!
//! Run: `cargo bench -p blindspot-metrics --bench metrics` (the side-by-side comparison with
//! scikit-learn is `cargo xtask bench metrics`).

use std::hint::black_box;

use blindspot_metrics::{
    Connectivity, RankAccumulator, RankedScores, erode, label_components, median_filter,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` scores like `sklearn_metrics.py` draws them: N(0, 1) + 1.5 for 2 % positives, rounded
/// to 1/256 when `tied`.
fn scores(n: usize, tied: bool) -> (Vec<f32>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let labels: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.02).collect();
    let scores = labels
        .iter()
        .map(|&l| {
            // Box-Muller.
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            let s = (z + if l { 1.5 } else { 0.0 }) as f32;
            if tied { (s * 256.0).round() / 256.0 } else { s }
        })
        .collect();
    (scores, labels)
}

fn ranking(c: &mut Criterion) {
    let mut group = c.benchmark_group("ranking");
    group.sample_size(10);
    for &n in &[100_000usize, 1_000_000] {
        for tied in [true, false] {
            let (s, l) = scores(n, tied);
            let id = format!("n={n}/{}", if tied { "tied" } else { "untied" });
            group.bench_with_input(
                BenchmarkId::new("auroc_f32_one_shot", &id),
                &(&s, &l),
                |b, (s, l)| {
                    b.iter(|| {
                        black_box(
                            RankedScores::<f32>::from_scores(s, l)
                                .unwrap()
                                .auroc()
                                .unwrap(),
                        )
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new("auroc_f32_accumulator", &id),
                &(s, l),
                |b, (s, l)| {
                    b.iter(|| {
                        let mut acc = RankAccumulator::<f32>::new();
                        acc.push(s, l).unwrap();
                        black_box(acc.finish().auroc().unwrap())
                    })
                },
            );
        }
    }
    let (s, l) = scores(1_000_000, true);
    let s64: Vec<f64> = s.iter().map(|&x| f64::from(x)).collect();
    group.bench_function("auroc_f64/n=1000000/tied", |b| {
        b.iter(|| black_box(blindspot_metrics::auroc(&s64, &l).unwrap()))
    });
    group.bench_function("average_precision_f64/n=1000000/tied", |b| {
        b.iter(|| black_box(blindspot_metrics::average_precision(&s64, &l).unwrap()))
    });
    group.finish();
}

fn postprocess(c: &mut Criterion) {
    let mut group = c.benchmark_group("postprocess");
    let (s, _) = scores(128 * 128, false);
    let mask: Vec<bool> = s.iter().map(|&x| x > -1.5).collect();
    group.bench_function("median_filter/128x128/k=5", |b| {
        b.iter(|| black_box(median_filter(&s, &[128, 128], 5).unwrap()))
    });
    group.bench_function("erode/128x128/iter=3/face", |b| {
        b.iter(|| black_box(erode(&mask, &[128, 128], 3, Connectivity::Face).unwrap()))
    });
    group.bench_function("label_components/128x128/face", |b| {
        b.iter(|| black_box(label_components(&mask, &[128, 128], Connectivity::Face).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, ranking, postprocess);
criterion_main!(benches);
