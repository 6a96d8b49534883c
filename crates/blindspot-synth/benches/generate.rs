//! Generation speed of one subject (image + brain mask + lesion mask), on one core.
//!
//! `cargo bench -p blindspot-synth --bench generate`
//!
//! Goal (issue 3): a 128 x 128 x 64 volume with its masks in under 0.5 s.

use std::hint::black_box;

use blindspot_synth::{
    Contrast, LesionKind, OodTransform, Split, SubjectSpec, SynthConfig, generate_subject,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn bench_generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    let cases = [
        (
            "t2_healthy_siteA",
            "A",
            Contrast::T2,
            LesionKind::None,
            OodTransform::None,
        ),
        (
            "flair_tumour_siteA",
            "A",
            Contrast::Flair,
            LesionKind::Tumour,
            OodTransform::None,
        ),
        (
            "t2_ms_siteB",
            "B",
            Contrast::T2,
            LesionKind::Ms,
            OodTransform::None,
        ),
        (
            "t1_skull_siteA",
            "A",
            Contrast::T1,
            LesionKind::None,
            OodTransform::Skull,
        ),
    ];
    for (dims, spacing) in [
        ([128, 128, 64], [1.6, 1.6, 2.0]),
        ([96, 120, 64], [2.0, 2.0, 2.0]),
    ] {
        let mut config = SynthConfig::quickstart();
        config.dims = dims;
        config.spacing = spacing;
        config.validate().expect("bench config is valid");
        for (name, site, contrast, lesion, ood) in cases {
            let spec = SubjectSpec {
                id: "bench-000".into(),
                set: "bench".into(),
                split: Split::Test,
                seed: 1234,
                site: site.into(),
                contrast,
                lesion,
                ood,
            };
            let id = format!("{name}/{}x{}x{}", dims[0], dims[1], dims[2]);
            group.bench_with_input(BenchmarkId::from_parameter(id), &spec, |b, spec| {
                b.iter(|| black_box(generate_subject(&config, spec).expect("generates")))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_generate);
criterion_main!(benches);
