//! NIfTI reading and writing: nibabel semantics on crafted files, and every kind of bad input
//! (built in a tempdir) giving a clear error instead of a panic.

use std::io::Write;
use std::path::{Path, PathBuf};

use blindspot_io::nifti::AffineSource;
use blindspot_io::{
    Datatype, IoError, NonFinitePolicy, ReadOptions, Volume, WriteOptions, XformCode,
    check_same_grid, read_header, read_nifti, read_volume, write_f32, write_nifti, write_u8,
};
use flate2::Compression;
use flate2::write::GzEncoder;

/// A 20-degree rotation about z, voxel sizes (1.5, 2, 3), in LPS-ish orientation.
fn oblique_affine() -> [[f64; 4]; 4] {
    let (c, s) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
    [
        [-1.5 * c, 2.0 * s, 0.0, 10.0],
        [-1.5 * s, -2.0 * c, 0.0, -20.5],
        [0.0, 0.0, 3.0, 7.25],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

fn ramp<T>(dims: [usize; 3], f: impl Fn(usize) -> T) -> Volume<T> {
    let n = dims.iter().product();
    Volume {
        dims,
        data: (0..n).map(f).collect(),
        affine: oblique_affine(),
        spacing: [1.5, 2.0, 3.0],
    }
}

/// A plain `.nii` of int16 voxels `0..n` written by this crate, as bytes.
fn int16_file(dir: &Path, dims: [usize; 3]) -> Vec<u8> {
    let p = dir.join("base.nii");
    write_nifti(&p, &ramp(dims, |i| i as i16), &WriteOptions::default()).unwrap();
    std::fs::read(p).unwrap()
}

fn put(bytes: &mut [u8], off: usize, v: &[u8]) {
    bytes[off..off + v.len()].copy_from_slice(v);
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if name.ends_with(".gz") {
        let mut e = GzEncoder::new(std::fs::File::create(&p).unwrap(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
    } else {
        std::fs::write(&p, bytes).unwrap();
    }
    p
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn assert_affine_close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64) {
    for r in 0..4 {
        for c in 0..4 {
            assert!(close(a[r][c], b[r][c], tol), "{a:?}\n!=\n{b:?}");
        }
    }
}

#[test]
fn float_map_and_mask_round_trip_with_affine_and_both_codes() {
    let dir = tempfile::tempdir().unwrap();
    let map = ramp([5, 4, 3], |i| i as f32 * 0.25 - 3.0);
    let p = dir.path().join("map.nii.gz");
    write_f32(&p, &map).unwrap();
    let back = read_volume(&p).unwrap();
    assert_eq!(back.dims, map.dims);
    assert_eq!(back.data, map.data);
    assert_affine_close(&back.affine, &map.affine, 1e-6);
    assert_eq!(back.spacing, map.spacing);

    let img = read_nifti::<f32>(&p, &ReadOptions::default()).unwrap();
    assert_eq!(img.header.datatype, Datatype::F32);
    assert_eq!((img.header.sform_code, img.header.qform_code), (1, 1));
    // The qform encodes the same affine as the sform (no shear here).
    assert_affine_close(&img.header.qform.unwrap(), &map.affine, 1e-6);

    let mask = ramp([5, 4, 3], |i| (i % 3 == 0) as u8);
    let pm = dir.path().join("mask.nii");
    write_u8(&pm, &mask).unwrap();
    let m = read_nifti::<f32>(&pm, &ReadOptions::default()).unwrap();
    assert_eq!(m.header.datatype, Datatype::U8);
    assert_eq!(
        m.volume.data,
        mask.data.iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
    );
    check_same_grid(&p, &back, &pm, &m.volume).unwrap();
}

#[test]
fn writing_replaces_atomically_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.nii.gz");
    write_f32(&p, &ramp([2, 2, 2], |i| i as f32)).unwrap();
    write_f32(&p, &ramp([3, 2, 2], |i| -(i as f32))).unwrap();
    assert_eq!(read_volume(&p).unwrap().dims, [3, 2, 2]);
    // A refused volume leaves the old file and nothing else.
    let mut bad = ramp([3, 2, 2], |i| i as f32);
    bad.data.pop();
    assert!(matches!(
        write_f32(&p, &bad),
        Err(IoError::InvalidVolume(_))
    ));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.nii.gz")]);
    assert_eq!(read_volume(&p).unwrap().data[1], -1.0);
}

#[test]
fn writer_refuses_bad_volumes_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let v = ramp([2, 2, 2], |i| i as f32);
    let e = write_f32(&dir.path().join("x.png"), &v).unwrap_err();
    assert!(matches!(e, IoError::UnsupportedFormat { .. }), "{e}");
    let mut singular = v.clone();
    singular.affine[2] = [0.0, 0.0, 0.0, 1.0];
    assert!(matches!(
        write_f32(&dir.path().join("s.nii"), &singular),
        Err(IoError::InvalidVolume(_))
    ));
    let mut nan_spacing = v.clone();
    nan_spacing.spacing[1] = f64::NAN;
    assert!(matches!(
        write_f32(&dir.path().join("n.nii"), &nan_spacing),
        Err(IoError::InvalidVolume(_))
    ));
    let e = write_f32(&dir.path().join("missing/dir/x.nii.gz"), &v).unwrap_err();
    assert!(
        matches!(&e, IoError::Io { path, .. } if path.ends_with("x.nii.gz")),
        "{e}"
    );
}

#[test]
fn independent_reader_agrees_with_written_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.nii.gz");
    let v = ramp([4, 3, 2], |i| i as f32);
    write_nifti(
        &p,
        &v,
        &WriteOptions {
            xform_code: XformCode::Mni152,
            compression: 6,
        },
    )
    .unwrap();
    let h = nifti::NiftiHeader::from_file(&p).unwrap();
    assert_eq!(&h.dim[..4], &[3, 4, 3, 2]);
    assert_eq!(h.datatype, 16);
    assert_eq!(h.bitpix, 32);
    assert_eq!((h.sform_code, h.qform_code), (4, 4));
    assert_eq!(
        h.srow_y,
        [
            v.affine[1][0] as f32,
            v.affine[1][1] as f32,
            v.affine[1][2] as f32,
            v.affine[1][3] as f32
        ]
    );
    assert_eq!(h.pixdim[0], 1.0); // LPS is a proper rotation of RAS: qfac 1
    assert_eq!(&h.pixdim[1..4], &[1.5, 2.0, 3.0]);
    assert_eq!(h.vox_offset, 352.0);
}

#[test]
fn scaling_follows_nibabel() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = int16_file(dir.path(), [3, 2, 2]);
    put(&mut b, 112, &2.5f32.to_le_bytes());
    put(&mut b, 116, &(-1.0f32).to_le_bytes());
    let p = save(dir.path(), "scaled.nii.gz", &b);
    let img = read_nifti::<f64>(&p, &ReadOptions::default()).unwrap();
    assert_eq!((img.header.scl_slope, img.header.scl_inter), (2.5, -1.0));
    assert_eq!(
        img.volume.data,
        (0..12)
            .map(|i| f64::from(i) * 2.5 - 1.0)
            .collect::<Vec<_>>()
    );

    // Slope 0 or non-finite: no scaling at all (the intercept is ignored too).
    for slope in [0.0f32, f32::NAN, f32::INFINITY] {
        put(&mut b, 112, &slope.to_le_bytes());
        let p = save(dir.path(), "unscaled.nii", &b);
        let img = read_nifti::<f32>(&p, &ReadOptions::default()).unwrap();
        assert_eq!((img.header.scl_slope, img.header.scl_inter), (1.0, 0.0));
        assert_eq!(img.volume.data[5], 5.0);
    }
    // A valid slope with a non-finite intercept is an error.
    put(&mut b, 112, &2.0f32.to_le_bytes());
    put(&mut b, 116, &f32::NAN.to_le_bytes());
    let p = save(dir.path(), "badinter.nii", &b);
    let e = read_volume(&p).unwrap_err();
    assert!(
        matches!(&e, IoError::InvalidHeader { field: "scl_inter", path, .. } if *path == p),
        "{e}"
    );
}

