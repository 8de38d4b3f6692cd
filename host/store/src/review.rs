//! Decisions an admin makes by hand: links made (or a match changed), records ignored, manual
//! decisions reset, a connector disconnected; and the log of them, with who made each. Every
//! decision is written with its log row in one transaction, so they stand or fall together.
//! Every row read or written is the handle's account's.

use crate::Db;
use crate::db::{self, DbError};
use rusqlite::{Connection, OptionalExtension, params};

/// A decision an admin makes, as logged (and listed by `activity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionAction {
    /// A record linked by hand (or its match changed).
    Link,
    /// A record the admin chose never to link.
    Ignore,
    /// A manual decision dropped.
    Reset,
    /// The stored key and connection settings deleted.
    Disconnect,
}

impl DecisionAction {
    /// The action's name in the log and in `activity --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionAction::Link => "link",
            DecisionAction::Ignore => "ignore",
            DecisionAction::Reset => "reset",
            DecisionAction::Disconnect => "disconnect",
        }
    }
}

/// Logs one decision with its actor (`cli:<user>` or `token:<id>`), to be listed by
/// `activity`. Called inside the transaction that makes the decision, so the decision and its
/// log row stand or fall together. `record` (kind, id) is `None` for a decision about the
/// whole connector (`disconnect`); `scopable_id` is the link's target, or for a reset the
/// target of the manual link it dropped.
fn record_decision(
    conn: &Connection,
    account: &str,
    connector: &str,
    action: DecisionAction,
    record: Option<(&str, &str)>,
    scopable_id: Option<&str>,
    actor: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO decision_log (account, at, connector, action, record_kind, source_id,
                                   scopable_id, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            account,
            db::now(),
            connector,
            action.as_str(),
            record.map(|(kind, _)| kind),
            record.map(|(_, id)| id),
            scopable_id,
            actor
        ],
    )?;
    Ok(())
}

/// A stored source record of `kind`: its name and its organization's id; `None` when it is
/// not known.
pub fn source_record(
    db: &Db,
    connector: &str,
    kind: &str,
    id: &str,
) -> Result<Option<(String, Option<String>)>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT name, organization_id FROM source_records
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            params![db.account(), connector, kind, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Configurations linked by hand under an source organization: (source id, target, target's
/// client), by source id.
pub fn manual_configurations_under(
    db: &Db,
    connector: &str,
    organization: &str,
) -> Result<Vec<(String, String, String)>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT l.source_id, l.scopable_id, c.client_id FROM links l
         JOIN source_records r ON r.account = l.account AND r.connector = l.connector
              AND r.kind = 'configuration' AND r.source_id = l.source_id
         JOIN configurations c ON c.account = l.account AND c.id = l.scopable_id
         WHERE l.account = ?1 AND l.connector = ?2 AND l.kind = 'configuration'
           AND l.source = 'manual' AND r.organization_id = ?3
         ORDER BY l.source_id",
    )?;
    let rows = stmt.query_map(params![db.account(), connector, organization], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether a Scopable client exists.
pub fn client_exists(db: &Db, id: &str) -> Result<bool, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT 1 FROM clients WHERE account = ?1 AND id = ?2",
            [db.account(), id],
            |_| Ok(true),
        )
        .optional()?
        .is_some())
}

/// The client of a Scopable configuration; `None` when there is no such configuration.
pub fn configuration_client(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT client_id FROM configurations WHERE account = ?1 AND id = ?2",
            [db.account(), id],
            |r| r.get(0),
        )
        .optional()?)
}

