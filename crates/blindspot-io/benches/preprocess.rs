//! Preprocessing benchmarks.
//!
//! Run with `cargo bench -p blindspot-io --bench preprocess` (add `-- <filter>` to pick one).
//! The side-by-side comparison with nibabel + numpy + Pillow is `cargo xtask bench io`.
//!
//! - `resize_bilinear/<in>-><out>`: one slice, Pillow-exact antialiased bilinear;
//! - `zscore_stats/<dims>`: mean and standard deviation over a brain mask;
//! - `pipeline/<dims>-><size>`: an in-memory RAS volume to z-scored, resized slices;
//! - `volume_file/<name>`: `.nii.gz` file -> slices (read, reorient, pipeline), on a
//!   synthetic 240x240x155 phantom written once, and on the real BraTS volume of
//!   `../shared/data/real` when it is there.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use blindspot_io::preprocess::masked_stats;
use blindspot_io::resize::BilinearResizer;
use blindspot_io::volume::scaled_identity;
use blindspot_io::{Pipeline, PreprocessConfig, Volume, read_volume, write_f32};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// A skull-stripped-looking phantom: an ellipsoid "brain" with smooth texture, zero outside.
fn phantom(dims: [usize; 3]) -> Volume<f32> {
    let [nx, ny, nz] = dims;
    let mut data = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let (x, y, z) = (
                    i as f32 / nx as f32 - 0.5,
                    j as f32 / ny as f32 - 0.5,
                    k as f32 / nz as f32 - 0.5,
                );
                let r = (x * x) / 0.16 + (y * y) / 0.2 + (z * z) / 0.22;
                data.push(if r < 1.0 {
                    300.0 + 200.0 * (x * 40.0).sin() * (y * 30.0).cos() + 50.0 * z
                } else {
                    0.0
                });
            }
        }
    }
    Volume {
        dims,
        data,
        affine: scaled_identity([1.0; 3]),
        spacing: [1.0; 3],
    }
}

fn resize(c: &mut Criterion) {
    let mut g = c.benchmark_group("resize_bilinear");
    for (h, w) in [(240, 240), (200, 200)] {
        let src: Vec<f32> = (0..h * w)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.01)
            .collect();
        let r = BilinearResizer::new((h, w), (128, 128));
        let mut dst = vec![0.0; 128 * 128];
        g.bench_function(
            BenchmarkId::from_parameter(format!("{h}x{w}->128x128")),
            |b| b.iter(|| r.resize_into(black_box(&src), &mut dst)),
        );
    }
    g.finish();
}

fn stats_and_pipeline(c: &mut Criterion) {
    let vol = phantom([240, 240, 155]);
    let mask = blindspot_io::preprocess::nonzero_mask(&vol);
    let mut g = c.benchmark_group("zscore_stats");
    g.sample_size(20);
    g.bench_function(BenchmarkId::from_parameter("240x240x155"), |b| {
        b.iter(|| masked_stats(black_box(&vol), &mask).expect("phantom has a brain"))
    });
    g.finish();

    let pipeline = Pipeline::new(PreprocessConfig::default(), None).expect("default config");
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.bench_function(BenchmarkId::from_parameter("240x240x155->128x128"), |b| {
        b.iter_batched(
            || vol.clone(),
            |v| pipeline.run(v, None, None).expect("phantom has a brain"),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn from_file(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let synthetic = dir.path().join("phantom.nii.gz");
    write_f32(&synthetic, &phantom([240, 240, 155])).expect("writing the phantom");
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real/deepmedic_brats2015/brats_2013_pat0001_1_flair.nii.gz");
    let mut files: Vec<(&str, PathBuf)> = vec![("phantom_240x240x155", synthetic)];
    if real.is_file() {
        files.push(("brats_2013_pat0001_1_flair", real));
    }
    let pipeline = Pipeline::new(PreprocessConfig::default(), None).expect("default config");
    let mut g = c.benchmark_group("volume_file");
    g.sample_size(10);
    for (name, path) in &files {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let v = read_volume(path).expect("readable volume");
                pipeline
                    .run_native(v, None, None)
                    .expect("volume has a brain")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, resize, stats_and_pipeline, from_file);
criterion_main!(benches);
