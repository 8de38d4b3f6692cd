//! One way to run a statement on either database the store keeps: SQLite (a file, one
//! process's) or PostgreSQL (shared by every replica).
//!
//! Statements are written once, in the SQL both accept, with `?1`, `?2`... placeholders (turned
//! into `$1`, `$2`... for PostgreSQL, outside quotes). Values cross as [`Value`]: integers are
//! 64-bit on both sides (the PostgreSQL schema uses `BIGINT` for every integer, flags
//! included), text is text, bytes are `BLOB` / `BYTEA`. Rows come back as [`Row`]s of values.

use crate::db::DbError;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer (also flags: 0 or 1).
    Int(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// The values of a statement's placeholders, in order: `values![account, id, Some("x")]`.
#[macro_export]
macro_rules! values {
    ($($v:expr),* $(,)?) => {
        [$($crate::sql::Value::from($v)),*]
    };
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::Sql(format!("no column {i} in a row of {}", self.0.len())))
    }

    /// Column `i` as an integer (`NULL` is an error).
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(DbError::Sql(format!(
                "column {i} is {other:?}, not an integer"
            ))),
        }
    }

    /// Column `i` as an integer or `NULL`.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// Column `i` as text (`NULL` is an error).
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        match self.at(i)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(DbError::Sql(format!("column {i} is {other:?}, not text"))),
        }
    }

    /// Column `i` as text or `NULL`.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// Column `i` as bytes.
    pub fn blob(&self, i: usize) -> Result<Vec<u8>, DbError> {
        match self.at(i)? {
            Value::Blob(v) => Ok(v.clone()),
            other => Err(DbError::Sql(format!("column {i} is {other:?}, not bytes"))),
        }
    }
}

/// Runs statements on one connection (or inside one transaction) of either database.
pub trait Sql {
    /// Runs a statement; returns the rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Runs a query; returns every row.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;

    /// The first row of a query, if any.
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Now, in unix milliseconds, by the clock leases are measured with: the database
    /// server's for PostgreSQL (shared by every replica, however their own clocks drift), this
    /// machine's for a SQLite file (one machine's processes share it).
    fn clock_ms(&self) -> Result<i64, DbError> {
        Ok(crate::db::now_ms())
    }

    /// The one row a query must return.
    fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row, DbError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| DbError::Sql("a query that returns one row returned none".into()))
    }
}

impl rusqlite::types::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

fn sqlite_row(row: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(columns);
    for i in 0..columns {
        values.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
            ValueRef::Blob(v) => Value::Blob(v.to_vec()),
        });
    }
    Ok(Row(values))
}

impl Sql for rusqlite::Connection {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
            sqlite_row(r, columns)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Sql for rusqlite::Transaction<'_> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        Sql::execute(&**self, sql, params)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        Sql::query(&**self, sql, params)
    }
}

/// The most values one batched statement binds (SQLite allows 32,766, PostgreSQL 65,535).
pub(crate) const MAX_PARAMETERS: usize = 30_000;

/// The most rows one batched statement writes.
const MAX_BATCH_ROWS: usize = 500;

/// `(?1, ?2), (?3, ?4)` for `rows` rows of `columns` values.
pub(crate) fn row_placeholders(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 7);
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            n += 1;
            out.push('?');
            out.push_str(&n.to_string());
        }
        out.push(')');
    }
    out
}

/// Writes `rows` (each of `width` values) with as few statements as the parameter limits
/// allow: `{head} VALUES (...), (...) {tail}` (`tail`: an `ON CONFLICT` clause, or empty).
/// Rows are taken from the iterator one statement's worth at a time, so a caller that makes
/// them lazily never holds more than that. Rows must not repeat a key `tail` resolves
/// (PostgreSQL refuses to change one row twice in a statement).
pub(crate) fn insert_many<R>(
    sql: &dyn Sql,
    head: &str,
    tail: &str,
    width: usize,
    rows: impl IntoIterator<Item = R>,
) -> Result<(), DbError>
where
    R: IntoIterator<Item = Value>,
{
    let per_statement = MAX_BATCH_ROWS.min(MAX_PARAMETERS / width.max(1)).max(1);
    let statement = |rows| format!("{head} VALUES {} {tail}", row_placeholders(rows, width));
    let mut full: Option<String> = None;
    let mut values = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        values.clear();
        let mut count = 0;
        for row in rows.by_ref().take(per_statement) {
            let before = values.len();
            values.extend(row);
            if values.len() - before != width {
                return Err(DbError::Sql(format!(
                    "a row of {} values for a statement of {width}",
                    values.len() - before
                )));
            }
            count += 1;
        }
        if count == per_statement {
            let text = full.get_or_insert_with(|| statement(per_statement));
            sql.execute(text, &values)?;
        } else {
            sql.execute(&statement(count), &values)?;
        }
    }
    Ok(())
}

