//! Convolutions as matrix products on plain `f32` slices (NCHW, row-major), the kernels behind
//! burn-flex's [`ConvBackend`](crate::ConvBackend) impl.
//!
//! With `col(x)` the column matrix of a [`Window`] over image `x` (rows `(c, ky, kx)`, one column
//! per grid position) and `W` a weight as an `[m, c·KH·KW]` matrix, the six convolution kernels
//! are three shapes:
//!
//! | kernel | | conv2d | conv_transpose2d |
//! |---|---|---|---|
//! | [`lower`] | `y[n] = W · col(x[n])` | forward | input gradient |
//! | [`raise`] | `x[n] = col2im(Wᵀ · y[n])` | input gradient | forward |
//! | [`correlate`] | `Σₙ y[n] · col(x[n])ᵀ` | weight gradient | weight gradient |
//!
//! plus [`channel_sums`] for both bias gradients. None of them builds `col(x)`: the image side
//! is split into phase planes ([`split`], about the image's size) on which every kernel tap is
//! one contiguous view, and the product is one small matrix product per tap (implicit GEMM,
//! [`window`](Phases)). Images are grouped into units (several small images side by side, so
//! that each product has enough columns), units run in parallel with rayon, each thread keeps
//! its buffers between calls, and columns are processed in cache-sized tiles. The split depends
//! on the shapes only and every sum runs in a fixed order: results do not depend on the thread
//! count.

mod gemm;
mod norm;
mod window;

use std::cell::Cell;

use rayon::prelude::*;

pub use gemm::{MatMut, MatRef, matmul};
pub use norm::{
    batch_norm_grad, batch_stats, channel_affine, channel_affine_from, leaky_relu, leaky_relu_grad,
    norm_affine,
};
pub use window::{Phases, Window, merge, split};

/// Fewest extended-grid columns a unit of several images aims for.
const UNIT_COLUMNS: usize = 512;
/// Values of the column tiles of a product's operands (`(m + c) · tile`, 1 MiB of `f32`): they
/// stay in a core's L2 cache across the taps.
const TILE_VALUES: usize = 1 << 18;
/// Fewest columns per tile.
const MIN_TILE: usize = 256;
/// Most partial sums of a weight gradient (fixed, so that the sum order is too).
const MAX_PARTIALS: usize = 8;

/// Images per unit for `n` images of `columns` extended-grid columns each: enough for
/// [`UNIT_COLUMNS`], balanced over the units.
fn unit_images(n: usize, columns: usize) -> usize {
    let per = UNIT_COLUMNS.div_ceil(columns.max(1)).clamp(1, n.max(1));
    let units = n.div_ceil(per).max(1);
    n.div_ceil(units).max(1)
}

/// Column tiles `[q0, q1)` of `columns` for products with `rows` operand rows.
fn tiles(columns: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let want = (TILE_VALUES / rows.max(1)).max(MIN_TILE);
    let tile = columns.div_ceil(columns.div_ceil(want).max(1)).max(1);
    (0..columns)
        .step_by(tile)
        .map(move |q0| (q0, (q0 + tile).min(columns)))
}

/// A thread's buffers: phase planes, an extended grid, a column tile.
#[derive(Default)]
struct Scratch {
    planes: Vec<f32>,
    ext: Vec<f32>,
    cols: Vec<f32>,
}

thread_local! {
    /// Per-thread buffers, reused across calls.
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers (taken out for the call, so that a nested call gets
/// fresh ones instead of a shared borrow).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.take();
    let r = f(&mut s);
    SCRATCH.set(s);
    r
}

/// Column-tile values (`rows · tile`, 1 MiB of `f32`) of the column mode.
const COL_VALUES: usize = 1 << 18;

/// Which kernel asks [`column_mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Lower,
    Raise,
    Correlate,
}

/// Whether to build column tiles (one product with `k = c·taps`, after copying the columns out
/// of the planes) rather than one product per tap (`k = c`, no copy), for `c` image channels
/// and `m` grid channels. Few image channels make per-tap products inefficient; many grid
/// channels amortise the copy. The thresholds are measured, per kernel, on the VAE's layers
/// at 64² (width 0.5) and 128² (width 1) with AVX-512 (`examples/conv_layers.rs`,
/// benches/README.md).
fn column_mode(kernel: Kernel, c: usize, m: usize, taps: usize) -> bool {
    taps > 1
        && (c < 16
            || match kernel {
                Kernel::Lower => m >= 128,
                Kernel::Raise => m >= 2 * c || m >= 128,
                Kernel::Correlate => m >= 32,
            })
}

