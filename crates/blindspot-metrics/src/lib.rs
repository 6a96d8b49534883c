#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`adequacy`]: whether a reconstruction model learned the anatomy: its error beside the
//!   position-mean image's and a σ = 1 blur's, and the score between them.
//! - [`rank`]: [`RankAccumulator`] (mergeable across batches and shards, serde) and
//!   [`RankedScores`]: AUROC (tie-aware, = scikit-learn's `roc_auc_score`), average precision
//!   (step definition, = `average_precision_score`), ROC / PR curves, FPR at a TPR, the best
//!   Dice over all thresholds and the exact healthy-data threshold for a target FPR.
//! - [`overlap`]: Dice and IoU of binary maps, per volume and pooled; slice-level labels.
//! - [`threshold`]: the paper's golden-section threshold search (the exact one is in [`rank`]).
//! - [`bootstrap`]: subject-level bootstrap intervals and the paired bootstrap test.
//! - [`postprocess`]: brain-mask erosion, reflect-padded median filter, connected components.
//! - [`score`]: the score types (`f32`, `f64`) and their radix-sortable keys.
//!
//! Degenerate input (one class, empty maps, NaN, length mismatch) gives a [`MetricsError`],
//! never a silent 0.5 or a panic. This crate never depends on burn (an architecture invariant
//! checked by `cargo xtask validate`).
//!

pub mod adequacy;
pub mod bootstrap;
pub mod error;
pub mod overlap;
pub mod postprocess;
pub mod quantile;
pub mod rank;
pub mod score;
pub mod threshold;

pub use adequacy::{
    Adequacy, AdequacyReference, PositionMean, PositionMeanImages, ReferenceErrors,
    gaussian_filter, masked_mae,
};
pub use bootstrap::{
    BootstrapConfig, ConfidenceInterval, PairedComparison, SubjectGroups, bootstrap_auroc,
    bootstrap_ci, paired_bootstrap,
};
pub use error::{MetricsError, Result};
pub use overlap::{LesionalRule, OverlapCounts, OverlapSummary, dice, dice_at_threshold, iou};
pub use postprocess::{
    Components, Connectivity, erode, label_components, median_filter, remove_small_components,
};
pub use quantile::{quantile_select, quantile_sorted};
pub use rank::{
    BestDice, FprThreshold, PrCurve, RankAccumulator, RankedScores, RocCurve, Tally, auroc,
    average_precision, best_dice, fpr_at_tpr, pr_curve, roc_curve, threshold_for_fpr,
};
pub use score::Score;
pub use threshold::{
    GoldenSectionConfig, GoldenSectionResult, golden_section_search, golden_section_threshold,
    mean_batch_fpr,
};