#[test]
fn affine_precedence_sform_then_qform_then_base() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = int16_file(dir.path(), [3, 5, 7]);
    // Make the sform differ from the qform so the choice is visible.
    put(&mut b, 280 + 12, &99.0f32.to_le_bytes());
    let h = read_header(&save(dir.path(), "s.nii", &b)).unwrap();
    assert_eq!(h.affine_source, AffineSource::Sform);
    assert_eq!(h.affine[0][3], 99.0);

    // Invalid sform codes are reset to 0 by nibabel: the qform is used.
    for code in [0i16, 7, -1] {
        put(&mut b, 254, &code.to_le_bytes());
        let h = read_header(&save(dir.path(), "q.nii", &b)).unwrap();
        assert_eq!(h.affine_source, AffineSource::Qform);
        assert!(h.sform.is_none());
        assert_affine_close(&h.affine, &oblique_affine(), 1e-6);
    }

    put(&mut b, 252, &0i16.to_le_bytes());
    let h = read_header(&save(dir.path(), "base.nii", &b)).unwrap();
    assert_eq!(h.affine_source, AffineSource::Base);
    // nibabel shape_zoom_affine((3, 5, 7), (1.5, 2, 3)): x flipped, grid centre at the origin.
    assert_eq!(
        h.affine,
        [
            [-1.5, 0.0, 0.0, 1.5],
            [0.0, 2.0, 0.0, -4.0],
            [0.0, 0.0, 3.0, -9.0],
            [0.0, 0.0, 0.0, 1.0]
        ]
    );
}