/// Column tiles `[q0, q1)` of the column mode for `rows` column-matrix rows.
fn col_tiles(columns: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let want = (COL_VALUES / rows.max(1)).max(MIN_TILE);
    let tile = columns.div_ceil(columns.div_ceil(want).max(1)).max(1);
    (0..columns)
        .step_by(tile)
        .map(move |q0| (q0, (q0 + tile).min(columns)))
}

/// Copies columns `[q0, q1)` of the column matrix out of the phase planes: row `(c, tap)` is a
/// contiguous run of channel `c`'s planes.
fn fill_cols(win: &Window, ph: &Phases, planes: &[f32], q0: usize, q1: usize, cols: &mut [f32]) {
    let (t, plane_rows) = (q1 - q0, ph.phases * ph.stride());
    let mut rows = cols.chunks_exact_mut(t);
    for c in 0..win.channels {
        for ky in 0..win.kernel[0] {
            for kx in 0..win.kernel[1] {
                let start = c * plane_rows + ph.tap_start(win, ky, kx) + q0;
                if let Some(row) = rows.next() {
                    row.copy_from_slice(&planes[start..start + t]);
                }
            }
        }
    }
}

/// The adjoint of [`fill_cols`]: adds each column-matrix row into the run of the planes it
/// was read from.
fn add_cols(win: &Window, ph: &Phases, cols: &[f32], q0: usize, q1: usize, planes: &mut [f32]) {
    let (t, plane_rows) = (q1 - q0, ph.phases * ph.stride());
    let mut rows = cols.chunks_exact(t);
    for c in 0..win.channels {
        for ky in 0..win.kernel[0] {
            for kx in 0..win.kernel[1] {
                let start = c * plane_rows + ph.tap_start(win, ky, kx) + q0;
                if let Some(row) = rows.next() {
                    for (p, v) in planes[start..start + t].iter_mut().zip(row) {
                        *p += v;
                    }
                }
            }
        }
    }
}

/// `len` zeros, written by all threads: an output buffer that a serial `vec![0.0; len]` would
/// zero (and fault in) on one thread while the others wait.
fn zeroed(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(0.0f32, len));
    v
}

/// The first `len` values of `buf`, grown when shorter. Old contents are left in place: every
/// caller overwrites what it reads.
fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// What follows a convolution on its output: the bias, then a per-channel affine map (a batch
/// normalisation with given statistics), then a leaky ReLU, in that order. The kernels apply it
/// to each unit's output while that is still in cache, instead of three more passes over the
/// whole output, with the arithmetic of the separate ops ([`channel_affine`], [`leaky_relu`]):
/// the results are the same bit for bit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// `bias[c]` added to channel `c`.
    pub bias: Option<&'a [f32]>,
    /// `(scale, shift)`: `v·scale[c] + shift[c]` on channel `c`.
    pub affine: Option<(&'a [f32], &'a [f32])>,
    /// The negative slope of a leaky ReLU.
    pub leaky: Option<f32>,
}

impl Epilogue<'_> {
    /// Applies it to `[nb, channels, len]` maps.
    fn apply(&self, out: &mut [f32], channels: usize, len: usize) {
        if self.bias.is_none() && self.affine.is_none() && self.leaky.is_none() {
            return;
        }
        for (r, row) in out.chunks_exact_mut(len.max(1)).enumerate() {
            let ch = r % channels.max(1);
            if let Some(bias) = self.bias {
                let b = bias[ch];
                row.iter_mut().for_each(|v| *v += b);
            }
            if let Some((scale, shift)) = self.affine {
                norm::affine_row(row, scale[ch], shift[ch]);
            }
            if let Some(slope) = self.leaky {
                norm::leaky_row(row, slope);
            }
        }
    }
}

/// Tap `t` of a weight `[m, c·taps]`: the `[m, c]` matrix of its values at that tap.
fn tap_of(w: &[f32], m: usize, c: usize, taps: usize, t: usize) -> MatRef<'_> {
    MatRef::new(&w[t..], m, c, c * taps, taps)
}

/// Copies `[nb, m, gh·gw]` grids onto the extended grid `[m, nb·hq·wq]`, zero elsewhere.
fn extend(win: &Window, ph: &Phases, g: &[f32], m: usize, ext: &mut [f32]) {
    let [gh, gw] = win.grid;
    let (q, per, wq) = (ph.columns(), ph.per_image(), ph.wq);
    ext.fill(0.0);
    for (j, grids) in g.chunks_exact(m * gh * gw).enumerate() {
        for (r, grid) in grids.chunks_exact(gh * gw).enumerate() {
            for (gy, row) in grid.chunks_exact(gw).enumerate() {
                ext[r * q + j * per + gy * wq..][..gw].copy_from_slice(row);
            }
        }
    }
}

