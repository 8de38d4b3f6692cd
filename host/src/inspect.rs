//! `audit COMPONENT.wasm [--manifest M] [--json]`: the capability surface a component would
//! get (imports, hosts, request shapes, credential placement, limits) and whether the host
//! accepts it. Nothing is run.

use crate::output::print_json;
use scopable_sandbox::contract::Contract;
use scopable_sandbox::display::safe;
use scopable_sandbox::manifest::Manifest;
use scopable_sandbox::sandbox::{self, Sandbox};
use scopable_sync::app::{AppError, Exit};
use serde_json::{Value, json};
use std::path::Path;
use wasmtime::component::Component;

/// A component's surface and the host's verdict.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// The component file.
    pub component: String,
    /// Its sha256.
    pub sha256: String,
    /// Whether the host would load it.
    pub accepted: bool,
    /// Why not, when refused.
    pub reasons: Vec<String>,
    /// What the host accepts but a reviewer should look at twice (`Manifest::warnings`).
    pub warnings: Vec<String>,
    /// The contract version it was built for (`0.1.0`, `0.2.0`), read from its
    /// `scopable:integration/types` import; `None` when the host runs no such version.
    pub contract: Option<&'static str>,
    /// Each import and whether it is granted.
    pub imports: Vec<Value>,
    /// Its exports.
    pub exports: Vec<String>,
    /// The manifest's surface, when there is a manifest.
    pub manifest: Option<Value>,
}

/// Inspects a component against an optional manifest (without one, the built-in manifest
/// applies when the component is the built-in connector).
pub fn inspect(component_path: &Path, manifest_path: Option<&Path>) -> Result<Report, AppError> {
    let bytes = std::fs::read(component_path).map_err(|e| {
        AppError::new(
            Exit::BadInput,
            format!("cannot read {}: {e}", component_path.display()),
        )
    })?;
    let digest = sandbox::sha256_hex(&bytes);
    // A manifest the host refuses is still read, so that the report shows what it asks for
    // and every reason it is refused.
    let manifest = match manifest_path {
        Some(p) => Some(
            Manifest::read_unvalidated(p)
                .map_err(|e| AppError::new(Exit::BadInput, e.to_string()))?,
        ),
        None if digest == scopable_builtin::ITGLUE_SHA256 => Some(
            scopable_builtin::itglue_manifest()
                .map_err(|e| AppError::new(Exit::Failure, e.to_string()))?,
        ),
        None => None,
    };
    let sandbox = Sandbox::new(None).map_err(|e| AppError::new(Exit::Failure, format!("{e:#}")))?;
    let mut reasons: Vec<String> = manifest
        .iter()
        .flat_map(Manifest::problems)
        .map(|p| format!("manifest: {p}"))
        .collect();
    let warnings = manifest
        .as_ref()
        .map(Manifest::warnings)
        .unwrap_or_default();
    let mut contract = None;
    let (imports, exports) = match Component::new(sandbox.engine(), &bytes) {
        Ok(component) => {
            let names = sandbox::component_imports(sandbox.engine(), &component);
            match Contract::of_imports(&names) {
                Ok(c) => contract = Some(c.version()),
                Err(e) => reasons.push(format!("contract: {e}")),
            }
            let imports: Vec<Value> = names
                .into_iter()
                .map(|name| {
                    let allowed = sandbox::import_allowed(&name);
                    if !allowed {
                        reasons.push(format!("imports {name}, which is not granted"));
                    }
                    json!({"name": name, "allowed": allowed})
                })
                .collect();
            let exports: Vec<String> = component
                .component_type()
                .exports(sandbox.engine())
                .map(|(name, _)| name.to_string())
                .collect();
            for required in sandbox::REQUIRED_EXPORTS {
                if !exports.iter().any(|e| e == required) {
                    reasons.push(format!("does not export `{required}`"));
                }
            }
            (imports, exports)
        }
        Err(e) => {
            reasons.push(format!(
                "not a valid component: {}",
                format!("{e:#}").lines().next().unwrap_or("")
            ));
            (Vec::new(), Vec::new())
        }
    };
    let manifest_json = match &manifest {
        None => {
            reasons.push(
                "no manifest: give --manifest FILE.toml (it declares hosts, requests and limits)"
                    .into(),
            );
            None
        }
        Some(m) => {
            match &m.sha256 {
                None => reasons.push(format!(
                    "the manifest does not pin the component; add sha256 = \"{digest}\""
                )),
                Some(pinned) if !pinned.eq_ignore_ascii_case(&digest) => reasons.push(format!(
                    "the manifest pins sha256 {pinned}, but the component is {digest}"
                )),
                Some(_) => {}
            }
            if reasons.is_empty() {
                // The last word: the real loader, linker included.
                if let Err(e) = sandbox.load(&bytes, m.clone(), m.sha256.as_deref()) {
                    reasons.push(e.to_string());
                }
            }
            Some(json!({
                "name": m.name,
                "description": m.description,
                "default_region": m.default_region,
                "hosts": m.regions,
                "credential": {"header": m.credential.header, "prefix": m.credential.prefix,
                               "source": key_source(m),
                               "added_by": "host", "visible_to_component": false},
                "requests": m.requests.iter().map(|r| json!({"method": r.method, "path": r.path, "query": r.query})).collect::<Vec<_>>(),
                "limits": m.limits,
            }))
        }
    };
    Ok(Report {
        component: component_path.display().to_string(),
        sha256: digest,
        accepted: reasons.is_empty(),
        reasons,
        warnings,
        contract,
        imports,
        exports,
        manifest: manifest_json,
    })
}