#[test]
fn nibabel_fixes_pixdim_and_qfac() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = int16_file(dir.path(), [2, 2, 2]);
    put(&mut b, 254, &0i16.to_le_bytes()); // qform only
    put(&mut b, 76, &0.5f32.to_le_bytes()); // qfac not +-1 -> 1
    put(&mut b, 80, &(-1.5f32).to_le_bytes()); // negative -> abs
    put(&mut b, 84, &0.0f32.to_le_bytes()); // zero -> 1
    let h = read_header(&save(dir.path(), "fix.nii", &b)).unwrap();
    assert_eq!(h.zooms, vec![1.5, 1.0, 3.0]);
    let z_col: Vec<f64> = (0..3).map(|r| h.affine[r][2]).collect();
    assert_eq!(z_col, vec![0.0, 0.0, 3.0]); // qfac 1 keeps +z
}

#[test]
fn four_d_selects_volumes_and_checks_the_index() {
    let dir = tempfile::tempdir().unwrap();
    // 2x3x4 voxels, 3 volumes: written as 2x3x12, relabelled as 4-D.
    let mut b = int16_file(dir.path(), [2, 3, 12]);
    put(&mut b, 40, &4i16.to_le_bytes());
    put(&mut b, 46, &4i16.to_le_bytes());
    put(&mut b, 48, &3i16.to_le_bytes());
    put(&mut b, 92, &2.5f32.to_le_bytes()); // pixdim[4]: TR
    let p = save(dir.path(), "4d.nii.gz", &b);
    for t in 0..3 {
        let img = read_nifti::<f32>(
            &p,
            &ReadOptions {
                volume: t,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(img.header.shape, vec![2, 3, 4, 3]);
        assert_eq!(img.header.zooms, vec![1.5, 2.0, 3.0, 2.5]);
        assert_eq!(img.header.num_volumes(), 3);
        assert_eq!(img.volume.dims, [2, 3, 4]);
        assert_eq!(img.volume.data[0], (24 * t) as f32);
        assert_eq!(img.volume.data[23], (24 * t + 23) as f32);
    }
    let e = read_nifti::<f32>(
        &p,
        &ReadOptions {
            volume: 3,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, IoError::VolumeIndex { index: 3, count: 3, path } if *path == p),
        "{e}"
    );
}

#[test]
fn big_endian_files_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let le = int16_file(dir.path(), [3, 2, 2]);
    let mut be = le.clone();
    let mut swap = |off: usize, n: usize| be[off..off + n].reverse();
    swap(0, 4);
    for i in 0..8 {
        swap(40 + 2 * i, 2);
        swap(76 + 4 * i, 4);
    }
    for off in [70, 72, 252, 254] {
        swap(off, 2);
    }
    for off in (108..124).step_by(4).chain((256..328).step_by(4)) {
        swap(off, 4);
    }
    for v in 0..12 {
        swap(352 + 2 * v, 2);
    }
    let a = read_nifti::<f32>(&save(dir.path(), "le.nii", &le), &ReadOptions::default()).unwrap();
    let b =
        read_nifti::<f32>(&save(dir.path(), "be.nii.gz", &be), &ReadOptions::default()).unwrap();
    assert!(b.header.big_endian && !a.header.big_endian);
    assert_eq!(a.volume, b.volume);
}

#[test]
fn every_supported_datatype_reads() {
    let dir = tempfile::tempdir().unwrap();
    macro_rules! check {
        ($ty:ty, $dt:ident, $vals:expr) => {{
            let vals: Vec<$ty> = $vals;
            let v = Volume {
                dims: [vals.len(), 1, 1],
                data: vals.clone(),
                affine: oblique_affine(),
                spacing: [1.5, 2.0, 3.0],
            };
            let p = dir.path().join(concat!(stringify!($ty), ".nii.gz"));
            write_nifti(&p, &v, &WriteOptions::default()).unwrap();
            let img = read_nifti::<f64>(&p, &ReadOptions::default()).unwrap();
            assert_eq!(img.header.datatype, Datatype::$dt);
            let want: Vec<f64> = vals.iter().map(|&x| x as f64).collect();
            assert_eq!(img.volume.data, want);
        }};
    }
    check!(u8, U8, vec![0, 1, 255]);
    check!(i8, I8, vec![-128, 0, 127]);
    check!(i16, I16, vec![i16::MIN, -1, i16::MAX]);
    check!(u16, U16, vec![0, 1, u16::MAX]);
    check!(i32, I32, vec![i32::MIN, 0, i32::MAX]);
    check!(u32, U32, vec![0, 7, u32::MAX]);
    check!(i64, I64, vec![-(1 << 52), 0, 1 << 52]);
    check!(u64, U64, vec![0, 3, 1 << 52]);
    check!(f32, F32, vec![-1.5, 0.0, 3.25e7]);
    check!(f64, F64, vec![-1e300, 0.1, 1e-300]);
}

#[test]
fn non_finite_voxels_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = ramp([4, 2, 1], |i| i as f32);
    v.data[2] = f32::NAN;
    v.data[5] = f32::INFINITY;
    v.data[6] = f32::NEG_INFINITY;
    let p = dir.path().join("nan.nii.gz");
    write_f32(&p, &v).unwrap();

    let e = read_volume(&p).unwrap_err();
    assert!(
        matches!(&e, IoError::NonFinite { count: 3, first: 2, path } if *path == p),
        "{e}"
    );

    let opts = ReadOptions {
        non_finite: NonFinitePolicy::Replace(-7.0),
        ..Default::default()
    };
    let img = read_nifti::<f32>(&p, &opts).unwrap();
    assert_eq!(img.non_finite, 3);
    assert_eq!(
        img.volume.data,
        vec![0.0, 1.0, -7.0, 3.0, 4.0, -7.0, -7.0, 7.0]
    );

    let opts = ReadOptions {
        non_finite: NonFinitePolicy::Keep,
        ..Default::default()
    };
    let img = read_nifti::<f64>(&p, &opts).unwrap();
    assert_eq!(img.non_finite, 3);
    assert!(img.volume.data[2].is_nan() && img.volume.data[5] == f64::INFINITY);
}