/// The inverse of [`extend`]: the valid columns of `[m, nb·hq·wq]` into `[nb, m, gh·gw]`.
fn compact(win: &Window, ph: &Phases, ext: &[f32], m: usize, g: &mut [f32]) {
    let [gh, gw] = win.grid;
    let (q, per, wq) = (ph.columns(), ph.per_image(), ph.wq);
    for (j, grids) in g.chunks_exact_mut(m * gh * gw).enumerate() {
        for (r, grid) in grids.chunks_exact_mut(gh * gw).enumerate() {
            for (gy, row) in grid.chunks_exact_mut(gw).enumerate() {
                row.copy_from_slice(&ext[r * q + j * per + gy * wq..][..gw]);
            }
        }
    }
}

/// `out[n] = w · col(src[n])` for the `n` images of `src`, followed by `epi`.
///
/// # Shapes
/// `w`: `[m, win.rows()]`, `src`: `n` images of [`Window::image_len`], `epi`'s vectors `[m]` →
/// `[n, m, win.positions()]`
///
/// # Panics
/// When the shapes disagree.
pub fn lower(
    w: &[f32],
    m: usize,
    src: &[f32],
    n: usize,
    win: &Window,
    epi: &Epilogue<'_>,
) -> Vec<f32> {
    let (c, taps, p, ilen) = (win.channels, win.taps(), win.positions(), win.image_len());
    assert_eq!(w.len(), m * c * taps, "lower: weight length");
    assert_eq!(src.len(), n * ilen, "lower: input length");
    let mut out = zeroed(n * m * p);
    if out.is_empty() {
        return out;
    }
    let nb = unit_images(n, Phases::new(win, 1).per_image());
    out.par_chunks_mut(nb * m * p)
        .zip(src.par_chunks(nb * ilen))
        .for_each(|(o, s)| {
            let nb = o.len() / (m * p);
            if win.is_identity() {
                for (oj, sj) in o.chunks_exact_mut(m * p).zip(s.chunks_exact(ilen)) {
                    for (q0, q1) in tiles(p, m + c) {
                        let dst = MatMut::new(&mut oj[q0..], m, q1 - q0, p, 1);
                        let rhs = MatRef::new(&sj[q0..], c, q1 - q0, p, 1);
                        matmul(dst, MatRef::row_major(w, m, c), rhs, false);
                    }
                }
            } else {
                let ph = Phases::new(win, nb);
                let (q, plane_rows) = (ph.columns(), ph.phases * ph.stride());
                with_scratch(|sc| {
                    let planes = grow(&mut sc.planes, ph.len(c));
                    split(win, &ph, s, planes);
                    let ext = grow(&mut sc.ext, m * q);
                    if column_mode(Kernel::Lower, c, m, taps) {
                        let k = c * taps;
                        for (q0, q1) in col_tiles(q, k) {
                            let cols = grow(&mut sc.cols, k * (q1 - q0));
                            fill_cols(win, &ph, planes, q0, q1, cols);
                            let dst = MatMut::new(&mut ext[q0..], m, q1 - q0, q, 1);
                            let rhs = MatRef::row_major(cols, k, q1 - q0);
                            matmul(dst, MatRef::row_major(w, m, k), rhs, false);
                        }
                        compact(win, &ph, ext, m, o);
                        return;
                    }
                    for (q0, q1) in tiles(q, m + c * ph.phases) {
                        for ky in 0..win.kernel[0] {
                            for kx in 0..win.kernel[1] {
                                let t = ky * win.kernel[1] + kx;
                                let start = ph.tap_start(win, ky, kx) + q0;
                                let x = MatRef::new(&planes[start..], c, q1 - q0, plane_rows, 1);
                                let dst = MatMut::new(&mut ext[q0..], m, q1 - q0, q, 1);
                                matmul(dst, tap_of(w, m, c, taps, t), x, t > 0);
                            }
                        }
                    }
                    compact(win, &ph, ext, m, o);
                });
            }
            epi.apply(o, m, p);
        });
    out
}

