//! Copying a SQLite database into an empty PostgreSQL one (moving an installation to a server):
//! every row of every table, in one PostgreSQL transaction, with each stored key re-sealed under
//! the target's master key. The SQLite file is only read.
//!
//! The tables and their columns come from the target's own schema (`information_schema`), so a
//! column that a later migration adds on both sides is copied without a change here. The
//! target must be empty: a copy never merges into, or overwrites, a database in use.

use crate::db::{self, DbError};
use crate::handle::{Db, Tx};
use crate::sql::{self, MAX_PARAMETERS, Sql, Value};
use crate::values;
use crate::vault::{Binding, MASTER_KEY_ENV, Vault, VaultError, key_file_for};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;

/// Rows read from SQLite at a time (written in as few statements as `sql::insert_many` allows).
const CHUNK_ROWS: usize = 1000;

/// `meta` rows that belong to one database and are never copied: the key-check value (the
/// target's own is written) and a schema version (each side keeps its own).
const META_NOT_COPIED: [&str; 2] = ["vault_key_check", "schema_version"];

/// The `meta` row holding the vault's key-check value ([`Vault::check_value`]).
const KEY_CHECK: &str = "vault_key_check";

/// Why a copy was refused or failed; nothing was written to the target.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source is not a SQLite file.
    #[error(
        "the database to copy from must be a SQLite file, and {shown} is a PostgreSQL database"
    )]
    SourceNotSqlite {
        /// The source, as shown.
        shown: String,
    },
    /// The target is not a PostgreSQL database.
    #[error("the database to copy into must be PostgreSQL, and {shown} is a SQLite file")]
    TargetNotPostgres {
        /// The target, as shown.
        shown: String,
    },
    /// The source's schema is not this program's.
    #[error(
        "the SQLite database is at schema version {found}, not this program's {expected}; nothing was copied (run any command that writes on it with this version of scopable-host first)"
    )]
    SourceSchema {
        /// Its version.
        found: i64,
        /// This program's.
        expected: i64,
    },
    /// The target's schema is not this program's.
    #[error(
        "the PostgreSQL database {shown} is at schema version {found}, not this program's {expected}; nothing was copied (use the scopable-host that its replicas run)"
    )]
    TargetSchema {
        /// The target, as shown.
        shown: String,
        /// Its version.
        found: i64,
        /// This program's.
        expected: i64,
    },
    /// The target holds rows already.
    #[error(
        "the PostgreSQL database {shown} is not empty (the table {table} has rows); nothing was copied: copy into a new, empty database"
    )]
    TargetNotEmpty {
        /// The target, as shown.
        shown: String,
        /// The first table found with rows.
        table: String,
    },
    /// The two databases do not have the same tables and columns.
    #[error("the two databases' schemas differ: {detail}; nothing was copied")]
    SchemaMismatch {
        /// What differs.
        detail: String,
    },
    /// A column of the target has a type the copy does not write.
    #[error(
        "the PostgreSQL column {table}.{column} has the type {data_type}, which the copy does not write; nothing was copied"
    )]
    UnsupportedColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type, as `information_schema` names it.
        data_type: String,
    },
    /// A value of the source does not fit its column in the target.
    #[error(
        "a value of {table}.{column} in the SQLite database does not fit its PostgreSQL column ({detail}); nothing was copied"
    )]
    BadValue {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What was wrong.
        detail: String,
    },
    /// A stored key does not decrypt with the source's master key.
    #[error(
        "the stored key of {connector} in account {account:?} does not decrypt with the SQLite database's master key ({MASTER_KEY_ENV}, or the key file beside it); nothing was copied (reconnect that account first, or give the master key it was stored with)"
    )]
    Undecryptable {
        /// The key's account.
        account: String,
        /// The key's connector.
        connector: String,
    },
    /// A stored key belongs to an account that does not exist, so its binding is unknown.
    #[error(
        "a stored key of {connector} belongs to the account {account:?}, which does not exist; nothing was copied (remove that account's data with `scopable-host accounts remove {account}`)"
    )]
    Orphaned {
        /// The key's account.
        account: String,
        /// The key's connector.
        connector: String,
    },
    /// The target holds a key-check value of another master key.
    #[error(
        "the PostgreSQL database {shown} holds the key-check value of another master key than the one given in {MASTER_KEY_ENV}; nothing was copied (give the {MASTER_KEY_ENV} its replicas use)"
    )]
    WrongMasterKey {
        /// The target, as shown.
        shown: String,
    },
    /// The source's master key could not be read.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a copy wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Each table, in the order it was written (parents before children), with its rows.
    pub tables: Vec<(String, u64)>,
    /// How many stored keys were re-sealed under the target's master key.
    pub keys_resealed: usize,
}

impl Copied {
    /// Every row written.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// The master keys of a copy: stored keys are opened with `source`'s and sealed with
/// `target`'s, and the target's key-check value is `target`'s.
#[derive(Debug, Clone, Copy)]
pub struct MasterKeys<'a> {
    /// The SQLite database's master key.
    pub source: &'a Vault,
    /// The PostgreSQL database's master key.
    pub target: &'a Vault,
}

