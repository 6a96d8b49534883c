//! Dataset to slice cache, end to end: NIfTI files written in a `blindspot-synth`-style folder,
//! discovered through a TOML layout, split by subject, preprocessed into a cache and read back.
//!
//! The last test runs the real BraTS FLAIR volume of `BLINDSPOT_REAL_DATA` (see
//! `tests/conformance.rs`) and compares with values from nibabel + numpy + Pillow; without the
//! variable it prints that it skipped the real file and passes.

use std::path::Path;

use anyhow::Result;
use blindspot_io::volume::scaled_identity;
use blindspot_io::{
    IoError, Layout, LayoutConfig, Pipeline, PreprocessConfig, SliceCache, SplitConfig, Volume,
    build_cache, write_f32, write_u8,
};

/// A volume on a 16 x 14 x 6 grid with voxel values `f(i, j, k)`.
fn grid<T>(affine: [[f64; 4]; 4], f: impl Fn(usize, usize, usize) -> T) -> Volume<T> {
    let mut data = Vec::new();
    for k in 0..6 {
        for j in 0..14 {
            for i in 0..16 {
                data.push(f(i, j, k));
            }
        }
    }
    Volume {
        dims: [16, 14, 6],
        data,
        affine,
        spacing: [1.0; 3],
    }
}

/// A small subject: a box of brain with a subject-dependent texture (image, brain mask), and a
/// lesion mask marking a patch of slice 2 when `lesion` is set.
fn subject(
    seed: usize,
    lesion: bool,
    affine: [[f64; 4]; 4],
) -> (Volume<f32>, Volume<u8>, Volume<u8>) {
    let inside = |i, j, k| (3..13).contains(&i) && (2..12).contains(&j) && (1..5).contains(&k);
    let img = grid(affine, |i, j, k| {
        if inside(i, j, k) {
            100.0 + ((i * 7 + j * 3 + k * 11 + seed * 5) % 23) as f32
        } else {
            0.0
        }
    });
    let brain = grid(affine, |i, j, k| u8::from(inside(i, j, k)));
    let les = grid(affine, |i, j, k| {
        u8::from(lesion && k == 2 && (6..9).contains(&i) && (5..8).contains(&j))
    });
    (img, brain, les)
}

fn write_dataset(root: &Path, n: usize) -> Result<()> {
    for d in ["images", "brain_masks", "lesion_masks"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for s in 0..n {
        let (img, brain, lesion) = subject(s, s % 2 == 0, scaled_identity([1.0; 3]));
        let name = format!("sub-{s:02}.nii.gz");
        write_f32(&root.join("images").join(&name), &img)?;
        write_u8(&root.join("brain_masks").join(&name), &brain)?;
        write_u8(&root.join("lesion_masks").join(&name), &lesion)?;
    }
    std::fs::write(root.join("manifest.csv"), "subject,lesion\n")?;
    Ok(())
}

const SYNTH_LAYOUT: &str = r#"
image = "images/*.nii.gz"
brain_mask = "brain_masks/{id}.nii.gz"
lesion_mask = "lesion_masks/{id}.nii.gz"
id_regex = 'images/(?P<id>[^/]+)\.nii\.gz$'
"#;

#[test]
fn synthetic_dataset_to_cache_and_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    write_dataset(&data, 6)?;
    let layout_file = dir.path().join("layout.toml");
    std::fs::write(&layout_file, SYNTH_LAYOUT)?;
    let subjects = Layout::from_file(&layout_file)?.discover(&data)?;
    assert_eq!(subjects.len(), 6);

    let split = SplitConfig {
        train: 0.5,
        val: 0.5,
        test: 0.0,
        seed: 42,
    }
    .split(subjects, |s| s.id.as_str())?;
    assert_eq!((split.train.len(), split.val.len()), (3, 3));

    let config = PreprocessConfig {
        slice_size: [8, 8],
        ..PreprocessConfig::default()
    };
    let pipeline = Pipeline::new(config, None)?;
    let path = dir.path().join("train.slices");
    let info = build_cache(&split.train, &pipeline, &path)?;
    // 4 slices with brain per subject (z = 1..=4).
    assert_eq!((info.count, info.subjects), (12, 3));

    let cache = SliceCache::open(&path)?;
    assert!(cache.matches_params(&pipeline.params_json()));
    assert_eq!(
        cache.subjects(),
        split.train.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
    );
    for (n, s) in split.train.iter().enumerate() {
        let direct = pipeline.run_files(s)?;
        for (j, slice) in direct.slices.iter().enumerate() {
            let i = n * 4 + j;
            let id = cache.identity(i);
            assert_eq!((id.subject, id.index), (s.id.as_str(), slice.index));
            assert_eq!(cache.image(i), slice.image);
            assert_eq!(cache.brain(i), slice.brain.as_slice());
            assert_eq!(cache.lesion(i), slice.lesion.as_slice());
        }
        // Lesions only in slice z = 2 of even subjects.
        let has_lesion: Vec<bool> = (0..4)
            .map(|j| cache.lesion(n * 4 + j).contains(&1))
            .collect();
        let even = s.id.ends_with(['0', '2', '4', '6', '8']);
        assert_eq!(has_lesion, [false, even, false, false], "{}", s.id);
    }
    Ok(())
}

