//! `GaussianKde` against `scipy.stats.gaussian_kde` (scipy 1.17.1, numpy 2), numbers recorded with
//!
//! ```text
//! /tmp/blindspot-bench/bin/python3 -c '
//! import numpy as np; from scipy.stats import gaussian_kde
//! x = np.array([0.31, -1.2, 2.5, 0.0, 0.77, -0.45, 1.9, -2.2, 0.05, 3.3]); k = gaussian_kde(x)
//! print(repr(k.factor), repr(float(np.sqrt(k.covariance[0, 0]))))
//! pts = [-10.0, -3.0, -1.0, 0.0, 0.4, 2.0, 5.0, 40.0]
//! print([repr(float(v)) for v in k.logpdf(pts)]); print([repr(float(v)) for v in k.pdf(pts)])'
//! ```
//!
//! The large-scale comparison (2x10^4 fit values, 2x10^4 points) is `cargo xtask bench kde`.

use blindspot_ood::GaussianKde;

const DATA: [f64; 10] = [0.31, -1.2, 2.5, 0.0, 0.77, -0.45, 1.9, -2.2, 0.05, 3.3];
const POINTS: [f64; 8] = [-10.0, -3.0, -1.0, 0.0, 0.4, 2.0, 5.0, 40.0];
const SCIPY_FACTOR: f64 = 0.6309573444801932;
const SCIPY_BANDWIDTH: f64 = 1.0608918115998425;
const SCIPY_LOGPDF: [f64; 8] = [
    -30.308198492962386,
    -3.195220491978099,
    -1.8031798673511559,
    -1.565985067536162,
    -1.5860360238919724,
    -2.0028992591062003,
    -4.320082068804051,
    -601.6370301113996,
];
const SCIPY_PDF: [f64; 8] = [
    6.87569554731819e-14,
    0.0409574935816226,
    0.1647740945131448,
    0.20888214877112188,
    0.20473557225844327,
    0.134943479429126,
    0.013298792081695475,
    5.15653196146013e-262,
];

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn bandwidth_is_scotts_rule_as_scipy_defines_it() {
    let kde = GaussianKde::fit(&DATA).unwrap();
    assert!(rel(kde.factor(), SCIPY_FACTOR) < 1e-14);
    assert!(rel(kde.bandwidth(), SCIPY_BANDWIDTH) < 1e-13);
    assert_eq!(kde.len(), 10);
}

#[test]
fn log_density_and_density_match_scipy() {
    let kde = GaussianKde::fit(&DATA).unwrap();
    let many = kde.log_density_many(&POINTS);
    for (i, &x) in POINTS.iter().enumerate() {
        let ld = kde.log_density(x);
        assert_eq!(ld, many[i], "batch and single evaluation agree bit for bit");
        assert!(
            rel(ld, SCIPY_LOGPDF[i]) < 1e-12,
            "logpdf({x}): {ld} vs {}",
            SCIPY_LOGPDF[i]
        );
        let d = kde.density(x);
        assert!(
            rel(d, SCIPY_PDF[i]) < 1e-10,
            "pdf({x}): {d} vs {}",
            SCIPY_PDF[i]
        );
    }
    let d = kde.density_many(&POINTS);
    assert!(rel(d[3], SCIPY_PDF[3]) < 1e-12);
}

#[test]
fn input_order_does_not_matter() {
    let mut shuffled = DATA;
    shuffled.reverse();
    shuffled.swap(2, 7);
    let a = GaussianKde::fit(&DATA).unwrap();
    let b = GaussianKde::fit(&shuffled).unwrap();
    for x in POINTS {
        assert!(rel(a.log_density(x), b.log_density(x)) < 1e-14);
    }
}
