//! Renders the report of a small hand-built result into a directory, to look at:
//! `cargo run --release -p blindspot-report --example sample_report -- /tmp/sample-report`

#[path = "../tests/sample/mod.rs"]
mod sample;

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "sample-report".into()),
    );
    let results = sample::sample_results(&dir);
    blindspot_report::save_results(&results, &dir.join(blindspot_report::RESULTS_FILE))?;
    let files = blindspot_report::render_report(&results, &dir)?;
    println!("{}", files.html.display());
    Ok(())
}
