//! The sliding window of a 2-D convolution between an image and a grid of positions, and the
//! phase planes that turn each kernel tap into a contiguous view.
//!
//! A stride-`s` window reads image pixel `gy·s + ky − p` at grid row `gy`. Splitting the padded
//! image into `s × s` phase planes (`plane[a][i] = padded[i·s + a]`, per axis) turns that into
//! row `gy + ky / s` of phase `ky mod s`: on planes `wq` values wide, tap `(ky, kx)` reads the
//! plane at `(gy + ky / s)·wq + gx + kx / s`, so that over the *extended grid* (`gx` running to
//! `wq` instead of `gw`) every tap is one contiguous run of the plane. A convolution is then one
//! matrix product per tap, accumulated (implicit GEMM), with no im2col buffer; the extended
//! grid's extra columns are dropped (outputs) or held at zero (inputs).

/// A `kernel`-sized window visiting `grid` positions of a `channels × image` map with `stride`
/// and zero `padding`: at grid position `(gy, gx)`, tap `(ky, kx)` of channel `c` reads image
/// pixel `(gy·sy + ky − py, gx·sx + kx − px)`, zero outside the image.
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
    /// Taps of the kernel (`KH · KW`).
    pub fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Rows of the window's column matrix: `channels · KH · KW`, ordered `(c, ky, kx)` like a
    /// weight's trailing axes.
    pub fn rows(&self) -> usize {
        self.channels * self.taps()
    }

    /// Grid positions.
    pub fn positions(&self) -> usize {
        self.grid[0] * self.grid[1]
    }

    /// Values of one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.image[0] * self.image[1]
    }

    /// Whether the window reads the image itself (a 1×1 window, stride 1, no padding).
    pub fn is_identity(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && self.image == self.grid
    }
}

/// The phase planes of a window, for units of `images` images side by side.
///
/// Layout: one *plane row* per `(channel, phase)`, `stride()` values long: the `images`
/// extended grids (`hq × wq` each) one after the other, then `tail` zeros that the last taps
/// run into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases {
    /// Phases per channel (`sy · sx`).
    pub phases: usize,
    /// Rows and columns of a plane.
    pub hq: usize,
    /// See `hq`.
    pub wq: usize,
    /// Images side by side.
    pub images: usize,
    tail: usize,
}

impl Phases {
    /// The planes of `win` for `images` images.
    pub fn new(win: &Window, images: usize) -> Self {
        let [sy, sx] = win.stride;
        let wq = win.grid[1] + (win.kernel[1] - 1) / sx;
        Phases {
            phases: sy * sx,
            hq: win.grid[0] + (win.kernel[0] - 1) / sy,
            wq,
            images,
            tail: ((win.kernel[0] - 1) / sy) * wq + (win.kernel[1] - 1) / sx,
        }
    }

    /// Extended-grid columns per image (`hq · wq`).
    pub fn per_image(&self) -> usize {
        self.hq * self.wq
    }

    /// Extended-grid columns of the unit (`images · hq · wq`).
    pub fn columns(&self) -> usize {
        self.images * self.per_image()
    }

    /// Values of one plane row.
    pub fn stride(&self) -> usize {
        self.columns() + self.tail
    }

    /// Values of all planes of `channels` channels.
    pub fn len(&self, channels: usize) -> usize {
        channels * self.phases * self.stride()
    }

    /// Where tap `(ky, kx)` starts within the planes of channel 0: its phase's plane row plus
    /// the tap's offset in it.
    pub fn tap_start(&self, win: &Window, ky: usize, kx: usize) -> usize {
        let [sy, sx] = win.stride;
        let phase = (ky % sy) * sx + kx % sx;
        phase * self.stride() + (ky / sy) * self.wq + kx / sx
    }
}

/// The extended-grid columns `[lo, hi)` of plane column `j` that fall inside the image along
/// one axis: image coordinate `j·s + phase − pad` in `[0, size)`.
fn inside(n: usize, s: usize, phase: usize, pad: usize, size: usize) -> (usize, usize) {
    let lo = if pad > phase {
        (pad - phase).div_ceil(s)
    } else {
        0
    };
    let hi = if size + pad > phase {
        (size + pad - phase - 1) / s + 1
    } else {
        0
    };
    let hi = hi.min(n);
    (lo.min(hi), hi)
}

/// `out[k] = src[k·s]` (a stride-`s` gather; `src` holds at least `(out.len() − 1)·s + 1`
/// values).
fn gather(out: &mut [f32], src: &[f32], s: usize) {
    match s {
        1 => out.copy_from_slice(&src[..out.len()]),
        2 => {
            let full = (src.len() / 2).min(out.len());
            for (o, p) in out[..full].iter_mut().zip(src.chunks_exact(2)) {
                *o = p[0];
            }
            if let Some(o) = out.get_mut(full) {
                *o = src[2 * full];
            }
        }
        _ => {
            for (o, v) in out.iter_mut().zip(src.iter().step_by(s)) {
                *o = *v;
            }
        }
    }
}

