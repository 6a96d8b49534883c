//! Small geometric and numeric building blocks: seeds, normal draws, approximate signed
//! distances, plane-wave fields, the partial-volume ramp and separable Gaussian blur.

use rand::Rng;

/// 3-vector in millimetres.
pub(crate) type V3 = [f64; 3];

/// SplitMix64 finaliser: a well-mixed 64-bit hash of a 64-bit value.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a hash of a string (stable across platforms and Rust versions).
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The seed of an independent random stream `stream` of a subject.
pub(crate) fn stream_seed(subject_seed: u64, stream: u64) -> u64 {
    splitmix64(subject_seed ^ splitmix64(stream.wrapping_mul(0xA24B_AED4_963E_E407)))
}

/// One N(0, 1) draw.
pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

/// A uniformly random unit vector.
pub(crate) fn unit(rng: &mut impl Rng) -> V3 {
    loop {
        let v = [normal(rng), normal(rng), normal(rng)];
        let n = norm(v);
        if n > 1e-6 {
            return scale(v, 1.0 / n);
        }
    }
}

/// `(sin x, cos x)` by Cody-Waite reduction to [-pi/4, pi/4] and Taylor polynomials
/// (error below 1e-10 for |x| < 1e6). Pure arithmetic: the same bits on every platform,
/// unlike the system `sin`/`cos`, and several times faster.
#[inline]
pub(crate) fn sin_cos(x: f64) -> (f64, f64) {
    const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
    const PIO2_HI: f64 = 1.570_796_326_734_125_6; // first 33 bits of pi/2
    const PIO2_LO: f64 = 6.077_100_506_506_192e-11; // pi/2 - PIO2_HI
    let k = (x * TWO_OVER_PI).round();
    let r = (x - k * PIO2_HI) - k * PIO2_LO;
    let r2 = r * r;
    let s = r
        * (1.0
            + r2 * (-1.0 / 6.0
                + r2 * (1.0 / 120.0
                    + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362_880.0 + r2 * (-1.0 / 39_916_800.0))))));
    let c = 1.0
        + r2 * (-0.5
            + r2 * (1.0 / 24.0
                + r2 * (-1.0 / 720.0
                    + r2 * (1.0 / 40_320.0
                        + r2 * (-1.0 / 3_628_800.0 + r2 * (1.0 / 479_001_600.0))))));
    match (k as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// `cos x` (see [`sin_cos`]).
#[inline]
pub(crate) fn cos(x: f64) -> f64 {
    sin_cos(x).1
}

/// Partial-volume fraction of a voxel of size `h` whose centre has signed distance `d`
/// (negative inside) to a surface: a linear ramp from 1 (d <= -h/2) to 0 (d >= h/2).
#[inline]
pub(crate) fn ramp(d: f64, h: f64) -> f64 {
    (0.5 - d / h).clamp(0.0, 1.0)
}

#[inline]
pub(crate) fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
#[inline]
pub(crate) fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}
#[inline]
pub(crate) fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
#[inline]
pub(crate) fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
#[inline]
pub(crate) fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
pub(crate) fn normalize(a: V3) -> V3 {
    scale(a, 1.0 / norm(a).max(1e-12))
}

/// Rotation about z by `yaw` then about x by `pitch` (radians), as rows of a matrix.
pub(crate) fn rotation(yaw: f64, pitch: f64) -> [V3; 3] {
    let (sy, cy) = yaw.sin_cos();
    let (sp, cp) = pitch.sin_cos();
    // Rz(yaw) * Rx(pitch)
    [
        [cy, -sy * cp, sy * sp],
        [sy, cy * cp, -cy * sp],
        [0.0, sp, cp],
    ]
}

/// A rotation whose third row is `axis` (unit): rows are an orthonormal frame.
pub(crate) fn frame_with_axis(axis: V3) -> [V3; 3] {
    let a = normalize(axis);
    let helper = if a[0].abs() < 0.9 {
        [1.0, 0.0, 0.0]
    } else {
        [0.0, 1.0, 0.0]
    };
    let u = normalize(cross(helper, a));
    let v = cross(a, u);
    [u, v, a]
}