/// Copies every row of every table (every account's; `meta` but its key-check value and
/// schema version) from the SQLite database `from` into the empty PostgreSQL database `to`,
/// in one transaction of `to`: all of it is written, or nothing.
///
/// With `keys`, every stored key is opened with the source's master key and sealed with the
/// target's under the same binding, and the target's key-check value is written; a key that
/// does not open refuses the copy. Without, stored keys are copied as they are and the
/// key-check value is left to the first replica that starts.
///
/// Ids of generated columns are kept, and their sequences continue after the largest. The
/// source is read in one read transaction (a consistent snapshot), `CHUNK_ROWS` rows at a
/// time, and written in statements of as many rows.
pub fn copy(from: &Db, to: &mut Db, keys: Option<MasterKeys<'_>>) -> Result<Copied, CopyError> {
    if from.is_postgres() {
        return Err(CopyError::SourceNotSqlite {
            shown: from.location().shown(),
        });
    }
    if !to.is_postgres() {
        return Err(CopyError::TargetNotPostgres {
            shown: to.location().shown(),
        });
    }
    let shown = to.location().shown();
    let source = ReadSnapshot::begin(from.sql())?;
    let found = source.sql.query_one("PRAGMA user_version", &[])?.int(0)?;
    if found != db::SCHEMA_VERSION {
        return Err(CopyError::SourceSchema {
            found,
            expected: db::SCHEMA_VERSION,
        });
    }
    let tx = to.begin()?;
    // Two copies into one database at once: the second waits, then finds it not empty.
    tx.lock("db/copy")?;
    let found = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
        .int(0)?;
    let expected = crate::pg::MIGRATIONS.len() as i64;
    if found != expected {
        return Err(CopyError::TargetSchema {
            shown,
            found,
            expected,
        });
    }
    let tables = target_tables(&tx)?;
    check_source_schema(source.sql, &tables)?;
    for table in &tables {
        let sql = format!(
            "SELECT 1 FROM {} WHERE {} LIMIT 1",
            quoted(&table.name),
            table.filter()
        );
        if tx.query_opt(&sql, &[])?.is_some() {
            return Err(CopyError::TargetNotEmpty {
                shown,
                table: table.name.clone(),
            });
        }
    }
    let stored_check =
        tx.query_opt("SELECT value FROM meta WHERE key = ?1", &values![KEY_CHECK])?;
    if let (Some(keys), Some(row)) = (keys, &stored_check)
        && !keys.target.opens_check_value(&row.text(0)?)
    {
        return Err(CopyError::WrongMasterKey { shown });
    }
    let mut reseal = match keys {
        Some(keys) => Some(Reseal::new(source.sql, keys)?),
        None => None,
    };
    let mut copied = Vec::with_capacity(tables.len());
    for table in &tables {
        let rows = copy_table(source.sql, &tx, table, reseal.as_mut())?;
        copied.push((table.name.clone(), rows));
    }
    if let Some(keys) = keys
        && stored_check.is_none()
    {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            &values![KEY_CHECK, keys.target.check_value()],
        )?;
    }
    tx.commit()?;
    Ok(Copied {
        tables: copied,
        keys_resealed: reseal.map_or(0, |r| r.count),
    })
}

/// The master key the SQLite database `from`'s stored keys are sealed with: its key file
/// (`<database>.key`), or [`MASTER_KEY_ENV`], whichever opens every stored key (the key file
/// first: with [`MASTER_KEY_ENV`] set for a PostgreSQL target, the file still holds the key the
/// SQLite database was used with). When neither opens them all, the first found (the copy then
/// names the key that does not open); `None` when there is neither.
pub fn source_master_key(from: &Db) -> Result<Option<Vault>, CopyError> {
    let mut candidates = Vec::new();
    if let Some(path) = from.location().file() {
        let key_file = key_file_for(path);
        let shown = key_file.display().to_string();
        let io = |source| VaultError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::metadata(&key_file) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(VaultError::InsecureKeyFile { path: shown }.into());
                }
                let text = std::fs::read_to_string(&key_file).map_err(io)?;
                candidates.push(Vault::from_base64(&text, &shown)?);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e).into()),
        }
    }
    if let Some(value) = std::env::var_os(MASTER_KEY_ENV) {
        candidates.push(Vault::from_base64(
            &value.to_string_lossy(),
            MASTER_KEY_ENV,
        )?);
    }
    let stored = stored_keys(from.sql())?;
    let opens_all = |vault: &Vault| {
        stored.iter().all(|k| {
            k.binding.as_deref().is_some_and(|binding| {
                vault
                    .open_secret(&k.nonce, &k.ciphertext, k.bound(binding))
                    .is_ok()
            })
        })
    };
    if candidates.is_empty() {
        return Ok(None);
    }
    let chosen = candidates.iter().position(opens_all).unwrap_or(0);
    Ok(Some(candidates.swap_remove(chosen)))
}

/// A read transaction on the SQLite source, ended (it wrote nothing) when dropped.
struct ReadSnapshot<'a> {
    sql: &'a dyn Sql,
}

impl<'a> ReadSnapshot<'a> {
    fn begin(sql: &'a dyn Sql) -> Result<ReadSnapshot<'a>, DbError> {
        // Deferred: the snapshot is taken at the first read, and no write lock is held.
        sql.execute("BEGIN", &[])?;
        Ok(ReadSnapshot { sql })
    }
}

impl Drop for ReadSnapshot<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.sql.execute("ROLLBACK", &[]) {
            tracing::warn!("cannot end the read transaction on the SQLite database: {e}");
        }
    }
}

/// How a column's values are bound for PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    /// `bigint`.
    Int,
    /// `double precision`.
    Real,
    /// `text`, `character varying`.
    Text,
    /// `bytea`.
    Bytes,
}

/// One column of a target table.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    column_type: ColumnType,
    /// Whether its values come from a sequence (an identity, or a `serial`).
    sequence: bool,
}

