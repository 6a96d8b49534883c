//! The 348-byte NIfTI-1 header: decoding (either byte order), validation with nibabel's fixes,
//! the affine it implies, and encoding for writing.

use std::path::Path;

use crate::error::{IoError, Result};
use crate::orient::polar_rotation;
use crate::volume::Affine;

/// Size of a NIfTI-1 header in bytes.
pub(crate) const HEADER_SIZE: usize = 348;
/// Where voxel data starts in the files this crate writes (header + 4-byte extension flag).
pub(crate) const WRITE_VOX_OFFSET: usize = 352;
const NIFTI2_HEADER_SIZE: i32 = 540;

/// On-disk voxel type of a NIfTI-1 file (the `datatype` header field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Datatype {
    /// `DT_UINT8` (2).
    U8,
    /// `DT_INT8` (256).
    I8,
    /// `DT_INT16` (4).
    I16,
    /// `DT_UINT16` (512).
    U16,
    /// `DT_INT32` (8).
    I32,
    /// `DT_UINT32` (768).
    U32,
    /// `DT_INT64` (1024).
    I64,
    /// `DT_UINT64` (1280).
    U64,
    /// `DT_FLOAT32` (16).
    F32,
    /// `DT_FLOAT64` (64).
    F64,
}

impl Datatype {
    /// Every supported datatype.
    pub const ALL: [Datatype; 10] = [
        Datatype::U8,
        Datatype::I8,
        Datatype::I16,
        Datatype::U16,
        Datatype::I32,
        Datatype::U32,
        Datatype::I64,
        Datatype::U64,
        Datatype::F32,
        Datatype::F64,
    ];

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            Datatype::U8 => 2,
            Datatype::I8 => 256,
            Datatype::I16 => 4,
            Datatype::U16 => 512,
            Datatype::I32 => 8,
            Datatype::U32 => 768,
            Datatype::I64 => 1024,
            Datatype::U64 => 1280,
            Datatype::F32 => 16,
            Datatype::F64 => 64,
        }
    }

    /// The datatype of a NIfTI `datatype` code, if this crate reads it.
    pub fn from_code(code: i16) -> Option<Datatype> {
        Datatype::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            Datatype::U8 | Datatype::I8 => 1,
            Datatype::I16 | Datatype::U16 => 2,
            Datatype::I32 | Datatype::U32 | Datatype::F32 => 4,
            Datatype::I64 | Datatype::U64 | Datatype::F64 => 8,
        }
    }

    /// Whether voxels are floating point (and may hold NaN or Inf).
    pub fn is_float(self) -> bool {
        matches!(self, Datatype::F32 | Datatype::F64)
    }

    /// The numpy name of the type (`uint8`, `float32`, ...), as nibabel reports it.
    pub fn name(self) -> &'static str {
        match self {
            Datatype::U8 => "uint8",
            Datatype::I8 => "int8",
            Datatype::I16 => "int16",
            Datatype::U16 => "uint16",
            Datatype::I32 => "int32",
            Datatype::U32 => "uint32",
            Datatype::I64 => "int64",
            Datatype::U64 => "uint64",
            Datatype::F32 => "float32",
            Datatype::F64 => "float64",
        }
    }
}

/// Which header transform gave [`NiftiHeader::affine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineSource {
    /// The `srow_*` rows (`sform_code` in 1..=5).
    Sform,
    /// The quaternion, offsets and `pixdim` (`qform_code` in 1..=5, `sform_code` 0).
    Qform,
    /// Neither code set: nibabel's base affine, `diag(-dx, dy, dz)` centred on the grid.
    Base,
}

/// The facts of a NIfTI-1 header, after nibabel's load-time fixes.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    /// On-disk voxel type.
    pub datatype: Datatype,
    /// Whether the file is big-endian.
    pub big_endian: bool,
    /// Full image shape, `dim[1..=dim[0]]` (length 1 to 7; 4 for a 4-D series).
    pub shape: Vec<usize>,
    /// Voxel sizes `pixdim[1..=dim[0]]`; spatial ones made positive and non-zero as nibabel does.
    pub zooms: Vec<f64>,
    /// Scale applied to stored values (1 when the file has no valid scaling).
    pub scl_slope: f64,
    /// Offset applied to stored values (0 when the file has no valid scaling).
    pub scl_inter: f64,
    /// `qform_code` as stored.
    pub qform_code: i16,
    /// `sform_code` as stored.
    pub sform_code: i16,
    /// The qform matrix, when `qform_code` is a valid non-zero code.
    pub qform: Option<Affine>,
    /// The sform matrix, when `sform_code` is a valid non-zero code.
    pub sform: Option<Affine>,
    /// The voxel-to-world affine nibabel would choose (sform, else qform, else base).
    pub affine: Affine,
    /// Where [`NiftiHeader::affine`] came from.
    pub affine_source: AffineSource,
    /// Byte offset of the voxel data in the (decompressed) file.
    pub vox_offset: usize,
}

