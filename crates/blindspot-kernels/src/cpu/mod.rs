//! Convolutions lowered to matrix products on plain `f32` slices (NCHW, row-major), the kernels
//! behind burn-flex's [`ConvBackend`](crate::ConvBackend) impl.
//!
//! Each of the six convolution kernels is one of three shapes over a [`Window`] between an
//! image and a grid of positions, with `col(x)` the window's column matrix of image `x`
//! (`im2col`):
//!
//! | kernel | | conv2d | conv_transpose2d |
//! |---|---|---|---|
//! | [`lower`] | `y[n] = A · col(x[n])` | forward | input gradient |
//! | [`raise`] | `x[n] = col2im(A · y[n])` | input gradient | forward |
//! | [`correlate`] | `Σₙ g[n] · col(x[n])ᵀ` | weight gradient | weight gradient |
//!
//! plus [`channel_sums`] for both bias gradients. Work is split into units of whole images
//! (several small images per unit, so that each matrix product has enough columns; large
//! images in column tiles of about 1 MiB of column matrix, so that it stays in cache), units
//! run in parallel with rayon, and each thread keeps its column buffers between calls. The
//! split depends on the shapes only, and every sum runs in a fixed order: results do not depend
//! on the thread count.

mod gemm;
mod window;

use std::cell::Cell;

use rayon::prelude::*;

pub use gemm::{MatMut, MatRef, matmul};
pub use window::{Window, col2im, im2col};

/// Column-matrix values per tile (1 MiB of `f32`): large enough for efficient products, small
/// enough to stay in a core's L2 cache between im2col and the product.
const COL_TARGET: usize = 1 << 18;
/// Fewest columns per product when an image is split into tiles.
const MIN_TILE: usize = 128;
/// Most partial sums of a weight gradient (fixed, so that the sum order is too).
const MAX_PARTIALS: usize = 8;

/// How images are grouped into units and units into column tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Images per unit (the last unit may hold fewer).
    images: usize,
    /// Columns per product within a unit of one image (all of them when `images > 1`).
    tile: usize,
}

impl Plan {
    fn new(n: usize, positions: usize, rows: usize) -> Self {
        let want = (COL_TARGET / rows.max(1)).max(MIN_TILE);
        if positions >= want || n <= 1 {
            let tiles = positions.div_ceil(want).max(1);
            Plan {
                images: 1,
                tile: positions.div_ceil(tiles).max(1),
            }
        } else {
            let per = (want / positions.max(1)).clamp(1, n);
            let units = n.div_ceil(per);
            let per = n.div_ceil(units);
            Plan {
                images: per,
                tile: per * positions,
            }
        }
    }

    /// Column ranges of a one-image unit with `positions` columns.
    fn tiles(&self, positions: usize) -> impl Iterator<Item = (usize, usize)> {
        let tile = self.tile.max(1);
        (0..positions)
            .step_by(tile)
            .map(move |t0| (t0, (t0 + tile).min(positions)))
    }
}