/// One table of the target, its columns in their order there.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
}

impl Table {
    /// The condition on the rows copied (and counted when checking the target is empty).
    fn filter(&self) -> String {
        if self.name == "meta" {
            let keys: Vec<String> = META_NOT_COPIED.iter().map(|k| format!("'{k}'")).collect();
            format!("key NOT IN ({})", keys.join(", "))
        } else {
            "TRUE".to_string()
        }
    }

    fn has_sequence(&self) -> bool {
        self.columns.iter().any(|c| c.sequence)
    }
}

/// Every table of the target's schema (but its schema version), in an order that satisfies
/// its foreign keys, each with the columns a row is inserted with (generated ones left out).
fn target_tables(tx: &dyn Sql) -> Result<Vec<Table>, CopyError> {
    let rows = tx.query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text,
                c.is_identity::text, coalesce(c.column_default::text, ''),
                c.is_generated::text
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND c.table_name <> 'schema_version'
         ORDER BY c.table_name, c.ordinal_position",
        &[],
    )?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for row in &rows {
        let (table, column, data_type) = (row.text(0)?, row.text(1)?, row.text(2)?);
        if row.text(5)? == "ALWAYS" {
            // A generated column is computed by the target itself.
            continue;
        }
        let column_type = match data_type.as_str() {
            "bigint" => ColumnType::Int,
            "double precision" => ColumnType::Real,
            "text" | "character varying" => ColumnType::Text,
            "bytea" => ColumnType::Bytes,
            _ => {
                return Err(CopyError::UnsupportedColumn {
                    table,
                    column,
                    data_type,
                });
            }
        };
        let sequence = row.text(3)? == "YES" || row.text(4)?.starts_with("nextval(");
        tables
            .entry(table.clone())
            .or_insert_with(|| Table {
                name: table,
                columns: Vec::new(),
            })
            .columns
            .push(Column {
                name: column,
                column_type,
                sequence,
            });
    }
    let references = tx.query(
        "SELECT c.relname::text, p.relname::text
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_class p ON p.oid = k.confrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE k.contype = 'f' AND n.nspname = current_schema()",
        &[],
    )?;
    let references = references
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    dependency_order(tables, &references)
}

/// `tables` with every table after the tables it refers to (`references`: child, parent),
/// by name where the order is free.
fn dependency_order(
    mut tables: BTreeMap<String, Table>,
    references: &[(String, String)],
) -> Result<Vec<Table>, CopyError> {
    let mut ordered = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables
            .keys()
            .find(|name| {
                references.iter().all(|(child, parent)| {
                    child != *name || parent == *name || !tables.contains_key(parent)
                })
            })
            .cloned();
        let Some(name) = ready else {
            let left: Vec<&str> = tables.keys().map(String::as_str).collect();
            return Err(CopyError::SchemaMismatch {
                detail: format!(
                    "the PostgreSQL tables {} refer to each other in a cycle",
                    left.join(", ")
                ),
            });
        };
        if let Some(table) = tables.remove(&name) {
            ordered.push(table);
        }
    }
    Ok(ordered)
}

/// Refuses a source whose tables or columns are not the target's: a column missing there
/// could not be filled, and one missing here would be lost.
fn check_source_schema(source: &dyn Sql, tables: &[Table]) -> Result<(), CopyError> {
    let names = source.query(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         ORDER BY name",
        &[],
    )?;
    let mut source_tables = Vec::with_capacity(names.len());
    for row in &names {
        source_tables.push(row.text(0)?);
    }
    let mismatch = |detail: String| CopyError::SchemaMismatch { detail };
    for name in &source_tables {
        if name != "schema_version" && !tables.iter().any(|t| &t.name == name) {
            return Err(mismatch(format!(
                "the SQLite table {name} has no table in the PostgreSQL database"
            )));
        }
    }
    for table in tables {
        if !source_tables.contains(&table.name) {
            return Err(mismatch(format!(
                "the PostgreSQL table {} has no table in the SQLite database",
                table.name
            )));
        }
        let columns = source.query(
            "SELECT name FROM pragma_table_info(?1)",
            &values![&table.name],
        )?;
        let mut source_columns = Vec::with_capacity(columns.len());
        for row in &columns {
            source_columns.push(row.text(0)?);
        }
        for column in &table.columns {
            if !source_columns.contains(&column.name) {
                return Err(mismatch(format!(
                    "the SQLite table {} has no column {}",
                    table.name, column.name
                )));
            }
        }
        for column in &source_columns {
            if !table.columns.iter().any(|c| &c.name == column) {
                return Err(mismatch(format!(
                    "the PostgreSQL table {} has no column {column}",
                    table.name
                )));
            }
        }
    }
    Ok(())
}

