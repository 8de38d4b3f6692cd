//! The `scopable-host` command line: argument parsing, key input, and human or JSON output.
//! Scripts depend on the commands, JSON shapes and exit statuses; keep them stable.

use crate::output::{print_json, print_line, runtime};
use clap::{Args, Parser, Subcommand, ValueEnum};
use scopable_sandbox::display;
use scopable_store::{DEFAULT_ACCOUNT, Db, Location};
use scopable_sync::app::{self, App, AppError, ConnectorSource, Exit};
use scopable_sync::kinds::RecordKind;
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
  4  the connector's service (IT Glue for `itglue`) unavailable after retries (network, 5xx, 429,
     timeouts), or a sync over sync_timeout_secs
  5  the connector failed (trap, CPU, memory or call_timeout_ms limit, denied request,
     unreadable response, a redirect or client error from the API: not retried)
  6  bad input data (import file, ids, vault, database file)

Examples:
  scopable-host import clients clients.csv
  ITGLUE_API_KEY=... scopable-host itglue connect --region eu
  scopable-host itglue sync organizations
  scopable-host itglue unplaced --json
  scopable-host search clients \"acme inc\"
  scopable-host check my-connector.wasm --manifest my-connector.toml";

/// Runs sandboxed Scopable connectors and links what they find to existing records.
#[derive(Debug, Parser)]
#[command(name = "scopable-host", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The database: a SQLite file, or postgres://user:password@host:port/database (default:
    /// $SCOPABLE_DB, else ./scopable.db). PostgreSQL needs SCOPABLE_VAULT_KEY.
    #[arg(
        long,
        visible_alias = "database",
        global = true,
        value_name = "PATH|URL"
    )]
    db: Option<PathBuf>,
    /// The account to act for (created on first use, with the IT Glue integration on).
    #[arg(long, global = true, value_name = "ID", default_value = DEFAULT_ACCOUNT)]
    account: String,
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
    /// Pin a manifest to a rebuilt component: rewrite its `sha256` line (with --manifest),
    /// only if the host would load the component under it.
    Pin {
        /// The component.
        component: PathBuf,
    },
    /// Find Scopable clients or configurations by name (configurations also by hostname,
    /// serial number or MAC address), compared as the matcher compares them; prints ids to
    /// paste into `link`. Reads the database only.
    Search {
        /// Which records.
        #[arg(value_enum)]
        what: SearchWhat,
        /// Part of a name, or a hostname, serial number or MAC address.
        query: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show at most this many records (1 to 10000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=scopable_sync::search::MAX_LIMIT as u64))]
        limit: u64,
    },
    /// Run the integration runtime: the HTTP API and the Integrations page for every account,
    /// and syncs as jobs.
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// How many syncs run at once.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
        /// Send every account's calls of a connector to this base URL instead of its
        /// regions (a proxy, or the simulator in a demo): CONNECTOR=URL.
        #[arg(long, value_name = "CONNECTOR=URL")]
        endpoint: Vec<String>,
        /// The URL people reach the page at; https makes the session cookie Secure.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// API requests a second allowed per token (and twice that per client address).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100000))]
        requests_per_second: u32,
    },
    /// Manage accounts (tenants), their tokens and features.
    #[command(subcommand)]
    Accounts(crate::accounts_cmd::AccountsCommand),
    /// The vault's master key.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// The database itself: copy a SQLite file into PostgreSQL.
    #[command(subcommand)]
    Db(crate::db_cmd::DbCommand),
    /// The built-in IT Glue connector.
    Itglue(ConnectorArgs),
    /// Another connector, by its manifest's name (with --connector and --manifest).
    #[command(external_subcommand)]
    Other(Vec<OsString>),
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Re-encrypt every stored key under a new master key, in one transaction.
    Rotate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SearchWhat {
    #[value(alias = "client")]
    Clients,
    #[value(alias = "configuration")]
    Configurations,
}

