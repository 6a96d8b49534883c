//! The document model rendered to Markdown (`report.md`).

use std::fmt::Write as _;

use crate::document::Block;

pub(crate) fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub(crate) fn to_markdown(doc: &[Block]) -> String {
    let mut out = String::new();
    let mut figure = 0;
    for b in doc {
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {text}\n", "#".repeat(usize::from(*level)));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {i}");
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let cells =
                    |r: &[String]| r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ");
                let _ = writeln!(out, "| {} |", cells(header));
                let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
                for r in rows {
                    let _ = writeln!(out, "| {} |", cells(r));
                }
                out.push('\n');
            }
            Block::Image { path, caption } => {
                figure += 1;
                let _ = writeln!(
                    out,
                    "![Figure {figure}]({path})\n\n*Figure {figure}. {caption}*\n"
                );
            }
            Block::Break => {}
        }
    }
    out
}