/// Copies one table, a chunk at a time; returns how many rows.
fn copy_table(
    source: &dyn Sql,
    tx: &Tx<'_>,
    table: &Table,
    reseal: Option<&mut Reseal<'_>>,
) -> Result<u64, CopyError> {
    let names: Vec<String> = table.columns.iter().map(|c| quoted(&c.name)).collect();
    let read = format!(
        "SELECT rowid, {} FROM {} WHERE rowid > ?1 AND {} ORDER BY rowid LIMIT ?2",
        names.join(", "),
        quoted(&table.name),
        table.filter()
    );
    let per_read = CHUNK_ROWS
        .min(MAX_PARAMETERS / table.columns.len().max(1))
        .max(1);
    let insert = format!(
        "INSERT INTO {} ({}){}",
        quoted(&table.name),
        names.join(", "),
        if table.has_sequence() {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        }
    );
    let mut sealer = match reseal.filter(|_| table.name == "connections") {
        Some(r) => Some((r.columns(table)?, r)),
        None => None,
    };
    let mut after = i64::MIN;
    let mut copied = 0u64;
    loop {
        let rows = source.query(&read, &values![after, i64::try_from(per_read).unwrap_or(1)])?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.int(0)?;
        let count = rows.len();
        let mut fitted_rows = Vec::with_capacity(count);
        for row in rows {
            let mut fitted = Vec::with_capacity(table.columns.len());
            for (column, value) in table.columns.iter().zip(row.0.into_iter().skip(1)) {
                fitted.push(fit(value, column.column_type).map_err(|detail| {
                    CopyError::BadValue {
                        table: table.name.clone(),
                        column: column.name.clone(),
                        detail,
                    }
                })?);
            }
            if let Some((at, r)) = sealer.as_mut() {
                r.reseal(at, &mut fitted)?;
            }
            fitted_rows.push(fitted);
        }
        sql::insert_many(tx, &insert, "", table.columns.len(), fitted_rows)?;
        copied += count as u64;
        if count < per_read {
            break;
        }
    }
    // Ids kept: each sequence continues after the largest copied.
    for column in table.columns.iter().filter(|c| c.sequence) {
        tx.query(
            &format!(
                "SELECT setval(pg_get_serial_sequence(?1, ?2), m)
                 FROM (SELECT max({}) AS m FROM {}) s WHERE m IS NOT NULL",
                quoted(&column.name),
                quoted(&table.name)
            ),
            &values![quoted(&table.name), &column.name],
        )?;
    }
    Ok(copied)
}

/// An identifier, quoted for SQLite and PostgreSQL alike.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value`, as the target's column type binds it. SQLite keeps any value in any column; these
/// are the ones that mean the same in the column's type (a whole real in an integer column,
/// digits in text), and anything else is refused rather than bound as other bytes.
fn fit(value: Value, column_type: ColumnType) -> Result<Value, String> {
    let refuse = |value: &Value| {
        let kind = match value {
            Value::Null => "null",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real number",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        };
        Err(format!(
            "{kind} in a column of {}",
            match column_type {
                ColumnType::Int => "integers",
                ColumnType::Real => "real numbers",
                ColumnType::Text => "text",
                ColumnType::Bytes => "bytes",
            }
        ))
    };
    match (column_type, value) {
        (_, Value::Null) => Ok(Value::Null),
        (ColumnType::Int, Value::Int(v)) => Ok(Value::Int(v)),
        (ColumnType::Int, Value::Real(v))
            if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 =>
        {
            Ok(Value::Int(v as i64))
        }
        (ColumnType::Int, Value::Text(v)) if v.trim().parse::<i64>().is_ok() => {
            Ok(Value::Int(v.trim().parse::<i64>().unwrap_or_default()))
        }
        (ColumnType::Real, Value::Real(v)) => Ok(Value::Real(v)),
        (ColumnType::Real, Value::Int(v)) => Ok(Value::Real(v as f64)),
        (ColumnType::Text, Value::Text(v)) => Ok(Value::Text(v)),
        (ColumnType::Text, Value::Int(v)) => Ok(Value::Text(v.to_string())),
        (ColumnType::Text, Value::Real(v)) => Ok(Value::Text(v.to_string())),
        (ColumnType::Text, Value::Blob(v)) => match String::from_utf8(v) {
            Ok(text) => Ok(Value::Text(text)),
            Err(e) => refuse(&Value::Blob(e.into_bytes())),
        },
        (ColumnType::Bytes, Value::Blob(v)) => Ok(Value::Blob(v)),
        (ColumnType::Bytes, Value::Text(v)) => Ok(Value::Blob(v.into_bytes())),
        (_, other) => refuse(&other),
    }
}

/// A stored key of the source, with its account's vault binding (`None`: no such account).
struct StoredKey {
    connector: String,
    region: String,
    endpoint: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    binding: Option<String>,
}

impl StoredKey {
    fn bound<'a>(&'a self, binding: &'a str) -> Binding<'a> {
        Binding {
            account: binding,
            connector: &self.connector,
            region: &self.region,
            endpoint: &self.endpoint,
        }
    }
}

/// Every stored key of the SQLite database.
fn stored_keys(source: &dyn Sql) -> Result<Vec<StoredKey>, DbError> {
    source
        .query(
            "SELECT c.connector, c.region, c.endpoint, c.key_nonce, c.key_ciphertext,
                    a.vault_binding
             FROM connections c LEFT JOIN accounts a ON a.id = c.account",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(StoredKey {
                connector: r.text(0)?,
                region: r.text(1)?,
                endpoint: r.text(2)?,
                nonce: r.blob(3)?,
                ciphertext: r.blob(4)?,
                binding: r.opt_text(5)?,
            })
        })
        .collect()
}

/// Re-seals the `connections` rows on their way: each key is opened with the source's master
/// key under its account's binding, and sealed with the target's under the same.
struct Reseal<'a> {
    keys: MasterKeys<'a>,
    /// Each account's vault binding, from the source.
    bindings: HashMap<String, String>,
    count: usize,
}

/// Where the re-sealing reads and writes in a `connections` row.
struct KeyColumns {
    account: usize,
    connector: usize,
    region: usize,
    endpoint: usize,
    nonce: usize,
    ciphertext: usize,
}