#[test]
fn lps_file_gives_the_same_slices_as_ras() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ras = subject(3, true, scaled_identity([1.0; 3]));
    // The same voxels stored LPS: x and y flipped, affine with -1 on both.
    let mut lps_affine = scaled_identity([1.0; 3]);
    lps_affine[0][0] = -1.0;
    lps_affine[1][1] = -1.0;
    lps_affine[0][3] = 15.0;
    lps_affine[1][3] = 13.0;
    let flip = |v: &[f32]| -> Vec<f32> {
        let mut out = vec![0.0; v.len()];
        for k in 0..6 {
            for j in 0..14 {
                for i in 0..16 {
                    out[(15 - i) + 16 * ((13 - j) + 14 * k)] = v[i + 16 * (j + 14 * k)];
                }
            }
        }
        out
    };
    let lps = Volume {
        data: flip(&ras.0.data),
        affine: lps_affine,
        ..ras.0.clone()
    };
    write_f32(&dir.path().join("ras.nii.gz"), &ras.0)?;
    write_f32(&dir.path().join("lps.nii.gz"), &lps)?;
    let layout: LayoutConfig = toml::from_str("image = \"*.nii.gz\"")?;
    let subjects = layout.check()?.discover(dir.path())?;
    let pipeline = Pipeline::new(PreprocessConfig::default(), None)?;
    let a = pipeline.run_files(&subjects[0])?;
    let b = pipeline.run_files(&subjects[1])?;
    assert_eq!(a.slices.len(), 4);
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn mask_on_another_grid_names_both_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_dataset(dir.path(), 1)?;
    let (img, _, _) = subject(9, false, scaled_identity([1.0; 3]));
    let small = Volume {
        dims: [16, 14, 5],
        data: vec![1u8; 16 * 14 * 5],
        affine: img.affine,
        spacing: img.spacing,
    };
    write_u8(&dir.path().join("brain_masks/sub-00.nii.gz"), &small)?;
    let layout: LayoutConfig = toml::from_str(SYNTH_LAYOUT)?;
    let subjects = layout.check()?.discover(dir.path())?;
    let pipeline = Pipeline::new(PreprocessConfig::default(), None)?;
    let err = pipeline.run_files(&subjects[0]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IoError::GridMismatch { .. }), "{msg}");
    assert!(
        msg.contains("images/sub-00.nii.gz") && msg.contains("brain_masks/sub-00.nii.gz"),
        "{msg}"
    );
    // A failed build leaves no cache behind.
    let out = dir.path().join("x.slices");
    assert!(build_cache(&subjects, &pipeline, &out).is_err());
    assert!(!out.exists());
    Ok(())
}

