//! `import clients|configurations FILE.csv`: loads Scopable records, all or nothing. Every
//! row is checked before anything is written, and an error names the line.
//!
//! Files come as people export them: separated by commas, semicolons (Excel in many European
//! locales) or tabs, detected from the header line; columns found by their header name
//! (case-insensitive, trimmed), in any order; columns the format does not know are ignored,
//! with a warning each.

use crate::app::{AppError, Exit};
use scopable_store::Db;
use scopable_store::records::{self, ImportedConfiguration};
use std::collections::{HashMap, HashSet};
use std::path::Path;

const CLIENT_HEADER: &[&str] = &["id", "name"];
const CONFIGURATION_HEADER: &[&str] = &[
    "id",
    "client_id",
    "name",
    "hostname",
    "serial_number",
    "mac_address",
];
/// Longest cell accepted, in bytes.
const MAX_CELL: usize = 4096;
/// The separators recognized in the header line, preferred in this order on a tie.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

/// What an import did: the summary line (its `Display`) and the warnings to show beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// `client` or `configuration`.
    pub record: &'static str,
    /// Records in the file.
    pub total: usize,
    /// Records that did not exist before.
    pub added: usize,
    /// Columns ignored, one sentence each (they name the file and the line; the column names
    /// come from the file).
    pub warnings: Vec<String>,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Imported {} {}{} ({} new, {} updated).",
            self.total,
            self.record,
            if self.total == 1 { "" } else { "s" },
            self.added,
            self.total - self.added
        )
    }
}

fn bad(origin: &str, line: u64, message: impl std::fmt::Display) -> AppError {
    AppError::new(
        Exit::BadInput,
        format!("{origin} line {line}: {message}; nothing was imported"),
    )
}

/// The rows of a file, each as the format's columns in the format's order, and the warnings.
struct Table {
    rows: Vec<(u64, Vec<String>)>,
    warnings: Vec<String>,
}

fn read_file(file: &Path) -> Result<Vec<u8>, AppError> {
    std::fs::read(file).map_err(|e| {
        AppError::new(
            Exit::BadInput,
            format!("cannot read {}: {e}", file.display()),
        )
    })
}

/// The separator of a file: whichever of `,`, `;` and tab occurs most often outside quotes in
/// its first line (`,` when none does).
fn delimiter(bytes: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in bytes {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|&d| d == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let best = counts.iter().copied().max().unwrap_or(0);
    DELIMITERS
        .iter()
        .zip(counts)
        .find(|(_, n)| best > 0 && *n == best)
        .map_or(b',', |(&d, _)| d)
}

/// The line on which a quoted field opens and never closes, if one does. Follows the reader's
/// rules: a quote opens a field only at the field's start, and `""` inside it is a quote.
fn unclosed_quote(bytes: &[u8], delimiter: u8) -> Option<u64> {
    let mut line = 1u64;
    let mut opened_on = None;
    let mut field_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if opened_on.is_some() {
            match b {
                b'"' if bytes.get(i + 1) == Some(&b'"') => i += 1,
                b'"' => {
                    opened_on = None;
                    field_start = false;
                }
                b'\n' => line += 1,
                _ => {}
            }
        } else {
            match b {
                b'"' if field_start => {
                    opened_on = Some(line);
                    field_start = false;
                }
                b'\n' => {
                    line += 1;
                    field_start = true;
                }
                b'\r' => field_start = true,
                d if d == delimiter => field_start = true,
                _ => field_start = false,
            }
        }
        i += 1;
    }
    opened_on
}

