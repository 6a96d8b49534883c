//! Resampling of 2-D slices, bit-compatible with Pillow's `Image.resize`.
//!
//! The paper's data loader resizes every 200x200 slice to 128x128 with
//! `torchvision.transforms.Resize`, which calls Pillow:
//!
//! - images (Pillow mode `F`, 32-bit float) use the antialiased **bilinear** filter
//!   ([`BilinearResizer`], [`resize_bilinear`]): a triangle filter whose support grows with
//!   the downscaling factor, applied separably (rows first, then columns), each pass
//!   accumulated in `f64` and rounded to `f32`, exactly as Pillow does;
//! - masks use **nearest neighbour** ([`resize_nearest`]): output index `o` reads input
//!   index `floor((o + 0.5) * in / out)`, accumulated in `f64` as Pillow does.
//!
//! All images are row-major: pixel `(row, col)` of an `h x w` image is at `row * w + col`.

/// One axis of a separable resampling filter: for every output index, the first input index,
/// the number of taps and the normalised weights.
#[derive(Debug, Clone)]
struct AxisCoeffs {
    /// `(first input index, tap count)` per output index.
    bounds: Vec<(usize, usize)>,
    /// Maximum tap count; the weights of output `o` are `weights[o * ksize..][..taps]`.
    ksize: usize,
    weights: Vec<f64>,
}

impl AxisCoeffs {
    /// Pillow's `precompute_coeffs` for the bilinear (triangle) filter of support 1.
    fn bilinear(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support (1.0) times the filter scale
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0.0; out_size * ksize];
        for o in 0..out_size {
            let center = (o as f64 + 0.5) * scale;
            // Pillow truncates towards zero and clamps to [0, in_size].
            let lo = ((center - support + 0.5).max(0.0) as usize).min(in_size);
            let hi = ((center + support + 0.5).max(0.0) as usize).min(in_size);
            let taps = hi.saturating_sub(lo).min(ksize);
            let k = &mut weights[o * ksize..o * ksize + taps];
            let mut total = 0.0;
            for (t, w) in k.iter_mut().enumerate() {
                let x = ((t + lo) as f64 - center + 0.5) / filterscale;
                *w = triangle(x);
                total += *w;
            }
            if total != 0.0 {
                k.iter_mut().for_each(|w| *w /= total);
            }
            bounds.push((lo, taps));
        }
        Self {
            bounds,
            ksize,
            weights,
        }
    }

    /// The same filter with every window widened to exactly `ksize` taps (moved left at the
    /// right edge, extra weights 0), so that inner loops have a fixed length. Adding the
    /// `0 * x` terms leaves every `f64` sum unchanged, so results stay equal to Pillow's.
    /// `None` when the input is shorter than `ksize`.
    fn padded(&self, in_size: usize) -> Option<Self> {
        let k = self.ksize;
        if in_size < k {
            return None;
        }
        let mut weights = vec![0.0; self.bounds.len() * k];
        let bounds = (0..self.bounds.len())
            .map(|o| {
                let (lo, w) = self.taps(o);
                let start = lo.min(in_size - k);
                let at = o * k + (lo - start);
                weights[at..at + w.len()].copy_from_slice(w);
                (start, k)
            })
            .collect();
        Some(Self {
            bounds,
            ksize: k,
            weights,
        })
    }

    fn taps(&self, o: usize) -> (usize, &[f64]) {
        let (lo, n) = self.bounds[o];
        (lo, &self.weights[o * self.ksize..o * self.ksize + n])
    }
}

/// The bilinear (triangle) kernel.
#[inline]
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// A reusable antialiased bilinear resampler from one image size to another, equal to
/// Pillow's `Image.resize((out_w, out_h), Image.BILINEAR)` on mode `F` images.
///
/// Building it precomputes the filter weights of both axes, so resizing the 155 slices of a
/// volume pays for them once.
#[derive(Debug, Clone)]
pub struct BilinearResizer {
    input: (usize, usize),
    output: (usize, usize),
    rows: Option<AxisCoeffs>,
    cols: Option<AxisCoeffs>,
}