impl SearchWhat {
    fn kind(self) -> scopable_sync::search::SearchKind {
        match self {
            SearchWhat::Clients => scopable_sync::search::SearchKind::Client,
            SearchWhat::Configurations => scopable_sync::search::SearchKind::Configuration,
        }
    }
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
  scopable-host search clients \"acme\"                     # find the client's id
  scopable-host itglue link organization 123456 c-42      # match by hand, or change a match
  scopable-host itglue link organization 123456 --find \"Acme Inc\"   # only if one client matches
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
    /// The region, one of the manifest's `[regions]` (the built-in connector's: us, eu, au).
    #[arg(long, value_name = "REGION")]
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
        kind: KindArg,
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
        kind: KindArg,
        /// The record's id in the source (the documentation tool).
        #[arg(value_name = "SOURCE_ID")]
        source_id: String,
        /// The Scopable id (or give --find).
        #[arg(required_unless_present = "find")]
        scopable_id: Option<String>,
        /// Link to the one Scopable record this query finds, as `search` finds it (for a
        /// configuration: within its organization's client); refused unless exactly one.
        #[arg(long, value_name = "QUERY", conflicts_with = "scopable_id")]
        find: Option<String>,
        /// Take the target from the record linked to it automatically (without asking).
        #[arg(long)]
        take: bool,
    },
    /// Never link this record, and stop listing it as unplaced.
    Ignore {
        /// Which kind of record.
        #[arg(value_enum)]
        kind: KindArg,
        /// The record's id in the source (the documentation tool).
        #[arg(value_name = "SOURCE_ID")]
        source_id: String,
    },
    /// Drop the manual decision (link or ignore) on a record.
    Reset {
        /// Which kind of record.
        #[arg(value_enum)]
        kind: KindArg,
        /// The record's id in the source (the documentation tool).
        #[arg(value_name = "SOURCE_ID")]
        source_id: String,
    },
    /// Every ignored record, with its name, and when and by whom it was ignored.
    Ignored {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Audit records, sync runs and decisions, newest first.
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

impl ConnectorCommand {
    /// Whether the command only reads the database: it then opens it read-only
    /// ([`App::open_read_only`]), and never creates, migrates or changes it.
    fn only_reads(&self) -> bool {
        matches!(
            self,
            ConnectorCommand::Status { .. }
                | ConnectorCommand::Links { .. }
                | ConnectorCommand::Unplaced { .. }
                | ConnectorCommand::Activity { .. }
                | ConnectorCommand::Ignored { .. }
        )
    }
}

/// A record kind, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Organizations (linked to clients).
    #[value(alias = "organizations")]
    Organization,
    /// Configurations (linked to configurations).
    #[value(alias = "configurations")]
    Configuration,
}

impl From<KindArg> for RecordKind {
    fn from(k: KindArg) -> RecordKind {
        match k {
            KindArg::Organization => RecordKind::Organization,
            KindArg::Configuration => RecordKind::Configuration,
        }
    }
}

/// Parses the arguments, runs the command, and returns the exit status.
pub fn main() -> std::process::ExitCode {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Exit::Usage as u8 } else { 0 };
            let _ = e.print();
            return std::process::ExitCode::from(code);
        }
    };
    // A service logs its requests and jobs; a command only its errors.
    let default = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCOPABLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the message holds (it can quote a component or the API).
            eprintln!("error: {}", display::error_line(&e.message));
            std::process::ExitCode::from(e.exit as u8)
        }
    }
}

/// The connector shipped inside this program.
fn builtin_source() -> Result<ConnectorSource, AppError> {
    let manifest = scopable_builtin::itglue_manifest()
        .map_err(|e| AppError::new(Exit::Failure, e.to_string()))?;
    Ok(ConnectorSource::Embedded {
        component: scopable_builtin::ITGLUE_WASM,
        manifest: Box::new(manifest),
    })
}

