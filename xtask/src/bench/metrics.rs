//! `cargo xtask bench metrics` (issue 4).

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask bench metrics` is not written yet (issue 4)")
}