impl BilinearResizer {
    /// A resampler from `input = (height, width)` to `output = (height, width)`.
    ///
    /// # Panics
    ///
    /// If an input side is 0 while the output is not empty (there is nothing to sample).
    pub fn new(input: (usize, usize), output: (usize, usize)) -> Self {
        let (h, w) = input;
        let (oh, ow) = output;
        assert!(
            oh * ow == 0 || h * w > 0,
            "cannot resize an empty {h}x{w} image to {oh}x{ow}"
        );
        Self {
            input,
            output,
            rows: (h != oh).then(|| AxisCoeffs::bilinear(h, oh)),
            cols: (w != ow).then(|| {
                let c = AxisCoeffs::bilinear(w, ow);
                c.padded(w).unwrap_or(c)
            }),
        }
    }

    /// The input size `(height, width)`.
    pub fn input(&self) -> (usize, usize) {
        self.input
    }

    /// The output size `(height, width)`.
    pub fn output(&self) -> (usize, usize) {
        self.output
    }

    /// Resize `src` into `dst`.
    ///
    /// # Shapes
    ///
    /// `src`: `h * w` values, row-major; `dst`: `oh * ow` values, row-major.
    ///
    /// # Panics
    ///
    /// If the slice lengths do not match the sizes given to [`BilinearResizer::new`].
    pub fn resize_into(&self, src: &[f32], dst: &mut [f32]) {
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        assert_eq!(src.len(), h * w, "source length vs {h}x{w}");
        assert_eq!(dst.len(), oh * ow, "destination length vs {oh}x{ow}");
        match (&self.rows, &self.cols) {
            (None, None) => dst.copy_from_slice(src),
            (None, Some(cols)) => horizontal(src, w, cols, ow, dst),
            (Some(rows), None) => vertical(src, ow, rows, dst),
            (Some(rows), Some(cols)) => {
                // Pillow runs the horizontal pass only on the rows the vertical pass reads.
                let first = rows.bounds.first().map_or(0, |b| b.0);
                let last = rows.bounds.last().map_or(0, |b| b.0 + b.1);
                let mut tmp = vec![0.0f32; (last - first) * ow];
                horizontal(&src[first * w..last * w], w, cols, ow, &mut tmp);
                vertical_offset(&tmp, ow, rows, first, dst);
            }
        }
    }

    /// Resize `src`, returning a new `oh * ow` image.
    ///
    /// # Panics
    ///
    /// If `src.len()` is not `h * w`.
    pub fn resize(&self, src: &[f32]) -> Vec<f32> {
        let mut dst = vec![0.0; self.output.0 * self.output.1];
        self.resize_into(src, &mut dst);
        dst
    }
}

fn horizontal(src: &[f32], w: usize, cols: &AxisCoeffs, ow: usize, dst: &mut [f32]) {
    match cols.ksize {
        3 => horizontal_fixed::<3>(src, w, cols, ow, dst),
        5 => horizontal_fixed::<5>(src, w, cols, ow, dst),
        7 => horizontal_fixed::<7>(src, w, cols, ow, dst),
        _ => horizontal_any(src, w, cols, ow, dst),
    }
}

/// The horizontal pass for windows of exactly `K` taps (see [`AxisCoeffs::padded`]); falls
/// back to [`horizontal_any`] when a window is shorter.
fn horizontal_fixed<const K: usize>(
    src: &[f32],
    w: usize,
    cols: &AxisCoeffs,
    ow: usize,
    dst: &mut [f32],
) {
    if cols.bounds.iter().any(|b| b.1 != K) {
        return horizontal_any(src, w, cols, ow, dst);
    }
    let windows: Vec<(usize, [f64; K])> = (0..ow)
        .map(|o| {
            let (lo, k) = cols.taps(o);
            (lo, k.try_into().expect("K taps"))
        })
        .collect();
    for (row_in, row_out) in src.chunks_exact(w).zip(dst.chunks_exact_mut(ow)) {
        for (out, (lo, k)) in row_out.iter_mut().zip(&windows) {
            let x: &[f32; K] = row_in[*lo..*lo + K].try_into().expect("K values");
            let mut acc = 0.0f64;
            for t in 0..K {
                acc += f64::from(x[t]) * k[t];
            }
            *out = acc as f32;
        }
    }
}

