//! The `[synth]` section: the example file, defaults, and errors that say what to change.

use blindspot_synth::{OodTransform, SynthConfig, SynthError, plan};

const EXAMPLE: &str = include_str!("../../../configs/synth.toml");

/// Parse `text` and return the error message, which must mention every `needle`.
fn check_err(text: &str, needles: &[&str]) {
    let err = SynthConfig::from_toml_str(text)
        .expect_err(text)
        .to_string();
    for n in needles {
        assert!(err.contains(n), "error {err:?} should mention {n:?}");
    }
}

#[test]
fn the_example_file_is_the_quickstart() {
    assert_eq!(
        SynthConfig::from_toml_str(EXAMPLE).unwrap(),
        SynthConfig::quickstart()
    );
}

#[test]
fn quickstart_has_exactly_the_named_sets() {
    let c = SynthConfig::quickstart();
    let names: Vec<&str> = c.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "train",
            "val",
            "id_lesion",
            "site_b_healthy",
            "site_b_lesion",
            "t1_healthy",
            "t1_lesion",
            "flip_lr",
            "flip_ud",
            "skull",
            "noise",
            "blobs",
            "inversion",
            "ghosting"
        ]
    );
    let specs = plan(&c).unwrap();
    let train = specs.iter().filter(|s| s.set == "train").count();
    assert!((20..=40).contains(&train));
    assert!(
        specs
            .iter()
            .filter(|s| s.set == "flip_lr")
            .all(|s| s.ood == OodTransform::FlipLr)
    );
    // the lesional sets cycle through all three kinds
    let kinds: std::collections::HashSet<_> = specs
        .iter()
        .filter(|s| s.set == "id_lesion")
        .map(|s| s.lesion)
        .collect();
    assert_eq!(kinds.len(), 3);
}

#[test]
fn a_minimal_section_takes_the_defaults_and_round_trips() {
    let c = SynthConfig::from_toml_str("[synth]\nseed = 7\n[model]\nwhatever = 1\n").unwrap();
    assert_eq!(c.seed, 7);
    assert_eq!(c.dims, SynthConfig::quickstart().dims);
    assert_eq!(SynthConfig::from_toml_str(&c.to_toml_string()).unwrap(), c);
}

#[test]
fn errors_name_the_key_the_value_and_what_is_allowed() {
    check_err("[synth]\nseeed = 1\n", &["seeed"]);
    check_err("[model]\nx = 1\n", &["synth"]);
    check_err(
        "[synth]\ndims = [96, 112, 8]\n",
        &["synth.dims[2]", "8", "16..=512"],
    );
    check_err(
        "[synth]\nspacing = [1.0, 1.0, 1.0]\n",
        &["dims * synth.spacing", "170 x 200 x 120"],
    );
    check_err(
        "[synth.lesions]\ntumour_ml = [50.0, 10.0]\n",
        &["tumour_ml", "[50, 10]", "min <= max"],
    );
    check_err(
        "[synth]\n[[synth.sets]]\nname = \"a\"\ncount = 0\n",
        &["synth.sets[0].count", "0", "1..=10000"],
    );
    check_err(
        "[synth]\n[[synth.sets]]\nname = \"a\"\ncount = 2\nsite = \"Q\"\n",
        &["synth.sets[0].site", "Q", "A, B, C"],
    );
    check_err(
        "[synth]\n[[synth.sets]]\nname = \"a b\"\ncount = 2\n",
        &["synth.sets[0].name", "A-Za-z0-9_"],
    );
    check_err(
        "[synth]\n[[synth.sets]]\nname = \"a\"\ncount = 2\nlesions = [\"ms\"]\nood = \"noise\"\n",
        &["synth.sets[0].ood", "noise"],
    );
    check_err(
        "[synth]\n[[synth.sets]]\nname = \"a\"\nsplit = \"train\"\ncount = 2\nlesions = [\"ms\"]\n",
        &["synth.sets[0].split", "train"],
    );
    check_err(
        "[synth]\n[[synth.sets]]\nname = \"a\"\ncount = 2\nlesions = [\"ms\"]\nlesion_rate = 1.5\n",
        &["lesion_rate", "1.5", "[0, 1]"],
    );
    check_err(
        "[synth]\n[[synth.sets]]\nname = \"a\"\ncount = 2\nood = \"sideways\"\n",
        &["sideways"],
    );
    check_err(
        "[synth.sites.D]\nbias = 0.1\nsnr = 1.0\nblur_mm = 0.0\nscale = 1.0\ngamma = 1.0\nslice_mm = 0.0\ncontrast_jitter = 0.0\n",
        &["synth.sites.D.snr", "2..=1000"],
    );
    assert!(matches!(
        SynthConfig::from_toml_str("[synth]\nseeed = 1\n"),
        Err(SynthError::Parse { .. })
    ));
}

#[test]
fn a_custom_site_is_usable() {
    let text = "[synth.sites.D]\nbias = 0.1\nsnr = 25.0\nblur_mm = 0.0\nscale = 10.0\ngamma = 1.0\nslice_mm = 0.0\ncontrast_jitter = 0.0\n\
                [[synth.sets]]\nname = \"d\"\ncount = 1\nsite = \"D\"\n";
    let c = SynthConfig::from_toml_str(text).unwrap();
    assert_eq!(c.site("D").unwrap().scale, 10.0);
    assert!(c.site("B").is_some(), "built-in sites stay available");
}
