//! `import clients|configurations FILE.csv`: loads Scopable records, all or nothing. Every
//! row is checked before anything is written, and an error names the line.

use crate::app::{AppError, Exit};
use rusqlite::{Connection, params};
use std::collections::HashSet;
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

fn bad(file: &Path, line: u64, message: impl std::fmt::Display) -> AppError {
    AppError::new(
        Exit::BadInput,
        format!(
            "{} line {line}: {message}; nothing was imported",
            file.display()
        ),
    )
}

/// Reads every row, checking the header, UTF-8, cell count, ids and control characters.
fn read_rows(file: &Path, header: &[&str]) -> Result<Vec<(u64, Vec<String>)>, AppError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(file)
        .map_err(|e| {
            AppError::new(
                Exit::BadInput,
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(bad(
                    file,
                    e.position().map_or(line, |p| p.line()),
                    format!("not valid CSV ({e})"),
                ));
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        let mut cells = Vec::with_capacity(record.len());
        for cell in record.iter() {
            let text = std::str::from_utf8(cell)
                .map_err(|_| bad(file, line, "not valid UTF-8 (save the file as UTF-8)"))?;
            let text = text.trim_start_matches('\u{feff}');
            if text.len() > MAX_CELL {
                return Err(bad(
                    file,
                    line,
                    format!("a cell is longer than {MAX_CELL} bytes"),
                ));
            }
            if text.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad(file, line, "a cell contains a control character"));
            }
            cells.push(text.trim().to_string());
        }
        if first {
            first = false;
            let got: Vec<String> = cells.iter().map(|c| c.to_ascii_lowercase()).collect();
            if got != header {
                return Err(bad(
                    file,
                    line,
                    format!(
                        "the header must be `{}` (found `{}`)",
                        header.join(","),
                        cells.join(",")
                    ),
                ));
            }
            continue;
        }
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        if cells.len() != header.len() {
            return Err(bad(
                file,
                line,
                format!("expected {} cells, found {}", header.len(), cells.len()),
            ));
        }
        if cells[0].is_empty() {
            return Err(bad(file, line, "the id is empty"));
        }
        if !seen.insert(cells[0].clone()) {
            return Err(bad(file, line, format!("id {:?} appears twice", cells[0])));
        }
        rows.push((line, cells));
    }
    if first {
        return Err(bad(
            file,
            1,
            format!(
                "the file is empty; the header must be `{}`",
                header.join(",")
            ),
        ));
    }
    Ok(rows)
}

/// Imports clients (`id,name`), updating existing ids.
pub fn clients(conn: &Connection, file: &Path) -> Result<String, AppError> {
    let rows = read_rows(file, CLIENT_HEADER)?;
    for (line, cells) in &rows {
        if cells[1].is_empty() {
            return Err(bad(file, *line, "the name is empty"));
        }
    }
    let tx = conn.unchecked_transaction()?;
    let mut added = 0;
    for (_, cells) in &rows {
        let existed = tx.execute(
            "UPDATE clients SET name = ?2 WHERE id = ?1",
            params![cells[0], cells[1]],
        )? > 0;
        if !existed {
            tx.execute(
                "INSERT INTO clients (id, name) VALUES (?1, ?2)",
                params![cells[0], cells[1]],
            )?;
            added += 1;
        }
    }
    tx.commit()?;
    Ok(format!(
        "Imported {} clients ({added} new, {} updated).",
        rows.len(),
        rows.len() - added
    ))
}

