//! The dataset folder reads back through blindspot-io's generic layout, like real data.

mod common;

use std::collections::BTreeMap;

use blindspot_io::{Layout, read_volume};
use blindspot_synth::{
    Contrast, MANIFEST_HEADER, OodTransform, SetConfig, Split, SynthConfig, write_dataset,
};
use common::small_config;

fn tiny_config() -> SynthConfig {
    let mut c = small_config();
    c.sets = vec![
        SetConfig::new("train", Split::Train, 2),
        SetConfig::new("id_lesion", Split::Test, 3).lesional(),
        SetConfig::new("t1", Split::Test, 1)
            .with_contrast(Contrast::T1)
            .at_site("B"),
        SetConfig::new("noise", Split::Test, 1).with_ood(OodTransform::Noise),
    ];
    c
}

#[test]
fn written_dataset_reads_back_through_the_io_layout() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let summary = write_dataset(&config, dir.path()).unwrap();
    assert_eq!(summary.subjects, 7);
    assert!(summary.bytes > 0);

    let layout = Layout::from_file(&dir.path().join("layout.toml")).unwrap();
    let subjects = layout.discover(dir.path()).unwrap();
    assert_eq!(subjects.len(), 7);

    let manifest = std::fs::read_to_string(&summary.manifest).unwrap();
    let mut lines = manifest.lines();
    assert_eq!(lines.next(), Some(MANIFEST_HEADER));
    let rows: BTreeMap<String, Vec<String>> = lines
        .map(|l| {
            let cols: Vec<String> = l.split(',').map(str::to_owned).collect();
            assert_eq!(cols.len(), MANIFEST_HEADER.split(',').count(), "{l}");
            (cols[0].clone(), cols)
        })
        .collect();
    assert_eq!(rows["train-000"][1], "train");
    assert_eq!(rows["id_lesion-001"][5], "ms");
    assert_eq!(rows["t1-000"][7], "site+modality");
    assert_eq!(rows["noise-000"][7], "noise");

    for s in &subjects {
        let row = &rows[&s.id];
        let image = read_volume(&s.image).unwrap();
        let brain = read_volume(s.brain_mask.as_ref().unwrap()).unwrap();
        let lesion = read_volume(s.lesion_mask.as_ref().unwrap()).unwrap();
        assert_eq!(image.dims, config.dims);
        assert_eq!(brain.dims, config.dims);
        assert_eq!(image.affine, lesion.affine);
        // RAS, with the requested voxel size
        for a in 0..3 {
            assert!((image.affine[a][a] - config.spacing[a]).abs() < 1e-6);
            assert!((image.spacing[a] - config.spacing[a]).abs() < 1e-6);
        }
        let lesion_voxels = lesion.data.iter().filter(|&&v| v != 0.0).count();
        let ml: f64 = row[6].parse().unwrap();
        let voxel_ml = config.spacing.iter().product::<f64>() / 1000.0;
        assert!(
            (lesion_voxels as f64 * voxel_ml - ml).abs() < 1e-3,
            "{}: manifest volume",
            s.id
        );
        assert_eq!(
            lesion_voxels > 0,
            row[5] != "none",
            "{}: lesion mask vs kind",
            s.id
        );
        assert!(image.data.iter().all(|v| v.is_finite()));
    }
    // the resolved config is saved beside the data and reads back identical
    let saved = std::fs::read_to_string(dir.path().join("synth.toml")).unwrap();
    assert_eq!(SynthConfig::from_toml_str(&saved).unwrap(), config);
}

#[test]
fn rewriting_gives_identical_bytes_and_stale_folders_are_refused() {
    let mut config = tiny_config();
    config.sets.truncate(2);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_dataset(&config, a.path()).unwrap();
    // another thread count must not change a byte
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| write_dataset(&config, b.path()))
        .unwrap();
    for sub in [
        "images/train-001.nii.gz",
        "lesion_masks/id_lesion-002.nii.gz",
        "manifest.csv",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(sub)).unwrap(),
            std::fs::read(b.path().join(sub)).unwrap(),
            "{sub}"
        );
    }
    // writing again into the same folder works
    write_dataset(&config, a.path()).unwrap();
    // a folder holding subjects of another config is refused, and nothing is removed
    config.sets.truncate(1);
    let err = write_dataset(&config, a.path()).unwrap_err();
    assert!(
        matches!(err, blindspot_synth::SynthError::StaleOutput { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("images/id_lesion-"), "{err}");
    assert!(a.path().join("images/id_lesion-000.nii.gz").is_file());
}

#[test]
fn the_manifest_reads_back_as_typed_rows_and_a_broken_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let summary = write_dataset(&config, dir.path()).unwrap();
    let rows = blindspot_synth::read_manifest(&summary.manifest).unwrap();
    assert_eq!(rows.len(), summary.subjects);
    let lesional: Vec<_> = rows.iter().filter(|r| r.set == "id_lesion").collect();
    assert_eq!(lesional.len(), 3);
    for r in &lesional {
        assert_ne!(r.lesion_kind, "none");
        let files = r.files(dir.path());
        assert_eq!(files.id, r.subject);
        assert!(files.image.is_file() && files.lesion_mask.unwrap().is_file());
    }

    // a row with a word where the seed (a number) belongs
    let text = std::fs::read_to_string(&summary.manifest).unwrap();
    let broken = dir.path().join("broken.csv");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last = lines.last_mut().unwrap();
    let cut = last.rfind(',').unwrap();
    last.replace_range(cut + 1.., "many");
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let err = blindspot_synth::read_manifest(&broken)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.csv") && err.contains("seed"), "{err}");
}
