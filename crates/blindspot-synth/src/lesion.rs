//! Lesions in the brain frame: tumour (necrotic core, enhancing rim, oedema), MS-like
//! periventricular ovoids and a stroke-like cortical wedge.

use rand::Rng;

use crate::anatomy::Anatomy;
use crate::config::{LesionConfig, LesionKind};
use crate::field::{
    Ellipsoid, V3, Waves, add, dot, frame_with_axis, norm, normalize, ramp, scale, sub, unit,
};

/// Lesion-class fractions of one voxel (nested tumour layers already split).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LesionFractions {
    pub necrosis: f64,
    pub rim: f64,
    pub oedema: f64,
    pub ms: f64,
    pub stroke: f64,
    /// How much of the oedema's contrast shows (1 inside, down to 0.35 at its outer edge:
    /// oedema fades into the tissue, its border is diffuse).
    pub oedema_strength: f64,
}

impl LesionFractions {
    pub fn total(&self) -> f64 {
        (self.necrosis + self.rim + self.oedema + self.ms + self.stroke).min(1.0)
    }
}

#[derive(Debug, Clone)]
enum Shape {
    Tumour {
        centre: V3,
        radius: f64,
        outer: Waves,
        inner: Waves,
    },
    Ovoid(Ellipsoid),
    Wedge {
        apex: V3,
        axis: V3,
        tan: f64,
        length: f64,
        wobble: Waves,
    },
}

/// The lesions of one subject.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lesions {
    shapes: Vec<Shape>,
    /// Bounding spheres (centre, radius) in the brain frame, one per shape.
    bounds: Vec<(V3, f64)>,
}

