//! The library half of the `blindspot` binary: what the commands share and what tests reach
//! (the experiment configuration, the slice-cache adapter, the `run` pipeline and its steps,
//! scoring new scans). The binary (`src/main.rs`) adds the backend selection and the command
//! line.

pub mod adequacy;
pub mod config;
mod error;
mod evaluation;
mod grids;
mod inference;
pub mod models;
pub mod partial;
pub mod pipeline;
mod progress;
pub mod score;
mod shard;
pub mod slices;
pub mod slurm;
mod transforms;
