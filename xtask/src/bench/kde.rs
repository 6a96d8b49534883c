//! `cargo xtask bench kde` (issue 6).

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask bench kde` is not written yet (issue 6)")
}
