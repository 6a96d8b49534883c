//! The per-channel layers around every convolution of the backbone, fused into one or two passes
//! each: batch normalisation (statistics, affine map, gradients) and leaky ReLU (and its
//! gradient), on `[N, C, L]` maps (row-major, `L` = pixels per channel).

use rayon::prelude::*;

/// Rows of at least this many values go to rayon one by one; shorter ones in groups.
const ROW_GRAIN: usize = 1 << 14;

/// Sum of `f(v)` over a row, in 16 `f32` lanes (vectorised) gathered in `f64`.
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(f(v))).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// Sum of `f(a, b)` over two rows, as [`lane_sum`].
fn lane_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f64::from(f(x, y)))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(xa).zip(xb) {
            *l += f(x, y);
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// Runs `f(row index, row)` over the `len`-long rows of `data` in parallel.
fn rows_mut(data: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let per = ROW_GRAIN.div_ceil(len.max(1)).max(1);
    data.par_chunks_mut(per * len)
        .enumerate()
        .for_each(|(i, rows)| {
            for (j, row) in rows.chunks_exact_mut(len).enumerate() {
                f(i * per + j, row);
            }
        });
}

/// Per-channel sums over `[n, c, len]`: `Σ f(x)` for each channel, in `f64`, with `f` made
/// per channel by `make` (so that its constants are values, not loads in the inner loop).
fn channel_sum<F: Fn(f32) -> f32>(
    x: &[f32],
    n: usize,
    c: usize,
    len: usize,
    make: impl Fn(usize) -> F + Sync,
) -> Vec<f64> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let f = make(ch);
            (0..n)
                .map(|i| lane_sum(&x[(i * c + ch) * len..][..len], &f))
                .sum()
        })
        .collect()
}
/// Batch mean and biased variance of each channel of `[n, c, len]` maps (two passes, `f64`).
///
/// # Panics
/// When `x` does not hold `n · c · len` values.
pub fn batch_stats(x: &[f32], n: usize, c: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), n * c * len, "batch_stats: length");
    let count = (n * len) as f64;
    let mean: Vec<f64> = channel_sum(x, n, c, len, |_| |v| v)
        .into_iter()
        .map(|s| s / count)
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let var = channel_sum(x, n, c, len, |ch| {
        let m = mean32[ch];
        move |v| {
            let d = v - m;
            d * d
        }
    });
    (
        mean32.clone(),
        var.into_iter().map(|s| (s / count) as f32).collect(),
    )
}

/// `y = x·scale[c] + shift[c]` on `[n, c, len]` maps, in place.
///
/// # Panics
/// When the lengths disagree.
pub fn channel_affine(x: &mut [f32], c: usize, len: usize, scale: &[f32], shift: &[f32]) {
    assert!(scale.len() == c && shift.len() == c && x.len().is_multiple_of((c * len).max(1)));
    rows_mut(x, len, |row_index, row| {
        let ch = row_index % c;
        affine_row(row, scale[ch], shift[ch]);
    });
}

/// `v·s + t` on a row (the arithmetic of [`channel_affine`]).
pub(super) fn affine_row(row: &mut [f32], s: f32, t: f32) {
    row.iter_mut().for_each(|v| *v = *v * s + t);
}

/// Leaky ReLU on a row (the arithmetic of [`leaky_relu`]).
pub(super) fn leaky_row(row: &mut [f32], slope: f32) {
    // a multiplier picked by the sign, not a branch: vectorises (and keeps NaN and −0)
    row.iter_mut()
        .for_each(|v| *v *= if *v < 0.0 { slope } else { 1.0 });
}

/// `x·scale[c] + shift[c]` on `[n, c, len]` maps, into a new buffer in one pass (no zeroing
/// first: the buffer is built by `extend`).
///
/// # Panics
/// When the lengths disagree.
pub fn channel_affine_from(
    x: &[f32],
    c: usize,
    len: usize,
    scale: &[f32],
    shift: &[f32],
) -> Vec<f32> {
    assert!(scale.len() == c && shift.len() == c && x.len().is_multiple_of((c * len).max(1)));
    let mut y = Vec::with_capacity(x.len());
    for (r, row) in x.chunks_exact(len.max(1)).enumerate() {
        let (s, t) = (scale[r % c], shift[r % c]);
        y.extend(row.iter().map(|&v| v * s + t));
    }
    y
}

/// The scale and shift that normalise with `mean`/`var` and apply `gamma`/`beta`.
pub fn norm_affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| (f64::from(g) / (f64::from(v) + eps).sqrt()) as f32)
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b - m * s)
        .collect();
    (scale, shift)
}