impl Lesions {
    /// Draw lesions of `kind` for `anatomy`.
    pub fn sample(
        kind: LesionKind,
        cfg: &LesionConfig,
        anatomy: &Anatomy,
        rng: &mut impl Rng,
    ) -> Self {
        let mut out = Lesions::default();
        match kind {
            LesionKind::None => {}
            LesionKind::Tumour => out.add_tumour(cfg, anatomy, rng),
            LesionKind::Ms => out.add_ms(cfg, anatomy, rng),
            LesionKind::Stroke => out.add_stroke(cfg, anatomy, rng),
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    fn add_tumour(&mut self, cfg: &LesionConfig, anatomy: &Anatomy, rng: &mut impl Rng) {
        let volume_mm3 = 1000.0 * rng.random_range(cfg.tumour_ml[0]..=cfg.tumour_ml[1]);
        // The outline's CSF (sulci, ventricles) inside the sphere does not count as lesion;
        // a 12 % larger nominal volume compensates for it on average.
        let radius = (3.0 * 1.12 * volume_mm3 / (4.0 * std::f64::consts::PI)).cbrt();
        let r = anatomy.radii();
        let mut centre = [0.0; 3];
        for _ in 0..64 {
            let u = unit(rng);
            let t = rng.random_range(0.25..=0.6);
            let c = [u[0] * r[0] * t, u[1] * r[1] * t, u[2] * r[2] * t];
            centre = c;
            if c[0].abs() > 10.0 && -anatomy.outline_sdf(c) > 0.75 * radius {
                break;
            }
        }
        let outer = Waves::random(rng, 7, [0.6, 1.4], [0.03, 0.07]);
        let inner = Waves::random(rng, 5, [0.7, 1.6], [0.04, 0.08]);
        self.bounds.push((centre, radius * 1.45 + 2.0));
        self.shapes.push(Shape::Tumour {
            centre,
            radius,
            outer,
            inner,
        });
    }

    fn add_ms(&mut self, cfg: &LesionConfig, anatomy: &Anatomy, rng: &mut impl Rng) {
        let n = rng.random_range(cfg.ms_count[0]..=cfg.ms_count[1]);
        let vents = anatomy.lateral_ventricles();
        for _ in 0..n {
            let volume_mm3 = 1000.0 * rng.random_range(cfg.ms_ml[0]..=cfg.ms_ml[1]);
            let elong = rng.random_range(1.3..=1.9);
            let a = (3.0 * volume_mm3 / (4.0 * std::f64::consts::PI * elong)).cbrt();
            let long = a * elong;
            let mut best: Option<(f64, V3, V3)> = None;
            for _ in 0..40 {
                // frontal horn, body or atrium of either side (not the temporal horn);
                // left parts come first
                let side = rng.random_range(0..2usize);
                let v = &vents[4 * side + rng.random_range(0..3usize)];
                let mut u = unit(rng);
                u[2] = u[2].abs(); // above or beside, not below
                let lateral = if side == 0 { -1.0 } else { 1.0 };
                u[0] = lateral * u[0].abs(); // away from the midline (no septum plaques)
                let (surface, normal) = v.surface_point(u);
                let gap = rng.random_range(1.0..=5.0);
                let c = add(surface, scale(normal, gap + long));
                let wm = anatomy.fractions(c, 1.0).wm;
                if best.as_ref().is_none_or(|b| wm > b.0) {
                    best = Some((wm, c, normal));
                }
                if wm > 0.95 {
                    break;
                }
            }
            let (_, c, axis) = best.expect("at least one try");
            let frame = frame_with_axis(axis);
            let e = Ellipsoid::new(c, [a, a, long], frame);
            self.bounds.push((c, long + 2.0));
            self.shapes.push(Shape::Ovoid(e));
        }
    }

    fn add_stroke(&mut self, cfg: &LesionConfig, anatomy: &Anatomy, rng: &mut impl Rng) {
        let volume_mm3 = 1000.0 * rng.random_range(cfg.stroke_ml[0]..=cfg.stroke_ml[1]);
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let axis = normalize([
            side,
            rng.random_range(-0.6..=0.6),
            rng.random_range(-0.1..=0.7),
        ]);
        // surface point along the axis (bisection on the outline distance)
        let (mut lo, mut hi) = (0.0, 200.0);
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if anatomy.outline_sdf(scale(axis, mid)) < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let depth = (22.0 + 0.35 * volume_mm3 / 1000.0).clamp(22.0, 40.0);
        let apex = scale(axis, lo - depth);
        // a cone of height `depth` has volume pi depth^3 tan^2 / 3; the cortex it crosses
        // bulges past the cone's base and its sulci do not count: 10 % larger nominal volume.
        let tan = (3.0 * 1.1 * volume_mm3 / (std::f64::consts::PI * depth.powi(3))).sqrt();
        let wobble = Waves::random(rng, 4, [15.0, 30.0], [0.04, 0.07]);
        let length = depth + 12.0;
        let reach = length * (1.0 + tan * 1.3);
        self.bounds.push((apex, reach));
        self.shapes.push(Shape::Wedge {
            apex,
            axis,
            tan,
            length,
            wobble,
        });
    }

    /// Lesion fractions of a voxel of size `h` centred at brain-frame point `q`.
    #[inline]
    pub fn fractions(&self, q: V3, h: f64) -> LesionFractions {
        let mut f = LesionFractions::default();
        for (shape, (c, r)) in self.shapes.iter().zip(&self.bounds) {
            let d = sub(q, *c);
            if dot(d, d) > r * r {
                continue;
            }
            match shape {
                Shape::Tumour {
                    centre,
                    radius,
                    outer,
                    inner,
                } => {
                    let v = sub(q, *centre);
                    let dist = norm(v);
                    let u = scale(v, 1.0 / dist.max(1e-9));
                    let r_oed = radius * (1.0 + outer.value(u));
                    let r_solid = 0.6 * radius * (1.0 + inner.value(u));
                    let r_core = 0.6 * r_solid;
                    let l_oed = ramp(dist - r_oed, h);
                    let l_rim = ramp(dist - r_solid, h);
                    let l_core = ramp(dist - r_core, h);
                    f.necrosis += l_core;
                    f.rim += l_rim - l_core;
                    f.oedema += l_oed - l_rim;
                    let inward = ((r_oed - dist) / (0.35 * r_oed)).clamp(0.0, 1.0);
                    f.oedema_strength = 0.35 + 0.65 * inward * inward * (3.0 - 2.0 * inward);
                }
                Shape::Ovoid(e) => f.ms = f.ms.max(ramp(e.sdf(q), h)),
                Shape::Wedge {
                    apex,
                    axis,
                    tan,
                    length,
                    wobble,
                } => {
                    let v = sub(q, *apex);
                    let t = dot(v, *axis);
                    let radial = (dot(v, v) - t * t).max(0.0).sqrt();
                    let tn = tan * (1.0 + wobble.value(q));
                    let cos = 1.0 / (1.0 + tn * tn).sqrt();
                    let side = if t > 0.0 {
                        (radial - t * tn) * cos
                    } else {
                        norm(v)
                    };
                    let d = side.max(t - length);
                    f.stroke = f.stroke.max(ramp(d, h));
                }
            }
        }
        f
    }
}