/// `out[n] = col2im(wᵀ · g[n])` for the `n` grids of `g`, followed by `epi` (per image
/// channel).
///
/// # Shapes
/// `w`: `[m, win.rows()]`, `g`: `[n, m, win.positions()]`, `epi`'s vectors `[win.channels]` →
/// `n` images
/// of [`Window::image_len`]
///
/// # Panics
/// When the shapes disagree.
pub fn raise(
    w: &[f32],
    m: usize,
    g: &[f32],
    n: usize,
    win: &Window,
    epi: &Epilogue<'_>,
) -> Vec<f32> {
    let (c, taps, p, ilen) = (win.channels, win.taps(), win.positions(), win.image_len());
    assert_eq!(w.len(), m * c * taps, "raise: weight length");
    assert_eq!(g.len(), n * m * p, "raise: gradient length");
    let mut out = zeroed(n * ilen);
    if out.is_empty() {
        return out;
    }
    let nb = unit_images(n, Phases::new(win, 1).per_image());
    out.par_chunks_mut(nb * ilen)
        .zip(g.par_chunks(nb * m * p))
        .for_each(|(o, gu)| {
            let nb = o.len() / ilen;
            if win.is_identity() {
                for (oj, gj) in o.chunks_exact_mut(ilen).zip(gu.chunks_exact(m * p)) {
                    for (q0, q1) in tiles(p, m + c) {
                        let dst = MatMut::new(&mut oj[q0..], c, q1 - q0, p, 1);
                        let rhs = MatRef::new(&gj[q0..], m, q1 - q0, p, 1);
                        matmul(dst, MatRef::row_major(w, m, c).t(), rhs, false);
                    }
                }
            } else {
                let ph = Phases::new(win, nb);
                let (q, plane_rows) = (ph.columns(), ph.phases * ph.stride());
                with_scratch(|sc| {
                    let ext = grow(&mut sc.ext, m * q);
                    extend(win, &ph, gu, m, ext);
                    let planes = grow(&mut sc.planes, ph.len(c));
                    planes.fill(0.0);
                    if column_mode(Kernel::Raise, c, m, taps) {
                        let k = c * taps;
                        for (q0, q1) in col_tiles(q, k) {
                            let cols = grow(&mut sc.cols, k * (q1 - q0));
                            let rhs = MatRef::new(&ext[q0..], m, q1 - q0, q, 1);
                            let dst = MatMut::row_major(cols, k, q1 - q0);
                            matmul(dst, MatRef::row_major(w, m, k).t(), rhs, false);
                            add_cols(win, &ph, cols, q0, q1, planes);
                        }
                        merge(win, &ph, planes, o);
                        return;
                    }
                    for (q0, q1) in tiles(q, m + c * ph.phases) {
                        for ky in 0..win.kernel[0] {
                            for kx in 0..win.kernel[1] {
                                let t = ky * win.kernel[1] + kx;
                                let start = ph.tap_start(win, ky, kx) + q0;
                                let dst =
                                    MatMut::new(&mut planes[start..], c, q1 - q0, plane_rows, 1);
                                let rhs = MatRef::new(&ext[q0..], m, q1 - q0, q, 1);
                                matmul(dst, tap_of(w, m, c, taps, t).t(), rhs, true);
                            }
                        }
                    }
                    merge(win, &ph, planes, o);
                });
            }
            epi.apply(o, c, win.image[0] * win.image[1]);
        });
    out
}