pub(crate) fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[inline]
pub(crate) fn mat_vec(m: &[V3; 3], v: V3) -> V3 {
    [dot(m[0], v), dot(m[1], v), dot(m[2], v)]
}

/// An ellipsoid with an arbitrary orientation (`rot` rows are its local axes in the parent frame).
#[derive(Debug, Clone)]
pub(crate) struct Ellipsoid {
    pub centre: V3,
    pub radii: V3,
    pub rot: [V3; 3],
    bound: f64,
}

impl Ellipsoid {
    pub fn new(centre: V3, radii: V3, rot: [V3; 3]) -> Self {
        let bound = radii[0].max(radii[1]).max(radii[2]);
        Ellipsoid {
            centre,
            radii,
            rot,
            bound,
        }
    }

    /// Axis-aligned up to a rotation about z by `yaw`.
    pub fn with_yaw(centre: V3, radii: V3, yaw: f64) -> Self {
        let (s, c) = yaw.sin_cos();
        Self::new(centre, radii, [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    }

    /// Approximate signed distance in mm (exact on the surface; a lower bound far away).
    #[inline]
    pub fn sdf(&self, p: V3) -> f64 {
        let d = sub(p, self.centre);
        let dd = dot(d, d);
        if dd > (self.bound + 4.0) * (self.bound + 4.0) {
            return dd.sqrt() - self.bound;
        }
        let q = mat_vec(&self.rot, d);
        let a = [
            q[0] / self.radii[0],
            q[1] / self.radii[1],
            q[2] / self.radii[2],
        ];
        let b = [
            a[0] / self.radii[0],
            a[1] / self.radii[1],
            a[2] / self.radii[2],
        ];
        let k0 = norm(a);
        let k1 = norm(b);
        if k1 < 1e-12 {
            return -self.radii[0].min(self.radii[1]).min(self.radii[2]);
        }
        k0 * (k0 - 1.0) / k1
    }

    /// A point of the surface in local direction `u` (unit) and the outward direction there.
    pub fn surface_point(&self, u: V3) -> (V3, V3) {
        let local = [
            u[0] * self.radii[0],
            u[1] * self.radii[1],
            u[2] * self.radii[2],
        ];
        // local -> parent: transpose of rot
        let world = [
            self.rot[0][0] * local[0] + self.rot[1][0] * local[1] + self.rot[2][0] * local[2],
            self.rot[0][1] * local[0] + self.rot[1][1] * local[1] + self.rot[2][1] * local[2],
            self.rot[0][2] * local[0] + self.rot[1][2] * local[1] + self.rot[2][2] * local[2],
        ];
        (add(self.centre, world), normalize(world))
    }
}

/// A sum of random plane waves `sum a cos(k . p + phase)`.
#[derive(Debug, Clone)]
pub(crate) struct Waves {
    k: Vec<V3>,
    phase: Vec<f64>,
    amp: Vec<f64>,
}

impl Waves {
    /// `n` waves with random directions, wavelengths uniform in `wavelength`, amplitudes
    /// uniform in `amp`.
    pub fn random(rng: &mut impl Rng, n: usize, wavelength: [f64; 2], amp: [f64; 2]) -> Self {
        let mut w = Waves {
            k: Vec::with_capacity(n),
            phase: Vec::new(),
            amp: Vec::new(),
        };
        for _ in 0..n {
            let lambda = rng.random_range(wavelength[0]..=wavelength[1]);
            w.k.push(scale(unit(rng), std::f64::consts::TAU / lambda));
            w.phase.push(rng.random_range(0.0..std::f64::consts::TAU));
            w.amp.push(rng.random_range(amp[0]..=amp[1]));
        }
        w
    }

    /// The field value.
    #[inline]
    pub fn value(&self, p: V3) -> f64 {
        let mut s = 0.0;
        for j in 0..self.k.len() {
            s += self.amp[j] * cos(dot(self.k[j], p) + self.phase[j]);
        }
        s
    }

    /// The field value and its gradient.
    #[inline]
    pub fn value_grad(&self, p: V3) -> (f64, V3) {
        let mut s = 0.0;
        let mut g = [0.0; 3];
        for j in 0..self.k.len() {
            let (sn, cs) = sin_cos(dot(self.k[j], p) + self.phase[j]);
            s += self.amp[j] * cs;
            let f = -self.amp[j] * sn;
            g[0] += f * self.k[j][0];
            g[1] += f * self.k[j][1];
            g[2] += f * self.k[j][2];
        }
        (s, g)
    }
}

/// The scanner's point spread: a separable Gaussian blur of the volume in place, with `sigma`
/// in voxels per axis (below 0.05 = no blur along that axis), the kernel truncated at 3σ and
/// the edge voxel repeated (the field of view ends in air). A simulation of the acquisition,
/// not an image filter: it is not `blindspot_metrics::gaussian_filter` (2-D, scipy's mirrored
/// border at 4σ), and changing its edge rule or truncation would change every phantom.
pub(crate) fn point_spread_blur(data: &mut [f32], dims: [usize; 3], sigma: [f64; 3]) {
    let mut line = Vec::new();
    let mut out = Vec::new();
    for axis in 0..3 {
        if sigma[axis] < 0.05 {
            continue;
        }
        let r = (3.0 * sigma[axis]).ceil() as isize;
        let mut kernel: Vec<f32> = (-r..=r)
            .map(|t| (-(t * t) as f64 / (2.0 * sigma[axis] * sigma[axis])).exp() as f32)
            .collect();
        let sum: f32 = kernel.iter().sum();
        kernel.iter_mut().for_each(|k| *k /= sum);
        let n = dims[axis];
        let stride = match axis {
            0 => 1,
            1 => dims[0],
            _ => dims[0] * dims[1],
        };
        let (o1, o2) = match axis {
            0 => (dims[1], dims[2]),
            1 => (dims[0], dims[2]),
            _ => (dims[0], dims[1]),
        };
        line.resize(n, 0.0f32);
        out.resize(n, 0.0f32);
        for b in 0..o2 {
            for a in 0..o1 {
                let start = match axis {
                    0 => dims[0] * (a + dims[1] * b),
                    1 => a + dims[0] * dims[1] * b,
                    _ => a + dims[0] * b,
                };
                for t in 0..n {
                    line[t] = data[start + t * stride];
                }
                for t in 0..n {
                    let mut acc = 0.0f32;
                    for (kk, w) in kernel.iter().enumerate() {
                        let src = (t as isize + kk as isize - r).clamp(0, n as isize - 1) as usize;
                        acc += w * line[src];
                    }
                    out[t] = acc;
                }
                for t in 0..n {
                    data[start + t * stride] = out[t];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsoid_sdf_is_exact_on_axes() {
        let e = Ellipsoid::with_yaw([1.0, 2.0, 3.0], [10.0, 5.0, 2.0], 0.0);
        assert!((e.sdf([13.0, 2.0, 3.0]) - 2.0).abs() < 0.05);
        assert!(e.sdf([1.0, 2.0, 3.0]) < 0.0);
        assert!((e.sdf([1.0, 2.0, 4.0]) + 1.0).abs() < 0.05);
    }

    #[test]
    fn blur_preserves_mean_and_spreads_a_spike() {
        let dims = [9, 9, 9];
        let mut v = vec![0.0f32; 729];
        v[4 + 9 * (4 + 9 * 4)] = 1.0;
        point_spread_blur(&mut v, dims, [1.0, 1.0, 1.0]);
        let s: f32 = v.iter().sum();
        assert!((s - 1.0).abs() < 1e-3);
        assert!(v[4 + 9 * (4 + 9 * 4)] < 0.1);
        assert!(v[5 + 9 * (4 + 9 * 4)] > 0.0);
    }

    #[test]
    fn fast_sin_cos_matches_std() {
        let mut x = -2000.0f64;
        while x < 2000.0 {
            let (s, c) = sin_cos(x);
            assert!(
                (s - x.sin()).abs() < 1e-10 && (c - x.cos()).abs() < 1e-10,
                "{x}"
            );
            x += 0.0137;
        }
    }

    #[test]
    fn seeds_differ_by_stream() {
        assert_ne!(stream_seed(1, 0), stream_seed(1, 1));
        assert_eq!(stream_seed(7, 3), stream_seed(7, 3));
        assert_ne!(fnv1a("train"), fnv1a("val"));
    }
}
