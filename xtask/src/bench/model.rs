//! `cargo xtask bench model` (issue 5).

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask bench model` is not written yet (issue 5)")
}