impl NiftiHeader {
    /// Spatial shape `[nx, ny, nz]` (missing axes are 1).
    pub fn dims3(&self) -> [usize; 3] {
        let mut d = [1; 3];
        for (o, s) in d.iter_mut().zip(&self.shape) {
            *o = *s;
        }
        d
    }

    /// Voxel sizes `[dx, dy, dz]` (missing axes are 1).
    pub fn spacing(&self) -> [f64; 3] {
        let mut d = [1.0; 3];
        for (o, s) in d.iter_mut().zip(&self.zooms) {
            *o = *s;
        }
        d
    }

    /// Number of 3-D volumes (the product of the dimensions past the third; 1 for 3-D).
    pub fn num_volumes(&self) -> usize {
        self.shape.iter().skip(3).product()
    }

    /// Voxels in one 3-D volume.
    pub fn voxels_per_volume(&self) -> usize {
        self.dims3().iter().product()
    }

    /// Whether stored values are scaled on reading.
    pub fn is_scaled(&self) -> bool {
        self.scl_slope != 1.0 || self.scl_inter != 0.0
    }
}

/// Byte-order aware little reader over the header bytes.
struct Fields<'a> {
    b: &'a [u8; HEADER_SIZE],
    be: bool,
}

impl Fields<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.bytes(off))
    }
    fn f32(&self, off: usize) -> f32 {
        f32::from_le_bytes(self.bytes(off))
    }
}

fn invalid(path: &Path, field: &'static str, value: impl ToString, expected: &str) -> IoError {
    IoError::InvalidHeader {
        path: path.to_path_buf(),
        field,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// A valid, non-zero xform code (nibabel resets codes outside 0..=5 to 0 on load).
fn xform_valid(code: i16) -> bool {
    (1..=5).contains(&code)
}

/// Decode and validate a header.
///
/// # Errors
///
/// [`IoError::UnsupportedFormat`] for NIfTI-2, `.hdr/.img` pairs and unsupported datatypes or
/// dimensionalities; [`IoError::InvalidFile`] when this is no NIfTI-1 header;
/// [`IoError::InvalidHeader`] for impossible field values.
pub(crate) fn decode(path: &Path, b: &[u8; HEADER_SIZE]) -> Result<NiftiHeader> {
    let be = byte_order(path, b)?;
    let f = Fields { b, be };
    check_magic(path, b)?;
    let shape = shape(path, &f)?;
    let ndim = shape.len();
    let code = f.i16(70);
    let datatype = Datatype::from_code(code).ok_or_else(|| IoError::UnsupportedFormat {
        path: path.to_path_buf(),
        reason: format!(
            "datatype code {code}; supported: uint8 (2), int8 (256), int16 (4), uint16 (512), \
             int32 (8), uint32 (768), int64 (1024), uint64 (1280), float32 (16), float64 (64)"
        ),
    })?;

    let mut pixdim: [f64; 8] = std::array::from_fn(|i| f64::from(f.f32(76 + 4 * i)));
    // nibabel's load-time fixes: spatial pixdims 0 -> 1, negative -> absolute value; qfac not
    // +-1 -> 1.
    for p in &mut pixdim[1..4] {
        if *p == 0.0 {
            *p = 1.0;
        }
        *p = p.abs();
    }
    if pixdim[0] != 1.0 && pixdim[0] != -1.0 {
        pixdim[0] = 1.0;
    }
    let zooms = pixdim[1..=ndim].to_vec();

    let vox_offset = f.f32(108);
    if !vox_offset.is_finite() || vox_offset < HEADER_SIZE as f32 || vox_offset > 1.0e9 {
        return Err(invalid(
            path,
            "vox_offset",
            vox_offset,
            "a byte offset of at least 348",
        ));
    }

    let (scl_slope, scl_inter) = {
        let slope = f64::from(f.f32(112));
        let inter = f64::from(f.f32(116));
        if slope == 0.0 || !slope.is_finite() {
            (1.0, 0.0)
        } else if !inter.is_finite() {
            return Err(invalid(
                path,
                "scl_inter",
                inter,
                "a finite intercept when scl_slope is set",
            ));
        } else {
            (slope, inter)
        }
    };

    let o = orientation(path, &f, &shape, &pixdim)?;
    Ok(NiftiHeader {
        datatype,
        big_endian: be,
        shape,
        zooms,
        scl_slope,
        scl_inter,
        qform_code: o.qform_code,
        sform_code: o.sform_code,
        qform: o.qform,
        sform: o.sform,
        affine: o.affine,
        affine_source: o.affine_source,
        vox_offset: vox_offset as usize,
    })
}

/// Whether the header is big-endian, from `sizeof_hdr` read both ways.
fn byte_order(path: &Path, b: &[u8; HEADER_SIZE]) -> Result<bool> {
    let size_le = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let size_be = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if size_le == HEADER_SIZE as i32 {
        Ok(false)
    } else if size_be == HEADER_SIZE as i32 {
        Ok(true)
    } else if size_le == NIFTI2_HEADER_SIZE || size_be == NIFTI2_HEADER_SIZE || &b[4..7] == b"n+2" {
        Err(IoError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: "NIfTI-2 file (sizeof_hdr = 540); only NIfTI-1 is read, convert it \
                     (for example with nibabel or `fslchfiletype NIFTI_GZ`)"
                .into(),
        })
    } else {
        Err(IoError::InvalidFile {
            path: path.to_path_buf(),
            reason: format!("sizeof_hdr is {size_le} (read little-endian), expected 348"),
        })
    }
}

/// A single-file NIfTI-1 (`n+1`), not a header-only pair or Analyze.
fn check_magic(path: &Path, b: &[u8; HEADER_SIZE]) -> Result<()> {
    let magic = &b[344..348];
    if magic == b"ni1\0" {
        return Err(IoError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: "header-only NIfTI-1 (.hdr/.img pair); only single-file .nii/.nii.gz is read"
                .into(),
        });
    }
    if magic != b"n+1\0" {
        return Err(IoError::InvalidFile {
            path: path.to_path_buf(),
            reason: format!("magic is {magic:?}, expected \"n+1\\0\" (Analyze 7.5 is not read)"),
        });
    }
    Ok(())
}