fn horizontal_any(src: &[f32], w: usize, cols: &AxisCoeffs, ow: usize, dst: &mut [f32]) {
    for (row_in, row_out) in src.chunks_exact(w).zip(dst.chunks_exact_mut(ow)) {
        for (o, out) in row_out.iter_mut().enumerate() {
            let (lo, k) = cols.taps(o);
            let acc: f64 = row_in[lo..lo + k.len()]
                .iter()
                .zip(k)
                .map(|(&v, &c)| f64::from(v) * c)
                .sum();
            *out = acc as f32;
        }
    }
}

fn vertical(src: &[f32], w: usize, rows: &AxisCoeffs, dst: &mut [f32]) {
    vertical_offset(src, w, rows, 0, dst);
}

/// The vertical pass over `src`, whose first row is input row `first`.
fn vertical_offset(src: &[f32], w: usize, rows: &AxisCoeffs, first: usize, dst: &mut [f32]) {
    let mut acc = vec![0.0f64; w];
    for (o, row_out) in dst.chunks_exact_mut(w).enumerate() {
        let (lo, k) = rows.taps(o);
        acc.fill(0.0);
        for (t, &c) in k.iter().enumerate() {
            let r = lo + t - first;
            for (a, &v) in acc.iter_mut().zip(&src[r * w..(r + 1) * w]) {
                *a += f64::from(v) * c;
            }
        }
        for (out, &a) in row_out.iter_mut().zip(&acc) {
            *out = a as f32;
        }
    }
}

/// Antialiased bilinear resize of an `h x w` image to `oh x ow`, equal to Pillow's
/// `Image.fromarray(a).resize((ow, oh), Image.BILINEAR)` on float images.
///
/// # Panics
///
/// If `src.len() != h * w`, or the input is empty and the output is not.
pub fn resize_bilinear(src: &[f32], input: (usize, usize), output: (usize, usize)) -> Vec<f32> {
    BilinearResizer::new(input, output).resize(src)
}

/// Source indices of Pillow's NEAREST resize along one axis, as its `ImagingScaleAffine`
/// computes them: `u = 0.5 * s`, then `u += s` per output index (in `f64`, `s = in / out`),
/// index `trunc(u)`, clamped to the input.
pub(crate) fn nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    let scale = in_size as f64 / out_size as f64;
    let mut u = 0.5 * scale;
    let last = in_size.saturating_sub(1);
    (0..out_size)
        .map(|_| {
            let i = (u as usize).min(last);
            u += scale;
            i
        })
        .collect()
}

