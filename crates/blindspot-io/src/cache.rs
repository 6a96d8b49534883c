//! On-disk slice caches: preprocess a dataset once, then train from a memory map.
//!
//! A cache holds `count` slices of one size `height x width`. Per slice it stores the z-scored
//! image (`f32`), the brain mask and the lesion mask (`u8`, 0/1) and the slice identity
//! (subject id, slice index), so that code downstream can align slices by identity. It also
//! stores the preprocessing parameters (JSON), so that a stale cache is detected
//! ([`SliceCache::params`], [`SliceCache::params_hash`]).
//!
//! # File format (version 1, little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"BSPSLICE"` |
//! | 8 | 4 | format version (`u32`, [`CACHE_VERSION`]) |
//! | 12 | 4 | header length (`u32`, 64) |
//! | 16 | 4 + 4 | `height`, `width` (`u32`) |
//! | 24 | 8 | `count` (`u64`) |
//! | 32 | 8 | FNV-1a 64 hash of the parameters' JSON text (`u64`) |
//! | 40 | 8 + 8 | offset and length of the JSON metadata (`u64`) |
//! | 56 | 4 | CRC-32 of every byte after the header (`u32`) |
//! | 60 | 4 | CRC-32 of bytes 0..60 (`u32`) |
//! | 64 | `count * record` | records: image `f32 x H*W`, brain `u8 x H*W`, lesion `u8 x H*W`, zero padding to a multiple of 8 |
//! | after | `count * 8` | identities: subject number, slice index (`u32`, `u32`) |
//! | meta offset | meta length | JSON `{"params": ..., "subjects": [ids]}` |
//!
//! Files are written atomically (a temporary file in the same folder, renamed when complete),
//! so a crash never leaves a half-written cache under the final name. [`SliceCache::open`]
//! checks the magic, the version, the sizes against the file length and both checksums, and
//! names the file in every error.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};
use crate::layout::SubjectFiles;
use crate::preprocess::{Pipeline, SubjectSlices};

/// The format version this build writes and reads.
pub const CACHE_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"BSPSLICE";
const HEADER_LEN: usize = 64;

/// Bytes of one record: image, brain mask, lesion mask, padded to a multiple of 8.
fn record_len(height: usize, width: usize) -> usize {
    (6 * height * width).div_ceil(8) * 8
}