/// `dim`: 1 to 7 axes of at least one voxel.
fn shape(path: &Path, f: &Fields<'_>) -> Result<Vec<usize>> {
    let dim: [i16; 8] = std::array::from_fn(|i| f.i16(40 + 2 * i));
    let ndim = dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(invalid(
            path,
            "dim[0]",
            ndim,
            "the number of dimensions, 1 to 7",
        ));
    }
    let ndim = ndim as usize;
    const DIM_NAMES: [&str; 8] = [
        "dim[0]", "dim[1]", "dim[2]", "dim[3]", "dim[4]", "dim[5]", "dim[6]", "dim[7]",
    ];
    let mut shape = Vec::with_capacity(ndim);
    for i in 1..=ndim {
        if dim[i] < 1 {
            return Err(invalid(
                path,
                DIM_NAMES[i],
                dim[i],
                "at least 1 voxel along every axis",
            ));
        }
        shape.push(dim[i] as usize);
    }
    Ok(shape)
}

/// The header's orientation fields and the affine nibabel picks from them.
struct Orientation {
    qform_code: i16,
    sform_code: i16,
    qform: Option<Affine>,
    sform: Option<Affine>,
    affine: Affine,
    affine_source: AffineSource,
}

/// The codes, the qform and sform (where their codes say they are valid) and the affine
/// nibabel picks: the sform, else the qform, else the base affine of the voxel sizes.
fn orientation(
    path: &Path,
    f: &Fields<'_>,
    shape: &[usize],
    pixdim: &[f64; 8],
) -> Result<Orientation> {
    let qform_code = f.i16(252);
    let sform_code = f.i16(254);
    let srow = |off: usize| -> [f64; 4] { std::array::from_fn(|i| f64::from(f.f32(off + 4 * i))) };
    let sform =
        xform_valid(sform_code).then(|| [srow(280), srow(296), srow(312), [0.0, 0.0, 0.0, 1.0]]);
    let qform = if xform_valid(qform_code) {
        let bcd = [f.f32(256), f.f32(260), f.f32(264)];
        let offsets = [f.f32(268), f.f32(272), f.f32(276)].map(f64::from);
        Some(qform_affine(path, bcd, offsets, pixdim)?)
    } else {
        None
    };
    let (affine, affine_source) = match (sform, qform) {
        (Some(s), _) => (s, AffineSource::Sform),
        (None, Some(q)) => (q, AffineSource::Qform),
        (None, None) => (base_affine(shape, pixdim), AffineSource::Base),
    };

    Ok(Orientation {
        qform_code,
        sform_code,
        qform,
        sform,
        affine,
        affine_source,
    })
}

