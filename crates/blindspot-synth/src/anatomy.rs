//! The healthy brain of one subject, as approximate signed-distance functions in a
//! brain-centred frame (mm, x = right, y = anterior, z = superior).
//!
//! - outline: an egg-shaped ellipsoid (wider at the back, flatter below) times a smooth
//!   low-order random perturbation of its radius;
//! - grooves: sulci (radial sheets where a random plane-wave field, sampled on the sphere of
//!   directions, crosses zero, down to a varying depth) and the interhemispheric fissure
//!   (above and in front of / behind the callosal bridge), all filled with CSF;
//! - cortex: the grey-matter ribbon within `thickness` of the outline or of a groove;
//! - ventricles: lateral (frontal horn, body, atrium, temporal horn) and third, as
//!   ellipsoids; deep grey matter: caudate head, lentiform nucleus, thalamus.
//!
//! Partial volume comes from the analytic distances through a one-voxel linear ramp.

use rand::Rng;

use crate::field::{Ellipsoid, V3, Waves, mat_vec, norm, normal, ramp, rotation, scale};

/// Mean brain half-axes in mm (left-right, anterior-posterior, inferior-superior).
const REF_RADII: V3 = [68.0, 84.0, 52.0];
/// Mean distance (mm) of the brain centre behind the centre of the field of view.
const BRAIN_POSTERIOR_OFFSET_MM: f64 = 18.0;
/// Radius of the sphere of directions on which the sulcal field is sampled.
const SULCAL_SPHERE_MM: f64 = 70.0;

/// Tissue fractions of one voxel (they sum to `brain`), and the depth below the outline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fractions {
    pub brain: f64,
    pub csf: f64,
    pub gm: f64,
    pub wm: f64,
    pub dgm: f64,
    /// Signed distance to the outline in mm (negative inside).
    pub outline_sdf: f64,
}

/// One subject's healthy anatomy.
#[derive(Debug, Clone)]
pub(crate) struct Anatomy {
    /// Brain centre in world mm.
    centre: V3,
    /// World -> brain frame rotation (rows).
    rot: [V3; 3],
    radii: V3,
    egg: f64,
    flat: f64,
    shape: Waves,
    sulci: Waves,
    /// Displacement of the sulcal field's sampling point (x, y, z components): curved,
    /// branching sulci instead of straight radial sheets.
    warp: [Waves; 3],
    sulcal_depth: Waves,
    sulcal_depth_mean: f64,
    sulcal_half_width: f64,
    thickness: f64,
    fissure_half_width: f64,
    bridge: ([f64; 2], [f64; 2]),
    ventricles: Vec<Ellipsoid>,
    nuclei: Vec<Ellipsoid>,
    /// Smooth intensity texture of the parenchyma (relative, about +-3 %).
    texture: Waves,
}

impl Anatomy {
    /// Draw a brain.
    pub fn sample(rng: &mut impl Rng) -> Self {
        let size = rng.random_range(0.9..=1.07);
        let radii = [
            REF_RADII[0] * size * (1.0 + 0.03 * normal(rng)).clamp(0.94, 1.06),
            REF_RADII[1] * size * (1.0 + 0.03 * normal(rng)).clamp(0.94, 1.06),
            REF_RADII[2] * size * (1.0 + 0.03 * normal(rng)).clamp(0.94, 1.06),
        ];
        // Real axial scans hold the brain behind the centre of the field of view (the face is in
        // front): the brain-mask centroid sits 15-23 mm posterior of it on the IXI T1 and BraTS
        // volumes of ../shared/data/real, and within 2 mm of it left-right. A centred phantom
        // would make an up-down flip an almost invisible shift.
        let centre = [
            1.5 * normal(rng).clamp(-2.0, 2.0),
            -BRAIN_POSTERIOR_OFFSET_MM + 3.0 * normal(rng).clamp(-2.0, 2.0),
            -3.0 + 1.5 * normal(rng).clamp(-2.0, 2.0),
        ];
        let yaw = (3.0f64).to_radians() * normal(rng).clamp(-2.0, 2.0);
        let pitch = (4.0f64).to_radians() * normal(rng).clamp(-2.0, 2.0);
        let r = rotation(yaw, pitch);
        // world -> brain is the transpose
        let rot = [
            [r[0][0], r[1][0], r[2][0]],
            [r[0][1], r[1][1], r[2][1]],
            [r[0][2], r[1][2], r[2][2]],
        ];
        // Low-order shape perturbation on the unit sphere (|k| = pi * f, f in 1..2.5).
        let shape = Waves::random(rng, 6, [2.0 / 2.5, 2.0 / 1.0], [0.008, 0.03]);
        let sulci = Waves::random(rng, 14, [14.0, 26.0], [0.6, 1.0]);
        let warp = [
            Waves::random(rng, 3, [25.0, 45.0], [1.5, 3.0]),
            Waves::random(rng, 3, [25.0, 45.0], [1.5, 3.0]),
            Waves::random(rng, 3, [25.0, 45.0], [1.5, 3.0]),
        ];
        let sulcal_depth = Waves::random(rng, 4, [30.0, 60.0], [0.08, 0.15]);
        let s = [
            radii[0] / REF_RADII[0],
            radii[1] / REF_RADII[1],
            radii[2] / REF_RADII[2],
        ];
        let vent: f64 = rng.random_range(0.7..=1.6); // ventricle width (age-like)
        let (ventricles, nuclei) = deep_structures(rng, s, vent);
        Anatomy {
            centre,
            rot,
            radii,
            egg: rng.random_range(0.04..=0.12),
            flat: rng.random_range(0.78..=0.9),
            shape,
            sulci,
            warp,
            sulcal_depth,
            sulcal_depth_mean: rng.random_range(13.0..=18.0),
            sulcal_half_width: rng.random_range(0.6..=1.0),
            thickness: rng.random_range(2.4..=3.0),
            fissure_half_width: rng.random_range(1.0..=1.6),
            bridge: ([-3.0 * s[1], -6.0 * s[2]], [48.0 * s[1], 34.0 * s[2]]),
            ventricles,
            nuclei,
            texture: Waves::random(rng, 6, [6.0, 16.0], [0.006, 0.012]),
        }
    }

