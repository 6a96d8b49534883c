//! The library half of the `blindspot` binary: what the commands share and what tests reach
//! (the experiment configuration). The binary (`src/main.rs`) adds the backend selection and
//! the command line.

pub mod config;