/// Splits a `mac_address` cell holding one or more MACs separated by `;`, `,` or spaces.
pub fn split_macs(cell: &str) -> Vec<String> {
    cell.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Imports configurations, updating existing ids. Every client must already exist.
pub fn configurations(conn: &Connection, file: &Path) -> Result<String, AppError> {
    let rows = read_rows(file, CONFIGURATION_HEADER)?;
    let mut clients = HashSet::new();
    {
        let mut stmt = conn.prepare("SELECT id FROM clients")?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            clients.insert(id?);
        }
    }
    // A configuration linked by hand may not move to another client: the link would then
    // cross clients, and a sync never changes manual links.
    let mut manual_targets = std::collections::HashMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT c.id, c.client_id FROM configurations c JOIN links l
             ON l.kind = 'configuration' AND l.source = 'manual' AND l.scopable_id = c.id",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (id, client) = row?;
            manual_targets.insert(id, client);
        }
    }
    for (line, cells) in &rows {
        if !clients.contains(&cells[1]) {
            return Err(bad(
                file,
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
                file,
                *line,
                format!(
                    "configuration {:?} is linked by hand under client {client:?}; reset that link before moving it to {:?}",
                    cells[0], cells[1]
                ),
            ));
        }
    }
    let tx = conn.unchecked_transaction()?;
    let mut added = 0;
    let opt = |s: &String| if s.is_empty() { None } else { Some(s.clone()) };
    for (_, c) in &rows {
        let macs = serde_json::json!(split_macs(&c[5])).to_string();
        let updated = tx.execute(
            "UPDATE configurations SET client_id = ?2, name = ?3, hostname = ?4, serial_number = ?5, mac_addresses = ?6 WHERE id = ?1",
            params![c[0], c[1], c[2], opt(&c[3]), opt(&c[4]), macs],
        )? > 0;
        if !updated {
            tx.execute(
                "INSERT INTO configurations (id, client_id, name, hostname, serial_number, mac_addresses) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c[0], c[1], c[2], opt(&c[3]), opt(&c[4]), macs],
            )?;
            added += 1;
        }
    }
    tx.commit()?;
    Ok(format!(
        "Imported {} configurations ({added} new, {} updated).",
        rows.len(),
        rows.len() - added
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("t.db")).unwrap();
        (dir, conn)
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
        let (dir, conn) = db();
        let f = write(&dir, "c.csv", b"id,name\n1,Acme\n2,\"Beta, Inc.\"\n");
        assert!(clients(&conn, &f).unwrap().contains("2 new"));
        let f = write(&dir, "c2.csv", b"id,name\n2,Beta Renamed\n3,Gamma\n");
        clients(&conn, &f).unwrap();
        assert_eq!(count(&conn, "clients"), 3);
        let name: String = conn
            .query_row("SELECT name FROM clients WHERE id = '2'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "Beta Renamed");
        let f = write(&dir, "cfg.csv", b"id,client_id,name,hostname,serial_number,mac_address\n10,1,DC,dc01,SN1,aa:bb:cc:dd:ee:01; aa-bb-cc-dd-ee-02\n");
        configurations(&conn, &f).unwrap();
        let macs: String = conn
            .query_row("SELECT mac_addresses FROM configurations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(macs, r#"["aa:bb:cc:dd:ee:01","aa-bb-cc-dd-ee-02"]"#);
    }

    #[test]
    fn bad_files_change_nothing_and_name_the_line() {
        let (dir, conn) = db();
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
            let err = clients(&conn, &f).unwrap_err();
            assert_eq!(err.exit, Exit::BadInput);
            assert!(err.message.contains(expected), "{name}: {}", err.message);
        }
        assert_eq!(count(&conn, "clients"), 0);
        let f = write(
            &dir,
            "cfg.csv",
            b"id,client_id,name,hostname,serial_number,mac_address\n10,99,DC,,,\n",
        );
        let err = configurations(&conn, &f).unwrap_err();
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
            let (dir, conn) = db();
            let f = write(&dir, "fuzz.csv", &bytes);
            clients(&conn, &write(&dir, "seed.csv", b"id,name\nseed,Seed\n")).unwrap();
            match clients(&conn, &f) {
                Ok(_) => {}
                Err(e) => {
                    proptest::prop_assert_eq!(e.exit, Exit::BadInput);
                    proptest::prop_assert!(e.message.contains("line") || e.message.contains("cannot read"), "{}", e.message);
                    proptest::prop_assert_eq!(count(&conn, "clients"), 1);
                }
            }
            let err = configurations(&conn, &f);
            if err.is_err() {
                proptest::prop_assert_eq!(count(&conn, "configurations"), 0);
            }
        }
    }

    #[test]
    fn macs_split_on_semicolons_commas_and_spaces() {
        assert_eq!(split_macs("a;b c,d  e"), vec!["a", "b", "c", "d", "e"]);
        assert!(split_macs("  ").is_empty());
    }
}