#[test]
fn float64_values_beyond_float32_are_called_overflow_not_nan() {
    let dir = tempfile::tempdir().unwrap();
    let v = Volume {
        dims: [4, 1, 1],
        data: vec![0.5f64, 1e39, -2e300, 3.0],
        affine: oblique_affine(),
        spacing: [1.0, 1.0, 1.0],
    };
    let p = dir.path().join("big.nii.gz");
    write_nifti(&p, &v, &WriteOptions::default()).unwrap();
    let e = fails(&p);
    assert!(
        matches!(
            &e,
            IoError::Overflow {
                count: 2,
                first: 1,
                datatype: "float64",
                ..
            }
        ),
        "{e}"
    );
    let shown = e.to_string();
    assert!(
        shown.contains("float32") && !shown.contains("NaN"),
        "{shown}"
    );
    // read as float64 the same file is fine
    let img = read_nifti::<f64>(&p, &ReadOptions::default()).unwrap();
    assert_eq!(img.volume.data, v.data);
}

#[test]
fn a_text_file_named_nii_gz_is_called_not_gzip() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("short.nii.gz", "hello, I am not a scan\n".repeat(2)),
        ("long.nii.gz", "hello, I am not a scan\n".repeat(40)),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let e = fails(&p);
        let shown = e.to_string();
        assert!(
            matches!(e, IoError::InvalidFile { .. }) && shown.contains("not a gzip file"),
            "{name}: {shown}"
        );
        assert!(!shown.contains("truncated"), "{name}: {shown}");
    }
}