/// Nearest-neighbour resize of an `h x w` image to `oh x ow` (Pillow's `Image.NEAREST`, which
/// Pillow also forces for binary masks): output pixel `(r, c)` copies input pixel
/// `(floor((r + 0.5) * h / oh), floor((c + 0.5) * w / ow))`.
///
/// # Panics
///
/// If `src.len() != h * w`, or the input is empty and the output is not.
pub fn resize_nearest<T: Copy>(src: &[T], input: (usize, usize), output: (usize, usize)) -> Vec<T> {
    let (h, w) = input;
    let (oh, ow) = output;
    assert_eq!(src.len(), h * w, "source length vs {h}x{w}");
    if oh * ow == 0 {
        return Vec::new();
    }
    assert!(
        h * w > 0,
        "cannot resize an empty {h}x{w} image to {oh}x{ow}"
    );
    let rows = nearest_indices(h, oh);
    let cols = nearest_indices(w, ow);
    let mut out = Vec::with_capacity(oh * ow);
    for &r in &rows {
        let row = &src[r * w..(r + 1) * w];
        out.extend(cols.iter().map(|&c| row[c]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inputs of the reference values: a 32-bit LCG, `x -> 1664525 x + 1013904223 mod 2^32`,
    /// each state mapped to `x / 2^32 * 10 - 5` (as f32), row-major.
    fn lcg_image(h: usize, w: usize, seed: u32) -> Vec<f32> {
        let mut x = seed;
        (0..h * w)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (f64::from(x) / 4_294_967_296.0 * 10.0 - 5.0) as f32
            })
            .collect()
    }

    // Reference values from Pillow 13.0.0 (numpy 2.4.6), produced by
    //   /tmp/blindspot-bench/bin/python3 gen_pillow.py
    // where gen_pillow.py builds the same LCG image with numpy (float32) and prints
    //   np.asarray(Image.fromarray(a).resize((ow, oh), Image.BILINEAR)).ravel()
    // and, for NEAREST, the resize of `(np.arange(h * w) % 251).astype(np.uint8)` (mode L).
    const BILINEAR_12X10_TO_7X5: [f32; 35] = [
        -1.560138,
        0.44300428,
        -0.15522994,
        0.9091535,
        -0.47340783,
        -2.0944576,
        -1.3249491,
        0.042443458,
        0.80221415,
        0.90339947,
        1.5008522,
        -0.19482921,
        -0.44618624,
        -0.5812873,
        1.3071673,
        -0.49636102,
        0.052672327,
        0.5701521,
        -2.4773955,
        0.2310924,
        0.17140876,
        0.7056859,
        1.03677,
        -0.53556216,
        1.6333361,
        2.1126065,
        -0.99127585,
        -1.5022626,
        0.284752,
        -0.016697839,
        0.35448515,
        0.13166346,
        -0.46410415,
        0.26289853,
        0.21248405,
    ];
    const BILINEAR_5X6_TO_9X11: [f32; 99] = [
        -2.6315691,
        -1.9216057,
        -0.70452565,
        -1.5089908,
        -2.9873042,
        -0.34575033,
        2.407683,
        2.2719204,
        1.3522161,
        -1.9193147,
        -3.8277078,
        -2.7350461,
        -1.9790416,
        -0.6830339,
        -1.0260975,
        -1.9155184,
        0.13933794,
        2.261904,
        2.185,
        1.310709,
        -1.9557421,
        -3.861172,
        -2.907508,
        -2.074768,
        -0.64721435,
        -0.22127564,
        -0.12920864,
        0.9478184,
        2.0189393,
        2.0401323,
        1.2415305,
        -2.0164545,
        -3.916946,
        -1.3342159,
        -0.5502487,
        0.793695,
        0.65828973,
        0.029768173,
        0.4171609,
        0.7713654,
        -0.25541532,
        -1.2789547,
        -2.2927706,
        -2.8841634,
        0.67551434,
        1.3793321,
        2.5858767,
        1.556541,
        -0.21808824,
        -0.44828108,
        -0.7273608,
        -3.0886328,
        -4.4122667,
        -2.622988,
        -1.5792419,
        2.9734893,
        2.2911887,
        1.1215304,
        1.3484573,
        2.0409126,
        1.3962976,
        0.6250624,
        -0.20192292,
        -0.8886467,
        -1.1545864,
        -1.3097179,
        3.9963424,
        2.3694675,
        -0.41946098,
        0.6757932,
        3.0657752,
        2.1798546,
        1.120715,
        1.4320674,
        1.2858716,
        -0.23296805,
        -1.1189579,
        -0.08129152,
        -0.8865648,
        -2.2670333,
        -1.8551928,
        -0.84591573,
        -1.2806742,
        -1.8107146,
        -1.9448208,
        -1.9360168,
        -1.498482,
        -1.2432534,
        -2.5278718,
        -2.8401842,
        -3.3755767,
        -3.3737843,
        -3.1929302,
        -3.3569915,
        -3.5695724,
        -3.9709537,
        -3.86915,
        -2.2577903,
        -1.3178307,
    ];
    const BILINEAR_13X13_TO_4X4: [f32; 16] = [
        1.5088555,
        -0.23700297,
        -1.382979,
        0.0011104075,
        -0.12005697,
        -0.010834256,
        -0.9070366,
        0.5414201,
        -0.13120736,
        1.1078928,
        -0.3919599,
        -0.2806929,
        0.30905324,
        -0.14356981,
        0.8714796,
        -0.14386328,
    ];
    const BILINEAR_8X9_TO_8X3: [f32; 24] = [
        0.4150604,
        -0.96307254,
        -1.5654767,
        1.1662122,
        1.4619614,
        -0.76959836,
        -1.1205734,
        -0.92333317,
        -2.0527492,
        1.67224,
        0.7426491,
        0.25454417,
        -1.5694304,
        -1.1561373,
        -0.70854235,
        -0.42945993,
        2.3192341,
        -0.54550236,
        -1.8792117,
        -1.1888515,
        -2.3603246,
        0.5820907,
        0.44302338,
        1.5775216,
    ];

    fn check_bilinear(input: (usize, usize), output: (usize, usize), seed: u32, want: &[f32]) {
        let src = lcg_image(input.0, input.1, seed);
        let got = resize_bilinear(&src, input, output);
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6,
                "{input:?}->{output:?} pixel {i}: got {g}, Pillow {w}"
            );
        }
    }

    #[test]
    fn bilinear_matches_pillow_downscale() {
        check_bilinear((12, 10), (7, 5), 1, &BILINEAR_12X10_TO_7X5);
        check_bilinear((13, 13), (4, 4), 3, &BILINEAR_13X13_TO_4X4);
    }

    #[test]
    fn bilinear_matches_pillow_upscale() {
        check_bilinear((5, 6), (9, 11), 2, &BILINEAR_5X6_TO_9X11);
    }

    #[test]
    fn bilinear_matches_pillow_one_axis() {
        check_bilinear((8, 9), (8, 3), 4, &BILINEAR_8X9_TO_8X3);
    }

    #[test]
    fn nearest_matches_pillow() {
        let check = |input: (usize, usize), output: (usize, usize), want: &[u8]| {
            let src: Vec<u8> = (0..input.0 * input.1).map(|i| (i % 251) as u8).collect();
            assert_eq!(
                resize_nearest(&src, input, output),
                want,
                "{input:?}->{output:?}"
            );
        };
        check(
            (12, 10),
            (7, 5),
            &[
                1, 3, 5, 7, 9, 21, 23, 25, 27, 29, 41, 43, 45, 47, 49, 61, 63, 65, 67, 69, 71, 73,
                75, 77, 79, 91, 93, 95, 97, 99, 111, 113, 115, 117, 119,
            ],
        );
        check(
            (13, 13),
            (4, 4),
            &[
                14, 17, 21, 24, 53, 56, 60, 63, 105, 108, 112, 115, 144, 147, 151, 154,
            ],
        );
        check(
            (8, 9),
            (8, 3),
            &[
                1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46, 49, 52, 55, 58, 61,
                64, 67, 70,
            ],
        );
    }

    #[test]
    fn nearest_upscale_repeats_pixels() {
        let got = resize_nearest(&[1u8, 2, 3, 4], (2, 2), (4, 4));
        assert_eq!(got, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    }

    #[test]
    fn same_size_is_identity_and_constant_stays_constant() {
        let src = lcg_image(6, 7, 9);
        assert_eq!(resize_bilinear(&src, (6, 7), (6, 7)), src);
        let flat = vec![-3.5f32; 200 * 200];
        let out = resize_bilinear(&flat, (200, 200), (128, 128));
        assert!(out.iter().all(|&v| (v + 3.5).abs() < 1e-6));
    }

    #[test]
    fn padded_windows_give_identical_results() {
        for (input, output, seed) in [
            ((9, 240), (4, 128), 5),
            ((7, 200), (3, 128), 6),
            ((4, 11), (4, 3), 7),
        ] {
            let src = lcg_image(input.0, input.1, seed);
            let cols = AxisCoeffs::bilinear(input.1, output.1);
            let padded = cols.padded(input.1).unwrap();
            let mut a = vec![0.0; input.0 * output.1];
            let mut b = a.clone();
            horizontal_any(&src, input.1, &cols, output.1, &mut a);
            horizontal(&src, input.1, &padded, output.1, &mut b);
            assert_eq!(a, b, "{input:?} -> {output:?}");
        }
    }

    #[test]
    fn weights_are_normalised() {
        for (i, o) in [(200, 128), (240, 128), (5, 9), (1, 4), (7, 1)] {
            let c = AxisCoeffs::bilinear(i, o);
            for k in 0..o {
                let (lo, w) = c.taps(k);
                assert!(lo + w.len() <= i);
                assert!(
                    (w.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                    "{i}->{o} at {k}"
                );
            }
        }
    }
}