/// FNV-1a 64 of `bytes`: a stable, dependency-free fingerprint of the parameters.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fingerprint [`SliceCache::params_hash`] compares: FNV-1a 64 of the compact JSON text.
pub fn params_hash(params: &serde_json::Value) -> u64 {
    fnv1a64(params.to_string().as_bytes())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    params: serde_json::Value,
    subjects: Vec<String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a slice cache, slice by slice; nothing appears under the final name until
/// [`CacheWriter::finish`]. Dropping an unfinished writer deletes the temporary file.
#[derive(Debug)]
pub struct CacheWriter {
    path: PathBuf,
    out: BufWriter<tempfile::NamedTempFile>,
    height: usize,
    width: usize,
    params: serde_json::Value,
    crc: crc32fast::Hasher,
    subjects: Vec<String>,
    identities: Vec<(u32, u32)>,
    padding: usize,
}

impl CacheWriter {
    /// Start a cache of `height x width` slices at `path`, recording `params` (typically
    /// [`Pipeline::params_json`]).
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidParameter`] for a zero size; [`IoError::Io`] if the temporary file
    /// cannot be created in the target folder.
    pub fn create(
        path: &Path,
        height: usize,
        width: usize,
        params: serde_json::Value,
    ) -> Result<Self> {
        if height == 0 || width == 0 || height > u32::MAX as usize || width > u32::MAX as usize {
            return Err(IoError::InvalidParameter {
                key: "slice cache size".into(),
                value: format!("{height}x{width}"),
                expected: "a height and width from 1 to 2^32 - 1".into(),
            });
        }
        let tmp = crate::atomic::temp_file_beside(path).map_err(io_err(path))?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        out.write_all(&[0u8; HEADER_LEN]).map_err(io_err(path))?;
        let padding = record_len(height, width) - 6 * height * width;
        Ok(Self {
            path: path.to_owned(),
            out,
            height,
            width,
            params,
            crc: crc32fast::Hasher::new(),
            subjects: Vec::new(),
            identities: Vec::new(),
            padding,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes).map_err(io_err(&self.path))
    }

    /// Append one slice of subject `subject` with z index `index`.
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidParameter`] if a buffer is not `height * width` long;
    /// [`IoError::Io`] on a write error.
    pub fn push(
        &mut self,
        subject: &str,
        index: usize,
        image: &[f32],
        brain: &[u8],
        lesion: &[u8],
    ) -> Result<()> {
        let n = self.height * self.width;
        for (what, len) in [
            ("image", image.len()),
            ("brain", brain.len()),
            ("lesion", lesion.len()),
        ] {
            if len != n {
                return Err(IoError::InvalidParameter {
                    key: format!("slice {what} of subject `{subject}`"),
                    value: format!("{len} values"),
                    expected: format!("{n} = {}x{}", self.height, self.width),
                });
            }
        }
        let index = u32::try_from(index).map_err(|_| IoError::InvalidParameter {
            key: "slice index".into(),
            value: index.to_string(),
            expected: "an index below 2^32".into(),
        })?;
        if self.subjects.last().map(String::as_str) != Some(subject) {
            self.subjects.push(subject.to_owned());
        }
        let s = (self.subjects.len() - 1) as u32;
        let mut bytes = Vec::with_capacity(4 * n);
        for v in image {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.write(&bytes)?;
        self.write(brain)?;
        self.write(lesion)?;
        if self.padding > 0 {
            self.write(&vec![0u8; self.padding])?;
        }
        self.identities.push((s, index));
        Ok(())
    }

    /// Append every slice of one subject.
    ///
    /// # Errors
    ///
    /// As [`CacheWriter::push`], and [`IoError::InvalidParameter`] if the slice size differs
    /// from the cache's.
    pub fn push_subject(&mut self, subject: &str, slices: &SubjectSlices) -> Result<()> {
        if (slices.height, slices.width) != (self.height, self.width) {
            return Err(IoError::InvalidParameter {
                key: format!("slices of subject `{subject}`"),
                value: format!("{}x{}", slices.height, slices.width),
                expected: format!("the cache's {}x{}", self.height, self.width),
            });
        }
        for s in &slices.slices {
            self.push(subject, s.index, &s.image, &s.brain, &s.lesion)?;
        }
        Ok(())
    }

    /// Number of slices written so far.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether no slice was written yet.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Write the identity table, the metadata and the header, then move the file into place.
    ///
    /// # Errors
    ///
    /// [`IoError::Io`] on a write, sync or rename error.
    pub fn finish(mut self) -> Result<CacheInfo> {
        let ids: Vec<u8> = self
            .identities
            .iter()
            .flat_map(|&(s, i)| s.to_le_bytes().into_iter().chain(i.to_le_bytes()))
            .collect();
        self.write(&ids)?;
        let meta_offset =
            HEADER_LEN + self.identities.len() * (record_len(self.height, self.width) + 8);
        let meta = serde_json::to_vec(&Meta {
            params: self.params.clone(),
            subjects: std::mem::take(&mut self.subjects),
        })
        .expect("JSON values always serialise");
        self.write(&meta)?;
        let count = self.identities.len();
        let mut header = [0u8; HEADER_LEN];
        header[0..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&CACHE_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        header[16..20].copy_from_slice(&(self.height as u32).to_le_bytes());
        header[20..24].copy_from_slice(&(self.width as u32).to_le_bytes());
        header[24..32].copy_from_slice(&(count as u64).to_le_bytes());
        header[32..40].copy_from_slice(&params_hash(&self.params).to_le_bytes());
        header[40..48].copy_from_slice(&(meta_offset as u64).to_le_bytes());
        header[48..56].copy_from_slice(&(meta.len() as u64).to_le_bytes());
        header[56..60].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        let header_crc = crc32fast::hash(&header[..60]);
        header[60..64].copy_from_slice(&header_crc.to_le_bytes());
        let path = self.path.clone();
        let mut tmp = self.out.into_inner().map_err(|e| IoError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        tmp.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        tmp.write_all(&header).map_err(io_err(&path))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        tmp.persist(&path).map_err(|e| IoError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(CacheInfo {
            path,
            count,
            subjects: meta_subject_count(&self.identities),
            bytes: (meta_offset + meta.len()) as u64,
        })
    }
}

fn meta_subject_count(ids: &[(u32, u32)]) -> usize {
    ids.last().map_or(0, |&(s, _)| s as usize + 1)
}

/// What [`CacheWriter::finish`] and [`build_cache`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    /// The cache file.
    pub path: PathBuf,
    /// Number of slices.
    pub count: usize,
    /// Number of subjects with at least one slice.
    pub subjects: usize,
    /// File size in bytes.
    pub bytes: u64,
}

/// Preprocess every subject with `pipeline` and write their slices, in subject order, to a
/// cache at `path`. Subjects are read and preprocessed in parallel, a few at a time, so memory
/// stays bounded whatever the dataset size.
///
/// # Errors
///
/// The first error of any subject (it names the file), or a write error; the cache file is
/// then not created.
pub fn build_cache(
    subjects: &[SubjectFiles],
    pipeline: &Pipeline,
    path: &Path,
) -> Result<CacheInfo> {
    let [h, w] = pipeline.config().slice_size;
    let mut writer = CacheWriter::create(path, h, w, pipeline.params_json())?;
    let batch = rayon::current_num_threads().max(1) * 2;
    for chunk in subjects.chunks(batch) {
        let done: Vec<Result<SubjectSlices>> =
            chunk.par_iter().map(|s| pipeline.run_files(s)).collect();
        for (s, slices) in chunk.iter().zip(done) {
            writer.push_subject(&s.id, &slices?)?;
        }
    }
    writer.finish()
}

/// Where a cached slice sits: its subject and its index in the subject's volume. A borrowed
/// view of the cache's own table; the evaluation's owned identity of a slice (with its
/// dataset) is `blindspot_ood::SliceId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlicePosition<'a> {
    /// Subject id.
    pub subject: &'a str,
    /// Index of the slice along RAS `z` in the subject's (cropped) volume.
    pub index: usize,
}

/// A slice cache opened by memory map (see the module docs for the format).
#[derive(Debug)]
pub struct SliceCache {
    path: PathBuf,
    map: Mmap,
    height: usize,
    width: usize,
    count: usize,
    params_hash: u64,
    params: serde_json::Value,
    subjects: Vec<String>,
    identities: Vec<(u32, u32)>,
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl SliceCache {
    /// Open and verify a cache: magic, version, sizes against the file length, header and
    /// content checksums, metadata.
    ///
    /// # Errors
    ///
    /// [`IoError::Io`] if the file cannot be opened or mapped; [`IoError::CacheVersion`] for
    /// another format version; [`IoError::CacheChecksum`] if the contents changed;
    /// [`IoError::CacheCorrupt`] if it is not a cache, is truncated or inconsistent. Every
    /// error names the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        // SAFETY: the map is read-only and private to this value. The caches are written once
        // (atomically, by rename) and never modified in place; if another process truncated
        // or rewrote the file while it is mapped, reads could fault or see other bytes, which
        // is the documented limit of memory-mapped files (the checksum below covers the
        // contents at open time).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let corrupt = |reason: String| IoError::CacheCorrupt {
            path: path.to_owned(),
            reason,
        };
        let b = &map[..];
        if b.len() < HEADER_LEN || &b[0..8] != MAGIC {
            return Err(corrupt(format!(
                "not a blindspot slice cache (no `BSPSLICE` header; {} bytes)",
                b.len()
            )));
        }
        let version = read_u32(b, 8);
        if version != CACHE_VERSION {
            return Err(IoError::CacheVersion {
                path: path.to_owned(),
                found: version,
                expected: CACHE_VERSION,
            });
        }
        let header_crc = crc32fast::hash(&b[..60]);
        if header_crc != read_u32(b, 60) {
            return Err(IoError::CacheChecksum {
                path: path.to_owned(),
                stored: read_u32(b, 60),
                computed: header_crc,
            });
        }
        if read_u32(b, 12) as usize != HEADER_LEN {
            return Err(corrupt(format!(
                "header length {} (expected {HEADER_LEN})",
                read_u32(b, 12)
            )));
        }
        let (height, width) = (read_u32(b, 16) as usize, read_u32(b, 20) as usize);
        let count = read_u64(b, 24);
        let params_hash = read_u64(b, 32);
        let (meta_offset, meta_len) = (read_u64(b, 40), read_u64(b, 48));
        let expected_meta =
            (record_len(height, width) as u128 + 8) * u128::from(count) + HEADER_LEN as u128;
        if height == 0 || width == 0 || u128::from(meta_offset) != expected_meta {
            return Err(corrupt(format!(
                "inconsistent header: {height}x{width}, {count} slices, metadata at {meta_offset}"
            )));
        }
        let total = u128::from(meta_offset) + u128::from(meta_len);
        if total != b.len() as u128 {
            return Err(corrupt(format!(
                "truncated or extended: {} bytes, the header says {total}",
                b.len()
            )));
        }
        let computed = crc32fast::hash(&b[HEADER_LEN..]);
        if computed != read_u32(b, 56) {
            return Err(IoError::CacheChecksum {
                path: path.to_owned(),
                stored: read_u32(b, 56),
                computed,
            });
        }
        let count = count as usize;
        let meta_offset = meta_offset as usize;
        let meta: Meta = serde_json::from_slice(&b[meta_offset..])
            .map_err(|e| corrupt(format!("unreadable metadata: {e}")))?;
        let ids_at = meta_offset - 8 * count;
        let identities: Vec<(u32, u32)> = (0..count)
            .map(|i| (read_u32(b, ids_at + 8 * i), read_u32(b, ids_at + 8 * i + 4)))
            .collect();
        if let Some(&(s, _)) = identities
            .iter()
            .find(|(s, _)| *s as usize >= meta.subjects.len())
        {
            return Err(corrupt(format!(
                "slice refers to subject {s}, the cache lists {}",
                meta.subjects.len()
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            map,
            height,
            width,
            count,
            params_hash,
            params: meta.params,
            subjects: meta.subjects,
            identities,
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of slices.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the cache holds no slice.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Slice height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Slice width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The preprocessing parameters recorded at build time.
    pub fn params(&self) -> &serde_json::Value {
        &self.params
    }

    /// The fingerprint of [`SliceCache::params`] stored in the header (see [`params_hash`]).
    pub fn params_hash(&self) -> u64 {
        self.params_hash
    }

    /// Whether the cache was built with `params` (compare with [`Pipeline::params_json`]).
    pub fn matches_params(&self, params: &serde_json::Value) -> bool {
        self.params_hash == params_hash(params) && &self.params == params
    }

    /// The subject ids, in the order their slices appear.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// The identity of slice `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn identity(&self, i: usize) -> SlicePosition<'_> {
        let (s, k) = self.identities[i];
        SlicePosition {
            subject: &self.subjects[s as usize],
            index: k as usize,
        }
    }

    fn record(&self, i: usize) -> &[u8] {
        assert!(
            i < self.count,
            "slice {i} out of range for {} slices",
            self.count
        );
        let len = record_len(self.height, self.width);
        &self.map[HEADER_LEN + i * len..HEADER_LEN + (i + 1) * len]
    }

    /// Copy the image of slice `i` into `out` (`height * width` values, row-major).
    ///
    /// # Panics
    ///
    /// If `i >= len()` or `out` has the wrong length.
    pub fn image_into(&self, i: usize, out: &mut [f32]) {
        let n = self.height * self.width;
        assert_eq!(
            out.len(),
            n,
            "output length vs {}x{}",
            self.height,
            self.width
        );
        let bytes = &self.record(i)[..4 * n];
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes(b.try_into().expect("4 bytes"));
        }
    }

    /// The image of slice `i` (`height * width` values, row-major).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn image(&self, i: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.height * self.width];
        self.image_into(i, &mut out);
        out
    }

    /// The brain mask of slice `i` (0/1, row-major), straight from the map.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn brain(&self, i: usize) -> &[u8] {
        let n = self.height * self.width;
        &self.record(i)[4 * n..5 * n]
    }

    /// The lesion mask of slice `i` (0/1, row-major), straight from the map.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn lesion(&self, i: usize) -> &[u8] {
        let n = self.height * self.width;
        &self.record(i)[5 * n..6 * n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::{PreprocessConfig, Slice, ZScore};

    fn slices(seed: usize, n: usize, h: usize, w: usize) -> SubjectSlices {
        SubjectSlices {
            height: h,
            width: w,
            zscore: ZScore {
                mean: 0.0,
                std: 1.0,
                count: 1,
            },
            slices: (0..n)
                .map(|k| Slice {
                    index: 10 + k,
                    image: (0..h * w)
                        .map(|p| (seed * 1000 + k * 100 + p) as f32 * 0.5 - 3.5)
                        .collect(),
                    brain: (0..h * w).map(|p| u8::from(p % 2 == 0)).collect(),
                    lesion: (0..h * w).map(|p| u8::from(p == k)).collect(),
                })
                .collect(),
        }
    }

    fn write_cache(path: &Path) -> serde_json::Value {
        let params = serde_json::json!({"config": PreprocessConfig::default(), "reference": null});
        let mut w = CacheWriter::create(path, 3, 5, params.clone()).unwrap();
        w.push_subject("sub-a", &slices(1, 2, 3, 5)).unwrap();
        w.push_subject("sub-b", &slices(2, 3, 3, 5)).unwrap();
        let info = w.finish().unwrap();
        assert_eq!((info.count, info.subjects), (5, 2));
        assert_eq!(info.bytes, std::fs::metadata(path).unwrap().len());
        params
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.slices");
        let params = write_cache(&path);
        let c = SliceCache::open(&path).unwrap();
        assert_eq!((c.len(), c.height(), c.width()), (5, 3, 5));
        assert_eq!(c.subjects(), ["sub-a", "sub-b"]);
        assert!(c.matches_params(&params));
        assert!(!c.matches_params(&serde_json::json!({"other": 1})));
        let want = slices(2, 3, 3, 5);
        assert_eq!(
            c.identity(3),
            SlicePosition {
                subject: "sub-b",
                index: 11
            }
        );
        assert_eq!(c.image(3), want.slices[1].image);
        assert_eq!(c.brain(3), want.slices[1].brain);
        assert_eq!(c.lesion(3), want.slices[1].lesion);
        assert_eq!(
            c.identity(0),
            SlicePosition {
                subject: "sub-a",
                index: 10
            }
        );
        // Only the final file remains in the folder (the temporary file was renamed).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn empty_cache_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.slices");
        CacheWriter::create(&path, 4, 4, serde_json::Value::Null)
            .unwrap()
            .finish()
            .unwrap();
        let c = SliceCache::open(&path).unwrap();
        assert!(c.is_empty());
    }

    #[test]
    fn unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("never.slices");
        let mut w = CacheWriter::create(&path, 2, 2, serde_json::Value::Null).unwrap();
        w.push("s", 0, &[0.0; 4], &[1; 4], &[0; 4]).unwrap();
        let err = w.push("s", 1, &[0.0; 3], &[1; 4], &[0; 4]).unwrap_err();
        assert!(err.to_string().contains("image"), "{err}");
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn corrupt_with(f: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.slices");
        write_cache(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        f(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn flipped_payload_byte_is_a_checksum_error() {
        let (_d, path) = corrupt_with(|b| b[200] ^= 0x10);
        let err = SliceCache::open(&path).unwrap_err();
        assert!(matches!(err, IoError::CacheChecksum { .. }), "{err}");
        assert!(err.to_string().contains("c.slices"), "{err}");
    }

    #[test]
    fn truncated_file_is_reported() {
        let (_d, path) = corrupt_with(|b| b.truncate(b.len() - 7));
        let err = SliceCache::open(&path).unwrap_err();
        assert!(matches!(err, IoError::CacheCorrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("truncated") && err.to_string().contains("c.slices"),
            "{err}"
        );
        let (_d, path) = corrupt_with(|b| b.truncate(20));
        assert!(matches!(
            SliceCache::open(&path),
            Err(IoError::CacheCorrupt { .. })
        ));
    }

    #[test]
    fn other_version_is_reported() {
        let (_d, path) = corrupt_with(|b| {
            b[8..12].copy_from_slice(&7u32.to_le_bytes());
        });
        let err = SliceCache::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                IoError::CacheVersion {
                    found: 7,
                    expected: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("c.slices"));
    }

    #[test]
    fn header_damage_and_foreign_files() {
        let (_d, path) = corrupt_with(|b| b[17] ^= 1);
        assert!(matches!(
            SliceCache::open(&path),
            Err(IoError::CacheChecksum { .. })
        ));
        let (_d, path) = corrupt_with(|b| b[0] = b'X');
        let err = SliceCache::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("not a blindspot slice cache"),
            "{err}"
        );
        let missing = Path::new("/nonexistent/x.slices");
        assert!(matches!(SliceCache::open(missing), Err(IoError::Io { .. })));
    }
}