/// Read with default options and return the error.
fn fails(p: &Path) -> IoError {
    let e = read_volume(p).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains(p.file_name().unwrap().to_str().unwrap()),
        "error does not name the file: {shown}"
    );
    e
}

#[test]
fn truncated_and_corrupt_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let v = ramp([16, 16, 16], |i| (i as f32).sin());
    let good = dir.path().join("good.nii.gz");
    write_f32(&good, &v).unwrap();
    let gz = std::fs::read(&good).unwrap();

    for (name, bytes) in [
        ("half.nii.gz", gz[..gz.len() / 2].to_vec()),
        ("nocrc.nii.gz", gz[..gz.len() - 4].to_vec()),
        ("tiny.nii.gz", gz[..10].to_vec()),
        ("empty.nii", Vec::new()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        assert!(matches!(fails(&p), IoError::InvalidFile { .. }), "{name}");
    }

    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let p = dir.path().join("corrupt.nii.gz");
    std::fs::write(&p, flipped).unwrap();
    assert!(matches!(fails(&p), IoError::InvalidFile { .. }));

    // Plain file cut inside the voxel data.
    let plain = int16_file(dir.path(), [4, 4, 4]);
    let p = save(dir.path(), "cut.nii", &plain[..400]);
    let e = fails(&p);
    assert!(
        matches!(&e, IoError::InvalidFile { reason, .. } if reason.contains("truncated")),
        "{e}"
    );

    let missing = dir.path().join("missing.nii.gz");
    assert!(matches!(fails(&missing), IoError::Io { .. }));
}

