//! Reading and writing `results.json`, and the atomic file writes every output goes through.

use std::io::Write;
use std::path::Path;

use crate::error::{ReportError, Result};
use crate::schema::{Results, SCHEMA_VERSION};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`. Readers see the old file or the new one, never a part.
/// Missing parent directories are created.
///
/// # Errors
/// [`ReportError::Io`] naming `path` (or its directory) when any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    blindspot_atomic::write_atomic(path, |w| w.write_all(bytes))
        .map_err(|e| ReportError::io(path, e))
}

/// Validates `results` and writes it as pretty JSON to `path`, atomically.
///
/// # Errors
/// [`ReportError::Invalid`] or [`ReportError::SchemaVersion`] from [`Results::validate`];
/// [`ReportError::Io`] when the file cannot be written.
pub fn save_results(results: &Results, path: &Path) -> Result<()> {
    results.validate()?;
    let mut text = serde_json::to_string_pretty(results).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads and validates a `results.json`.
///
/// The schema version is checked before the rest, so a file from another version gets a
/// version error rather than a confusing field error.
///
/// # Errors
/// [`ReportError::Io`] when the file cannot be read, [`ReportError::Json`] when it is not
/// JSON of the schema, [`ReportError::SchemaVersion`] for another version (or none),
/// [`ReportError::Invalid`] when a value breaks the schema's rules.
pub fn load_results(path: &Path) -> Result<Results> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    let json_err = |source| ReportError::Json {
        path: path.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(json_err)?;
    let found = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if found != u64::from(SCHEMA_VERSION) {
        return Err(ReportError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let results: Results = serde_json::from_value(value).map_err(json_err)?;
    results.validate()?;
    Ok(results)
}

/// Standard base64 (RFC 4648, padded), for data URIs in the self-contained HTML.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "input {input:?}");
        }
    }

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
    }
}