impl<'a> Reseal<'a> {
    fn new(source: &dyn Sql, keys: MasterKeys<'a>) -> Result<Reseal<'a>, DbError> {
        let bindings = source
            .query("SELECT id, vault_binding FROM accounts", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect::<Result<_, DbError>>()?;
        Ok(Reseal {
            keys,
            bindings,
            count: 0,
        })
    }

    fn columns(&self, table: &Table) -> Result<KeyColumns, CopyError> {
        let at = |name: &str| {
            table
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| CopyError::SchemaMismatch {
                    detail: format!("the table connections has no column {name}"),
                })
        };
        Ok(KeyColumns {
            account: at("account")?,
            connector: at("connector")?,
            region: at("region")?,
            endpoint: at("endpoint")?,
            nonce: at("key_nonce")?,
            ciphertext: at("key_ciphertext")?,
        })
    }

    /// Replaces the key of one `connections` row (its values in the target's column order).
    fn reseal(&mut self, at: &KeyColumns, row: &mut [Value]) -> Result<(), CopyError> {
        let (account, connector) = (text_at(row, at.account)?, text_at(row, at.connector)?);
        let (region, endpoint) = (text_at(row, at.region)?, text_at(row, at.endpoint)?);
        let Some(binding) = self.bindings.get(&account) else {
            return Err(CopyError::Orphaned { account, connector });
        };
        let bound = Binding {
            account: binding,
            connector: &connector,
            region: &region,
            endpoint: &endpoint,
        };
        let secret = self
            .keys
            .source
            .open_secret(bytes_at(row, at.nonce), bytes_at(row, at.ciphertext), bound)
            .map_err(|_| CopyError::Undecryptable {
                account: account.clone(),
                connector: connector.clone(),
            })?;
        let (nonce, ciphertext) = self.keys.target.seal(&secret, bound);
        row[at.nonce] = Value::Blob(nonce);
        row[at.ciphertext] = Value::Blob(ciphertext);
        self.count += 1;
        Ok(())
    }
}

/// Value `i` of a row as text.
fn text_at(row: &[Value], i: usize) -> Result<String, DbError> {
    match row.get(i) {
        Some(Value::Text(v)) => Ok(v.clone()),
        _ => Err(DbError::Sql(format!(
            "value {i} of a stored connection is not text"
        ))),
    }
}

/// Value `i` of a row as bytes (empty when it is not: such a key does not open).
fn bytes_at(row: &[Value], i: usize) -> &[u8] {
    match row.get(i) {
        Some(Value::Blob(v)) => v,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{self, Role};
    use crate::audit::{AuditWriter, Retention};
    use crate::budget::BudgetTable;
    use crate::connections::{self, StoredConnection};
    use crate::db::AuditRecord;
    use crate::kv::KvTable;
    use crate::location::Location;
    use crate::records::{self, ImportedConfiguration};
    use crate::review;
    use crate::runs::{self, Start};
    use crate::shared::Shared;
    use crate::testing::fresh_database;
    use std::path::Path;
    use std::time::Duration;

    const C: &str = "itglue";

    fn audit_row(path: &str) -> AuditRecord {
        AuditRecord {
            at: db::now(),
            connector: C.into(),
            component_sha256: "d1".into(),
            capability: "http".into(),
            method: "GET".into(),
            host: "127.0.0.1".into(),
            path: path.into(),
            decision: "allowed".into(),
            rule: None,
            status: Some(200),
            bytes: 12,
            duration_ms: 3,
            connection: Some("new".into()),
            detail: None,
        }
    }

    /// Stores `key` for `db`'s account, sealed under `vault` with the account's binding.
    fn connect(db: &Db, vault: &Vault, key: &str) {
        let binding = connections::account_id(db).unwrap();
        let endpoint = "https://api.itglue.com";
        let (key_nonce, key_ciphertext) = vault.seal(
            key,
            Binding {
                account: &binding,
                connector: C,
                region: "eu",
                endpoint,
            },
        );
        connections::save_connection(
            db,
            C,
            &StoredConnection {
                region: "eu".into(),
                endpoint: endpoint.into(),
                key_nonce,
                key_ciphertext,
                verified_at: db::now(),
            },
        )
        .unwrap();
    }

    /// The stored key of `db`'s account, opened with `vault`.
    fn open_key(db: &Db, vault: &Vault) -> Result<String, VaultError> {
        let stored = connections::connection(db, C).unwrap().unwrap();
        let binding = connections::account_id(db).unwrap();
        vault.open_secret(
            &stored.key_nonce,
            &stored.key_ciphertext,
            Binding {
                account: &binding,
                connector: C,
                region: &stored.region,
                endpoint: &stored.endpoint,
            },
        )
    }

    /// A row of every table, for two accounts, written by the store's own functions (the rows a
    /// sync's apply writes, by the statements it uses), keys sealed under `vault`.
    fn fill(path: &Path, vault: &Vault) {
        let mut a = Db::open(path, "a").unwrap();
        let mut b = Db::open(path, "b").unwrap();
        accounts::add(&a, "a", Some("Acme \"Ops\" ünï"), "cli:op").unwrap();
        accounts::add(&a, "b", None, "cli:op").unwrap();
        accounts::set_feature(&a, "a", accounts::ITGLUE, true, "cli:op").unwrap();
        let token = accounts::create_token(&a, "a", Role::Admin, "cli:op").unwrap();
        let principal = accounts::authenticate(&a, &token.token).unwrap().unwrap();
        accounts::create_session(&a, &principal, Duration::from_secs(3600)).unwrap();
        records::import_clients(&a, &[("c1", "Acme"), ("c2", "Beta")]).unwrap();
        records::import_clients(&b, &[("c1", "Other")]).unwrap();
        records::import_configurations(
            &a,
            &[ImportedConfiguration {
                id: "k1",
                client_id: "c1",
                name: "pc",
                hostname: Some("pc-1"),
                serial_number: None,
                mac_addresses: vec!["00:11:22:33:44:55".into()],
            }],
        )
        .unwrap();
        connect(&a, vault, "key-a");
        connect(&b, vault, "key-b");
        assert!(review::link_by_hand(&a, C, "organization", "1001", "c1", None, "cli:x").unwrap());
        review::ignore(&a, C, "organization", "1002", "cli:x").unwrap();
        a.sql()
            .execute(
                "INSERT INTO source_records (account, connector, kind, source_id, name,
                     organization_id, hostname, mac_addresses, archived, identifiers_kept)
                 VALUES ('a', ?1, 'configuration', '77', 'pc', '1001', 'pc-1', '[]', 1, 1)",
                &values![C],
            )
            .unwrap();
        a.sql()
            .execute(
                "INSERT INTO unplaced (account, connector, kind, source_id, name, reason,
                                       candidates, suggestions)
                 VALUES ('a', ?1, 'organization', '1003', 'Gamma', 'no-match', '[]', '[\"c2\"]')",
                &values![C],
            )
            .unwrap();
        // A sync's working rows.
        for insert in [
            "INSERT INTO sync_staged (account, run_id, attempt, source_id, slot, client, page,
                                      seq, name, mac_addresses)
             VALUES ('a', 1, 1, '77', 0, 'c1', 1, 1, 'pc', '[]')",
            "INSERT INTO sync_planned (account, run_id, attempt, op, source_id, scopable_id,
                                       evidence)
             VALUES ('a', 1, 1, 'kept', '77', 'k1', '[\"serial\"]')",
        ] {
            a.sql().execute(insert, &[]).unwrap();
        }
        assert!(matches!(
            runs::start(
                &mut a,
                C,
                "organization",
                false,
                Duration::from_secs(60),
                Some("cli:x")
            )
            .unwrap(),
            Start::Started(_)
        ));
        runs::queue(&mut b, C, "configuration", true, "cli:y").unwrap();
        runs::set_schedule(&a, C, Some(Duration::from_secs(6 * 3600)), "cli:x").unwrap();
        let shared = Shared::open(path, "a").unwrap();
        KvTable::new(&shared, C)
            .set("cursor", &[0, 255, 7], 10, 1000)
            .unwrap();
        assert_eq!(
            BudgetTable::new(&shared, C)
                .try_take(5, Duration::from_secs(60), db::now_ms())
                .unwrap(),
            None
        );
        let audit = AuditWriter::with_retention(&shared, Retention::default());
        audit.write(audit_row("/organizations"));
        audit.write(audit_row("/configurations"));
        audit.flush();
        accounts::record_event(&b, "cli:y", "import clients", None, Some("1")).unwrap();
        // The source's own key-check value: never copied, the target gets its own.
        a.sql()
            .execute(
                "INSERT INTO meta (key, value) VALUES ('vault_key_check', ?1)",
                &values![vault.check_value()],
            )
            .unwrap();
    }

    /// A SQLite database in `dir`, filled, its keys sealed under `vault`.
    fn source(dir: &tempfile::TempDir, vault: &Vault) -> Db {
        let path = dir.path().join("source.db");
        fill(&path, vault);
        Db::open(&path, "a").unwrap()
    }

    /// A fresh PostgreSQL database.
    fn target(name: &str) -> Location {
        Location::parse(fresh_database(name)).unwrap()
    }

    /// The copied rows of `table` in `sql`, as text, sorted; `except` columns left out.
    fn dump(sql: &dyn Sql, table: &Table, except: &[&str]) -> Vec<String> {
        let columns: Vec<String> = table
            .columns
            .iter()
            .filter(|c| !except.contains(&c.name.as_str()))
            .map(|c| quoted(&c.name))
            .collect();
        let mut rows: Vec<String> = sql
            .query(
                &format!(
                    "SELECT {} FROM {} WHERE {}",
                    columns.join(", "),
                    quoted(&table.name),
                    table.filter()
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| format!("{:?}", r.0))
            .collect();
        rows.sort();
        rows
    }

    /// Every table of a PostgreSQL database, dumped.
    fn dump_all(db: &Db) -> Vec<(String, Vec<String>)> {
        target_tables(db.sql())
            .unwrap()
            .iter()
            .map(|t| (t.name.clone(), dump(db.sql(), t, &[])))
            .collect()
    }

    fn max_id(db: &Db, table: &str) -> i64 {
        db.sql()
            .query_one(&format!("SELECT max(id) FROM {table}"), &[])
            .unwrap()
            .int(0)
            .unwrap()
    }

    #[test]
    fn every_row_of_every_table_is_copied_with_its_keys_re_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (Vault::generate(), Vault::generate());
        let from = source(&dir, &old);
        let at = target("copy_all");
        let mut to = Db::open(&at, "a").unwrap();
        let keys = MasterKeys {
            source: &old,
            target: &new,
        };
        let copied = copy(&from, &mut to, Some(keys)).unwrap();

        let tables = target_tables(to.sql()).unwrap();
        assert_eq!(
            copied.tables.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            tables.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        let position = |name: &str| copied.tables.iter().position(|(n, _)| n == name);
        assert!(position("clients") < position("configurations"));
        for table in &tables {
            // The sealed keys differ by design; they are compared opened, below.
            let except = ["key_nonce", "key_ciphertext"];
            let source_rows = dump(from.sql(), table, &except);
            assert!(!source_rows.is_empty(), "{} has no row to copy", table.name);
            assert_eq!(
                dump(to.sql(), table, &except),
                source_rows,
                "{}",
                table.name
            );
            assert_eq!(
                position(&table.name).map(|i| copied.tables[i].1),
                Some(source_rows.len() as u64),
                "{}",
                table.name
            );
        }
        assert_eq!(copied.keys_resealed, 2);

        // Each key opens with the target's master key under its own account's binding.
        let b = Db::open(&at, "b").unwrap();
        assert_eq!(open_key(&to, &new).unwrap(), "key-a");
        assert_eq!(open_key(&b, &new).unwrap(), "key-b");
        assert!(open_key(&to, &old).is_err());
        let check = to
            .sql()
            .query_one("SELECT value FROM meta WHERE key = ?1", &values![KEY_CHECK])
            .unwrap()
            .text(0)
            .unwrap();
        assert!(new.opens_check_value(&check));
        assert!(!old.opens_check_value(&check));

        // Ids continue after the largest copied.
        let (runs_max, audit_max, events_max) = (
            max_id(&to, "sync_runs"),
            max_id(&to, "audit"),
            max_id(&to, "events"),
        );
        let mut b = b;
        let Start::Started(run) = runs::start(
            &mut b,
            C,
            "organization",
            false,
            Duration::from_secs(60),
            None,
        )
        .unwrap() else {
            panic!("no run started after the copy");
        };
        assert!(run.id > runs_max, "{} <= {runs_max}", run.id);
        crate::audit::insert_audit(to.sql(), "a", &audit_row("/after")).unwrap();
        assert!(max_id(&to, "audit") > audit_max);
        let event = accounts::record_event(&to, "cli:z", "after", None, None).unwrap();
        assert!(event > events_max, "{event} <= {events_max}");
    }

    #[test]
    fn a_target_that_is_not_empty_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (Vault::generate(), Vault::generate());
        let from = source(&dir, &old);
        let keys = MasterKeys {
            source: &old,
            target: &new,
        };

        // A database in use: one account.
        let at = target("copy_used");
        let mut to = Db::open(&at, "z").unwrap();
        accounts::add(&to, "z", None, "cli:op").unwrap();
        let before = dump_all(&to);
        match copy(&from, &mut to, Some(keys)) {
            Err(CopyError::TargetNotEmpty { table, shown }) => {
                assert_eq!(table, "accounts");
                assert_eq!(shown, at.shown());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(dump_all(&to), before);
        assert!(
            to.sql()
                .query_opt("SELECT 1 FROM meta", &[])
                .unwrap()
                .is_none()
        );

        // A database copied into once: a second copy changes nothing.
        let at = target("copy_twice");
        let mut to = Db::open(&at, "a").unwrap();
        copy(&from, &mut to, Some(keys)).unwrap();
        let before = dump_all(&to);
        assert!(matches!(
            copy(&from, &mut to, Some(keys)),
            Err(CopyError::TargetNotEmpty { .. })
        ));
        assert_eq!(dump_all(&to), before);
        assert_eq!(open_key(&to, &new).unwrap(), "key-a");
    }

    #[test]
    fn a_key_that_does_not_open_or_a_foreign_key_check_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (Vault::generate(), Vault::generate());
        let from = source(&dir, &old);
        let at = target("copy_undecryptable");
        let mut to = Db::open(&at, "a").unwrap();
        let other = Vault::generate();
        let wrong = MasterKeys {
            source: &other,
            target: &new,
        };
        assert!(matches!(
            copy(&from, &mut to, Some(wrong)),
            Err(CopyError::Undecryptable { account, .. }) if account == "a"
        ));
        assert!(dump_all(&to).iter().all(|(_, rows)| rows.is_empty()));

        // A target whose replicas already stored the key-check value of another master key.
        to.sql()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                &values![KEY_CHECK, other.check_value()],
            )
            .unwrap();
        let keys = MasterKeys {
            source: &old,
            target: &new,
        };
        assert!(matches!(
            copy(&from, &mut to, Some(keys)),
            Err(CopyError::WrongMasterKey { .. })
        ));
        assert!(dump_all(&to).iter().all(|(_, rows)| rows.is_empty()));

        // With its own master key's value there, the copy goes ahead and keeps it.
        to.sql()
            .execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1",
                &values![KEY_CHECK, new.check_value()],
            )
            .unwrap();
        let copied = copy(&from, &mut to, Some(keys)).unwrap();
        assert_eq!(copied.keys_resealed, 2);
        assert_eq!(open_key(&to, &new).unwrap(), "key-a");
    }

    #[test]
    fn without_master_keys_stored_keys_are_copied_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let old = Vault::generate();
        let from = source(&dir, &old);
        let mut to = Db::open(target("copy_verbatim"), "a").unwrap();
        let copied = copy(&from, &mut to, None).unwrap();
        assert_eq!(copied.keys_resealed, 0);
        assert_eq!(open_key(&to, &old).unwrap(), "key-a");
        assert!(
            to.sql()
                .query_opt("SELECT 1 FROM meta WHERE key = ?1", &values![KEY_CHECK])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_source_s_master_key_is_the_one_that_opens_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        // The key file a SQLite database makes for itself.
        let file_key = Vault::open(&path, true).unwrap().unwrap();
        fill(&path, &file_key);
        let from = Db::open(&path, "a").unwrap();
        let found = source_master_key(&from).unwrap().unwrap();
        assert_eq!(found.to_base64(), file_key.to_base64());

        // A key file others can read is refused, as everywhere.
        let key_file = key_file_for(&path);
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            source_master_key(&from),
            Err(CopyError::Vault(VaultError::InsecureKeyFile { .. }))
        ));
        if std::env::var_os(MASTER_KEY_ENV).is_none() {
            std::fs::remove_file(&key_file).unwrap();
            assert!(source_master_key(&from).unwrap().is_none());
        }
    }

    #[test]
    fn a_source_whose_tables_differ_from_the_target_s_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let old = Vault::generate();
        let from = source(&dir, &old);
        let at = target("copy_mismatch");
        let mut to = Db::open(&at, "a").unwrap();
        from.sql()
            .execute("ALTER TABLE kv ADD COLUMN extra TEXT", &[])
            .unwrap();
        match copy(&from, &mut to, None) {
            Err(CopyError::SchemaMismatch { detail }) => {
                assert!(
                    detail.contains("kv") && detail.contains("extra"),
                    "{detail}"
                )
            }
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let from = source(&dir, &old);
        from.sql()
            .execute("CREATE TABLE notes (body TEXT)", &[])
            .unwrap();
        assert!(matches!(
            copy(&from, &mut to, None),
            Err(CopyError::SchemaMismatch { detail }) if detail.contains("notes")
        ));
        assert!(dump_all(&to).iter().all(|(_, rows)| rows.is_empty()));
        // And the directions are checked.
        assert!(matches!(
            copy(&to, &mut Db::open(&at, "a").unwrap(), None),
            Err(CopyError::SourceNotSqlite { .. })
        ));
        let mut file = Db::open(dir.path().join("other.db"), "a").unwrap();
        assert!(matches!(
            copy(&from, &mut file, None),
            Err(CopyError::TargetNotPostgres { .. })
        ));
    }

    #[test]
    fn a_hundred_thousand_audit_rows_copy_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.db");
        let from = Db::open(&path, "a").unwrap();
        accounts::add(&from, "a", None, "cli:op").unwrap();
        from.sql()
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
                 INSERT INTO audit (account, at, connector, component_sha256, capability,
                                    method, host, path, decision, status, bytes, duration_ms)
                 SELECT 'a', '2024-01-01T00:00:00Z', 'itglue', 'd1', 'http', 'GET',
                        '127.0.0.1', '/organizations?page=' || i, 'allowed', 200, i, i % 7
                 FROM n",
                &[],
            )
            .unwrap();
        let mut to = Db::open(target("copy_big"), "a").unwrap();
        let copied = copy(&from, &mut to, None).unwrap();
        let audit = copied.tables.iter().find(|(n, _)| n == "audit").unwrap();
        assert_eq!(audit.1, 100_000);
        assert_eq!(max_id(&to, "audit"), 100_000);
        let sum = to
            .sql()
            .query_one("SELECT CAST(sum(bytes) AS BIGINT) FROM audit", &[])
            .unwrap()
            .int(0)
            .unwrap();
        assert_eq!(sum, 100_000 * 100_001 / 2);
    }

    #[test]
    fn values_fit_their_column_s_type_or_are_refused() {
        assert_eq!(fit(Value::Real(3.0), ColumnType::Int), Ok(Value::Int(3)));
        assert_eq!(
            fit(Value::Text(" 42".into()), ColumnType::Int),
            Ok(Value::Int(42))
        );
        assert!(fit(Value::Real(3.5), ColumnType::Int).is_err());
        assert!(fit(Value::Text("x".into()), ColumnType::Int).is_err());
        assert!(fit(Value::Blob(vec![1]), ColumnType::Int).is_err());
        assert_eq!(
            fit(Value::Int(7), ColumnType::Text),
            Ok(Value::Text("7".into()))
        );
        assert_eq!(
            fit(Value::Blob(b"ok".to_vec()), ColumnType::Text),
            Ok(Value::Text("ok".into()))
        );
        assert!(fit(Value::Blob(vec![0xff]), ColumnType::Text).is_err());
        assert_eq!(
            fit(Value::Text("ab".into()), ColumnType::Bytes),
            Ok(Value::Blob(b"ab".to_vec()))
        );
        assert!(fit(Value::Int(1), ColumnType::Bytes).is_err());
        assert_eq!(fit(Value::Int(2), ColumnType::Real), Ok(Value::Real(2.0)));
        assert_eq!(fit(Value::Null, ColumnType::Bytes), Ok(Value::Null));
    }

    #[test]
    fn tables_come_after_the_tables_they_refer_to() {
        let table = |name: &str| {
            (
                name.to_string(),
                Table {
                    name: name.to_string(),
                    columns: Vec::new(),
                },
            )
        };
        let tables: BTreeMap<String, Table> =
            [table("a_child"), table("b_parent"), table("c")].into();
        let references = [
            ("a_child".to_string(), "b_parent".to_string()),
            ("c".to_string(), "c".to_string()),
        ];
        let order: Vec<String> = dependency_order(tables.clone(), &references)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(order, ["b_parent", "a_child", "c"]);
        let cycle = [
            ("a_child".to_string(), "b_parent".to_string()),
            ("b_parent".to_string(), "a_child".to_string()),
        ];
        assert!(matches!(
            dependency_order(tables, &cycle),
            Err(CopyError::SchemaMismatch { .. })
        ));
        assert_eq!(sql::row_placeholders(2, 2), "(?1, ?2), (?3, ?4)");
    }
}