/// `(z, row, column, value)` of nibabel + numpy + Pillow on
/// `deepmedic_brats2015/brats_2013_pat0001_1_flair.nii.gz` (as_closest_canonical, non-zero
/// mask, z-score, background -3.5, `Image.resize((128, 128), BILINEAR)`), read out in the
/// radiological layout (`rad[r][c] = py[127 - c][127 - r]`), from
/// `/tmp/blindspot-bench/bin/python3 ref_real2.py` (Pillow 13.0.0, nibabel 5.4.2, numpy 2.4.6):
///
/// ```python
/// img = nib.as_closest_canonical(nib.load(f)); v = np.asarray(img.dataobj, dtype=np.float32)
/// m = v != 0; mu, sd = v[m].mean(), v[m].std()
/// z = np.where(m, (v - mu) / max(sd, 1e-8), -3.5).astype(np.float32)
/// py = np.asarray(Image.fromarray(z[:, :, k]).resize((128, 128), Image.BILINEAR))
/// rad = py[::-1, ::-1].T
/// ```
const BRATS_FLAIR_REFERENCE: [(usize, usize, usize, f32); 12] = [
    (60, 40, 50, 1.405_436_6),
    (60, 64, 64, 1.688_778_9),
    (60, 70, 90, 1.981_015_2),
    (60, 90, 40, 2.641_465),
    (77, 40, 50, 2.077_013_7),
    (77, 64, 64, 2.129_951),
    (77, 70, 90, 2.072_866_7),
    (77, 90, 40, 2.450_791),
    (100, 40, 50, 2.168_804_4),
    (100, 64, 64, 1.850_508_7),
    (100, 70, 90, 1.579_343_3),
    (100, 90, 40, 2.443_499_8),
];

#[test]
fn real_brats_flair_matches_nibabel_and_pillow() -> Result<()> {
    let Some(root) = std::env::var_os("BLINDSPOT_REAL_DATA") else {
        eprintln!("BLINDSPOT_REAL_DATA is not set: skipped the real BraTS volume");
        return Ok(());
    };
    let file = Path::new(&root).join("deepmedic_brats2015/brats_2013_pat0001_1_flair.nii.gz");
    let layout: LayoutConfig = toml::from_str("image = \"*_pat0001_1_flair.nii.gz\"")?;
    let subjects = layout
        .check()?
        .discover(file.parent().expect("has a folder"))?;
    let out = Pipeline::new(PreprocessConfig::default(), None)?.run_files(&subjects[0])?;
    // Every voxel of this file is non-zero (z-scored by its authors, constant background).
    assert_eq!(out.slices.len(), 155);
    assert!((out.zscore.mean - -3.023_329_487_089_313).abs() < 1e-9);
    assert!((out.zscore.std - 1.473_578_280_789_583).abs() < 1e-9);
    for (k, r, c, want) in BRATS_FLAIR_REFERENCE {
        let got = out.slices[k].image[r * 128 + c];
        assert!(
            (got - want).abs() < 1e-5,
            "z {k} ({r}, {c}): {got} vs {want}"
        );
    }
    Ok(())
}

/// The brain's extent in a slice, in pixels: (rows, columns) of its bounding box over every
/// slice of a subject, and the share of the slice's pixels it covers on its largest slice.
fn brain_extent(out: &blindspot_io::SubjectSlices) -> ([usize; 2], f64) {
    let (h, w) = (out.height, out.width);
    let (mut rows, mut cols) = ([usize::MAX, 0], [usize::MAX, 0]);
    let mut largest = 0usize;
    for s in &out.slices {
        largest = largest.max(s.brain.iter().filter(|&&b| b != 0).count());
        for (p, _) in s.brain.iter().enumerate().filter(|(_, b)| **b != 0) {
            let (r, c) = (p / w, p % w);
            rows = [rows[0].min(r), rows[1].max(r)];
            cols = [cols[0].min(c), cols[1].max(c)];
        }
    }
    (
        [rows[1] - rows[0] + 1, cols[1] - cols[0] + 1],
        largest as f64 / (h * w) as f64,
    )
}