/// nibabel's `get_qform`: quaternion (b, c, d; a >= 0 implied) to rotation, times
/// `diag(pixdim[1], pixdim[2], qfac * pixdim[3])`, plus the offsets.
fn qform_affine(
    path: &Path,
    bcd: [f32; 3],
    offsets: [f64; 3],
    pixdim: &[f64; 8],
) -> Result<Affine> {
    // nibabel computes w^2 in float32 and tolerates slightly negative values (3 eps).
    let w2 = 1.0 - (bcd[0] * bcd[0] + bcd[1] * bcd[1] + bcd[2] * bcd[2]);
    let w = if w2 < 0.0 {
        if w2 < -3.0 * f32::EPSILON {
            return Err(invalid(
                path,
                "quatern_b/c/d",
                format!("{bcd:?}"),
                "a unit quaternion's vector part (b^2 + c^2 + d^2 <= 1)",
            ));
        }
        0.0
    } else {
        f64::from(w2.sqrt())
    };
    let [x, y, z] = bcd.map(f64::from);
    let r = quat_to_mat([w, x, y, z]);
    let vox = [pixdim[1], pixdim[2], pixdim[3] * pixdim[0]];
    let mut a = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            a[i][j] = r[i][j] * vox[j];
        }
        a[i][3] = offsets[i];
    }
    a[3][3] = 1.0;
    Ok(a)
}

/// Rotation matrix of a quaternion `[w, x, y, z]` (normalised first, as nibabel's `quat2mat`).
fn quat_to_mat(q: [f64; 4]) -> [[f64; 3]; 3] {
    let [w, x, y, z] = q;
    let n = w * w + x * x + y * y + z * z;
    if n < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / n;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

/// Quaternion `[w, x, y, z]` (with `w >= 0`) of a proper rotation matrix.
fn mat_to_quat(r: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = r[0][0] + r[1][1] + r[2][2];
    let q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            0.25 * s,
            (r[2][1] - r[1][2]) / s,
            (r[0][2] - r[2][0]) / s,
            (r[1][0] - r[0][1]) / s,
        ]
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        [
            (r[2][1] - r[1][2]) / s,
            0.25 * s,
            (r[0][1] + r[1][0]) / s,
            (r[0][2] + r[2][0]) / s,
        ]
    } else if r[1][1] > r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        [
            (r[0][2] - r[2][0]) / s,
            (r[0][1] + r[1][0]) / s,
            0.25 * s,
            (r[1][2] + r[2][1]) / s,
        ]
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        [
            (r[1][0] - r[0][1]) / s,
            (r[0][2] + r[2][0]) / s,
            (r[1][2] + r[2][1]) / s,
            0.25 * s,
        ]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let sign = if q[0] < 0.0 { -1.0 } else { 1.0 };
    q.map(|v| sign * v / n)
}

/// nibabel's `shape_zoom_affine(shape, zooms, x_flip=True)`: voxel centre of the grid at the
/// origin, x flipped (radiological Analyze convention).
fn base_affine(shape: &[usize], pixdim: &[f64; 8]) -> Affine {
    let mut a = [[0.0; 4]; 4];
    for i in 0..3 {
        let n = shape.get(i).copied().unwrap_or(1) as f64;
        let zoom = if i < shape.len() { pixdim[i + 1] } else { 1.0 };
        let zoom = if i == 0 { -zoom } else { zoom };
        a[i][i] = zoom;
        a[i][3] = -((n - 1.0) / 2.0) * zoom;
    }
    a[3][3] = 1.0;
    a
}

/// What the writer puts into a header.
pub(crate) struct HeaderSpec<'a> {
    pub dims: [usize; 3],
    pub datatype: Datatype,
    pub spacing: [f64; 3],
    pub affine: &'a Affine,
    pub xform_code: i16,
}