/// Calls `each` with `{head} IN (...) {tail}` and its values (`fixed` first, bound as
/// `?1`..., then a chunk of `ids`), for as many chunks as the parameter limits need.
fn in_chunks(
    head: &str,
    fixed: &[Value],
    ids: &[&str],
    tail: &str,
    mut each: impl FnMut(&str, &[Value]) -> Result<(), DbError>,
) -> Result<(), DbError> {
    for chunk in ids.chunks(MAX_BATCH_ROWS) {
        let list: Vec<String> = (0..chunk.len())
            .map(|i| format!("?{}", fixed.len() + i + 1))
            .collect();
        let mut values = fixed.to_vec();
        values.extend(chunk.iter().map(|id| Value::from(*id)));
        each(&format!("{head} IN ({}) {tail}", list.join(", ")), &values)?;
    }
    Ok(())
}

/// Runs `{head} IN (...) {tail}` with `fixed` values first (bound as `?1`...) and then `ids`,
/// in as few statements as the parameter limits allow; returns the rows changed.
pub(crate) fn execute_in(
    sql: &dyn Sql,
    head: &str,
    fixed: &[Value],
    ids: &[&str],
    tail: &str,
) -> Result<u64, DbError> {
    let mut changed = 0;
    in_chunks(head, fixed, ids, tail, |text, values| {
        changed += sql.execute(text, values)?;
        Ok(())
    })?;
    Ok(changed)
}

/// The rows of `{head} IN (...) {tail}` for every id of `ids`, one statement per chunk of
/// them (`tail` orders each chunk's rows, not all of them).
pub(crate) fn query_in(
    sql: &dyn Sql,
    head: &str,
    fixed: &[Value],
    ids: &[&str],
    tail: &str,
) -> Result<Vec<Row>, DbError> {
    let mut rows = Vec::new();
    in_chunks(head, fixed, ids, tail, |text, values| {
        rows.extend(sql.query(text, values)?);
        Ok(())
    })?;
    Ok(rows)
}

/// `?1`, `?2`... as PostgreSQL's `$1`, `$2`..., outside quoted text and identifiers.
pub fn postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes_only() {
        assert_eq!(
            postgres_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(
            postgres_placeholders(r#"SELECT "?1" FROM t"#),
            r#"SELECT "?1" FROM t"#
        );
    }

    #[test]
    fn values_convert_from_the_store_s_types() {
        let v = values![7i64, "a", Some("b"), None::<i64>, true, 3u32];
        assert_eq!(
            v,
            [
                Value::Int(7),
                Value::Text("a".into()),
                Value::Text("b".into()),
                Value::Null,
                Value::Int(1),
                Value::Int(3)
            ]
        );
    }

    #[test]
    fn batched_writes_write_every_row_across_statements_on_both_databases() {
        for t in crate::testing::databases("sql_batches") {
            let db = t.open("a");
            let sql = db.sql();
            sql.execute(
                "CREATE TABLE batch_test (n BIGINT PRIMARY KEY, s TEXT)",
                &[],
            )
            .unwrap();
            // More rows than one statement takes, and a short last statement.
            let rows: Vec<Vec<Value>> = (0..1203i64)
                .map(|n| values![n, format!("row {n}")].to_vec())
                .collect();
            insert_many(sql, "INSERT INTO batch_test (n, s)", "", 2, rows).unwrap();
            // An upsert through the tail changes rows in place.
            let again: Vec<Vec<Value>> = (1200..1203i64)
                .map(|n| values![n, "again"].to_vec())
                .collect();
            insert_many(
                sql,
                "INSERT INTO batch_test (n, s)",
                "ON CONFLICT (n) DO UPDATE SET s = excluded.s",
                2,
                again,
            )
            .unwrap();
            let count = |q: &str| sql.query_one(q, &[]).unwrap().int(0).unwrap();
            assert_eq!(count("SELECT count(*) FROM batch_test"), 1203, "{}", t.name);
            assert_eq!(
                count("SELECT count(*) FROM batch_test WHERE s = 'again'"),
                3,
                "{}",
                t.name
            );
            assert_eq!(
                count("SELECT CAST(sum(n) AS BIGINT) FROM batch_test"),
                1202 * 1203 / 2,
                "{}",
                t.name
            );
            // A row of the wrong width is refused.
            assert!(
                insert_many(
                    sql,
                    "INSERT INTO batch_test (n, s)",
                    "",
                    2,
                    [vec![Value::Int(1)]]
                )
                .is_err()
            );
            // Deleting by a list longer than one statement takes.
            let names: Vec<String> = (0..1100).map(|n| format!("row {n}")).collect();
            let ids: Vec<&str> = names.iter().map(String::as_str).collect();
            let deleted = execute_in(
                sql,
                "DELETE FROM batch_test WHERE n >= ?1 AND s",
                &values![100i64],
                &ids,
                "",
            )
            .unwrap();
            assert_eq!(deleted, 1000, "{}", t.name);
            assert_eq!(count("SELECT count(*) FROM batch_test"), 203, "{}", t.name);
        }
    }
}