thread_local! {
    /// Per-thread column and staging buffers, reused across calls.
    static SCRATCH: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers (taken out for the call, so that a nested
/// call gets fresh ones instead of a shared borrow).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    let (mut a, mut b) = SCRATCH.take();
    let r = f(&mut a, &mut b);
    SCRATCH.set((a, b));
    r
}

/// The first `len` values of `buf`, grown when shorter. Old contents are left in place: every
/// caller overwrites what it reads.
fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Copies `[nb, rows, p]` (image-major) into `[rows, nb·p]` (row-major, images side by side).
fn gather(src: &[f32], nb: usize, rows: usize, p: usize, dst: &mut [f32]) {
    let cols = nb * p;
    for j in 0..nb {
        for r in 0..rows {
            dst[r * cols + j * p..][..p].copy_from_slice(&src[(j * rows + r) * p..][..p]);
        }
    }
}

/// The inverse of [`gather`].
fn scatter(src: &[f32], nb: usize, rows: usize, p: usize, dst: &mut [f32]) {
    let cols = nb * p;
    for j in 0..nb {
        for r in 0..rows {
            dst[(j * rows + r) * p..][..p].copy_from_slice(&src[r * cols + j * p..][..p]);
        }
    }
}

/// Adds `bias[c]` to every value of channel `c` of `[nb, channels, len]` maps.
fn add_bias(out: &mut [f32], bias: Option<&[f32]>, len: usize) {
    if let Some(bias) = bias {
        for (row, b) in out.chunks_exact_mut(len).zip(bias.iter().cycle()) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// `out[n] = a · col(src[n])` for the `n` images of `src`, plus `bias[r]` on row `r`.
///
/// # Shapes
/// `a`: `[m, win.rows()]`, `src`: `n` images of [`Window::image_len`], bias `[m]` →
/// `[n, m, win.positions()]`
///
/// # Panics
/// When the shapes disagree.
pub fn lower(a: MatRef<'_>, src: &[f32], n: usize, win: &Window, bias: Option<&[f32]>) -> Vec<f32> {
    let (k, p, ilen) = (win.rows(), win.positions(), win.image_len());
    let m = a.rows();
    assert_eq!(a.cols(), k, "lower: weight columns against window rows");
    assert_eq!(src.len(), n * ilen, "lower: input length");
    let mut out = vec![0.0f32; n * m * p];
    if out.is_empty() {
        return out;
    }
    let plan = Plan::new(n, p, k);
    out.par_chunks_mut(plan.images * m * p)
        .zip(src.par_chunks(plan.images * ilen))
        .for_each(|(o, s)| {
            let nb = o.len() / (m * p);
            with_scratch(|col, tmp| {
                if nb == 1 {
                    for (t0, t1) in plan.tiles(p) {
                        let bt = t1 - t0;
                        let dst = MatMut::new(&mut o[t0..], m, bt, p, 1);
                        if win.is_identity() {
                            matmul(dst, a, MatRef::new(&s[t0..], k, bt, p, 1), false);
                        } else {
                            let c = grow(col, k * bt);
                            im2col(win, s, t0, t1, c, bt);
                            matmul(dst, a, MatRef::row_major(c, k, bt), false);
                        }
                    }
                } else {
                    let cols = nb * p;
                    let c = grow(col, k * cols);
                    for (j, img) in s.chunks_exact(ilen).enumerate() {
                        im2col(win, img, 0, p, &mut c[j * p..], cols);
                    }
                    let t = grow(tmp, m * cols);
                    matmul(
                        MatMut::row_major(t, m, cols),
                        a,
                        MatRef::row_major(c, k, cols),
                        false,
                    );
                    scatter(t, nb, m, p, o);
                }
            });
            add_bias(o, bias, p);
        });
    out
}

/// `out[n] = col2im(a · g[n])` for the `n` grids of `g`, plus `bias[c]` on image channel `c`.
///
/// # Shapes
/// `a`: `[win.rows(), m]`, `g`: `[n, m, win.positions()]`, bias `[win.channels]` → `n` images
/// of [`Window::image_len`]
///
/// # Panics
/// When the shapes disagree.
pub fn raise(a: MatRef<'_>, g: &[f32], n: usize, win: &Window, bias: Option<&[f32]>) -> Vec<f32> {
    let (k, p, ilen) = (win.rows(), win.positions(), win.image_len());
    let m = a.cols();
    assert_eq!(a.rows(), k, "raise: weight rows against window rows");
    assert_eq!(g.len(), n * m * p, "raise: gradient length");
    let mut out = vec![0.0f32; n * ilen];
    if out.is_empty() {
        return out;
    }
    let plan = Plan::new(n, p, k);
    out.par_chunks_mut(plan.images * ilen)
        .zip(g.par_chunks(plan.images * m * p))
        .for_each(|(o, gu)| {
            let nb = o.len() / ilen;
            with_scratch(|col, tmp| {
                if nb == 1 {
                    for (t0, t1) in plan.tiles(p) {
                        let bt = t1 - t0;
                        let rhs = MatRef::new(&gu[t0..], m, bt, p, 1);
                        if win.is_identity() {
                            matmul(MatMut::new(&mut o[t0..], k, bt, p, 1), a, rhs, false);
                        } else {
                            let c = grow(col, k * bt);
                            matmul(MatMut::row_major(c, k, bt), a, rhs, false);
                            col2im(win, c, bt, t0, t1, o);
                        }
                    }
                } else {
                    let cols = nb * p;
                    let t = grow(tmp, m * cols);
                    gather(gu, nb, m, p, t);
                    let c = grow(col, k * cols);
                    matmul(
                        MatMut::row_major(c, k, cols),
                        a,
                        MatRef::row_major(t, m, cols),
                        false,
                    );
                    for (j, img) in o.chunks_exact_mut(ilen).enumerate() {
                        col2im(win, &c[j * p..], cols, 0, p, img);
                    }
                }
            });
            add_bias(o, bias, win.image[0] * win.image[1]);
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
    let (k, p, ilen) = (win.rows(), win.positions(), win.image_len());
    assert_eq!(g.len(), n * m * p, "correlate: gradient length");
    assert_eq!(src.len(), n * ilen, "correlate: input length");
    if n == 0 || m * k == 0 {
        return vec![0.0; m * k];
    }
    let plan = Plan::new(n, p, k);
    let units = n.div_ceil(plan.images);
    let per_group = units.div_ceil(units.min(MAX_PARTIALS));
    let groups = units.div_ceil(per_group);
    let mut partials = vec![0.0f32; groups * m * k];
    partials
        .par_chunks_mut(m * k)
        .enumerate()
        .for_each(|(gi, acc)| {
            with_scratch(|col, tmp| {
                for u in gi * per_group..((gi + 1) * per_group).min(units) {
                    let i0 = u * plan.images;
                    let nb = plan.images.min(n - i0);
                    let gu = &g[i0 * m * p..(i0 + nb) * m * p];
                    let su = &src[i0 * ilen..(i0 + nb) * ilen];
                    if nb == 1 {
                        for (t0, t1) in plan.tiles(p) {
                            let bt = t1 - t0;
                            let lhs = MatRef::new(&gu[t0..], m, bt, p, 1);
                            let dst = MatMut::row_major(acc, m, k);
                            if win.is_identity() {
                                matmul(dst, lhs, MatRef::new(&su[t0..], k, bt, p, 1).t(), true);
                            } else {
                                let c = grow(col, k * bt);
                                im2col(win, su, t0, t1, c, bt);
                                matmul(dst, lhs, MatRef::row_major(c, k, bt).t(), true);
                            }
                        }
                    } else {
                        let cols = nb * p;
                        let t = grow(tmp, m * cols);
                        gather(gu, nb, m, p, t);
                        let c = grow(col, k * cols);
                        for (j, img) in su.chunks_exact(ilen).enumerate() {
                            im2col(win, img, 0, p, &mut c[j * p..], cols);
                        }
                        matmul(
                            MatMut::row_major(acc, m, k),
                            MatRef::row_major(t, m, cols),
                            MatRef::row_major(c, k, cols).t(),
                            true,
                        );
                    }
                }
            });
        });
    let (sum, rest) = partials.split_at_mut(m * k);
    for part in rest.chunks_exact(m * k) {
        sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
    }
    partials.truncate(m * k);
    partials
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
    fn plans() {
        // big images: one image per unit, tiles of about COL_TARGET values
        let p = Plan::new(32, 4096, 400);
        assert_eq!(p.images, 1);
        assert!(p.tile * 400 <= COL_TARGET + 400 && p.tile >= MIN_TILE);
        let tiles: Vec<_> = p.tiles(4096).collect();
        assert_eq!(tiles.first().map(|t| t.0), Some(0));
        assert_eq!(tiles.last().map(|t| t.1), Some(4096));
        assert!(tiles.windows(2).all(|w| w[0].1 == w[1].0));
        // small images: several per unit, balanced
        let p = Plan::new(32, 16, 1600);
        assert!(p.images > 1 && p.tile == p.images * 16);
        assert!(32usize.div_ceil(p.images) * p.images - 32 < p.images);
        // one image never splits into units
        assert_eq!(Plan::new(1, 16, 1600).images, 1);
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