/// Encode a little-endian NIfTI-1 header followed by the empty 4-byte extension flag.
///
/// The sform holds the affine; the qform holds its closest rotation (polar decomposition), the
/// sign of its determinant as `qfac`, `pixdim` = the volume's spacing and the translation. Both
/// codes are `xform_code`.
///
/// The caller has validated dims (1..=32767), spacing (finite, > 0) and the affine (finite,
/// invertible).
pub(crate) fn encode(spec: &HeaderSpec<'_>) -> [u8; WRITE_VOX_OFFSET] {
    let mut b = [0u8; WRITE_VOX_OFFSET];
    let put = |b: &mut [u8; WRITE_VOX_OFFSET], off: usize, bytes: &[u8]| {
        b[off..off + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut b, 0, &(HEADER_SIZE as i32).to_le_bytes());
    let dims = [3, spec.dims[0], spec.dims[1], spec.dims[2], 1, 1, 1, 1];
    for (i, d) in dims.iter().enumerate() {
        put(&mut b, 40 + 2 * i, &(*d as i16).to_le_bytes());
    }
    put(&mut b, 70, &spec.datatype.code().to_le_bytes());
    put(
        &mut b,
        72,
        &((spec.datatype.size() * 8) as i16).to_le_bytes(),
    );

    let a = spec.affine;
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        let norm = (0..3).map(|r| a[r][i] * a[r][i]).sum::<f64>().sqrt();
        for r in 0..3 {
            m[r][i] = a[r][i] / norm;
        }
    }
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let qfac: f64 = if det < 0.0 {
        for row in &mut m {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    // The affine is invertible (checked by the caller), so the polar factor exists.
    let rot = polar_rotation(&m).unwrap_or([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    let q = mat_to_quat(&rot);

    let pixdim = [
        qfac,
        spec.spacing[0],
        spec.spacing[1],
        spec.spacing[2],
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut b, 76 + 4 * i, &(*p as f32).to_le_bytes());
    }
    put(&mut b, 108, &(WRITE_VOX_OFFSET as f32).to_le_bytes());
    put(&mut b, 112, &1.0f32.to_le_bytes());
    put(&mut b, 116, &0.0f32.to_le_bytes());
    b[123] = 2; // xyzt_units: millimetres
    put(&mut b, 148, b"blindspot");
    put(&mut b, 252, &spec.xform_code.to_le_bytes());
    put(&mut b, 254, &spec.xform_code.to_le_bytes());
    for (i, v) in [q[1], q[2], q[3], a[0][3], a[1][3], a[2][3]]
        .iter()
        .enumerate()
    {
        put(&mut b, 256 + 4 * i, &(*v as f32).to_le_bytes());
    }
    for r in 0..3 {
        for c in 0..4 {
            put(
                &mut b,
                280 + 16 * r + 4 * c,
                &(a[r][c] as f32).to_le_bytes(),
            );
        }
    }
    put(&mut b, 344, b"n+1\0");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rot_z(t: f64) -> [[f64; 3]; 3] {
        [
            [t.cos(), -t.sin(), 0.0],
            [t.sin(), t.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ]
    }

    #[test]
    fn quaternion_round_trips_through_matrix() {
        for r in [
            rot_z(0.3),
            rot_z(3.0),
            [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]],
            [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        ] {
            let q = mat_to_quat(&r);
            assert!(q[0] >= 0.0);
            let back = quat_to_mat(q);
            for i in 0..3 {
                for j in 0..3 {
                    assert!(
                        (back[i][j] - r[i][j]).abs() < 1e-12,
                        "{r:?} -> {q:?} -> {back:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn base_affine_matches_nibabel_shape_zoom_affine() {
        // nibabel: shape_zoom_affine((3, 5, 7), (2, 3, 4)) =
        // [[-2, 0, 0, 2], [0, 3, 0, -6], [0, 0, 4, -12], [0, 0, 0, 1]]
        let a = base_affine(&[3, 5, 7], &[1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            a,
            [
                [-2.0, 0.0, 0.0, 2.0],
                [0.0, 3.0, 0.0, -6.0],
                [0.0, 0.0, 4.0, -12.0],
                [0.0, 0.0, 0.0, 1.0]
            ]
        );
    }

    #[test]
    fn datatype_codes_are_unique_and_round_trip() {
        for d in Datatype::ALL {
            assert_eq!(Datatype::from_code(d.code()), Some(d));
        }
        assert_eq!(Datatype::from_code(32), None); // complex64
        assert_eq!(Datatype::from_code(128), None); // RGB24
    }
}
