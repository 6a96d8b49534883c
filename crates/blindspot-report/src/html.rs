//! The document model rendered to one self-contained HTML file (`report.html`: figures as data
//! URIs, one style sheet).

use std::fmt::Write as _;
use std::path::Path;

use crate::document::Block;
use crate::error::{ReportError, Result};
use crate::io::base64;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// HTML of inline Markdown: escapes, then `**bold**` and `` `code` ``.
pub(crate) fn inline(s: &str) -> String {
    let mut out = String::new();
    let e = esc(s);
    let mut bold = false;
    let mut code = false;
    let mut chars = e.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        } else if c == '*' && chars.peek() == Some(&'*') && !code {
            chars.next();
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
        } else {
            out.push(c);
        }
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

pub(crate) const CSS: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:1200px;margin:2em auto;padding:0 1.5em;color:#222;line-height:1.5}\
h1{font-size:1.8em;border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.1em}h3{font-size:1.05em;margin:1.4em 0 .4em}\
.table-wrap{overflow-x:auto;margin:.6em 0 1.2em}table{border-collapse:collapse;font-size:.88em;border-top:2px solid #333;border-bottom:2px solid #333}\
th,td{padding:.3em .7em;text-align:left;white-space:nowrap}thead th{border-bottom:1px solid #333;font-weight:600}tbody tr:nth-child(even){background:#f7f7f7}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#6b6b6b;font-size:.85em}table.wide .ci{display:block}\
.figures{display:flex;flex-wrap:wrap;gap:1.5em 2%;margin:1em 0}figure{margin:0;width:49%}figure.wide{width:100%}\
figure img{width:100%;height:auto;border:1px solid #e2e2e2}figure.wide img{width:auto;max-width:100%}\
figcaption{font-size:.85em;color:#444;margin-top:.3em}figcaption b{color:#222}\
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em;max-height:40em}details{margin:1em 0}summary{cursor:pointer;color:#444}\
code{background:#f2f2f2;padding:0 .2em;border-radius:2px}li{margin:.3em 0}";

/// Whether a table cell holds a number (or `n/a` in a column of numbers).
pub(crate) fn is_numeric(c: &str) -> bool {
    c == "n/a"
        || c.chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_digit() || ch == '-')
}

/// HTML of a table cell: numbers right-aligned, bootstrap intervals `[lo, hi]` set smaller.
pub(crate) fn html_cell(c: &str) -> String {
    let numeric = is_numeric(c);
    let mut body = String::new();
    let mut rest = c;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        body.push_str(&esc(rest[..open].trim_end()));
        let _ = write!(
            body,
            " <span class=\"ci\">{}</span>",
            esc(&rest[open..=open + close])
        );
        rest = &rest[open + close + 1..];
    }
    body.push_str(&esc(rest));
    if numeric {
        format!("<td class=\"num\">{body}</td>")
    } else {
        format!("<td>{body}</td>")
    }
}

pub(crate) fn to_html(title: &str, doc: &[Block], dir: &Path) -> Result<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>blindspot report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(title)
    );
    let mut figure = 0;
    let mut in_figures = false;
    for b in doc {
        let is_image = matches!(b, Block::Image { .. });
        if is_image && !in_figures {
            out.push_str("<div class=\"figures\">\n");
        } else if !is_image && in_figures {
            out.push_str("</div>\n");
        }
        in_figures = is_image;
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", inline(text));
            }
            Block::Para(text) => {
                if let Some(code) = text
                    .strip_prefix("```json\n")
                    .and_then(|t| t.strip_suffix("\n```"))
                {
                    let _ = writeln!(
                        out,
                        "<details><summary>Show the configuration (JSON)</summary><pre>{}</pre></details>",
                        esc(code)
                    );
                } else {
                    let _ = writeln!(out, "<p>{}</p>", inline(text));
                }
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(out, "<li>{}</li>", inline(i));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                let class = if header.len() > 6 {
                    " class=\"wide\""
                } else {
                    ""
                };
                let _ = write!(out, "<div class=\"table-wrap\"><table{class}>\n<thead><tr>");
                for (k, h) in header.iter().enumerate() {
                    // the header of a column of numbers sits over them, on the right
                    let numeric = !rows.is_empty()
                        && rows.iter().all(|r| r.get(k).is_some_and(|c| is_numeric(c)));
                    let class = if numeric { " class=\"num\"" } else { "" };
                    let _ = write!(out, "<th{class}>{}</th>", esc(h));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        out.push_str(&html_cell(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table></div>\n");
            }
            Block::Image { path, caption } => {
                figure += 1;
                let file = dir.join(path);
                let bytes = std::fs::read(&file).map_err(|e| ReportError::io(&file, e))?;
                // slice grids are wide: give them the full row
                let class = if path.starts_with("plots/") {
                    ""
                } else {
                    " class=\"wide\""
                };
                let _ = writeln!(
                    out,
                    "<figure{class}><img src=\"data:image/png;base64,{}\" alt=\"Figure {figure}: {}\"><figcaption><b>Figure {figure}.</b> {}</figcaption></figure>",
                    base64(&bytes),
                    esc(caption),
                    inline(caption)
                );
            }
            // closing the row of figures above is all a break does
            Block::Break => {}
        }
    }
    if in_figures {
        out.push_str("</div>\n");
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markup_is_escaped_then_formatted() {
        assert_eq!(
            inline("**a** <b> `c`"),
            "<strong>a</strong> &lt;b&gt; <code>c</code>"
        );
    }
}