fn run(cli: Cli) -> Result<(), AppError> {
    // Lines for the admin (retry notices) go to stderr; stdout carries the result.
    crate::output::notices_to_stderr();
    let db_path = Location::resolve(cli.db.clone())
        .map_err(|e| AppError::new(Exit::Usage, format!("--db: {e}")))?;
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
        _ => builtin_source()?,
    };
    let account = cli.account.clone();
    if !scopable_store::accounts::valid_account_id(&account) {
        return Err(AppError::new(
            Exit::Usage,
            format!(
                "--account {:?} is not an account id: lowercase letters, digits and dashes, at most 63, starting with a letter or digit",
                display::safe(&account)
            ),
        ));
    }
    match cli.command {
        Command::Serve {
            listen,
            workers,
            endpoint,
            public_url,
            requests_per_second,
        } => crate::serve_cmd::serve_command(
            &db_path,
            &source,
            crate::serve_cmd::ServeArgs {
                listen,
                workers: usize::from(workers),
                endpoints: endpoint,
                public_url,
                requests_per_second,
            },
        ),
        Command::Accounts(command) => {
            crate::accounts_cmd::accounts_command(&db_path, command, &crate::review::cli_actor())
        }
        Command::Vault(VaultCommand::Rotate) => crate::accounts_cmd::vault_rotate(&db_path),
        Command::Db(command) => crate::db_cmd::db_command(&db_path, command),
        Command::Import { what, file } => {
            let db = open_for_cli(&db_path, &account)?;
            let imported = match what {
                ImportKind::Clients => scopable_sync::import::clients(&db, &file)?,
                ImportKind::Configurations => scopable_sync::import::configurations(&db, &file)?,
            };
            scopable_store::accounts::record_event(
                &db,
                &crate::review::cli_actor(),
                match what {
                    ImportKind::Clients => "import clients",
                    ImportKind::Configurations => "import configurations",
                },
                None,
                Some(&imported.to_string()),
            )?;
            for warning in &imported.warnings {
                // Column names come from the file.
                eprintln!("warning: {}", display::error_line(warning));
            }
            print_line(format_args!("{imported}"));
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
            crate::check_cmd::check_command(&component, &manifest, endpoint.as_deref(), json)
        }
        Command::Pin { component } => {
            let manifest = cli
                .manifest
                .clone()
                .ok_or_else(|| AppError::new(Exit::Usage, "pin needs --manifest FILE.toml"))?;
            crate::pin::pin_command(&component, &manifest)
        }
        Command::Search {
            what,
            query,
            json,
            limit,
        } => search_command(&db_path, &account, what.kind(), &query, json, limit),
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
            connector_command(&db_path, &account, &source, "itglue", args.command)
        }
        Command::Other(words) => {
            let mut words = words.into_iter();
            let name = words
                .next()
                .map(|w| w.to_string_lossy().to_string())
                .unwrap_or_default();
            if matches!(source, ConnectorSource::Embedded { .. }) {
                let message = match did_you_mean(&name) {
                    Some(known) => format!("unknown command {name:?}; did you mean {known:?}?"),
                    None => format!(
                        "unknown command {name:?}; run another connector with --connector FILE.wasm --manifest FILE.toml {name} ..."
                    ),
                };
                return Err(AppError::new(Exit::Usage, message));
            }
            let args = ConnectorArgs::try_parse_from(words)
                .map_err(|e| AppError::new(Exit::Usage, e.to_string().trim().to_string()))?;
            connector_command(&db_path, &account, &source, &name, args.command)
        }
    }
}

/// The command whose name is closest to a mistyped `name` (at most two edits away), if any.
fn did_you_mean(name: &str) -> Option<String> {
    use clap::CommandFactory;
    let typed = name.to_lowercase();
    let max = match typed.chars().count() {
        0..=2 => return None,
        3..=5 => 1,
        _ => 2,
    };
    Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .filter(|known| known != "help")
        .map(|known| (edit_distance(&typed, &known), known))
        .filter(|(distance, _)| *distance <= max)
        .min()
        .map(|(_, known)| known)
}

