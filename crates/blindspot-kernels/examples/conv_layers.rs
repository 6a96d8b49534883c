//! Per-layer timing of the VAE's convolutions on burn-flex: forward, input gradient and weight
//! gradient of each layer, this crate's kernels against burn-flex's own ops (medians, ms):
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p blindspot-kernels --example conv_layers -- \
//!         [size 64] [width 0.5] [batch 32] [reps 5] [ours|burn|both]

use std::time::Instant;

use blindspot_kernels::ConvBackend;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, ModuleOps};
use burn::tensor::{Distribution, Tensor};
use burn_flex::Flex;

type F = FloatTensor<Flex>;

fn rand(shape: [usize; 4]) -> F {
    Tensor::<Flex, 4>::random(shape, Distribution::Default, &Default::default())
        .into_primitive()
        .tensor()
}

fn median_ms(reps: usize, mut f: impl FnMut() -> F) -> f64 {
    let _ = f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(f());
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

struct Layer {
    name: String,
    transposed: bool,
    x: [usize; 4],
    w: [usize; 4],
    y: [usize; 4],
    s: usize,
    p: usize,
    op: usize,
}

fn layers(batch: usize, size: usize, width: f64) -> Vec<Layer> {
    let c = [32.0, 64.0, 128.0, 128.0].map(|c: f64| ((c * width).round() as usize).max(1));
    let down = |cin, cout, s: usize| Layer {
        name: format!("conv {cin}->{cout} 5x5/2 {s}"),
        transposed: false,
        x: [batch, cin, s, s],
        w: [cout, cin, 5, 5],
        y: [batch, cout, s / 2, s / 2],
        s: 2,
        p: 2,
        op: 0,
    };
    let point = |cin, cout, s: usize| Layer {
        name: format!("conv {cin}->{cout} 1x1 {s}"),
        transposed: false,
        x: [batch, cin, s, s],
        w: [cout, cin, 1, 1],
        y: [batch, cout, s, s],
        s: 1,
        p: 0,
        op: 0,
    };
    let up = |cin, cout, s: usize| Layer {
        name: format!("convT {cin}->{cout} 5x5/2 {s}"),
        transposed: true,
        x: [batch, cin, s, s],
        w: [cin, cout, 5, 5],
        y: [batch, cout, 2 * s, 2 * s],
        s: 2,
        p: 2,
        op: 1,
    };
    vec![
        down(1, c[0], size),
        down(c[0], c[1], size / 2),
        down(c[1], c[2], size / 4),
        down(c[2], c[3], size / 8),
        point(c[3], 16, size / 16),
        point(16, c[3], size / 16),
        up(c[3], c[2], size / 16),
        up(c[2], c[1], size / 8),
        up(c[1], c[0], size / 4),
        up(c[0], c[0], size / 2),
        point(c[0], 1, size),
    ]
}

/// (forward, input grad, weight grad) in ms, ours or burn-flex's.
fn time(l: &Layer, reps: usize, ours: bool) -> [f64; 3] {
    let (x, w, dy) = (rand(l.x), rand(l.w), rand(l.y));
    let b = || Some(rand([1, 1, 1, l.y[1]]).reshape([l.y[1]].into()));
    if l.transposed {
        let o = ConvTransposeOptions::new([l.s; 2], [l.p; 2], [l.op; 2], [1, 1], 1);
        let o = || o.clone();
        if ours {
            [
                median_ms(reps, || {
                    Flex::conv_transpose2d_forward(x.clone(), w.clone(), b(), o())
                }),
                median_ms(reps, || {
                    Flex::conv_transpose2d_input_grad(w.clone(), dy.clone(), o())
                }),
                median_ms(reps, || {
                    Flex::conv_transpose2d_weight_grad(x.clone(), w.clone(), dy.clone(), o())
                }),
            ]
        } else {
            [
                median_ms(reps, || {
                    Flex::conv_transpose2d(x.clone(), w.clone(), b(), o())
                }),
                median_ms(reps, || {
                    Flex::conv_transpose2d_x_backward(w.clone(), dy.clone(), o())
                }),
                median_ms(reps, || {
                    Flex::conv_transpose2d_weight_backward(x.clone(), w.clone(), dy.clone(), o())
                }),
            ]
        }
    } else {
        let o = ConvOptions::new([l.s; 2], [l.p; 2], [1, 1], 1);
        let o = || o.clone();
        if ours {
            [
                median_ms(reps, || {
                    Flex::conv2d_forward(x.clone(), w.clone(), b(), o())
                }),
                median_ms(reps, || {
                    Flex::conv2d_input_grad(x.clone(), w.clone(), dy.clone(), o())
                }),
                median_ms(reps, || {
                    Flex::conv2d_weight_grad(x.clone(), w.clone(), dy.clone(), o())
                }),
            ]
        } else {
            [
                median_ms(reps, || Flex::conv2d(x.clone(), w.clone(), b(), o())),
                median_ms(reps, || {
                    Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), o())
                }),
                median_ms(reps, || {
                    Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), o())
                }),
            ]
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let size: usize = arg(0, "64").parse().expect("size");
    let width: f64 = arg(1, "0.5").parse().expect("width");
    let batch: usize = arg(2, "32").parse().expect("batch");
    let reps: usize = arg(3, "5").parse().expect("reps");
    let which = arg(4, "both");
    println!(
        "batch {batch}, {size}x{size}, width {width}: ms (forward / input grad / weight grad)"
    );
    let mut totals = [[0.0; 3]; 2];
    for l in layers(batch, size, width) {
        let mut line = format!("{:<28}", l.name);
        for (i, ours) in [true, false].into_iter().enumerate() {
            if which == "both" || (which == "ours") == ours {
                let t = time(&l, reps, ours);
                for j in 0..3 {
                    totals[i][j] += t[j];
                }
                line += &format!(
                    "  {}{:>8.2}{:>8.2}{:>8.2}",
                    if ours { "ours" } else { "burn" },
                    t[0],
                    t[1],
                    t[2]
                );
            }
        }
        println!("{line}");
    }
    println!(
        "{:<28}  ours{:>8.2}{:>8.2}{:>8.2}  burn{:>8.2}{:>8.2}{:>8.2}",
        "total", totals[0][0], totals[0][1], totals[0][2], totals[1][0], totals[1][1], totals[1][2]
    );
}
