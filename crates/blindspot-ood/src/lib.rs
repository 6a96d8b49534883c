#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`record`]: slice identities, the [`Statistic`]s with their directions, [`SliceRecord`].
//! - [`slice`](mod@slice): model outputs (plain buffers) to a [`SliceRecord`], with the paper's residual
//!   post-processing.
//! - [`entropy`]: residual entropy `H_l1` (the paper's and a cleaner variant).
//! - [`waic`]: ensemble WAIC, aligned by slice identity.
//! - [`kde`] and [`dose`]: an exact, fast 1-D Gaussian KDE and DoSE on top of it.
//! - [`typicality`], [`mahalanobis`]: the typicality test and a latent-space distance.
//! - [`aggregate`]: per-scan aggregation (mean, max, robust quantile).
//! - [`conformal`]: the split-conformal threshold and its guarantee.
//! - [`gate`]: the per-scan verdict (in distribution, lesion suspected, out of distribution).
//! - [`eval`]: detection in three modes, disentangling, risk-coverage, scan-level bootstrap.
//!
//! Inputs are plain Rust data: this crate never depends on burn (an architecture invariant
//! checked by `cargo xtask validate`).

pub mod aggregate;
pub mod conformal;
pub mod dose;
pub mod entropy;
pub mod error;
pub mod eval;
pub mod gate;
pub mod ids;
pub mod kde;
pub mod mahalanobis;
pub mod record;
pub mod slice;
pub mod typicality;
pub mod waic;

pub use aggregate::Aggregation;
pub use blindspot_metrics::{BootstrapConfig, ConfidenceInterval};
pub use conformal::ConformalThreshold;
pub use dose::{Dose, DoseCombine};
pub use error::{OodError, Result};
pub use gate::{Decision, Gate, GateConfig, GateGoals, ScanVerdict};
pub use kde::GaussianKde;
pub use record::{Direction, LesionRule, ScanId, SliceId, SliceRecord, Statistic};