/// The Levenshtein distance between two strings, counted in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `search clients|configurations QUERY [--json] [--limit N]`: opens the database read-only
/// (never creating or migrating it) and lists what [`scopable_sync::search::search`] finds.
fn search_command(
    db_path: &Location,
    account: &str,
    kind: scopable_sync::search::SearchKind,
    query: &str,
    json: bool,
    limit: u64,
) -> Result<(), AppError> {
    let db = Db::open_read_only(db_path, account)?;
    let limit = usize::try_from(limit).unwrap_or(scopable_sync::search::MAX_LIMIT);
    let found = scopable_sync::search::search(&db, kind, query, None, Some(limit))?;
    if json {
        let hits = serde_json::to_value(&found.hits).map_err(|e| {
            AppError::new(
                Exit::Failure,
                format!("cannot write the search as JSON: {e}"),
            )
        })?;
        print_json(&hits);
        return Ok(());
    }
    let plural = kind.plural();
    if found.hits.is_empty() {
        print_line(format_args!(
            "No {plural} match \"{}\".",
            display::safe(query)
        ));
        return Ok(());
    }
    let counted = if found.total == 1 {
        format!("1 {} matches", kind.as_str())
    } else {
        format!("{} {plural} match", found.total)
    };
    print_line(format_args!("{counted} \"{}\":", display::safe(query)));
    for hit in &found.hits {
        // Ids, names and identifiers come from imported files: each is shown safe and
        // bounded, the id first so that it can be pasted.
        let mut line = format!(
            "  {:<12}  {:<32}",
            display::safe(&hit.id),
            display::safe_within(&hit.name, SEARCH_NAME_COLUMN)
        );
        if let (Some(id), Some(name)) = (&hit.client_id, &hit.client_name) {
            line.push_str(&format!(
                "  client {} ({})",
                display::safe(id),
                display::safe_within(name, SEARCH_NAME_COLUMN)
            ));
        }
        line.push_str("  ");
        line.push_str(hit.matched.as_str());
        if hit.matched != scopable_sync::search::Field::Name {
            line.push(' ');
            line.push_str(&display::safe(&hit.matched_value));
        }
        if !hit.exact {
            line.push_str(" (partial)");
        }
        print_line(format_args!("{}", line.trim_end()));
    }
    if found.total > found.hits.len() {
        print_line(format_args!(
            "Showing {} of {}; narrow the query or raise --limit.",
            found.hits.len(),
            found.total
        ));
    }
    let record = match kind {
        scopable_sync::search::SearchKind::Client => "organization",
        scopable_sync::search::SearchKind::Configuration => "configuration",
    };
    print_line(format_args!(
        "Link by hand: scopable-host CONNECTOR link {record} SOURCE_ID ID"
    ));
    Ok(())
}

/// The width of the name columns of `search`, in characters.
const SEARCH_NAME_COLUMN: usize = 32;

/// Opens the database for `account` to change it: the account is created on first use (with
/// the IT Glue integration on), and refused when an operator switched the feature off.
fn open_for_cli(db_path: &Location, account: &str) -> Result<Db, AppError> {
    let db = Db::open(db_path, account)?;
    scopable_store::accounts::ensure_for_cli(&db, &crate::review::cli_actor())
        .map_err(|e| AppError::new(Exit::Failure, e.to_string()))?;
    Ok(db)
}

/// Refuses a connector command for an account whose feature is off (the command line obeys
/// the flag as the API does). Only the built-in connector is behind a flag; a connector the
/// operator runs from a file is the operator's choice.
fn check_feature(db: &Db, connector: &str) -> Result<(), AppError> {
    if connector != scopable_store::accounts::ITGLUE {
        return Ok(());
    }
    let exists = scopable_store::accounts::get(db, db.account())?.is_some();
    if exists && !scopable_store::accounts::feature_enabled(db, connector)? {
        return Err(AppError::new(
            Exit::Failure,
            format!(
                "The IT Glue integration is not available for your account ({}); an operator can enable it with `scopable-host accounts enable {} {connector}`",
                display::safe(db.account()),
                display::safe(db.account())
            ),
        ));
    }
    Ok(())
}