/// Writes the phase planes of `images` (`ph.images` images of [`Window::image_len`] values)
/// to `planes` (at least `ph.len(win.channels)` values), zero in the padding and the tail.
///
/// # Panics
/// When a buffer is too short.
pub fn split(win: &Window, ph: &Phases, images: &[f32], planes: &mut [f32]) {
    let [ih, iw] = win.image;
    let [sy, sx] = win.stride;
    let [py, px] = win.padding;
    let (hq, wq, stride) = (ph.hq, ph.wq, ph.stride());
    let ilen = win.image_len();
    for c in 0..win.channels {
        for a in 0..sy {
            let (ylo, yhi) = inside(hq, sy, a, py, ih);
            for b in 0..sx {
                let (xlo, xhi) = inside(wq, sx, b, px, iw);
                let row = &mut planes[(c * ph.phases + a * sx + b) * stride..][..stride];
                let (grids, tail) = row.split_at_mut(ph.columns());
                tail.fill(0.0);
                for (j, grid) in grids.chunks_exact_mut(hq * wq).enumerate() {
                    let plane = &images[j * ilen + c * ih * iw..][..ih * iw];
                    for (i, out) in grid.chunks_exact_mut(wq).enumerate() {
                        if !(ylo..yhi).contains(&i) {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[(i * sy + a - py) * iw..][..iw];
                        out[..xlo].fill(0.0);
                        out[xhi..].fill(0.0);
                        let x0 = xlo * sx + b - px;
                        gather(&mut out[xlo..xhi], &src[x0..], sx);
                    }
                }
            }
        }
    }
}

/// The inverse of [`split`] on the image's pixels: writes `images` (`ph.images` images) from
/// the planes; pixels no plane value maps to (past the reach of the grid) get zero.
///
/// # Panics
/// When a buffer is too short.
pub fn merge(win: &Window, ph: &Phases, planes: &[f32], images: &mut [f32]) {
    let [ih, iw] = win.image;
    let [sy, sx] = win.stride;
    let [py, px] = win.padding;
    let (hq, wq, stride) = (ph.hq, ph.wq, ph.stride());
    let ilen = win.image_len();
    for (j, image) in images.chunks_exact_mut(ilen).take(ph.images).enumerate() {
        for (c, plane) in image.chunks_exact_mut(ih * iw).enumerate() {
            for (iy, out) in plane.chunks_exact_mut(iw).enumerate() {
                let (a, i) = ((iy + py) % sy, (iy + py) / sy);
                if i >= hq {
                    out.fill(0.0);
                    continue;
                }
                let row = |b: usize| {
                    &planes[(c * ph.phases + a * sx + b) * stride + j * hq * wq + i * wq..][..wq]
                };
                if sx == 1 {
                    let n = iw.min(wq.saturating_sub(px));
                    out[..n].copy_from_slice(&row(0)[px..px + n]);
                    out[n..].fill(0.0);
                    continue;
                }
                // image column ix reads plane column (ix + px) / sx of phase (ix + px) mod sx
                let mut done = 0;
                if sx == 2 {
                    // pairs (2k, 2k + 1) read the two phases' columns j0 + k and j1 + k
                    let (b0, j0) = (px % 2, px / 2);
                    let (b1, j1) = ((px + 1) % 2, px.div_ceil(2));
                    let (r0, r1) = (&row(b0)[j0.min(wq)..], &row(b1)[j1.min(wq)..]);
                    for ((pair, &v0), &v1) in out.chunks_exact_mut(2).zip(r0).zip(r1) {
                        pair[0] = v0;
                        pair[1] = v1;
                        done += 2;
                    }
                }
                for (ix, o) in out.iter_mut().enumerate().skip(done) {
                    let (b, jq) = ((ix + px) % sx, (ix + px) / sx);
                    *o = row(b).get(jq).copied().unwrap_or(0.0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> Vec<Window> {
        let mut v = Vec::new();
        for (image, k, s, p) in [
            ([7, 9], [3, 3], [1, 1], [1, 1]),
            ([8, 8], [5, 5], [2, 2], [2, 2]),
            ([5, 6], [2, 3], [2, 1], [0, 2]),
            ([4, 4], [1, 1], [1, 1], [0, 0]),
            ([3, 3], [5, 5], [1, 2], [2, 2]),
            ([6, 7], [1, 2], [2, 2], [0, 1]),
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

    /// Every tap's run of the planes holds, at each valid grid position, the pixel the window
    /// definition reads there (zero in the padding).
    #[test]
    fn taps_read_the_window() {
        for win in windows() {
            let ph = Phases::new(&win, 2);
            let images: Vec<f32> = (0..2 * win.image_len()).map(|i| i as f32 + 1.0).collect();
            let mut planes = vec![f32::NAN; ph.len(win.channels)];
            split(&win, &ph, &images, &mut planes);
            assert!(planes.iter().all(|v| v.is_finite()), "{win:?}");
            let [ih, iw] = win.image;
            for j in 0..2 {
                for c in 0..win.channels {
                    for ky in 0..win.kernel[0] {
                        for kx in 0..win.kernel[1] {
                            let start = c * ph.phases * ph.stride() + ph.tap_start(&win, ky, kx);
                            for gy in 0..win.grid[0] {
                                for gx in 0..win.grid[1] {
                                    let y = (gy * win.stride[0] + ky) as isize
                                        - win.padding[0] as isize;
                                    let x = (gx * win.stride[1] + kx) as isize
                                        - win.padding[1] as isize;
                                    let want = if (0..ih as isize).contains(&y)
                                        && (0..iw as isize).contains(&x)
                                    {
                                        images[j * win.image_len()
                                            + (c * ih + y as usize) * iw
                                            + x as usize]
                                    } else {
                                        0.0
                                    };
                                    let q = j * ph.per_image() + gy * ph.wq + gx;
                                    assert_eq!(planes[start + q], want, "{win:?}");
                                }
                            }
                        }
                    }
                }
            }
            let mut back = vec![f32::NAN; images.len()];
            merge(&win, &ph, &planes, &mut back);
            // every pixel some tap reads comes back; the others are zero
            for (a, b) in images.iter().zip(&back) {
                assert!(a == b || *b == 0.0, "{win:?}: {a} vs {b}");
            }
        }
    }
}