#[test]
fn bad_headers_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = int16_file(dir.path(), [3, 2, 2]);

    let mut b = base.clone();
    put(&mut b, 344, b"xyz\0");
    assert!(matches!(
        fails(&save(dir.path(), "magic.nii", &b)),
        IoError::InvalidFile { .. }
    ));

    let mut b = base.clone();
    put(&mut b, 344, b"ni1\0");
    assert!(matches!(
        fails(&save(dir.path(), "pair.nii", &b)),
        IoError::UnsupportedFormat { .. }
    ));

    let mut b = base.clone();
    put(&mut b, 0, &540i32.to_le_bytes());
    put(&mut b, 4, b"n+2\0\r\n\x1a\n");
    let e = fails(&save(dir.path(), "two.nii.gz", &b));
    assert!(
        matches!(&e, IoError::UnsupportedFormat { reason, .. } if reason.contains("NIfTI-2")),
        "{e}"
    );

    let mut b = base.clone();
    put(&mut b, 0, &123i32.to_le_bytes());
    assert!(matches!(
        fails(&save(dir.path(), "size.nii", &b)),
        IoError::InvalidFile { .. }
    ));

    for (name, dim) in [("zero.nii", 0i16), ("neg.nii", -4)] {
        let mut b = base.clone();
        put(&mut b, 44, &dim.to_le_bytes());
        let e = fails(&save(dir.path(), name, &b));
        assert!(
            matches!(
                &e,
                IoError::InvalidHeader {
                    field: "dim[2]",
                    ..
                }
            ),
            "{e}"
        );
    }

    let mut b = base.clone();
    put(&mut b, 40, &9i16.to_le_bytes());
    assert!(matches!(
        fails(&save(dir.path(), "ndim.nii", &b)),
        IoError::InvalidHeader {
            field: "dim[0]",
            ..
        }
    ));

    for code in [32i16, 128, 1, 1536] {
        let mut b = base.clone();
        put(&mut b, 70, &code.to_le_bytes());
        let e = fails(&save(dir.path(), "dtype.nii", &b));
        assert!(
            matches!(&e, IoError::UnsupportedFormat { reason, .. } if reason.contains(&code.to_string())),
            "{e}"
        );
    }

    let mut b = base.clone();
    put(&mut b, 108, &100.0f32.to_le_bytes());
    assert!(matches!(
        fails(&save(dir.path(), "offset.nii", &b)),
        IoError::InvalidHeader {
            field: "vox_offset",
            ..
        }
    ));

    let mut b = base.clone();
    put(&mut b, 254, &0i16.to_le_bytes());
    put(&mut b, 256, &0.9f32.to_le_bytes());
    put(&mut b, 260, &0.9f32.to_le_bytes());
    assert!(matches!(
        fails(&save(dir.path(), "quat.nii", &b)),
        IoError::InvalidHeader { .. }
    ));

    // Huge dims that cannot fit in memory: an error, not an abort.
    let mut b = base.clone();
    for i in 1..8 {
        put(&mut b, 40 + 2 * i, &i16::MAX.to_le_bytes());
    }
    put(&mut b, 40, &7i16.to_le_bytes());
    put(&mut b, 70, &64i16.to_le_bytes());
    let e = fails(&save(dir.path(), "huge.nii", &b));
    assert!(
        matches!(
            &e,
            IoError::InvalidHeader { .. } | IoError::InvalidFile { .. }
        ),
        "{e}"
    );
}

#[test]
fn grid_mismatch_between_image_and_mask_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let img = ramp([4, 3, 2], |i| i as f32);
    let mut mask = ramp([4, 3, 2], |i| (i % 2) as u8);
    mask.affine[1][3] += 1.0;
    let (pi, pm) = (
        dir.path().join("img.nii.gz"),
        dir.path().join("mask.nii.gz"),
    );
    write_f32(&pi, &img).unwrap();
    write_u8(&pm, &mask).unwrap();
    let (a, b) = (read_volume(&pi).unwrap(), read_volume(&pm).unwrap());
    let e = check_same_grid(&pi, &a, &pm, &b).unwrap_err();
    assert!(
        matches!(&e, IoError::GridMismatch { first, second, .. } if *first == pi && *second == pm),
        "{e}"
    );
}