/// IXI-HH (PSR, 2 mm, an axial plane of 180 x 240 mm, uint8 with a slope, a separate brain
/// mask) and LPBA40 (LPS, 1 mm, 160 x 192 mm, float64, skull-stripped): with a 200 mm field
/// of view both brains come out at one scale, upright (longer front to back than side to side)
/// and inside the slice. Resizing the whole grid instead squashes the IXI-HH brain to a square
/// (49 x 49 pixels) and draws the LPBA40 brain larger (59 x 52).
#[test]
fn real_scans_of_two_scanners_at_one_scale() -> Result<()> {
    let Some(root) = std::env::var_os("BLINDSPOT_REAL_DATA") else {
        eprintln!("BLINDSPOT_REAL_DATA is not set: skipped the IXI-HH and LPBA40 volumes");
        return Ok(());
    };
    let root = Path::new(&root);
    let ixi: LayoutConfig = toml::from_str(
        r#"image = "IXI052-HH-1343_T1.nii.gz"
           id_regex = '(?P<id>IXI\d+-HH-\d+)_T1\.nii\.gz$'
           brain_mask = "{id}_brainmask_DERIVED.nii.gz""#,
    )?;
    let lpba: LayoutConfig = toml::from_str(
        r#"image = "S02_T1_skullstripped.nii.gz"
           id_regex = '(?P<id>S\d+)_T1_skullstripped\.nii\.gz$'
           brain_mask = "{id}_brainmask_DERIVED.nii.gz""#,
    )?;
    let ixi = &ixi.check()?.discover(&root.join("ixi_hh_t1"))?[0];
    let lpba = &lpba.check()?.discover(&root.join("lpba40"))?[0];
    let config = |fov: Option<[f64; 2]>| PreprocessConfig {
        field_of_view_mm: fov,
        clip_percentiles: Some([0.5, 99.5]),
        slice_size: [64, 64],
        ..Default::default()
    };
    let fov = Pipeline::new(config(Some([200.0, 200.0])), None)?;
    let (a, a_share) = brain_extent(&fov.run_files(ixi)?);
    let (b, b_share) = brain_extent(&fov.run_files(lpba)?);
    eprintln!(
        "200 mm field of view: IXI-HH {a:?} ({a_share:.2}), LPBA40 {b:?} ({b_share:.2}) pixels"
    );
    for (name, [rows, cols], share) in [("IXI-HH", a, a_share), ("LPBA40", b, b_share)] {
        // An adult brain is about 170 mm long and 140 mm wide: 54 x 45 pixels of 3.125 mm.
        assert!(
            rows > cols,
            "{name}: {rows} rows x {cols} columns, not upright"
        );
        assert!(
            (44..=62).contains(&rows) && (36..=54).contains(&cols),
            "{name}: {rows} x {cols}"
        );
        assert!((0.2..0.6).contains(&share), "{name}: largest slice {share}");
    }
    let ratio = |x: usize, y: usize| x.max(y) as f64 / x.min(y) as f64;
    assert!(
        ratio(a[0], b[0]) < 1.15 && ratio(a[1], b[1]) < 1.15,
        "{a:?} vs {b:?}"
    );
    // Without it the grids' fields of view set the scale.
    let whole = Pipeline::new(config(None), None)?;
    let (a, _) = brain_extent(&whole.run_files(ixi)?);
    let (b, _) = brain_extent(&whole.run_files(lpba)?);
    eprintln!("whole grid resized: IXI-HH {a:?}, LPBA40 {b:?} pixels");
    assert!(ratio(a[0], a[1]) < 1.1, "IXI-HH squashed: {a:?}");
    assert!(ratio(a[0], b[0]) > 1.1, "{a:?} vs {b:?}");
    Ok(())
}
