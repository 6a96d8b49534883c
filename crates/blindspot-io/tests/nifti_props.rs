//! Property tests: write then read is lossless for every datatype, shape and affine; the
//! reorientation to RAS composed with its inverse is the identity.

use blindspot_io::{
    Datatype, ReadOptions, Volume, WriteOptions, axcodes, read_nifti, reorient_to_ras, write_nifti,
};
use proptest::prelude::*;

/// Rotation of a unit quaternion (w, x, y, z).
fn rotation(q: [f64; 4]) -> [[f64; 3]; 3] {
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let [w, x, y, z] = q.map(|v| v / n);
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

/// Affine = rotation * diag(spacing) * (optional mirror of z), plus a translation. Half of the
/// rotations are arbitrary, half are one of the 24 axis permutations (with the mirror: all 48
/// orientations) tilted by less than about 17 degrees.
fn affine_strategy() -> impl Strategy<Value = ([[f64; 4]; 4], [f64; 3])> {
    (
        prop::array::uniform4(-1.0f64..1.0),
        prop::array::uniform3(0.2f64..4.0),
        prop::array::uniform3(-150.0f64..150.0),
        any::<bool>(),
        prop::option::of((0usize..6, prop::array::uniform3(any::<bool>()))),
    )
        .prop_filter("a quaternion needs a length", |(q, ..)| {
            q.iter().map(|v| v * v).sum::<f64>() > 0.01
        })
        .prop_map(|(q, sp, t, mirror, aligned)| {
            let r = match aligned {
                None => rotation(q),
                Some((perm, signs)) => {
                    let tilt = rotation([1.0, 0.15 * q[1], 0.15 * q[2], 0.15 * q[3]]);
                    let order = [
                        [0, 1, 2],
                        [0, 2, 1],
                        [1, 0, 2],
                        [1, 2, 0],
                        [2, 0, 1],
                        [2, 1, 0],
                    ][perm];
                    let mut p = [[0.0; 3]; 3];
                    for c in 0..3 {
                        p[order[c]][c] = if signs[c] { -1.0 } else { 1.0 };
                    }
                    // Make it a proper rotation; the mirror below adds the improper ones.
                    let det = p[0][0] * (p[1][1] * p[2][2] - p[1][2] * p[2][1])
                        - p[0][1] * (p[1][0] * p[2][2] - p[1][2] * p[2][0])
                        + p[0][2] * (p[1][0] * p[2][1] - p[1][1] * p[2][0]);
                    if det < 0.0 {
                        for row in &mut p {
                            row[2] = -row[2];
                        }
                    }
                    std::array::from_fn(|i| {
                        std::array::from_fn(|j| (0..3).map(|k| tilt[i][k] * p[k][j]).sum())
                    })
                }
            };
            let mut a = [[0.0; 4]; 4];
            for i in 0..3 {
                for j in 0..3 {
                    let m = if mirror && j == 2 { -1.0 } else { 1.0 };
                    a[i][j] = r[i][j] * sp[j] * m;
                }
                a[i][3] = t[i];
            }
            a[3][3] = 1.0;
            // What float32 storage keeps.
            let a = a.map(|row| row.map(|v| f64::from(v as f32)));
            (a, sp.map(|v| f64::from(v as f32)))
        })
}

fn dims_strategy() -> impl Strategy<Value = [usize; 3]> {
    prop::array::uniform3(1usize..7)
}

/// Write `data` as `T` and read it back as f64.
fn round_trip<T: blindspot_io::nifti::DiskElement>(
    dims: [usize; 3],
    data: Vec<T>,
    affine: [[f64; 4]; 4],
    spacing: [f64; 3],
    gz: bool,
) -> (Vec<f64>, blindspot_io::NiftiImage<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(if gz { "v.nii.gz" } else { "v.nii" });
    let v = Volume {
        dims,
        data,
        affine,
        spacing,
    };
    write_nifti(&p, &v, &WriteOptions::default()).unwrap();
    let img = read_nifti::<f64>(&p, &ReadOptions::default()).unwrap();
    (img.volume.data.clone(), img)
}

fn values(dt: Datatype, n: usize, seed: u64) -> Vec<f64> {
    // Deterministic pseudo-random values spanning the type's range (exact in f64).
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            match dt {
                Datatype::U8 => (u * 256.0).floor(),
                Datatype::I8 => (u * 256.0).floor() - 128.0,
                Datatype::I16 => (u * 65536.0).floor() - 32768.0,
                Datatype::U16 => (u * 65536.0).floor(),
                Datatype::I32 => (u * 4294967296.0).floor() - 2147483648.0,
                Datatype::U32 => (u * 4294967296.0).floor(),
                Datatype::I64 => (u * 2f64.powi(53)).floor() - 2f64.powi(52),
                Datatype::U64 => (u * 2f64.powi(53)).floor(),
                Datatype::F32 => f64::from(((u - 0.5) * 1e6) as f32),
                Datatype::F64 => (u - 0.5) * 1e300,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn write_then_read_is_lossless(
        dims in dims_strategy(),
        (affine, spacing) in affine_strategy(),
        dt_index in 0usize..10,
        seed in any::<u64>(),
        gz in any::<bool>(),
    ) {
        let dt = Datatype::ALL[dt_index];
        let n: usize = dims.iter().product();
        let want = values(dt, n, seed);
        let (got, img) = match dt {
            Datatype::U8 => round_trip(dims, want.iter().map(|&v| v as u8).collect(), affine, spacing, gz),
            Datatype::I8 => round_trip(dims, want.iter().map(|&v| v as i8).collect(), affine, spacing, gz),
            Datatype::I16 => round_trip(dims, want.iter().map(|&v| v as i16).collect(), affine, spacing, gz),
            Datatype::U16 => round_trip(dims, want.iter().map(|&v| v as u16).collect(), affine, spacing, gz),
            Datatype::I32 => round_trip(dims, want.iter().map(|&v| v as i32).collect(), affine, spacing, gz),
            Datatype::U32 => round_trip(dims, want.iter().map(|&v| v as u32).collect(), affine, spacing, gz),
            Datatype::I64 => round_trip(dims, want.iter().map(|&v| v as i64).collect(), affine, spacing, gz),
            Datatype::U64 => round_trip(dims, want.iter().map(|&v| v as u64).collect(), affine, spacing, gz),
            Datatype::F32 => round_trip(dims, want.iter().map(|&v| v as f32).collect(), affine, spacing, gz),
            Datatype::F64 => round_trip(dims, want.clone(), affine, spacing, gz),
        };
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(img.header.datatype, dt);
        prop_assert_eq!(img.volume.dims, dims);
        prop_assert_eq!(img.volume.affine, affine);
        prop_assert_eq!(img.volume.spacing, spacing);
        // The qform encodes the same geometry (rotation + pixdim + qfac + offsets): offsets
        // exactly, each column within 2e-3 rad of the sform's. (The float32 quaternion cannot do
        // better near 180-degree rotations, where a = sqrt(1 - b^2 - c^2 - d^2) is tiny; the
        // sform above is exact.)
        let q = img.header.qform.unwrap();
        for r in 0..3 {
            prop_assert_eq!(q[r][3], affine[r][3]);
        }
        for c in 0..3 {
            for r in 0..3 {
                prop_assert!((q[r][c] - affine[r][c]).abs() <= 2e-3 * spacing[c],
                    "qform {:?} vs affine {:?}", q, affine);
            }
        }
    }

    #[test]
    fn reorientation_and_its_inverse_are_identity(
        dims in dims_strategy(),
        (affine, spacing) in affine_strategy(),
    ) {
        let n: usize = dims.iter().product();
        let v = Volume { dims, data: (0..n as u32).collect::<Vec<_>>(), affine, spacing };
        let (ras, r) = reorient_to_ras(&v).unwrap();
        // Every RAS voxel axis runs towards +R, +A, +S respectively ...
        for j in 0..3 {
            prop_assert!(ras.affine[j][j] > 0.0, "{:?}", ras.affine);
        }
        // ... and where each axis is dominated by its own world direction, nibabel's greedy
        // io_orientation says RAS again (very oblique grids may say otherwise, as in nibabel).
        let dominant = (0..3).all(|j| (0..3).all(|r| r == j || ras.affine[j][j] > ras.affine[r][j].abs()));
        if dominant {
            prop_assert_eq!(axcodes(&ras.affine).unwrap(), ['R', 'A', 'S']);
        }
        // Every voxel keeps its world position.
        let world = |a: &[[f64; 4]; 4], p: [usize; 3]| -> [f64; 3] {
            std::array::from_fn(|k| (0..3).map(|c| a[k][c] * p[c] as f64).sum::<f64>() + a[k][3])
        };
        for idx in [0, n / 2, n - 1] {
            let (i, j, k) = (idx % ras.dims[0], (idx / ras.dims[0]) % ras.dims[1], idx / (ras.dims[0] * ras.dims[1]));
            let src = ras.data[idx] as usize;
            let (oi, oj, ok) = (src % dims[0], (src / dims[0]) % dims[1], src / (dims[0] * dims[1]));
            let (wa, wb) = (world(&ras.affine, [i, j, k]), world(&affine, [oi, oj, ok]));
            for c in 0..3 {
                prop_assert!((wa[c] - wb[c]).abs() < 1e-9 * (1.0 + wb[c].abs()));
            }
        }
        prop_assert_eq!(r.to_original(&ras).unwrap(), v.clone());
        if dominant {
            let (again, r2) = reorient_to_ras(&ras).unwrap();
            prop_assert!(r2.is_identity());
            prop_assert_eq!(again, ras);
        }
    }
}