/// Reads every row, checking the header, quoting, UTF-8, cell count, ids and control
/// characters; maps the format's `columns` by header name.
fn read_rows(origin: &str, bytes: &[u8], columns: &[&str], what: &str) -> Result<Table, AppError> {
    let delimiter = delimiter(bytes);
    if let Some(line) = unclosed_quote(bytes, delimiter) {
        return Err(bad(
            origin,
            line,
            "a quoted field is not closed (add the closing `\"`, or write a quote inside a quoted field as `\"\"`)",
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    let mut seen = HashSet::new();
    let mut record = csv::ByteRecord::new();
    // Where each of the format's columns is in the file, once the header is read.
    let mut positions: Option<Vec<usize>> = None;
    let mut width = 0;
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(bad(
                    origin,
                    e.position().map_or(line, |p| p.line()),
                    format!("not valid CSV ({e})"),
                ));
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        let mut cells = Vec::with_capacity(record.len());
        for cell in record.iter() {
            let text = std::str::from_utf8(cell)
                .map_err(|_| bad(origin, line, "not valid UTF-8 (save the file as UTF-8)"))?;
            let text = text.trim_start_matches('\u{feff}');
            if text.len() > MAX_CELL {
                return Err(bad(
                    origin,
                    line,
                    format!("a cell is longer than {MAX_CELL} bytes"),
                ));
            }
            if text.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad(origin, line, "a cell contains a control character"));
            }
            cells.push(text.trim().to_string());
        }
        let Some(positions) = &positions else {
            let (found, ignored) = header_positions(origin, line, &cells, columns)?;
            for (n, name) in ignored {
                warnings.push(if name.is_empty() {
                    format!("{origin} line {line}: ignoring column {n}, which has no name")
                } else {
                    format!(
                        "{origin} line {line}: ignoring the column `{name}` (not one of the {what} columns `{}`)",
                        columns.join(",")
                    )
                });
            }
            width = cells.len();
            positions = Some(found);
            continue;
        };
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        if cells.len() != width {
            return Err(bad(
                origin,
                line,
                format!(
                    "expected {width} cells (one per header column), found {}",
                    cells.len()
                ),
            ));
        }
        let cells: Vec<String> = positions.iter().map(|&i| cells[i].clone()).collect();
        if cells[0].is_empty() {
            return Err(bad(origin, line, "the id is empty"));
        }
        if !seen.insert(cells[0].clone()) {
            return Err(bad(
                origin,
                line,
                format!("id {:?} appears twice", cells[0]),
            ));
        }
        rows.push((line, cells));
    }
    if positions.is_none() {
        return Err(bad(
            origin,
            1,
            format!(
                "the file is empty; the header must name the columns `{}`",
                columns.join(",")
            ),
        ));
    }
    Ok(Table { rows, warnings })
}

/// Finds each of `columns` in a header row by name (case-insensitive, trimmed). Returns their
/// positions, and the columns to ignore (1-based position, name).
#[allow(clippy::type_complexity)]
fn header_positions(
    origin: &str,
    line: u64,
    cells: &[String],
    columns: &[&str],
) -> Result<(Vec<usize>, Vec<(usize, String)>), AppError> {
    let found_text = || cells.join(",");
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut ignored = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let name = cell.to_lowercase();
        if !columns.contains(&name.as_str()) {
            ignored.push((i + 1, cell.clone()));
            continue;
        }
        if by_name.insert(name.clone(), i).is_some() {
            return Err(bad(
                origin,
                line,
                format!(
                    "the header names the column `{name}` twice (found `{}`)",
                    found_text()
                ),
            ));
        }
    }
    let missing: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| !by_name.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(bad(
            origin,
            line,
            format!(
                "the header lacks the column{} `{}` (the columns are `{}`, in any order; found `{}`)",
                if missing.len() == 1 { "" } else { "s" },
                missing.join("`, `"),
                columns.join(","),
                found_text()
            ),
        ));
    }
    Ok((columns.iter().map(|c| by_name[*c]).collect(), ignored))
}

/// Imports clients (columns `id,name`) from a CSV file, updating existing ids.
pub fn clients(conn: &Db, file: &Path) -> Result<Imported, AppError> {
    clients_from(conn, &read_file(file)?, &file.display().to_string())
}

