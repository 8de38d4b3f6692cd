//! The `scopable-host` command line: argument parsing, key input, and human or JSON output.
//! Scripts depend on the commands, JSON shapes and exit statuses; keep them stable.

use crate::app::{self, App, AppError, ConnectorSource, Exit};
use crate::db;
use crate::display;
use crate::vault::Vault;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  any other failure: the host's own (database, disk; never retried), a sync of that kind
     already running
  2  usage error
  3  the key was rejected (401/403)
  4  IT Glue (or the connector's service) unavailable after retries (network, 5xx, 429,
     timeouts), or a sync over sync_timeout_secs
  5  the connector failed (trap, CPU, memory or call_timeout_ms limit, denied request,
     unreadable response, a redirect or client error from the API: not retried)
  6  bad input data (import file, ids, vault, database file)

Examples:
  scopable-host import clients clients.csv
  ITGLUE_API_KEY=... scopable-host itglue connect --region eu
  scopable-host itglue sync organizations
  scopable-host itglue unplaced --json
  scopable-host check my-connector.wasm --manifest my-connector.toml";

/// Runs sandboxed Scopable connectors and links what they find to existing records.
#[derive(Debug, Parser)]
#[command(name = "scopable-host", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The database (default: $SCOPABLE_DB, else ./scopable.db).
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Run this connector component instead of the built-in one (needs --manifest).
    #[arg(long, global = true, value_name = "FILE.wasm")]
    connector: Option<PathBuf>,
    /// The manifest of --connector, or of the component given to `audit`.
    #[arg(long, global = true, value_name = "FILE.toml")]
    manifest: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load Scopable records from CSV (re-importing updates records by id).
    Import {
        /// Which records.
        #[arg(value_enum)]
        what: ImportKind,
        /// The CSV file.
        file: PathBuf,
    },
    /// Print a component's capability surface and whether the host accepts it.
    Audit {
        /// The component.
        component: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance scenario against a connector component and print a table.
    Check {
        /// The component.
        component: PathBuf,
        /// Also test and page through this endpoint (key in the manifest's variable).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The built-in IT Glue connector.
    Itglue(ConnectorArgs),
    /// Another connector, by its manifest's name (with --connector and --manifest).
    #[command(external_subcommand)]
    Other(Vec<OsString>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ImportKind {
    Clients,
    Configurations,
}

const CONNECTOR_EXAMPLES: &str = "\
A first run:
  scopable-host import clients clients.csv
  scopable-host import configurations configurations.csv
  ITGLUE_API_KEY=... scopable-host itglue test --region us
  ITGLUE_API_KEY=... scopable-host itglue connect --region us
  scopable-host itglue sync organizations
  scopable-host itglue sync configurations
  scopable-host itglue unplaced

Resolving what could not be placed:
  scopable-host itglue link organization 123456 c-42      # match by hand, or change a match
  scopable-host itglue ignore configuration 987654        # never link it, stop listing it
  scopable-host itglue reset organization 123456          # back to automatic matching";

#[derive(Debug, Parser)]
#[command(no_binary_name = true, after_help = CONNECTOR_EXAMPLES)]
struct ConnectorArgs {
    #[command(subcommand)]
    command: ConnectorCommand,
}

#[derive(Debug, Args)]
struct Target {
    /// The IT Glue region.
    #[arg(long, value_name = "us|eu|au")]
    region: Option<String>,
    /// Use this base URL instead of the region's (https, or http on loopback).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConnectorCommand {
    /// Check a key (from ITGLUE_API_KEY, stdin, or a prompt) or the stored connection.
    Test {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Test a key and, if it works, store it encrypted with the region.
    Connect(Target),
    /// Pull records and link them to existing Scopable records.
    Sync {
        /// Which records.
        #[arg(value_enum)]
        kind: RecordKind,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The connection and the last sync of each kind.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every link, with its evidence.
    Links {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Records the last sync could not place, with reasons and candidates.
    Unplaced {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Link a record by hand (or change its match).
    Link {
        /// Which kind of record.
        #[arg(value_enum)]
        kind: RecordKind,
        /// The IT Glue id.
        itglue_id: String,
        /// The Scopable id.
        scopable_id: String,
    },
    /// Never link this record, and stop listing it as unplaced.
    Ignore {
        /// Which kind of record.
        #[arg(value_enum)]
        kind: RecordKind,
        /// The IT Glue id.
        itglue_id: String,
    },
    /// Drop the manual decision (link or ignore) on a record.
    Reset {
        /// Which kind of record.
        #[arg(value_enum)]
        kind: RecordKind,
        /// The IT Glue id.
        itglue_id: String,
    },
    /// Audit records and sync runs, newest first.
    Activity {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many entries.
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Delete the stored key and connection settings (links stay).
    Disconnect,
}

/// A record kind, as named on the command line and in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordKind {
    /// Organizations (linked to clients).
    #[value(alias = "organizations")]
    Organization,
    /// Configurations (linked to configurations).
    #[value(alias = "configurations")]
    Configuration,
}

impl RecordKind {
    /// The singular name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Organization => "organization",
            RecordKind::Configuration => "configuration",
        }
    }
}

/// Parses the arguments, runs the command, and returns the exit status.
pub fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCOPABLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal())
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Exit::Usage as u8 } else { 0 };
            let _ = e.print();
            return std::process::ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the message holds (it can quote a component or the API).
            eprintln!("error: {}", display::error_line(&e.message));
            std::process::ExitCode::from(e.exit as u8)
        }
    }
}

