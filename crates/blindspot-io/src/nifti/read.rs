//! Reading `.nii` / `.nii.gz`: one streaming pass, chunked decoding straight into the output.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::header::{self, Datatype, HEADER_SIZE, NiftiHeader};
use crate::error::{IoError, Result};
use crate::volume::Volume;

/// A floating-point voxel type the reader produces (`f32` or `f64`).
pub trait Sample: Copy + PartialEq + std::fmt::Debug + private::Sealed + 'static {
    /// Convert from `f64` (rounding to nearest).
    fn from_f64(v: f64) -> Self;
    /// Convert from `f32` (exact).
    fn from_f32(v: f32) -> Self;
    /// Whether the value is neither NaN nor infinite.
    fn is_finite(self) -> bool;
}

impl Sample for f32 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Sample for f64 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    #[inline]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// What to do with NaN or infinite voxels (after scaling).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum NonFinitePolicy {
    /// Refuse the file with [`IoError::NonFinite`] (the default).
    #[default]
    Error,
    /// Replace every NaN or infinite voxel by this value (for example 0) and count them.
    Replace(f64),
    /// Keep them as they are and count them.
    Keep,
}

/// Options of [`read_nifti`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReadOptions {
    /// Which 3-D volume of a 4-D (or higher) file to read; 0 for 3-D files.
    pub volume: usize,
    /// What to do with NaN or infinite voxels.
    pub non_finite: NonFinitePolicy,
}

/// One volume of a NIfTI file, with the facts of its header.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiImage<T = f32> {
    /// The selected 3-D volume, scaled, on the file's voxel grid, with the header's affine and
    /// voxel sizes.
    pub volume: Volume<T>,
    /// The header.
    pub header: NiftiHeader,
    /// How many voxels were NaN or infinite (replaced or kept, as the policy said).
    pub non_finite: usize,
}

/// Source of decompressed bytes: plain or gzip, detected from the first two bytes.
enum Source {
    /// Uncompressed; the flag says that the file is named `.gz` all the same.
    Plain(BufReader<File>, bool),
    Gz(Box<MultiGzDecoder<BufReader<File>>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r, _) => r.read(buf),
            Source::Gz(r) => r.read(buf),
        }
    }
}

const BUF_SIZE: usize = 1 << 17;
/// Bytes decoded per conversion chunk: a multiple of every element size, small enough to stay
/// in cache.
const CHUNK: usize = 1 << 16;

impl Source {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let mut r = BufReader::with_capacity(BUF_SIZE, file);
        let head = r.fill_buf().map_err(|e| io_err(path, e))?;
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Source::Gz(Box::new(MultiGzDecoder::new(r))))
        } else {
            let named_gz = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
            Ok(Source::Plain(r, named_gz))
        }
    }

    /// Map a read error: a short or corrupt stream is a broken file, anything else an OS error.
    fn err(&self, path: &Path, e: io::Error, what: &str) -> IoError {
        match (self, e.kind()) {
            (Source::Plain(_, true), io::ErrorKind::UnexpectedEof) if what == "header" => {
                IoError::InvalidFile {
                    path: path.to_path_buf(),
                    reason: format!(
                        "not a gzip file although named .gz (it does not start with the gzip \
                         signature 1f 8b), and too short for the {HEADER_SIZE}-byte header of an \
                         uncompressed NIfTI-1 file: not a NIfTI file"
                    ),
                }
            }
            (_, io::ErrorKind::UnexpectedEof) => IoError::InvalidFile {
                path: path.to_path_buf(),
                reason: format!("file is truncated: it ends inside the {what}"),
            },
            (Source::Gz(_), io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData) => {
                IoError::InvalidFile {
                    path: path.to_path_buf(),
                    reason: format!("corrupt gzip stream in the {what}: {e}"),
                }
            }
            _ => io_err(path, e),
        }
    }

    fn read_exact_or(&mut self, path: &Path, buf: &mut [u8], what: &str) -> Result<()> {
        self.read_exact(buf).map_err(|e| self.err(path, e, what))
    }

    fn skip(&mut self, path: &Path, n: u64, what: &str) -> Result<()> {
        let copied = io::copy(&mut self.by_ref().take(n), &mut io::sink())
            .map_err(|e| self.err(path, e, what))?;
        if copied < n {
            return Err(self.err(path, io::ErrorKind::UnexpectedEof.into(), what));
        }
        Ok(())
    }
}

