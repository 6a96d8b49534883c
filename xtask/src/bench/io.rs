//! `cargo xtask bench io` (issue 2).

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask bench io` is not written yet (issue 2)")
}