/// Where the command line reads this connector's key from (the host decides, not the
/// manifest: [`Manifest::key_env`]).
pub fn key_source(manifest: &Manifest) -> String {
    format!(
        "environment variable {}, or standard input",
        manifest.key_env()
    )
}

/// Prints the report; exits 5 when the component would be refused.
pub fn audit_command(
    component: &Path,
    manifest: Option<&Path>,
    json_out: bool,
) -> Result<(), AppError> {
    let report = inspect(component, manifest)?;
    if json_out {
        print_json(&serde_json::to_value(&report).unwrap_or(Value::Null));
    } else {
        print_report(&report);
    }
    if report.accepted {
        Ok(())
    } else {
        Err(AppError::new(
            Exit::ConnectorFailed,
            format!("refused: {}", report.reasons.join("; ")),
        ))
    }
}

/// A string of the report, fit for the terminal (the component and the manifest choose it).
fn text(v: &Value) -> String {
    safe(v.as_str().unwrap_or("")).into_owned()
}

fn print_report(r: &Report) {
    println!("Component  {}", safe(&r.component));
    println!("sha256     {}", safe(&r.sha256));
    match r.contract {
        Some(version) => println!("Contract   scopable:integration@{version}"),
        None => println!("Contract   none this host runs"),
    }
    println!("Imports:");
    for i in &r.imports {
        let mark = if i["allowed"] == true {
            "granted"
        } else {
            "REFUSED"
        };
        println!("  {mark:<8} {}", text(&i["name"]));
    }
    println!("Exports:   {}", safe(&r.exports.join(", ")));
    if let Some(m) = &r.manifest {
        println!(
            "Manifest:  {} ({})",
            text(&m["name"]),
            text(&m["description"])
        );
        println!("Hosts (one per run, chosen by region or --endpoint; nothing else is reachable):");
        if let Some(hosts) = m["hosts"].as_object() {
            for (region, url) in hosts {
                println!("  {:<4} {}", safe(region), text(url));
            }
        }
        println!(
            "Credential: header {} added by the host after the policy check; never visible to the component",
            text(&m["credential"]["header"])
        );
        println!("Key from:   {}", text(&m["credential"]["source"]));
        println!("Requests (exact paths; no body, no redirects followed):");
        if let Some(reqs) = m["requests"].as_array() {
            for q in reqs {
                let keys: Vec<&str> = q["query"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "  {} {}  query: {}",
                    text(&q["method"]),
                    text(&q["path"]),
                    safe(&keys.join(" "))
                );
            }
        }
        println!("Limits:");
        if let Some(limits) = m["limits"].as_object() {
            for (k, v) in limits {
                println!("  {:<26} {}", safe(k), safe(&v.to_string()));
            }
        }
    }
    if !r.warnings.is_empty() {
        println!("Warnings:");
        for warning in &r.warnings {
            println!("  - {}", safe(warning));
        }
    }
    if r.accepted {
        println!("Verdict:   accepted");
    } else {
        println!("Verdict:   REFUSED");
        for reason in &r.reasons {
            println!("  - {}", safe(reason));
        }
    }
}