    /// Relative intensity modulation of the parenchyma at a brain-frame point (about +-3 %).
    #[inline]
    pub fn texture(&self, q: V3) -> f64 {
        self.texture.value(q)
    }

    /// World mm -> brain frame mm.
    #[inline]
    pub fn to_brain(&self, p: V3) -> V3 {
        mat_vec(
            &self.rot,
            [
                p[0] - self.centre[0],
                p[1] - self.centre[1],
                p[2] - self.centre[2],
            ],
        )
    }

    /// Half-axes of the outline in mm.
    pub fn radii(&self) -> V3 {
        self.radii
    }

    /// Whether a brain-frame point lies more than `margin_mm` outside the outline plus a
    /// quarter of the radius (the shape perturbation stays below 0.18 of it): a cheap test
    /// before [`Self::fractions`].
    #[inline]
    pub fn surely_outside(&self, q: V3, margin_mm: f64) -> bool {
        let rx = self.radii[0] * (1.0 + self.egg);
        let n = [q[0] / rx, q[1] / self.radii[1], q[2] / self.radii[2]];
        let min_radius = self.radii[0]
            .min(self.radii[1])
            .min(self.radii[2] * self.flat);
        let limit = 1.25 + margin_mm / min_radius;
        n[0] * n[0] + n[1] * n[1] + n[2] * n[2] > limit * limit
    }

    /// Approximate signed distance (mm) to the outline, at a brain-frame point.
    #[inline]
    pub fn outline_sdf(&self, q: V3) -> f64 {
        let rx = self.radii[0] * (1.0 - self.egg * q[1] / self.radii[1]);
        let rz = if q[2] < 0.0 {
            self.radii[2] * self.flat
        } else {
            self.radii[2]
        };
        let n = [q[0] / rx, q[1] / self.radii[1], q[2] / rz];
        let rho = norm(n);
        if rho < 1e-9 {
            return -rx.min(self.radii[1]).min(rz);
        }
        let u = scale(n, 1.0 / rho);
        let surface = 1.0 + self.shape.value(u);
        // mm per unit of rho along this ray
        (rho - surface) * norm(q) / rho
    }