/// `Σₙ g[n] · col(src[n])ᵀ` over the `n` images of `src`.
///
/// # Shapes
/// `g`: `[n, m, win.positions()]`, `src`: `n` images of [`Window::image_len`] →
/// `[m, win.rows()]`
///
/// # Panics
/// When the shapes disagree.
pub fn correlate(g: &[f32], m: usize, src: &[f32], n: usize, win: &Window) -> Vec<f32> {
    let (c, taps, p, ilen) = (win.channels, win.taps(), win.positions(), win.image_len());
    assert_eq!(g.len(), n * m * p, "correlate: gradient length");
    assert_eq!(src.len(), n * ilen, "correlate: input length");
    let k = c * taps;
    if n == 0 || m * k == 0 {
        return vec![0.0; m * k];
    }
    let nb = unit_images(n, Phases::new(win, 1).per_image());
    let units = n.div_ceil(nb);
    let per_group = units.div_ceil(units.min(MAX_PARTIALS));
    let groups = units.div_ceil(per_group);
    // partial sums laid out [tap][m][c] (each tap's product writes one contiguous matrix), or
    // [c·taps][m] in the column mode
    let mut partials = vec![0.0f32; groups * m * k];
    partials
        .par_chunks_mut(m * k)
        .enumerate()
        .for_each(|(gi, acc)| {
            with_scratch(|sc| {
                for u in gi * per_group..((gi + 1) * per_group).min(units) {
                    let i0 = u * nb;
                    let nbu = nb.min(n - i0);
                    let gu = &g[i0 * m * p..(i0 + nbu) * m * p];
                    let su = &src[i0 * ilen..(i0 + nbu) * ilen];
                    if win.is_identity() {
                        for (gj, sj) in gu.chunks_exact(m * p).zip(su.chunks_exact(ilen)) {
                            for (q0, q1) in tiles(p, m + c) {
                                let lhs = MatRef::new(&gj[q0..], m, q1 - q0, p, 1);
                                let rhs = MatRef::new(&sj[q0..], c, q1 - q0, p, 1).t();
                                matmul(MatMut::row_major(acc, m, c), lhs, rhs, true);
                            }
                        }
                        continue;
                    }
                    let ph = Phases::new(win, nbu);
                    let (q, plane_rows) = (ph.columns(), ph.phases * ph.stride());
                    let ext = grow(&mut sc.ext, m * q);
                    extend(win, &ph, gu, m, ext);
                    let planes = grow(&mut sc.planes, ph.len(c));
                    split(win, &ph, su, planes);
                    if column_mode(Kernel::Correlate, c, m, taps) {
                        // acc holds [c·taps][m] here: the product's output is column-major
                        for (q0, q1) in col_tiles(q, k) {
                            let cols = grow(&mut sc.cols, k * (q1 - q0));
                            fill_cols(win, &ph, planes, q0, q1, cols);
                            let lhs = MatRef::new(&ext[q0..], m, q1 - q0, q, 1);
                            let rhs = MatRef::row_major(cols, k, q1 - q0).t();
                            matmul(MatMut::new(acc, m, k, 1, m), lhs, rhs, true);
                        }
                        continue;
                    }
                    for (q0, q1) in tiles(q, m + c * ph.phases) {
                        let lhs = MatRef::new(&ext[q0..], m, q1 - q0, q, 1);
                        for ky in 0..win.kernel[0] {
                            for kx in 0..win.kernel[1] {
                                let t = ky * win.kernel[1] + kx;
                                let start = ph.tap_start(win, ky, kx) + q0;
                                let x = MatRef::new(&planes[start..], c, q1 - q0, plane_rows, 1);
                                let dst = MatMut::row_major(&mut acc[t * m * c..], m, c);
                                matmul(dst, lhs, x.t(), true);
                            }
                        }
                    }
                }
            });
        });
    let (sum, rest) = partials.split_at_mut(m * k);
    for part in rest.chunks_exact(m * k) {
        sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
    }
    let mut out = vec![0.0f32; m * k];
    if !win.is_identity() && column_mode(Kernel::Correlate, c, m, taps) {
        // [c·taps][m] → [m][c·taps]
        for r in 0..k {
            for i in 0..m {
                out[i * k + r] = sum[r * m + i];
            }
        }
    } else {
        // [tap][m][c] → [m][c][tap]
        for t in 0..taps {
            for i in 0..m {
                for l in 0..c {
                    out[(i * c + l) * taps + t] = sum[(t * m + i) * c + l];
                }
            }
        }
    }
    out
}

/// Sum of a row, in 16 `f32` lanes (vectorised) gathered in `f64`.
fn row_sum(x: &[f32]) -> f64 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// Per-channel sums of `[n, m, p]` maps (a bias gradient).
///
/// # Panics
/// When `g` does not hold `n · m · p` values.
pub fn channel_sums(g: &[f32], n: usize, m: usize, p: usize) -> Vec<f32> {
    assert_eq!(g.len(), n * m * p, "channel_sums: length");
    (0..m)
        .into_par_iter()
        .map(|c| {
            (0..n)
                .map(|i| row_sum(&g[(i * m + c) * p..][..p]))
                .sum::<f64>() as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_tiles() {
        // big images: one per unit; small ones: balanced groups
        assert_eq!(unit_images(32, 1190), 1);
        let nb = unit_images(32, 36);
        assert!(nb > 1 && 32usize.div_ceil(nb) * nb - 32 < nb);
        assert_eq!(unit_images(1, 36), 1);
        let t: Vec<_> = tiles(5000, 128).collect();
        assert_eq!((t[0].0, t[t.len() - 1].1), (0, 5000));
        assert!(t.windows(2).all(|w| w[0].1 == w[1].0));
    }

    #[test]
    fn sums() {
        let g: Vec<f32> = (0..2 * 3 * 37).map(|i| i as f32).collect();
        let s = channel_sums(&g, 2, 3, 37);
        for c in 0..3 {
            let want: f32 = (0..2)
                .flat_map(|i| g[(i * 3 + c) * 37..][..37].iter())
                .sum();
            assert_eq!(s[c], want);
        }
    }
}