/// Gradients of batch normalisation with batch statistics, `y = (x − mean)·γ/σ + β`,
/// `σ = √(var + eps)`: returns `(dγ, dβ)` and overwrites `dy` with `dx`.
///
/// # Panics
/// When the lengths disagree.
pub fn batch_norm_grad(
    x: &[f32],
    dy: &mut [f32],
    n: usize,
    c: usize,
    len: usize,
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    assert!(
        x.len() == n * c * len && dy.len() == x.len(),
        "batch_norm_grad: length"
    );
    let inv: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
        .collect();
    // Σ dy and Σ dy·x̂ per channel
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (m, s) = (mean[ch], inv[ch]);
            (0..n).fold((0.0, 0.0), |(a, b), i| {
                let at = (i * c + ch) * len;
                let (xr, gr) = (&x[at..at + len], &dy[at..at + len]);
                (
                    a + lane_sum(gr, |g| g),
                    b + lane_sum2(xr, gr, |v, g| g * ((v - m) * s)),
                )
            })
        })
        .collect();
    let count = (n * len) as f64;
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    // dx = γ/σ · (dy − Σdy/M − x̂·Σ(dy·x̂)/M)
    let coef: Vec<(f32, f32, f32, f32, f32)> = (0..c)
        .map(|ch| {
            let k = gamma[ch] * inv[ch];
            (
                k,
                (sums[ch].0 / count) as f32,
                (sums[ch].1 / count) as f32,
                mean[ch],
                inv[ch],
            )
        })
        .collect();
    dy.par_chunks_mut(len)
        .zip(x.par_chunks(len))
        .enumerate()
        .with_min_len(ROW_GRAIN.div_ceil(len.max(1)))
        .for_each(|(r, (g, xr))| {
            let (k, mdy, mdyx, m, s) = coef[r % c];
            for (g, &v) in g.iter_mut().zip(xr) {
                *g = k * (*g - mdy - (v - m) * s * mdyx);
            }
        });
    (dgamma, dbeta)
}

/// Leaky ReLU in place: `v` where `v >= 0` (and NaN), `v·slope` where `v < 0` (burn's
/// `leaky_relu`).
pub fn leaky_relu(x: &mut [f32], slope: f32) {
    // `move`: a captured reference to `slope` would be reloaded per element (it might alias the
    // row, as far as the optimiser knows), which keeps the loop scalar
    x.par_chunks_mut(ROW_GRAIN)
        .for_each(move |row| leaky_row(row, slope));
}

/// Gradient of leaky ReLU from its input or, for `slope > 0`, its output `y` (the same sign):
/// `dy` becomes `dy·slope` where `y < 0`.
///
/// # Panics
/// When the lengths disagree.
pub fn leaky_relu_grad(y: &[f32], dy: &mut [f32], slope: f32) {
    assert_eq!(y.len(), dy.len(), "leaky_relu_grad: length");
    dy.par_chunks_mut(ROW_GRAIN)
        .zip(y.par_chunks(ROW_GRAIN))
        .for_each(move |(g, y)| {
            for (g, &v) in g.iter_mut().zip(y) {
                *g *= if v < 0.0 { slope } else { 1.0 };
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_and_gradients() {
        let (n, c, len) = (3, 2, 37);
        let x: Vec<f32> = (0..n * c * len)
            .map(|i| ((i * 7919) % 101) as f32 * 0.1 - 3.0)
            .collect();
        let (mean, var) = batch_stats(&x, n, c, len);
        for ch in 0..c {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| x[(i * c + ch) * len..][..len].iter().map(|&v| f64::from(v)))
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / vals.len() as f64;
            assert!(
                (f64::from(mean[ch]) - m).abs() < 1e-5 && (f64::from(var[ch]) - v).abs() < 1e-4
            );
        }
        // finite differences of L = Σ w·y through y = BN(x)
        let gamma = [1.5f32, -0.5];
        let beta = [0.2f32, 0.1];
        let w: Vec<f32> = (0..x.len())
            .map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let loss = |x: &[f32]| -> f64 {
            let (m, v) = batch_stats(x, n, c, len);
            let (s, t) = norm_affine(&gamma, &beta, &m, &v, 1e-5);
            let mut y = x.to_vec();
            channel_affine(&mut y, c, len, &s, &t);
            y.iter().zip(&w).map(|(a, b)| f64::from(a * b)).sum()
        };
        let mut dx = w.clone();
        let (dg, db) = batch_norm_grad(&x, &mut dx, n, c, len, &gamma, &mean, &var, 1e-5);
        for i in [0, 5, 40, 100, 200] {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[i] += 1e-2;
            b[i] -= 1e-2;
            let fd = (loss(&a) - loss(&b)) / 2e-2;
            assert!(
                (fd - f64::from(dx[i])).abs() < 2e-2,
                "dx[{i}]: {fd} vs {}",
                dx[i]
            );
        }
        for ch in 0..c {
            let want_db: f64 = (0..n)
                .flat_map(|i| w[(i * c + ch) * len..][..len].iter())
                .map(|&v| f64::from(v))
                .sum();
            assert!((f64::from(db[ch]) - want_db).abs() < 1e-4);
        }
        assert!(dg.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn leaky_relu_and_its_gradient() {
        let mut x = vec![-2.0f32, -0.0, 0.0, 3.0, f32::NAN];
        leaky_relu(&mut x, 0.01);
        assert_eq!(&x[..4], &[-0.02, -0.0, 0.0, 3.0]);
        assert!(x[4].is_nan());
        let mut g = vec![1.0f32; 5];
        leaky_relu_grad(&x, &mut g, 0.01);
        assert_eq!(&g[..4], &[0.01, 1.0, 1.0, 1.0]);
    }
}