fn connector_command(
    db_path: &Location,
    account: &str,
    source: &ConnectorSource,
    name: &str,
    command: ConnectorCommand,
) -> Result<(), AppError> {
    let mut app = if command.only_reads() {
        App::open_read_only(db_path, account, source)?
    } else {
        open_for_cli(db_path, account)?;
        App::open(db_path, account, source)?
    };
    check_feature(&app.db, name)?;
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
            let removed = scopable_store::review::disconnect(
                &app.db,
                app.name(),
                &crate::review::cli_actor(),
            )?;
            let links = scopable_store::views::link_count(&app.db, app.name())?;
            let links = display::count(links.max(0) as u64, "link stays", "links stay");
            if removed {
                print_line(format_args!(
                    "Disconnected: the stored key and connection settings are deleted; {links}."
                ));
            } else {
                print_line(format_args!("Not connected; nothing to delete ({links})."));
            }
            Ok(())
        }
        ConnectorCommand::Sync {
            kind,
            dry_run,
            json,
        } => {
            let rt = runtime()?;
            crate::sync_cmd::sync_command(&mut app, &rt, kind.into(), dry_run, json)
        }
        ConnectorCommand::Links { json } => crate::review::links_command(&app, json),
        ConnectorCommand::Unplaced { json } => crate::review::unplaced_command(&app, json),
        ConnectorCommand::Ignored { json } => crate::review::ignored_command(&app, json),
        ConnectorCommand::Link {
            kind,
            source_id,
            scopable_id,
            find,
            take,
        } => {
            let target = match (&scopable_id, &find) {
                (_, Some(query)) => crate::review::LinkTarget::Find(query),
                (Some(id), None) => crate::review::LinkTarget::Id(id),
                (None, None) => {
                    return Err(AppError::new(
                        Exit::Usage,
                        "link needs a SCOPABLE_ID or --find QUERY",
                    ));
                }
            };
            crate::review::link_command(&app, kind.into(), &source_id, target, take)
        }
        ConnectorCommand::Ignore { kind, source_id } => {
            crate::review::ignore_command(&app, kind.into(), &source_id)
        }
        ConnectorCommand::Reset { kind, source_id } => {
            crate::review::reset_command(&app, kind.into(), &source_id)
        }
    }
}

/// Reads the key: the connector's environment variable (`<NAME>_API_KEY`,
/// [`Manifest::key_env`](scopable_sandbox::manifest::Manifest::key_env); never one a manifest names),
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
        let service = scopable_sandbox::display::safe(service);
        let typed = rpassword::prompt_password(format!("{service} API key (input hidden): "))
            .map_err(|e| AppError::new(Exit::BadInput, format!("cannot read the key: {e}")))?;
        return app::clean_key(&typed).map(Some);
    }
    Ok(None)
}

