//! `check`: the connector's checks, as a table or JSON.

use crate::output::print_json;
use scopable_sync::app::{AppError, Exit};
use serde_json::json;
use std::path::Path;

/// `check COMPONENT --manifest M [--endpoint URL] [--json]`.
pub fn check_command(
    component: &Path,
    manifest: &Path,
    endpoint: Option<&str>,
    json_out: bool,
) -> Result<(), AppError> {
    let (rows, warnings) = scopable_sync::check::check_component(component, manifest, endpoint)?;
    let failed = rows.iter().filter(|r| r.result == "fail").count();
    let passed = rows.iter().filter(|r| r.result == "pass").count();
    let skipped = rows.iter().filter(|r| r.result == "skip").count();
    if json_out {
        print_json(
            &json!({"component": component.display().to_string(), "passed": failed == 0, "checks": rows, "warnings": warnings}),
        );
    } else {
        // Details quote the component: each is shown safe and cut to one table cell.
        use scopable_sandbox::display::{safe, safe_within};
        let width = rows
            .iter()
            .map(|r| safe(&r.check).chars().count())
            .max()
            .unwrap_or(10);
        println!("{:<width$}  {:<6}  detail", "check", "result");
        for r in &rows {
            println!(
                "{:<width$}  {:<6}  {}",
                safe(&r.check),
                r.result.to_uppercase(),
                safe_within(&r.detail, 160)
            );
        }
        println!("{passed} passed, {failed} failed, {skipped} skipped");
        if !warnings.is_empty() {
            println!("Manifest warnings (accepted; broader than most connectors need):");
            for warning in &warnings {
                println!("  - {}", safe(warning));
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(AppError::new(
            Exit::ConnectorFailed,
            format!(
                "the component failed {failed} of {} checks; see the table",
                passed + failed
            ),
        ))
    }
}