/// The record of `kind` other than `source_id` linked to `scopable_id`, with how it was linked
/// (`auto` or `manual`), if any.
pub fn link_holder(
    db: &Db,
    connector: &str,
    kind: &str,
    scopable_id: &str,
    source_id: &str,
) -> Result<Option<(String, String)>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT source_id, source FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND scopable_id = ?4
               AND source_id != ?5",
            params![db.account(), connector, kind, scopable_id, source_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Links an source record of `kind` to `scopable_id` by hand, logged with `actor`, in one
/// write transaction. `taken_from` (source id, name) is the record the admin agreed to take
/// the target from: its automatic link is removed and it is listed again as unplaced
/// (`target-taken`). Returns `false`, changing nothing, when the target's holder is no longer
/// the one agreed to (a sync applied meanwhile).
pub fn link_by_hand(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
    scopable_id: &str,
    taken_from: Option<(&str, &str)>,
    actor: &str,
) -> Result<bool, DbError> {
    let account = db.account();
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    let holder_now: Option<String> = tx
        .query_row(
            "SELECT source_id FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND scopable_id = ?4
               AND source_id != ?5",
            params![account, connector, kind, scopable_id, source_id],
            |r| r.get(0),
        )
        .optional()?;
    if holder_now.as_deref() != taken_from.map(|(other, _)| other) {
        return Ok(false);
    }
    let now = db::now();
    if let Some((other, other_name)) = taken_from {
        // One to one: the automatic link that held this target gives way to the manual one,
        // and the record that held it is listed again at once, with the target it lost.
        let removed = tx.execute(
            "DELETE FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4
               AND source = 'auto'",
            params![account, connector, kind, other],
        )?;
        if removed > 0 {
            tx.execute(
                "INSERT OR REPLACE INTO unplaced (account, connector, kind, source_id, name, reason,
                                                  candidates, suggestions)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'target-taken', ?6, '[]')",
                params![
                    account,
                    connector,
                    kind,
                    other,
                    other_name,
                    serde_json::json!([scopable_id]).to_string()
                ],
            )?;
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO decisions (account, connector, kind, source_id, action, scopable_id,
                                           decided_at)
         VALUES (?1, ?2, ?3, ?4, 'link', ?5, ?6)",
        params![account, connector, kind, source_id, scopable_id, now],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO links (account, connector, kind, source_id, scopable_id, source,
                                       evidence, linked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'manual', '[\"manual\"]', ?6)",
        params![account, connector, kind, source_id, scopable_id, now],
    )?;
    record_decision(
        &tx,
        account,
        connector,
        DecisionAction::Link,
        Some((kind, source_id)),
        Some(scopable_id),
        actor,
    )?;
    tx.commit()?;
    Ok(true)
}

/// Ignores an source record of `kind` (it is never linked), removing its link, logged with
/// `actor`, in one transaction. Returns how many links were removed.
pub fn ignore(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
    actor: &str,
) -> Result<usize, DbError> {
    let account = db.account();
    let tx = db.conn().unchecked_transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO decisions (account, connector, kind, source_id, action, scopable_id,
                                           decided_at)
         VALUES (?1, ?2, ?3, ?4, 'ignore', NULL, ?5)",
        params![account, connector, kind, source_id, db::now()],
    )?;
    let unlinked = tx.execute(
        "DELETE FROM links WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
        params![account, connector, kind, source_id],
    )?;
    record_decision(
        &tx,
        account,
        connector,
        DecisionAction::Ignore,
        Some((kind, source_id)),
        None,
        actor,
    )?;
    tx.commit()?;
    Ok(unlinked)
}

