//! The sliding window of a 2-D convolution between an image and a grid of positions, and the two
//! copies it defines: im2col (image → columns) and its adjoint col2im (columns → image, added).

/// A `kernel`-sized window visiting `grid` positions of a `channels × image` map with `stride`
/// and zero `padding`: at grid position `(gy, gx)`, tap `(ky, kx)` of channel `c` reads image
/// pixel `(gy·sy + ky − py, gx·sx + kx − px)`, zero outside the image.
///
/// The column matrix has one row per `(c, ky, kx)` (that order: the order of a weight's trailing
/// axes) and one column per grid position, row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Channels of the image.
    pub channels: usize,
    /// Image height and width.
    pub image: [usize; 2],
    /// Grid height and width (the positions the window visits).
    pub grid: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Step between grid positions, in image pixels.
    pub stride: [usize; 2],
    /// Zero rows/columns added before the image on each axis (and after it, as far as the grid
    /// reaches).
    pub padding: [usize; 2],
}

impl Window {
    /// Rows of the column matrix: `channels · KH · KW`.
    pub fn rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Grid positions (columns of the column matrix of one image).
    pub fn positions(&self) -> usize {
        self.grid[0] * self.grid[1]
    }

    /// Values of one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.image[0] * self.image[1]
    }

    /// Whether the column matrix is the image itself (a 1×1 window, stride 1, no padding).
    pub fn is_identity(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && self.image == self.grid
    }

    /// The grid coordinates `[lo, hi)` along `axis` at which tap `k` falls inside the image.
    fn inside(&self, axis: usize, k: usize) -> (usize, usize) {
        let (size, s, p, g) = (
            self.image[axis],
            self.stride[axis],
            self.padding[axis],
            self.grid[axis],
        );
        // 0 <= x·s + k − p < size
        let lo = if p > k { (p - k).div_ceil(s) } else { 0 };
        let hi = if size + p > k {
            (size + p - k - 1) / s + 1
        } else {
            0
        };
        let hi = hi.min(g);
        (lo.min(hi), hi)
    }
}

/// Visits the runs of grid positions `[p0, p1)` of the row of tap `(ky, kx)`: for each grid row
/// met, `f(offset in the row, run length, image row or None, first inside x, end inside x,
/// first grid x)` with the inside range clipped to the run.
fn runs(
    win: &Window,
    ky: usize,
    kx: usize,
    p0: usize,
    p1: usize,
    mut f: impl FnMut(usize, usize, Option<usize>, usize, usize, usize),
) {
    let gw = win.grid[1];
    let (ylo, yhi) = win.inside(0, ky);
    let (xlo, xhi) = win.inside(1, kx);
    let mut p = p0;
    while p < p1 {
        let (gy, gx0) = (p / gw, p % gw);
        let gx1 = gw.min(gx0 + (p1 - p));
        let iy = (ylo..yhi)
            .contains(&gy)
            .then(|| gy * win.stride[0] + ky - win.padding[0]);
        let lo = xlo.clamp(gx0, gx1);
        let hi = xhi.clamp(lo, gx1);
        f(p - p0, gx1 - gx0, iy, lo, hi, gx0);
        p += gx1 - gx0;
    }
}

/// Writes the columns `[p0, p1)` of `image`'s column matrix to `dst`: row `r` at
/// `dst[r·ld ..][.. p1 − p0]`.
///
/// # Panics
/// When `image` holds fewer than [`Window::image_len`] values or `dst` is too short.
pub fn im2col(win: &Window, image: &[f32], p0: usize, p1: usize, dst: &mut [f32], ld: usize) {
    let [ih, iw] = win.image;
    let [kh, kw] = win.kernel;
    let (sx, px) = (win.stride[1], win.padding[1]);
    let n = p1 - p0;
    for (c, plane) in image.chunks_exact(ih * iw).take(win.channels).enumerate() {
        for ky in 0..kh {
            for kx in 0..kw {
                let r = (c * kh + ky) * kw + kx;
                let row = &mut dst[r * ld..r * ld + n];
                runs(win, ky, kx, p0, p1, |off, len, iy, lo, hi, gx0| {
                    let seg = &mut row[off..off + len];
                    let Some(iy) = iy else {
                        seg.fill(0.0);
                        return;
                    };
                    let (a, b) = (lo - gx0, hi - gx0);
                    seg[..a].fill(0.0);
                    seg[b..].fill(0.0);
                    if a == b {
                        return;
                    }
                    let src = &plane[iy * iw..(iy + 1) * iw];
                    let x0 = lo * sx + kx - px;
                    let out = &mut seg[a..b];
                    if sx == 1 {
                        out.copy_from_slice(&src[x0..x0 + out.len()]);
                    } else {
                        for (o, v) in out.iter_mut().zip(src[x0..].iter().step_by(sx)) {
                            *o = *v;
                        }
                    }
                });
            }
        }
    }
}