    /// Tissue fractions of a voxel of size `h` (mm) centred at brain-frame point `q`.
    #[inline]
    pub fn fractions(&self, q: V3, h: f64) -> Fractions {
        let d_out = self.outline_sdf(q);
        let brain = ramp(d_out, h);
        if brain <= 0.0 {
            return Fractions {
                outline_sdf: d_out,
                ..Fractions::default()
            };
        }
        let depth = -d_out;
        // Grooves: sulci near the outline, the fissure away from the callosal bridge.
        let mut groove = f64::INFINITY;
        let reach = self.sulcal_depth_mean * 1.6 + self.thickness + h;
        if depth < reach {
            let r = norm(q).max(1e-6);
            let ps = scale(q, SULCAL_SPHERE_MM / r);
            let dmax = self.sulcal_depth_mean * (1.0 + self.sulcal_depth.value(ps));
            if depth < dmax + self.thickness + h {
                let pw = [
                    ps[0] + self.warp[0].value(q),
                    ps[1] + self.warp[1].value(q),
                    ps[2] + self.warp[2].value(q),
                ];
                let (g, grad) = self.sulci.value_grad(pw);
                let dist = g.abs() / norm(grad).max(0.05) * (r / SULCAL_SPHERE_MM);
                groove = (dist - self.sulcal_half_width).max(depth - dmax);
            } else {
                groove = depth - dmax;
            }
        }
        let (bc, br) = self.bridge;
        let ey = (q[1] - bc[0]) / br[0];
        let ez = (q[2] - bc[1]) / br[1];
        let e = (ey * ey + ez * ez).sqrt();
        let bridge_sdf = (e - 1.0) * br[0].min(br[1]);
        let fissure = (q[0].abs() - self.fissure_half_width).max(-bridge_sdf);
        groove = groove.min(fissure);

        let mut vent = f64::INFINITY;
        let mut nuc = f64::INFINITY;
        if depth > 8.0 {
            for v in &self.ventricles {
                vent = vent.min(v.sdf(q));
            }
            for n in &self.nuclei {
                nuc = nuc.min(n.sdf(q));
            }
        }
        let csf = ramp(groove, h).max(ramp(vent, h));
        let wm_region = ramp((self.thickness - depth).max(self.thickness - groove), h);
        let n = ramp(nuc, h);
        let par = 1.0 - csf;
        Fractions {
            brain,
            csf: brain * csf,
            gm: brain * par * (1.0 - wm_region),
            wm: brain * par * wm_region * (1.0 - n),
            dgm: brain * par * wm_region * n,
            outline_sdf: d_out,
        }
    }

    /// Lateral-ventricle parts (for periventricular lesions): 4 per side, left first.
    pub fn lateral_ventricles(&self) -> &[Ellipsoid] {
        &self.ventricles[..8]
    }
}

/// The ventricles and the deep grey nuclei, each jittered about its reference place and size,
/// scaled with the brain's axes `s`; `vent` widens the ventricles (age-like).
fn deep_structures(rng: &mut impl Rng, s: [f64; 3], vent: f64) -> (Vec<Ellipsoid>, Vec<Ellipsoid>) {
    let vlen = vent.sqrt();
    let mut jitter = |c: V3, rad: V3, wide: f64, long: f64| -> (V3, V3) {
        (
            [
                c[0] * s[0] + 1.0 * normal(rng).clamp(-2.0, 2.0),
                c[1] * s[1] + 1.5 * normal(rng).clamp(-2.0, 2.0),
                c[2] * s[2] + 1.0 * normal(rng).clamp(-2.0, 2.0),
            ],
            [
                rad[0] * wide * s[0] * (1.0 + 0.06 * normal(rng)).clamp(0.85, 1.15),
                rad[1] * long * s[1] * (1.0 + 0.06 * normal(rng)).clamp(0.85, 1.15),
                rad[2] * long * s[2] * (1.0 + 0.06 * normal(rng)).clamp(0.85, 1.15),
            ],
        )
    };
    let deg = |d: f64| d.to_radians();
    let mut ventricles = Vec::new();
    let mut nuclei = Vec::new();
    for side in [-1.0f64, 1.0] {
        // (centre, radii, yaw, width scale, length scale)
        let parts: [(V3, V3, f64); 4] = [
            (
                [side * 9.0, 16.0, 10.0],
                [4.0, 13.0, 7.0],
                -side * deg(15.0),
            ),
            ([side * 8.5, -6.0, 15.0], [3.6, 21.0, 5.0], -side * deg(3.0)),
            (
                [side * 15.0, -30.0, 9.0],
                [4.5, 12.0, 6.0],
                side * deg(30.0),
            ),
            (
                [side * 28.0, -12.0, -14.0],
                [2.2, 13.0, 2.5],
                -side * deg(10.0),
            ),
        ];
        for (c, rad, yaw) in parts {
            let (c, rad) = jitter(c, rad, vent, vlen);
            ventricles.push(Ellipsoid::with_yaw(c, rad, yaw));
        }
        let deep: [(V3, V3, f64); 3] = [
            ([side * 14.0, 13.0, 9.0], [5.0, 9.0, 8.0], 0.0),
            ([side * 22.0, 2.0, 1.0], [5.5, 15.0, 9.0], -side * deg(8.0)),
            ([side * 9.5, -13.0, 2.0], [7.5, 12.0, 8.0], 0.0),
        ];
        for (c, rad, yaw) in deep {
            let (c, rad) = jitter(c, rad, 1.0, 1.0);
            nuclei.push(Ellipsoid::with_yaw(c, rad, yaw));
        }
    }
    let (c3, r3) = jitter([0.0, -6.0, 0.0], [1.6, 11.0, 8.0], vent, 1.0);
    ventricles.push(Ellipsoid::with_yaw([0.0, c3[1], c3[2]], r3, 0.0));
    (ventricles, nuclei)
}
