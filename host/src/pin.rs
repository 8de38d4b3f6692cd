//! `pin COMPONENT.wasm --manifest FILE.toml`: after a rebuild, writes the component's sha256
//! into its manifest. Only the top-level `sha256 = "..."` line changes (it is added at the top
//! when there is none), and only when the host would load the component under the pinned
//! manifest, as `audit` decides; otherwise the manifest is left as it was.

use scopable_sandbox::display::safe;
use scopable_sync::app::{AppError, Exit};
use std::io::Write;
use std::path::Path;

/// What [`pin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// The manifest now pins the component.
    Changed {
        /// The component's sha256.
        sha256: String,
    },
    /// The manifest already pinned this component; nothing was written.
    Unchanged {
        /// The component's sha256.
        sha256: String,
    },
}

/// Pins `manifest` to `component`: checks that the host accepts the component under the
/// manifest with the new pin (exit 5 with every reason, and the manifest unchanged, when it
/// would not), then replaces the manifest's `sha256` line in one rename.
pub fn pin(component: &Path, manifest: &Path) -> Result<Pinned, AppError> {
    let bytes = std::fs::read(component).map_err(|e| {
        AppError::new(
            Exit::BadInput,
            format!("cannot read {}: {e}", component.display()),
        )
    })?;
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        AppError::new(
            Exit::BadInput,
            format!("cannot read {}: {e}", manifest.display()),
        )
    })?;
    let sha256 = scopable_sandbox::sandbox::sha256_hex(&bytes);
    let pinned = with_pin(&text, &sha256).map_err(|e| {
        AppError::new(
            Exit::BadInput,
            format!("{}: {e}; the manifest is unchanged", manifest.display()),
        )
    })?;
    // The candidate sits beside the manifest: `audit` reads it there, and a rename then puts
    // it in place at once.
    let candidate = candidate_path(manifest);
    write_new(&candidate, &pinned, manifest).map_err(|e| {
        AppError::new(
            Exit::BadInput,
            format!(
                "cannot write {} beside the manifest: {e}; the manifest is unchanged",
                candidate.display()
            ),
        )
    })?;
    let verdict = crate::inspect::inspect(component, Some(&candidate));
    let report = match verdict {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&candidate);
            return Err(e);
        }
    };
    if !report.accepted {
        let _ = std::fs::remove_file(&candidate);
        return Err(AppError::new(
            Exit::ConnectorFailed,
            format!(
                "the host would refuse {} under {}: {}; the manifest is unchanged (see `scopable-host audit {} --manifest {}`)",
                component.display(),
                manifest.display(),
                report.reasons.join("; "),
                component.display(),
                manifest.display(),
            ),
        ));
    }
    if pinned == text {
        let _ = std::fs::remove_file(&candidate);
        return Ok(Pinned::Unchanged { sha256 });
    }
    std::fs::rename(&candidate, manifest).map_err(|e| {
        let _ = std::fs::remove_file(&candidate);
        AppError::new(
            Exit::BadInput,
            format!(
                "cannot replace {}: {e}; the manifest is unchanged",
                manifest.display()
            ),
        )
    })?;
    Ok(Pinned::Changed { sha256 })
}

/// `scopable-host pin COMPONENT --manifest FILE.toml`.
pub fn pin_command(component: &Path, manifest: &Path) -> Result<(), AppError> {
    let shown = |p: &Path| safe(&p.display().to_string()).into_owned();
    match pin(component, manifest)? {
        Pinned::Changed { sha256 } => crate::output::print_line(format_args!(
            "Pinned {} in {}: sha256 = \"{sha256}\".",
            shown(component),
            shown(manifest)
        )),
        Pinned::Unchanged { sha256 } => crate::output::print_line(format_args!(
            "{} already pins {} (sha256 {sha256}); nothing changed.",
            shown(manifest),
            shown(component)
        )),
    }
    Ok(())
}

/// The manifest text with its top-level `sha256` line set to `sha256` (a trailing comment
/// kept), or with `sha256 = "..."` added as its first line when it has none. Every other line
/// is kept byte for byte.
pub fn with_pin(text: &str, sha256: &str) -> Result<String, String> {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            // Past the top level: a table's keys are not the pin.
            break;
        }
        if let Some(rest) = trimmed
            .strip_prefix("sha256")
            .or_else(|| trimmed.strip_prefix("\"sha256\""))
            && rest.trim_start().starts_with('=')
        {
            found.push(n);
        }
    }
    let replaced;
    match found.as_slice() {
        [] => {
            let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
            return Ok(format!("sha256 = \"{sha256}\"{newline}{text}"));
        }
        [n] => {
            let line = lines[*n];
            let indent = &line[..line.len() - line.trim_start().len()];
            let value = line.split_once('=').map_or("", |(_, v)| v).trim_start();
            // Keep what follows a quoted value (a comment, the line ending).
            let after = value
                .strip_prefix('"')
                .and_then(|v| v.find('"').map(|end| &v[end + 1..]))
                .unwrap_or_else(|| {
                    let ending = value.len() - value.trim_end_matches(['\r', '\n']).len();
                    &value[value.len() - ending..]
                });
            replaced = format!("{indent}sha256 = \"{sha256}\"{after}");
            lines[*n] = &replaced;
        }
        several => {
            return Err(format!(
                "it has {} top-level sha256 lines (lines {}); keep one",
                several.len(),
                several
                    .iter()
                    .map(|n| (n + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(lines.concat())
}

/// `.NAME.pin-PID` beside the manifest.
fn candidate_path(manifest: &Path) -> std::path::PathBuf {
    let name = manifest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest.toml".into());
    manifest.with_file_name(format!(".{name}.pin-{}", std::process::id()))
}

/// Writes `text` to a new file at `path` with the permissions of `like`.
fn write_new(path: &Path, text: &str, like: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            let permissions = std::fs::metadata(like)?.permissions();
            std::fs::set_permissions(path, permissions)
        });
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "abababababababababababababababababababababababababababababababab";

    #[test]
    fn only_the_top_level_pin_line_changes() {
        let text =
            "name = \"x\"\r\nsha256 = \"old\"  # rebuilt often\r\n[limits]\r\nsha256 = 1\r\n";
        let out = with_pin(text, SHA).unwrap();
        assert_eq!(
            out,
            format!(
                "name = \"x\"\r\nsha256 = \"{SHA}\"  # rebuilt often\r\n[limits]\r\nsha256 = 1\r\n"
            )
        );
        // Pinning again changes nothing.
        assert_eq!(with_pin(&out, SHA).unwrap(), out);
    }

    #[test]
    fn a_missing_pin_is_added_first_and_two_are_refused() {
        let text = "# header\nname = \"x\"\n[regions]\nsha256 = \"in a table\"\n";
        assert_eq!(
            with_pin(text, SHA).unwrap(),
            format!("sha256 = \"{SHA}\"\n{text}")
        );
        let err = with_pin("sha256 = \"a\"\nsha256=\"b\"\n", SHA).unwrap_err();
        assert!(err.contains("lines 1, 2"), "{err}");
        // A line without its ending at the end of the file.
        assert_eq!(
            with_pin("sha256 = \"a\"", SHA).unwrap(),
            format!("sha256 = \"{SHA}\"")
        );
        assert_eq!(
            with_pin("sha256 = bare\n", SHA).unwrap(),
            format!("sha256 = \"{SHA}\"\n")
        );
    }
}