/// Adds the columns `[p0, p1)` of a column matrix (row `r` at `src[r·ld ..][.. p1 − p0]`) into
/// `image`, each value to the pixel it was read from by [`im2col`]; values that fall in the
/// padding are dropped.
///
/// # Panics
/// When `image` holds fewer than [`Window::image_len`] values or `src` is too short.
pub fn col2im(win: &Window, src: &[f32], ld: usize, p0: usize, p1: usize, image: &mut [f32]) {
    let [ih, iw] = win.image;
    let [kh, kw] = win.kernel;
    let (sx, px) = (win.stride[1], win.padding[1]);
    let n = p1 - p0;
    for (c, plane) in image
        .chunks_exact_mut(ih * iw)
        .take(win.channels)
        .enumerate()
    {
        for ky in 0..kh {
            for kx in 0..kw {
                let r = (c * kh + ky) * kw + kx;
                let row = &src[r * ld..r * ld + n];
                runs(win, ky, kx, p0, p1, |off, _, iy, lo, hi, gx0| {
                    let Some(iy) = iy else { return };
                    if lo == hi {
                        return;
                    }
                    let seg = &row[off + lo - gx0..off + hi - gx0];
                    let dst = &mut plane[iy * iw..(iy + 1) * iw];
                    let x0 = lo * sx + kx - px;
                    if sx == 1 {
                        for (d, v) in dst[x0..x0 + seg.len()].iter_mut().zip(seg) {
                            *d += v;
                        }
                    } else {
                        for (d, v) in dst[x0..].iter_mut().step_by(sx).zip(seg) {
                            *d += v;
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col by the definition, one value at a time.
    fn naive(win: &Window, image: &[f32]) -> Vec<f32> {
        let [ih, iw] = win.image;
        let [gh, gw] = win.grid;
        let [kh, kw] = win.kernel;
        let mut out = vec![0.0; win.rows() * win.positions()];
        for c in 0..win.channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let r = (c * kh + ky) * kw + kx;
                    for gy in 0..gh {
                        for gx in 0..gw {
                            let y = (gy * win.stride[0] + ky) as isize - win.padding[0] as isize;
                            let x = (gx * win.stride[1] + kx) as isize - win.padding[1] as isize;
                            if (0..ih as isize).contains(&y) && (0..iw as isize).contains(&x) {
                                out[r * gh * gw + gy * gw + gx] =
                                    image[(c * ih + y as usize) * iw + x as usize];
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn windows() -> Vec<Window> {
        let mut v = Vec::new();
        for (image, k, s, p) in [
            ([7, 9], [3, 3], [1, 1], [1, 1]),
            ([8, 8], [5, 5], [2, 2], [2, 2]),
            ([5, 6], [2, 3], [2, 1], [0, 2]),
            ([4, 4], [1, 1], [1, 1], [0, 0]),
            ([3, 3], [5, 5], [1, 2], [2, 2]),
        ] {
            let grid = [0, 1].map(|a| (image[a] + 2 * p[a] - k[a]) / s[a] + 1);
            v.push(Window {
                channels: 2,
                image,
                grid,
                kernel: k,
                stride: s,
                padding: p,
            });
        }
        v
    }

    /// Whole and partial column ranges equal the definition; col2im is im2col's adjoint
    /// (⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩).
    #[test]
    fn im2col_and_its_adjoint() {
        for win in windows() {
            let image: Vec<f32> = (0..win.image_len()).map(|i| i as f32 + 1.0).collect();
            let want = naive(&win, &image);
            let (rows, p) = (win.rows(), win.positions());
            for (p0, p1) in [(0, p), (1, p.min(4)), (p / 2, p)] {
                if p0 >= p1 {
                    continue;
                }
                let n = p1 - p0;
                let mut got = vec![f32::NAN; rows * n];
                im2col(&win, &image, p0, p1, &mut got, n);
                for r in 0..rows {
                    assert_eq!(
                        &got[r * n..(r + 1) * n],
                        &want[r * p + p0..r * p + p1],
                        "{win:?}"
                    );
                }
            }
            let cols: Vec<f32> = (0..rows * p).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let mut back = vec![0.0; win.image_len()];
            col2im(&win, &cols, p, 0, p, &mut back);
            let lhs: f32 = want.iter().zip(&cols).map(|(a, b)| a * b).sum();
            let rhs: f32 = image.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{win:?}");
        }
    }
}