/// Imports clients from CSV bytes; `origin` names them in errors and warnings.
pub fn clients_from(conn: &Db, csv: &[u8], origin: &str) -> Result<Imported, AppError> {
    let Table { rows, warnings } = read_rows(origin, csv, CLIENT_HEADER, "client")?;
    for (line, cells) in &rows {
        if cells[1].is_empty() {
            return Err(bad(origin, *line, "the name is empty"));
        }
    }
    let written: Vec<(&str, &str)> = rows
        .iter()
        .map(|(_, cells)| (cells[0].as_str(), cells[1].as_str()))
        .collect();
    let added = records::import_clients(conn, &written)?;
    Ok(Imported {
        record: "client",
        total: rows.len(),
        added,
        warnings,
    })
}

/// Splits a `mac_address` cell holding one or more MACs separated by `;`, `,` or spaces.
pub fn split_macs(cell: &str) -> Vec<String> {
    cell.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Imports configurations (columns `id,client_id,name,hostname,serial_number,mac_address`)
/// from a CSV file, updating existing ids. Every client must already exist.
pub fn configurations(conn: &Db, file: &Path) -> Result<Imported, AppError> {
    configurations_from(conn, &read_file(file)?, &file.display().to_string())
}

/// Imports configurations from CSV bytes; `origin` names them in errors and warnings.
pub fn configurations_from(conn: &Db, csv: &[u8], origin: &str) -> Result<Imported, AppError> {
    let Table { rows, warnings } = read_rows(origin, csv, CONFIGURATION_HEADER, "configuration")?;
    let clients = records::client_ids(conn)?;
    // A configuration linked by hand may not move to another client: the link would then
    // cross clients, and a sync never changes manual links.
    let manual_targets = records::manually_linked_configurations(conn)?;
    for (line, cells) in &rows {
        if !clients.contains(&cells[1]) {
            return Err(bad(
                origin,
                *line,
                format!(
                    "client {:?} does not exist (import clients first)",
                    cells[1]
                ),
            ));
        }
        if let Some(client) = manual_targets.get(&cells[0])
            && *client != cells[1]
        {
            return Err(bad(
                origin,
                *line,
                format!(
                    "configuration {:?} is linked by hand under client {client:?}; reset that link before moving it to {:?}",
                    cells[0], cells[1]
                ),
            ));
        }
    }
    fn opt(s: &str) -> Option<&str> {
        if s.is_empty() { None } else { Some(s) }
    }
    let written: Vec<ImportedConfiguration<'_>> = rows
        .iter()
        .map(|(_, c)| ImportedConfiguration {
            id: &c[0],
            client_id: &c[1],
            name: &c[2],
            hostname: opt(&c[3]),
            serial_number: opt(&c[4]),
            mac_addresses: split_macs(&c[5]),
        })
        .collect();
    let added = records::import_configurations(conn, &written)?;
    Ok(Imported {
        record: "configuration",
        total: rows.len(),
        added,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// A fresh database: the handle imports go through, and a connection of its own to read
    /// the tables back.
    fn db() -> (tempfile::TempDir, Db, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path, scopable_store::DEFAULT_ACCOUNT).unwrap();
        let conn = Connection::open(&path).unwrap();
        (dir, db, conn)
    }

    fn write(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn imports_and_updates_by_id() {
        let (dir, db, conn) = db();
        let f = write(&dir, "c.csv", b"id,name\n1,Acme\n2,\"Beta, Inc.\"\n");
        assert!(clients(&db, &f).unwrap().to_string().contains("2 new"));
        let f = write(&dir, "c2.csv", b"id,name\n2,Beta Renamed\n3,Gamma\n");
        clients(&db, &f).unwrap();
        assert_eq!(count(&conn, "clients"), 3);
        let name: String = conn
            .query_row("SELECT name FROM clients WHERE id = '2'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "Beta Renamed");
        let f = write(&dir, "cfg.csv", b"id,client_id,name,hostname,serial_number,mac_address\n10,1,DC,dc01,SN1,aa:bb:cc:dd:ee:01; aa-bb-cc-dd-ee-02\n");
        configurations(&db, &f).unwrap();
        let macs: String = conn
            .query_row("SELECT mac_addresses FROM configurations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(macs, r#"["aa:bb:cc:dd:ee:01","aa-bb-cc-dd-ee-02"]"#);
    }

    #[test]
    fn bad_files_change_nothing_and_name_the_line() {
        let (dir, db, conn) = db();
        let cases: [(&str, &[u8], &str); 6] = [
            ("header", b"id,title\n1,A\n", "line 1: the header"),
            (
                "dup",
                b"id,name\n1,A\n2,B\n1,C\n",
                "line 4: id \"1\" appears twice",
            ),
            (
                "utf8",
                b"id,name\n1,A\n2,\xff\xfe\n",
                "line 3: not valid UTF-8",
            ),
            (
                "ctrl",
                b"id,name\n1,A\x07\n",
                "line 2: a cell contains a control character",
            ),
            ("cells", b"id,name\n1,A,extra\n", "line 2: expected 2 cells"),
            ("empty", b"", "the file is empty"),
        ];
        for (name, body, expected) in cases {
            let f = write(&dir, name, body);
            let err = clients(&db, &f).unwrap_err();
            assert_eq!(err.exit, Exit::BadInput);
            assert!(err.message.contains(expected), "{name}: {}", err.message);
        }
        assert_eq!(count(&conn, "clients"), 0);
        let f = write(
            &dir,
            "cfg.csv",
            b"id,client_id,name,hostname,serial_number,mac_address\n10,99,DC,,,\n",
        );
        let err = configurations(&db, &f).unwrap_err();
        assert!(
            err.message.contains("line 2: client \"99\" does not exist"),
            "{}",
            err.message
        );
        assert_eq!(count(&conn, "configurations"), 0);
    }

    fn csv_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let cell = prop_oneof![
            "[a-z0-9 ]{0,6}".prop_map(String::into_bytes),
            Just(b"\"a,b\"".to_vec()),
            Just(b"\"".to_vec()),
            Just(vec![0xff, 0xfe]),
            Just(b"\x07".to_vec()),
            Just("\u{feff}".as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..6),
        ];
        let row = prop::collection::vec(cell, 0..8).prop_map(|cells| cells.join(&b","[..]));
        (any::<bool>(), prop::collection::vec(row, 0..12)).prop_map(|(header, rows)| {
            let mut out = if header {
                b"id,name\n".to_vec()
            } else {
                Vec::new()
            };
            for r in rows {
                out.extend(r);
                out.push(b'\n');
            }
            out
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
        ))]

        /// Any file either imports or fails with bad input, naming a line, and changes nothing.
        #[test]
        fn any_file_imports_whole_or_not_at_all(bytes in csv_bytes()) {
            let (dir, db, conn) = db();
            let f = write(&dir, "fuzz.csv", &bytes);
            clients(&db, &write(&dir, "seed.csv", b"id,name\nseed,Seed\n")).unwrap();
            match clients(&db, &f) {
                Ok(_) => {}
                Err(e) => {
                    proptest::prop_assert_eq!(e.exit, Exit::BadInput);
                    proptest::prop_assert!(e.message.contains("line") || e.message.contains("cannot read"), "{}", e.message);
                    proptest::prop_assert_eq!(count(&conn, "clients"), 1);
                }
            }
            let err = configurations(&db, &f);
            if err.is_err() {
                proptest::prop_assert_eq!(count(&conn, "configurations"), 0);
            }
        }
    }

    fn client_names(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT id, name FROM clients ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn semicolons_tabs_reordered_and_extra_columns_import() {
        let (dir, db, conn) = db();
        // European Excel: semicolons, a comma inside a name, a BOM, headers in another case
        // and order, and a column the format does not know.
        let f = write(
            &dir,
            "semi.csv",
            "\u{feff} Name ;ID;Notes\r\nAcme, Inc.;1;key account\r\n\"Beta; Ltd\";2;\r\n"
                .as_bytes(),
        );
        let imported = clients(&db, &f).unwrap();
        assert_eq!(
            imported.to_string(),
            "Imported 2 clients (2 new, 0 updated)."
        );
        assert_eq!(imported.warnings.len(), 1, "{:?}", imported.warnings);
        assert!(
            imported.warnings[0].contains("line 1: ignoring the column `Notes`"),
            "{:?}",
            imported.warnings
        );
        assert_eq!(
            client_names(&conn),
            [
                ("1".into(), "Acme, Inc.".into()),
                ("2".into(), "Beta; Ltd".into())
            ]
        );
        // Tabs, and one client: singular.
        let f = write(&dir, "tab.csv", b"name\tid\nGamma\t3\n");
        let imported = clients(&db, &f).unwrap();
        assert_eq!(
            imported.to_string(),
            "Imported 1 client (1 new, 0 updated)."
        );
        assert!(imported.warnings.is_empty());
        // Configurations by header name too, MACs separated by semicolons inside quotes.
        let f = write(
            &dir,
            "cfg.csv",
            b"MAC_Address;serial_number;hostname;name;client_id;id\n\"aa:bb:cc:dd:ee:01; aa:bb:cc:dd:ee:02\";SN1;dc01;DC;1;10\n",
        );
        let imported = configurations(&db, &f).unwrap();
        assert_eq!(
            imported.to_string(),
            "Imported 1 configuration (1 new, 0 updated)."
        );
        let row: (String, String, String, String) = conn
            .query_row(
                "SELECT client_id, name, serial_number, mac_addresses FROM configurations WHERE id = '10'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "1".into(),
                "DC".into(),
                "SN1".into(),
                r#"["aa:bb:cc:dd:ee:01","aa:bb:cc:dd:ee:02"]"#.into()
            )
        );
    }

    #[test]
    fn an_unclosed_quote_is_named_as_such_and_changes_nothing() {
        let (dir, db, conn) = db();
        let f = write(&dir, "ok.csv", b"id,name\n1,Acme\n");
        clients(&db, &f).unwrap();
        let f = write(
            &dir,
            "quote.csv",
            b"id;name\n2;\"Beta \"\"quoted\"\" Ltd\"\n3;\"Gamma\n4;Delta\n",
        );
        let err = clients(&db, &f).unwrap_err();
        assert_eq!(err.exit, Exit::BadInput);
        assert!(
            err.message.contains("line 3: a quoted field is not closed"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("nothing was imported"),
            "{}",
            err.message
        );
        assert_eq!(client_names(&conn), [("1".into(), "Acme".into())]);
        // A quote inside an unquoted cell is only a character.
        let f = write(&dir, "inch.csv", b"id,name\n5,12\" rack\n");
        clients(&db, &f).unwrap();
    }

    #[test]
    fn missing_and_repeated_columns_are_refused_by_name() {
        let (dir, db, conn) = db();
        let cases: [(&str, &[u8], &str); 3] = [
            (
                "missing",
                b"id;title\n1;A\n",
                "line 1: the header lacks the column `name` (the columns are `id,name`, in any order; found `id,title`)",
            ),
            (
                "twice",
                b"id,name,ID\n1,A,1\n",
                "line 1: the header names the column `id` twice",
            ),
            (
                "short row",
                b"name;id;notes\nA;1\n",
                "line 2: expected 3 cells (one per header column), found 2",
            ),
        ];
        for (name, body, expected) in cases {
            let err = clients(&db, &write(&dir, name, body)).unwrap_err();
            assert!(err.message.contains(expected), "{name}: {}", err.message);
        }
        assert!(client_names(&conn).is_empty());
    }

    #[test]
    fn the_delimiter_is_the_commonest_separator_of_the_header_line() {
        assert_eq!(delimiter(b"id,name\n1;2;3;4\n"), b',');
        assert_eq!(delimiter(b"id;name;x\n"), b';');
        assert_eq!(delimiter(b"id\tname\n"), b'\t');
        assert_eq!(delimiter(b"\"a;b\",name\n"), b',');
        assert_eq!(delimiter(b"id\n"), b',');
        assert_eq!(unclosed_quote(b"a,\"b\nc\",d\n", b','), None);
        assert_eq!(unclosed_quote(b"a\nb,\"c\n", b','), Some(2));
    }

    #[test]
    fn macs_split_on_semicolons_commas_and_spaces() {
        assert_eq!(split_macs("a;b c,d  e"), vec!["a", "b", "c", "d", "e"]);
        assert!(split_macs("  ").is_empty());
    }
}