fn io_err(path: &Path, source: io::Error) -> IoError {
    IoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read only the header of a `.nii` or `.nii.gz` file (fast: decompresses 348 bytes).
///
/// # Errors
///
/// [`IoError::Io`] when the file cannot be read, [`IoError::InvalidFile`] when it is no
/// NIfTI-1 file or truncated, [`IoError::UnsupportedFormat`] for NIfTI-2, header-only pairs and
/// unsupported datatypes, [`IoError::InvalidHeader`] for impossible field values.
pub fn read_header(path: &Path) -> Result<NiftiHeader> {
    let mut src = Source::open(path)?;
    read_header_from(&mut src, path)
}

fn read_header_from(src: &mut Source, path: &Path) -> Result<NiftiHeader> {
    let mut raw = [0u8; HEADER_SIZE];
    src.read_exact_or(path, &mut raw, "header")?;
    header::decode(path, &raw).map_err(|e| match (src, e) {
        (Source::Plain(_, true), IoError::InvalidFile { path, reason }) => IoError::InvalidFile {
            path,
            reason: format!(
                "not a gzip file although named .gz (it does not start with the gzip signature \
                 1f 8b); read as an uncompressed NIfTI-1 file: {reason}"
            ),
        },
        (_, e) => e,
    })
}

/// Read one 3-D volume of a `.nii` or `.nii.gz` file (NIfTI-1, either byte order, gzip detected
/// from the content), scaled by `scl_slope`/`scl_inter` as nibabel does, on the file's voxel
/// grid, with nibabel's choice of affine.
///
/// `T` is `f32` or `f64`. The whole gzip stream is decompressed, so its checksum is verified.
///
/// # Errors
///
/// As [`read_header`], plus [`IoError::VolumeIndex`] when `options.volume` is out of range,
/// [`IoError::InvalidFile`] when the voxel data is truncated or the gzip stream corrupt, and
/// [`IoError::NonFinite`] for NaN/Inf voxels under [`NonFinitePolicy::Error`].
pub fn read_nifti<T: Sample>(path: &Path, options: &ReadOptions) -> Result<NiftiImage<T>> {
    let mut src = Source::open(path)?;
    let header = read_header_from(&mut src, path)?;
    let count = header.num_volumes();
    if options.volume >= count {
        return Err(IoError::VolumeIndex {
            path: path.to_path_buf(),
            index: options.volume,
            count,
        });
    }
    let n = header.voxels_per_volume();
    let dt = header.datatype;
    let vol_bytes = n
        .checked_mul(dt.size())
        .filter(|b| b.checked_mul(count).is_some())
        .ok_or_else(|| IoError::InvalidHeader {
            path: path.to_path_buf(),
            field: "dim",
            value: format!("{:?}", header.shape),
            expected: "an image whose size in bytes fits in memory".into(),
        })?;

    src.skip(
        path,
        (header.vox_offset - HEADER_SIZE) as u64,
        "extensions before the voxel data",
    )?;
    src.skip(path, (options.volume * vol_bytes) as u64, "voxel data")?;

    let scale = header
        .is_scaled()
        .then_some((header.scl_slope, header.scl_inter));
    let mut data: Vec<T> = Vec::new();
    data.try_reserve_exact(n)
        .map_err(|_| IoError::InvalidHeader {
            path: path.to_path_buf(),
            field: "dim",
            value: format!("{:?}", header.shape),
            expected: "an image that fits in memory".into(),
        })?;
    let mut buf = vec![0u8; CHUNK.min(vol_bytes)];
    let mut left = vol_bytes;
    let mut overflow = 0;
    while left > 0 {
        let chunk = &mut buf[..CHUNK.min(left)];
        src.read_exact_or(path, chunk, "voxel data")?;
        overflow += convert(chunk, dt, header.big_endian, scale, &mut data);
        left -= chunk.len();
    }
    // Decompress the rest so that the gzip checksum is checked.
    if let Source::Gz(_) = src {
        io::copy(&mut src, &mut io::sink()).map_err(|e| src.err(path, e, "gzip stream"))?;
    }

    if overflow > 0 && options.non_finite == NonFinitePolicy::Error {
        let first = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(IoError::Overflow {
            path: path.to_path_buf(),
            count: overflow,
            first,
            datatype: dt.name(),
        });
    }
    let non_finite = if dt.is_float() || scale.is_some() {
        apply_policy(path, &mut data, options.non_finite)?
    } else {
        0
    };
    let volume = Volume {
        dims: header.dims3(),
        data,
        affine: header.affine,
        spacing: header.spacing(),
    };
    Ok(NiftiImage {
        volume,
        header,
        non_finite,
    })
}

fn apply_policy<T: Sample>(path: &Path, data: &mut [T], policy: NonFinitePolicy) -> Result<usize> {
    let count = data.iter().filter(|v| !v.is_finite()).count();
    if count == 0 {
        return Ok(0);
    }
    match policy {
        NonFinitePolicy::Error => {
            let first = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
            Err(IoError::NonFinite {
                path: path.to_path_buf(),
                count,
                first,
            })
        }
        NonFinitePolicy::Replace(value) => {
            let value = T::from_f64(value);
            for v in data.iter_mut().filter(|v| !v.is_finite()) {
                *v = value;
            }
            Ok(count)
        }
        NonFinitePolicy::Keep => Ok(count),
    }
}

/// Decode `bytes` (whole elements of `dt`) and append them, scaled, to `out`. Returns how many
/// finite values became infinite in `T` (float64 or scaled values beyond float32's range).
fn convert<T: Sample>(
    bytes: &[u8],
    dt: Datatype,
    big_endian: bool,
    scale: Option<(f64, f64)>,
    out: &mut Vec<T>,
) -> usize {
    let mut overflow = 0;
    macro_rules! run {
        ($ty:ty, $n:literal, $to_f64:expr, $plain:expr, $scale:expr) => {{
            let decode = |c: &[u8]| -> $ty {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                if big_endian {
                    <$ty>::from_be_bytes(a)
                } else {
                    <$ty>::from_le_bytes(a)
                }
            };
            let chunks = bytes.chunks_exact($n);
            match $scale {
                None => out.extend(chunks.map(|c| $plain(decode(c)))),
                Some((slope, inter)) => out.extend(chunks.map(|c| {
                    let x = $to_f64(decode(c)) * slope + inter;
                    let v = T::from_f64(x);
                    overflow += usize::from(x.is_finite() && !v.is_finite());
                    v
                })),
            }
        }};
    }
    match dt {
        Datatype::U8 => run!(u8, 1, f64::from, |v: u8| T::from_f32(f32::from(v)), scale),
        Datatype::I8 => run!(i8, 1, f64::from, |v: i8| T::from_f32(f32::from(v)), scale),
        Datatype::I16 => run!(i16, 2, f64::from, |v: i16| T::from_f32(f32::from(v)), scale),
        Datatype::U16 => run!(u16, 2, f64::from, |v: u16| T::from_f32(f32::from(v)), scale),
        Datatype::I32 => run!(i32, 4, f64::from, |v: i32| T::from_f64(f64::from(v)), scale),
        Datatype::U32 => run!(u32, 4, f64::from, |v: u32| T::from_f64(f64::from(v)), scale),
        Datatype::I64 => run!(
            i64,
            8,
            |v: i64| v as f64,
            |v: i64| T::from_f64(v as f64),
            scale
        ),
        Datatype::U64 => run!(
            u64,
            8,
            |v: u64| v as f64,
            |v: u64| T::from_f64(v as f64),
            scale
        ),
        Datatype::F32 => run!(f32, 4, f64::from, T::from_f32, scale),
        // unscaled float64 goes the scaled way (x * 1 + 0 is exact) so that overflow is counted
        Datatype::F64 => run!(f64, 8, |v: f64| v, T::from_f64, scale.or(Some((1.0, 0.0)))),
    }
    overflow
}