fn test_command(app: &App, target: Target, connect: bool, json_out: bool) -> Result<(), AppError> {
    let manifest = &app.connector.manifest;
    let stored = scopable_store::connections::connection(&app.db, app.name())?;
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
            let base = scopable_sandbox::policy::BaseUrl::parse_endpoint(&conn.endpoint)
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
    let rt = runtime()?;
    let verified_before = stored
        .as_ref()
        .filter(|_| using_stored)
        .map(|c| c.verified_at.clone());
    let verified = scopable_sync::connection::test_key(
        app,
        &rt,
        &region,
        &base,
        &key,
        verified_before.as_deref(),
    )?;
    let where_ = format!(
        "region {}, {}",
        display::safe(&region),
        display::safe(&base.to_url())
    );
    if connect {
        scopable_sync::connection::store_key(
            app,
            &region,
            &base,
            &key,
            &crate::review::cli_actor(),
        )?;
        println!("{}", display::safe(&verified.detail));
        println!("Connected ({where_}). The key is stored encrypted and will not be shown again.");
    } else {
        if using_stored {
            scopable_store::connections::touch_verified(&app.db, app.name())?;
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
    let regions: Vec<&str> = app
        .connector
        .manifest
        .regions
        .keys()
        .map(String::as_str)
        .collect();
    let database = app.location.shown();
    let value = scopable_sync::status::status_json(&app.db, app.name(), &database)?;
    if json {
        print_json(&value);
        return Ok(());
    }
    let text = |v: &Value| display::safe(v.as_str().unwrap_or("")).into_owned();
    if value["connected"] == true {
        print_line(format_args!(
            "Connected to {} (region {}, {}); key last verified {}; database {}.",
            display::safe(app.connector.manifest.service()),
            text(&value["region"]),
            text(&value["endpoint"]),
            text(&value["verified_at"]),
            display::safe(&database)
        ));
        if let Some(proxy) = value["proxy"].as_str() {
            print_line(format_args!(
                "Requests go through the proxy {} (HTTPS_PROXY).",
                display::safe(proxy)
            ));
        }
    } else {
        print_line(format_args!(
            "Not connected (database {}). Run `scopable-host {} connect --region {}`.",
            display::safe(&database),
            display::safe(app.name()),
            display::safe(&regions.join("|"))
        ));
    }
    for (label, kind) in [
        ("Organizations", "organization"),
        ("Configurations", "configuration"),
    ] {
        print_line(format_args!("{label}: {}", summary_text(&value[kind])));
    }
    Ok(())
}

/// One kind's line in `status`, after its label: the last sync, and the last good counts when
/// that sync is running or failed.
fn summary_text(s: &Value) -> String {
    if s.is_null() {
        return "never synced.".into();
    }
    // Stored errors can quote the component or the API: shown inert and bounded.
    let text = |v: &Value| display::safe(v.as_str().unwrap_or("")).into_owned();
    let when = |v: &Value| {
        if v["finished_at"].is_string() {
            text(&v["finished_at"])
        } else {
            text(&v["started_at"])
        }
    };
    let counts = |v: &Value| {
        format!(
            "{} fetched, {} linked, {} skipped, {} errored",
            v["fetched"], v["linked"], v["skipped"], v["errored"]
        )
    };
    let last_ok = || match &s["last_ok"] {
        Value::Null => " No sync has succeeded yet.".to_string(),
        ok => format!(" Last good sync {}: {}.", when(ok), counts(ok)),
    };
    match s["status"].as_str() {
        Some("ok") => format!("last sync {} (ok): {}.", when(s), counts(s)),
        Some("running") => format!(
            "a sync is running, started {} (running).{}",
            text(&s["started_at"]),
            last_ok()
        ),
        _ => {
            let error = text(&s["error"]);
            format!(
                "last sync {} ({}). Error: {}.{}",
                when(s),
                text(&s["status"]),
                error.trim_end_matches('.'),
                last_ok()
            )
        }
    }
}

fn activity_command(app: &App, json: bool, limit: usize) -> Result<(), AppError> {
    let entries = scopable_sync::status::activity(&app.db, app.name(), limit)?;
    if json {
        print_json(&Value::Array(entries));
        return Ok(());
    }
    if entries.is_empty() {
        println!("No activity yet.");
    }
    for e in entries {
        // Paths (storage keys) and hosts come from the component, ids from the API, actors
        // from whoever decided: shown safe and bounded.
        let text = |k: &str| display::safe(e[k].as_str().unwrap_or("")).into_owned();
        if e["kind"] == "decision" {
            let record = match (e["record_kind"].as_str(), e["source_id"].as_str()) {
                (Some(kind), Some(id)) => {
                    format!(" {} {}", display::safe(kind), display::safe(id))
                }
                _ => String::new(),
            };
            let target = match (e["action"].as_str(), e["scopable_id"].as_str()) {
                (Some("reset"), Some(target)) => {
                    format!(" (was linked to {})", display::safe(target))
                }
                (_, Some(target)) => format!(" -> {}", display::safe(target)),
                _ => String::new(),
            };
            println!(
                "{}  decision {}{record}{target}  by {}",
                text("at"),
                text("action"),
                text("actor")
            );
            continue;
        }
        if e["kind"] == "event" {
            println!(
                "{}  {}{}  by {}",
                text("at"),
                text("action"),
                e["detail"]
                    .as_str()
                    .map(|d| format!(" ({})", display::safe(d)))
                    .unwrap_or_default(),
                text("actor")
            );
            continue;
        }
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
                "{}  {:<7} {:<6} {}{}  {}{}{}  {} B  {} ms{}",
                text("at"),
                text("capability"),
                text("method"),
                text("host"),
                text("path"),
                text("decision"),
                e["status"]
                    .as_u64()
                    .map(|status| format!(" HTTP {status}"))
                    .unwrap_or_default(),
                e["rule"]
                    .as_str()
                    .map(|r| format!(" ({})", display::safe(r)))
                    .unwrap_or_default(),
                e["bytes"],
                e["duration_ms"],
                e["connection"]
                    .as_str()
                    .map(|c| format!("  {}", display::safe(c)))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Makes `println!` anywhere in the program behave like [`crate::output::print_line`] when stdout's reader
/// has gone: the standard library panics then ("failed printing to stdout"), and this ends the
/// process quietly with status 0 instead of reporting a crash (status 101). Every other panic
/// goes to the default hook.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("");
        if message.starts_with("failed printing to stdout")
            && message.to_ascii_lowercase().contains("broken pipe")
        {
            std::process::exit(0);
        }
        default(info);
    }));
}
