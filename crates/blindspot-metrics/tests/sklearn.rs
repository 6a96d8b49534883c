//! Equality with scikit-learn on the inputs of `../shared/bench/sklearn_metrics.py`.
//!
//! The fixtures in `tests/data` are the exact inputs that script wrote (`--out`); the reference
//! numbers below are what it printed, with scikit-learn 1.9.1 / numpy 2.4.6:
//!
//! - `skl_a`: `python sklearn_metrics.py --n 3000 --out OUT --repeat 1`
//!   -> auroc 0.8910872745002438, average_precision 0.30602915257688773
//! - `skl_b`: `python sklearn_metrics.py --n 400 --pos 0.3 --seed 1 --out OUT --repeat 1`
//!   -> auroc 0.869447066563689, average_precision 0.7737260371324983
//!
//! FPR at 95 % TPR and the number of ROC points come from `sklearn.metrics.roc_curve(labels,
//! scores, drop_intermediate=False)` on the same files (`fpr[argmax(tpr >= 0.95)]`, `len(fpr)`).

use blindspot_metrics::{RankAccumulator, RankedScores};

struct Case {
    file: &'static str,
    auroc: f64,
    average_precision: f64,
    fpr95: f64,
    roc_points: usize,
}

const CASES: &[Case] = &[
    Case {
        file: "skl_a.txt",
        auroc: 0.8910872745002438,
        average_precision: 0.30602915257688773,
        fpr95: 0.38668941979522187,
        roc_points: 1013,
    },
    Case {
        file: "skl_b.txt",
        auroc: 0.869447066563689,
        average_precision: 0.7737260371324983,
        fpr95: 0.47232472324723246,
        roc_points: 329,
    },
];

fn load(file: &str) -> (Vec<f32>, Vec<bool>) {
    // cargo sets CARGO_MANIFEST_DIR when it runs the test too; read it then, so that a test
    // binary reused from a clone at another path (one shared target directory) finds its data
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    );
    let path = dir.join("tests/data").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let scores = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|k| k.parse::<i32>().unwrap() as f32 / 256.0)
        .collect();
    let labels = lines.next().unwrap().bytes().map(|b| b == b'1').collect();
    (scores, labels)
}

fn check<S: blindspot_metrics::Score>(ranked: &RankedScores<S>, case: &Case) {
    let auroc = ranked.auroc().unwrap();
    let ap = ranked.average_precision().unwrap();
    assert!(
        (auroc - case.auroc).abs() < 1e-12,
        "{}: auroc {auroc} vs {}",
        case.file,
        case.auroc
    );
    assert!(
        (ap - case.average_precision).abs() < 1e-12,
        "{}: ap {ap} vs {}",
        case.file,
        case.average_precision
    );
    assert_eq!(
        ranked.fpr_at_tpr(0.95).unwrap(),
        case.fpr95,
        "{}",
        case.file
    );
    assert_eq!(
        ranked.roc_curve().unwrap().fpr.len(),
        case.roc_points,
        "{}",
        case.file
    );
}

#[test]
fn equals_scikit_learn_in_f32_and_f64() {
    for case in CASES {
        let (scores, labels) = load(case.file);
        let mut a32 = RankAccumulator::<f32>::new();
        a32.push(&scores, &labels).unwrap();
        check(&a32.finish(), case);

        let scores64: Vec<f64> = scores.iter().map(|&s| f64::from(s)).collect();
        let mut a64 = RankAccumulator::<f64>::new();
        a64.push(&scores64, &labels).unwrap();
        check(&a64.finish(), case);
        assert!((blindspot_metrics::auroc(&scores64, &labels).unwrap() - case.auroc).abs() < 1e-12);
        assert!(
            (blindspot_metrics::average_precision(&scores64, &labels).unwrap()
                - case.average_precision)
                .abs()
                < 1e-12
        );
    }
}

#[test]
fn batches_and_shards_merge_to_the_same_numbers() {
    for case in CASES {
        let (scores, labels) = load(case.file);
        // Three shards of uneven batches, serialized and read back as a cluster job would.
        let mut shards = Vec::new();
        for (i, (s, l)) in scores.chunks(97).zip(labels.chunks(97)).enumerate() {
            if i % 3 == 0 {
                shards.push(RankAccumulator::<f32>::new());
            }
            shards.last_mut().unwrap().push(s, l).unwrap();
        }
        let mut merged = RankAccumulator::<f32>::new();
        for shard in &shards {
            let json = serde_json::to_string(shard).unwrap();
            merged.merge(serde_json::from_str(&json).unwrap());
        }
        check(&merged.finish(), case);
    }
}