fn run(cli: Cli) -> Result<(), AppError> {
    let db_path = db::resolve_path(cli.db.clone());
    let source = match (&cli.connector, &cli.manifest) {
        (Some(component), Some(manifest)) => ConnectorSource::File {
            component: component.clone(),
            manifest: manifest.clone(),
        },
        (Some(_), None) => {
            return Err(AppError::new(
                Exit::Usage,
                "--connector needs --manifest FILE.toml",
            ));
        }
        _ => ConnectorSource::Builtin,
    };
    match cli.command {
        Command::Import { what, file } => {
            let conn = db::open(&db_path)?;
            let summary = match what {
                ImportKind::Clients => crate::import::clients(&conn, &file)?,
                ImportKind::Configurations => crate::import::configurations(&conn, &file)?,
            };
            println!("{summary}");
            Ok(())
        }
        Command::Audit { component, json } => {
            crate::inspect::audit_command(&component, cli.manifest.as_deref(), json)
        }
        Command::Check {
            component,
            endpoint,
            json,
        } => {
            let manifest = cli
                .manifest
                .clone()
                .ok_or_else(|| AppError::new(Exit::Usage, "check needs --manifest FILE.toml"))?;
            crate::check::check_command(&component, &manifest, endpoint.as_deref(), json)
        }
        Command::Itglue(args) => {
            if matches!(source, ConnectorSource::File { .. }) {
                // `itglue` with --connector runs that component under the given manifest;
                // the manifest's name must still be `itglue`.
            } else if cli.manifest.is_some() {
                return Err(AppError::new(
                    Exit::Usage,
                    "--manifest needs --connector FILE.wasm",
                ));
            }
            connector_command(&db_path, &source, "itglue", args.command)
        }
        Command::Other(words) => {
            let mut words = words.into_iter();
            let name = words
                .next()
                .map(|w| w.to_string_lossy().to_string())
                .unwrap_or_default();
            if matches!(source, ConnectorSource::Builtin) {
                return Err(AppError::new(
                    Exit::Usage,
                    format!(
                        "unknown command {name:?}; run another connector with --connector FILE.wasm --manifest FILE.toml {name} ..."
                    ),
                ));
            }
            let args = ConnectorArgs::try_parse_from(words)
                .map_err(|e| AppError::new(Exit::Usage, e.to_string().trim().to_string()))?;
            connector_command(&db_path, &source, &name, args.command)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            AppError::new(
                Exit::Failure,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

fn connector_command(
    db_path: &std::path::Path,
    source: &ConnectorSource,
    name: &str,
    command: ConnectorCommand,
) -> Result<(), AppError> {
    let mut app = App::open(db_path, source)?;
    if app.name() != name {
        return Err(AppError::new(
            Exit::Usage,
            format!(
                "the loaded connector is named {:?}, not {name:?}",
                app.name()
            ),
        ));
    }
    match command {
        ConnectorCommand::Test { target, json } => test_command(&app, target, false, json),
        ConnectorCommand::Connect(target) => test_command(&app, target, true, false),
        ConnectorCommand::Status { json } => status_command(&app, json),
        ConnectorCommand::Activity { json, limit } => activity_command(&app, json, limit),
        ConnectorCommand::Disconnect => {
            let removed = db::delete_connection(&app.conn, app.name())?;
            let links: i64 = app.conn.query_row(
                "SELECT count(*) FROM links WHERE connector = ?1",
                [app.name()],
                |r| r.get(0),
            )?;
            if removed {
                println!(
                    "Disconnected: the stored key and connection settings are deleted; {links} links stay."
                );
            } else {
                println!("Not connected; nothing to delete ({links} links stay).");
            }
            Ok(())
        }
        ConnectorCommand::Sync {
            kind,
            dry_run,
            json,
        } => {
            let rt = runtime()?;
            crate::sync::sync_command(&mut app, &rt, kind, dry_run, json)
        }
        ConnectorCommand::Links { json } => crate::review::links_command(&app, json),
        ConnectorCommand::Unplaced { json } => crate::review::unplaced_command(&app, json),
        ConnectorCommand::Link {
            kind,
            itglue_id,
            scopable_id,
        } => crate::review::link_command(&app, kind, &itglue_id, &scopable_id),
        ConnectorCommand::Ignore { kind, itglue_id } => {
            crate::review::ignore_command(&app, kind, &itglue_id)
        }
        ConnectorCommand::Reset { kind, itglue_id } => {
            crate::review::reset_command(&app, kind, &itglue_id)
        }
    }
}

/// Reads the key: the connector's environment variable (`<NAME>_API_KEY`,
/// [`Manifest::key_env`](crate::manifest::Manifest::key_env); never one a manifest names),
/// else stdin when it is piped and not empty, else (with `prompt`) a no-echo prompt on the
/// terminal.
fn read_key(env_name: &str, service: &str, prompt: bool) -> Result<Option<String>, AppError> {
    if let Some(value) = std::env::var_os(env_name) {
        return app::clean_key(&value.to_string_lossy()).map(Some);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut text = String::new();
        // Bound what we read: a key is short; anything huge is not a key.
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| {
                AppError::new(
                    Exit::BadInput,
                    format!("cannot read the key from stdin: {e}"),
                )
            })?;
        if !text.trim().is_empty() {
            return app::clean_key(&text).map(Some);
        }
    }
    if prompt && stdin.is_terminal() {
        let typed = rpassword::prompt_password(format!("{service} API key (input hidden): "))
            .map_err(|e| AppError::new(Exit::BadInput, format!("cannot read the key: {e}")))?;
        return app::clean_key(&typed).map(Some);
    }
    Ok(None)
}

fn test_command(app: &App, target: Target, connect: bool, json_out: bool) -> Result<(), AppError> {
    let manifest = &app.connector.manifest;
    let stored = db::connection(&app.conn, app.name())?;
    let key_env = manifest.key_env();
    let given = read_key(&key_env, manifest.service(), connect || stored.is_none())?;
    let (key, using_stored) = match (given, &stored) {
        (Some(key), _) => (key, false),
        (None, Some(conn)) if !connect => (app.stored_key(conn)?, true),
        (None, _) => {
            return Err(AppError::new(
                Exit::Usage,
                format!(
                    "no API key given: set {key_env} or pipe the key on stdin{}",
                    if connect {
                        ""
                    } else {
                        " (or `connect` first to test the stored connection)"
                    }
                ),
            ));
        }
    };
    let (region, base) = match stored.as_ref().filter(|_| using_stored) {
        // The stored key only ever goes where it was connected.
        Some(conn) => {
            let base = crate::policy::BaseUrl::parse_endpoint(&conn.endpoint)
                .map_err(|e| AppError::new(Exit::BadInput, format!("stored endpoint: {e}")))?;
            if target.region.is_some() || target.endpoint.is_some() {
                let region = target.region.clone().unwrap_or_else(|| conn.region.clone());
                let asked = app.base_url(&region, target.endpoint.as_deref())?;
                if asked != base {
                    return Err(AppError::new(
                        Exit::Usage,
                        format!(
                            "the stored key is only sent to {}, where it was connected; to test {}, give the key ({key_env} or stdin)",
                            conn.endpoint,
                            asked.to_url(),
                        ),
                    ));
                }
            }
            (conn.region.clone(), base)
        }
        None => {
            let region = target
                .region
                .clone()
                .unwrap_or_else(|| manifest.default_region.clone());
            let base = app.base_url(&region, target.endpoint.as_deref())?;
            (region, base)
        }
    };
    let ctx = app.call_context(base.clone(), &key)?;
    let rt = runtime()?;
    let verified_before = stored
        .as_ref()
        .filter(|_| using_stored)
        .map(|c| c.verified_at.clone());
    let verified = rt
        .block_on(app.test(&ctx))
        .map_err(|e| app::call_failure(&e, manifest, &region, &base, verified_before.as_deref()))?;
    let where_ = format!(
        "region {}, {}",
        display::safe(&region),
        display::safe(&base.to_url())
    );
    if connect {
        let vault = Vault::open(&app.db_path, true)?
            .ok_or_else(|| AppError::new(Exit::BadInput, "cannot create the vault key file"))?;
        let account = db::account_id(&app.conn)?;
        let endpoint = base.to_url();
        let (nonce, ciphertext) = vault.seal(
            &key,
            crate::vault::Binding {
                account: &account,
                connector: app.name(),
                region: &region,
                endpoint: &endpoint,
            },
        );
        db::save_connection(
            &app.conn,
            app.name(),
            &db::StoredConnection {
                region: region.clone(),
                endpoint: base.to_url(),
                key_nonce: nonce,
                key_ciphertext: ciphertext,
                verified_at: db::now(),
            },
        )?;
        println!("{}", display::safe(&verified.detail));
        println!("Connected ({where_}). The key is stored encrypted and will not be shown again.");
    } else {
        if using_stored {
            db::touch_verified(&app.conn, app.name())?;
        }
        if json_out {
            print_json(&json!({
                "verified": true,
                "detail": verified.detail,
                "total_organizations": verified.total_organizations,
                "region": region,
                "endpoint": base.to_url(),
                "stored_connection": using_stored,
            }));
        } else {
            println!("{} ({where_})", display::safe(&verified.detail));
        }
    }
    Ok(())
}

fn status_command(app: &App, json: bool) -> Result<(), AppError> {
    let stored = db::connection(&app.conn, app.name())?;
    let summary = |kind: &str| crate::sync::last_run_summary(&app.conn, app.name(), kind);
    let organization = summary("organization")?;
    let configuration = summary("configuration")?;
    if json {
        let value = json!({
            "connected": stored.is_some(),
            "region": stored.as_ref().map(|c| c.region.clone()),
            "endpoint": stored.as_ref().map(|c| c.endpoint.clone()),
            "verified_at": stored.as_ref().map(|c| c.verified_at.clone()),
            "organization": organization,
            "configuration": configuration,
        });
        print_json(&value);
        return Ok(());
    }
    match &stored {
        Some(c) => println!(
            "Connected to {} (region {}, {}); key last verified {}.",
            display::safe(app.connector.manifest.service()),
            display::safe(&c.region),
            display::safe(&c.endpoint),
            display::safe(&c.verified_at)
        ),
        None => println!(
            "Not connected. Run `scopable-host {} connect --region us|eu|au`.",
            display::safe(app.name())
        ),
    }
    for (label, s) in [
        ("Organizations", &organization),
        ("Configurations", &configuration),
    ] {
        match s {
            Value::Null => println!("{label}: never synced."),
            s => {
                let status = display::safe(s["status"].as_str().unwrap_or(""));
                let mut line = format!(
                    "{label}: last sync {} ({status}): {} fetched, {} linked, {} skipped, {} errored.",
                    display::safe(
                        s["finished_at"]
                            .as_str()
                            .or(s["started_at"].as_str())
                            .unwrap_or("")
                    ),
                    s["fetched"],
                    s["linked"],
                    s["skipped"],
                    s["errored"]
                );
                if let Some(err) = s["error"].as_str() {
                    // A stored error can quote the component or the API.
                    line.push_str(&format!(" Error: {}", display::safe(err)));
                }
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn activity_command(app: &App, json: bool, limit: usize) -> Result<(), AppError> {
    let mut entries: Vec<(String, i64, Value)> = Vec::new();
    for (id, a) in db::audit_records(&app.conn, app.name(), limit)? {
        let mut v = serde_json::to_value(&a).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("kind".into(), json!("request"));
        }
        entries.push((a.at.clone(), id, v));
    }
    for (id, run) in crate::sync::recent_runs(&app.conn, app.name(), limit)? {
        let at = run["started_at"].as_str().unwrap_or("").to_string();
        let mut v = run;
        if let Value::Object(map) = &mut v {
            let kind = map.remove("kind").unwrap_or(Value::Null);
            map.insert("sync_kind".into(), kind);
            map.insert("kind".into(), json!("sync"));
            map.insert("at".into(), json!(at.clone()));
        }
        entries.push((at, id, v));
    }
    // Newest first; ties (same second) keep insertion order newest first.
    entries.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    entries.truncate(limit);
    if json {
        print_json(&Value::Array(entries.into_iter().map(|e| e.2).collect()));
        return Ok(());
    }
    if entries.is_empty() {
        println!("No activity yet.");
    }
    for (_, _, e) in entries {
        // Paths (storage keys) and hosts come from the component: shown safe and bounded.
        let text = |k: &str| display::safe(e[k].as_str().unwrap_or("")).into_owned();
        if e["kind"] == "sync" {
            println!(
                "{}  sync {:<13} {:<7} fetched {} linked {} skipped {} errored {} requests {}{}",
                text("at"),
                text("sync_kind"),
                text("status"),
                e["fetched"],
                e["linked"],
                e["skipped"],
                e["errored"],
                e["requests"],
                if e["dry_run"] == true {
                    " (dry run)"
                } else {
                    ""
                }
            );
        } else {
            println!(
                "{}  {:<7} {:<6} {}{}  {}{}  {} B  {} ms",
                text("at"),
                text("capability"),
                text("method"),
                text("host"),
                text("path"),
                text("decision"),
                e["rule"]
                    .as_str()
                    .map(|r| format!(" ({})", display::safe(r)))
                    .unwrap_or_default(),
                e["bytes"],
                e["duration_ms"]
            );
        }
    }
    Ok(())
}

/// Prints a JSON value on stdout: exact values, with the characters a terminal would act on
/// that JSON allows raw (C1 and bidirectional controls, line separators) written as `\uXXXX`
/// escapes ([`display::json_text`]).
pub fn print_json(value: &Value) {
    println!("{}", display::json_text(value));
}