/// Whether an source record of `kind` has a manual decision (a link by hand or an ignore).
pub fn has_decision(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
) -> Result<bool, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT 1 FROM decisions
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            params![db.account(), connector, kind, source_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The target of an source record's automatic link, if it has one.
pub fn auto_link_target(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT scopable_id FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4
               AND source = 'auto'",
            params![db.account(), connector, kind, source_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Drops an source record's manual decision and its manual link, logged with `actor` when
/// there was a decision, in one transaction. Returns how many decisions were dropped (0: there
/// was none).
pub fn reset(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
    actor: &str,
) -> Result<usize, DbError> {
    let account = db.account();
    let tx = db.conn().unchecked_transaction()?;
    // The target of the manual link it drops (none for an ignore), for the decisions log.
    let dropped_target: Option<String> = tx
        .query_row(
            "SELECT scopable_id FROM decisions
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            params![account, connector, kind, source_id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let removed = tx.execute(
        "DELETE FROM decisions WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
        params![account, connector, kind, source_id],
    )?;
    if removed > 0 {
        record_decision(
            &tx,
            account,
            connector,
            DecisionAction::Reset,
            Some((kind, source_id)),
            dropped_target.as_deref(),
            actor,
        )?;
    }
    tx.execute(
        "DELETE FROM links
         WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4
           AND source = 'manual'",
        params![account, connector, kind, source_id],
    )?;
    tx.commit()?;
    Ok(removed)
}

/// Deletes a connector's connection and key (links stay), logged with `actor` when there was
/// one, in one transaction. Returns whether there was one.
pub fn disconnect(db: &Db, connector: &str, actor: &str) -> Result<bool, DbError> {
    let tx = db.conn().unchecked_transaction()?;
    let removed = crate::connections::delete_connection(&tx, db.account(), connector)?;
    if removed {
        record_decision(
            &tx,
            db.account(),
            connector,
            DecisionAction::Disconnect,
            None,
            None,
            actor,
        )?;
    }
    tx.commit()?;
    Ok(removed)
}

/// One ignored record, as `ignored` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IgnoredRecord {
    /// `organization` or `configuration`.
    pub kind: String,
    /// The record's id in its source, under the name scripts of the IT Glue connector read.
    pub itglue_id: String,
    /// The record's id in its source.
    pub source_id: String,
    /// The record's name as last received, or `None` when the last sync did not receive it.
    pub name: Option<String>,
    /// When it was ignored.
    pub decided_at: String,
    /// Who ignored it, or `None` for a decision made before decisions were logged.
    pub actor: Option<String>,
}

/// Every ignored record of a connector, in no particular order.
pub fn ignored_records(db: &Db, connector: &str) -> Result<Vec<IgnoredRecord>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT d.kind, d.source_id, r.name, d.decided_at,
                (SELECT g.actor FROM decision_log g
                  WHERE g.account = d.account AND g.connector = d.connector
                    AND g.record_kind = d.kind AND g.source_id = d.source_id
                    AND g.action = 'ignore'
                  ORDER BY g.id DESC LIMIT 1)
         FROM decisions d
         LEFT JOIN source_records r
                ON r.account = d.account AND r.connector = d.connector AND r.kind = d.kind
               AND r.source_id = d.source_id
         WHERE d.account = ?1 AND d.connector = ?2 AND d.action = 'ignore'",
    )?;
    let rows: Vec<IgnoredRecord> = stmt
        .query_map([db.account(), connector], |r| {
            let id: String = r.get(1)?;
            Ok(IgnoredRecord {
                kind: r.get(0)?,
                itglue_id: id.clone(),
                source_id: id,
                name: r.get(2)?,
                decided_at: r.get(3)?,
                actor: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// One logged decision, as `activity` lists it (with `"kind": "decision"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoggedDecision {
    /// When it was made.
    pub at: String,
    /// `link`, `ignore`, `reset` or `disconnect`.
    pub action: String,
    /// `organization` or `configuration`; `None` for `disconnect`.
    pub record_kind: Option<String>,
    /// The connector-side id of the record; `None` for `disconnect`.
    pub source_id: Option<String>,
    /// The link's target; for a reset, the target of the manual link it dropped.
    pub scopable_id: Option<String>,
    /// Who made it: `cli:<user>` or `token:<token_id>`.
    pub actor: String,
}

/// The newest logged decisions of a connector, newest first, with their row ids.
pub fn logged_decisions(
    db: &Db,
    connector: &str,
    limit: usize,
) -> Result<Vec<(i64, LoggedDecision)>, DbError> {
    let mut stmt = db.conn().prepare(
        "SELECT id, at, action, record_kind, source_id, scopable_id, actor FROM decision_log
         WHERE account = ?1 AND connector = ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![db.account(), connector, limit as i64], |r| {
        Ok((
            r.get(0)?,
            LoggedDecision {
                at: r.get(1)?,
                action: r.get(2)?,
                record_kind: r.get(3)?,
                source_id: r.get(4)?,
                scopable_id: r.get(5)?,
                actor: r.get(6)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_ACCOUNT;

    #[test]
    fn a_decision_is_logged_with_its_actor() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("d.db"), DEFAULT_ACCOUNT).unwrap();
        record_decision(
            db.conn(),
            DEFAULT_ACCOUNT,
            "itglue",
            DecisionAction::Link,
            Some(("organization", "1001")),
            Some("c1"),
            "cli:alice",
        )
        .unwrap();
        record_decision(
            db.conn(),
            DEFAULT_ACCOUNT,
            "itglue",
            DecisionAction::Disconnect,
            None,
            None,
            "cli:bob",
        )
        .unwrap();
        let logged = logged_decisions(&db, "itglue", 10).unwrap();
        let rows: Vec<_> = logged.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].action.as_str(),
                rows[0].record_kind.as_deref(),
                rows[0].actor.as_str()
            ),
            ("disconnect", None, "cli:bob")
        );
        assert_eq!(
            (
                rows[1].action.as_str(),
                rows[1].record_kind.as_deref(),
                rows[1].source_id.as_deref(),
                rows[1].scopable_id.as_deref()
            ),
            ("link", Some("organization"), Some("1001"), Some("c1"))
        );
        assert!(logged_decisions(&db, "other", 10).unwrap().is_empty());
        let elsewhere = Db::open(&dir.path().join("d.db"), "elsewhere").unwrap();
        assert!(
            logged_decisions(&elsewhere, "itglue", 10)
                .unwrap()
                .is_empty()
        );
    }
}
