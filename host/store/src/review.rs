//! Decisions an admin makes by hand: links made (or a match changed), records ignored, manual
//! decisions reset, a connector disconnected; and the log of them, with who made each. Every
//! decision is written with its log row in one transaction, so they stand or fall together,
//! and decisions about one connector are made one at a time, whichever process or replica
//! makes them (on SQLite and on PostgreSQL alike). Every row read or written is the handle's
//! account's.

use crate::Db;
use crate::db::{self, DbError};
use crate::sql::Sql;
use crate::values;

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
    tx: &dyn Sql,
    account: &str,
    connector: &str,
    action: DecisionAction,
    record: Option<(&str, &str)>,
    scopable_id: Option<&str>,
    actor: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO decision_log (account, at, connector, action, record_kind, source_id,
                                   scopable_id, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &values![
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

/// Runs `f` (given the transaction and the handle's account) as one decision about
/// `connector`: in one transaction, committed when `f` returns `Ok` and rolled back otherwise,
/// holding the connector's decision lock first, so that decisions about one connector, made by
/// any process or replica, are made one after another and each sees what the one before
/// wrote. The handle is shared, so the transaction runs on a connection of its own.
fn decide<R>(
    db: &Db,
    connector: &str,
    f: impl FnOnce(&dyn Sql, &str) -> Result<R, DbError>,
) -> Result<R, DbError> {
    let mut own = db.sibling()?;
    let tx = own.begin()?;
    // The apply transaction of a sync takes the same lock: it checks that no decision
    // changed since it started, and a decision must not slip in between.
    tx.lock(&crate::sync_apply::basis_lock(db.account(), connector))?;
    let out = f(&tx, db.account())?;
    tx.commit()?;
    Ok(out)
}

/// A stored source record of `kind`: its name and its organization's id; `None` when it is
/// not known.
pub fn source_record(
    db: &Db,
    connector: &str,
    kind: &str,
    id: &str,
) -> Result<Option<(String, Option<String>)>, DbError> {
    db.sql()
        .query_opt(
            "SELECT name, organization_id FROM source_records
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            &values![db.account(), connector, kind, id],
        )?
        .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
        .transpose()
}

/// Configurations linked by hand under an source organization: (source id, target, target's
/// client), by source id.
pub fn manual_configurations_under(
    db: &Db,
    connector: &str,
    organization: &str,
) -> Result<Vec<(String, String, String)>, DbError> {
    db.sql()
        .query(
            "SELECT l.source_id, l.scopable_id, c.client_id FROM links l
             JOIN source_records r ON r.account = l.account AND r.connector = l.connector
                  AND r.kind = 'configuration' AND r.source_id = l.source_id
             JOIN configurations c ON c.account = l.account AND c.id = l.scopable_id
             WHERE l.account = ?1 AND l.connector = ?2 AND l.kind = 'configuration'
               AND l.source = 'manual' AND r.organization_id = ?3
             ORDER BY l.source_id",
            &values![db.account(), connector, organization],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
        .collect()
}

/// Whether a Scopable client exists.
pub fn client_exists(db: &Db, id: &str) -> Result<bool, DbError> {
    Ok(db
        .sql()
        .query_opt(
            "SELECT 1 FROM clients WHERE account = ?1 AND id = ?2",
            &values![db.account(), id],
        )?
        .is_some())
}

/// The client of a Scopable configuration; `None` when there is no such configuration.
pub fn configuration_client(db: &Db, id: &str) -> Result<Option<String>, DbError> {
    db.sql()
        .query_opt(
            "SELECT client_id FROM configurations WHERE account = ?1 AND id = ?2",
            &values![db.account(), id],
        )?
        .map(|r| r.text(0))
        .transpose()
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
    db.sql()
        .query_opt(
            "SELECT source_id, source FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND scopable_id = ?4
               AND source_id != ?5",
            &values![db.account(), connector, kind, scopable_id, source_id],
        )?
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .transpose()
}

/// Links an source record of `kind` to `scopable_id` by hand, logged with `actor`, in one
/// write transaction holding the connector's decision lock. `taken_from` (source id, name) is
/// the record the admin agreed to take the target from: its automatic link is removed and it
/// is listed again as unplaced (`target-taken`). Returns `false`, changing nothing, when the
/// target's holder is no longer the one agreed to (a sync applied meanwhile, or another
/// admin linked another record to it first).
pub fn link_by_hand(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
    scopable_id: &str,
    taken_from: Option<(&str, &str)>,
    actor: &str,
) -> Result<bool, DbError> {
    decide(db, connector, |tx, account| {
        let holder_now = tx
            .query_opt(
                "SELECT source_id FROM links
                 WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND scopable_id = ?4
                   AND source_id != ?5",
                &values![account, connector, kind, scopable_id, source_id],
            )?
            .map(|r| r.text(0))
            .transpose()?;
        if holder_now.as_deref() != taken_from.map(|(other, _)| other) {
            return Ok(false);
        }
        let now = db::now();
        if let Some((other, other_name)) = taken_from {
            // One to one: the automatic link that held this target gives way to the manual
            // one, and the record that held it is listed again at once, with the target it
            // lost.
            let removed = tx.execute(
                "DELETE FROM links
                 WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4
                   AND source = 'auto'",
                &values![account, connector, kind, other],
            )?;
            if removed > 0 {
                tx.execute(
                    "INSERT INTO unplaced (account, connector, kind, source_id, name, reason,
                                           candidates, suggestions)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'target-taken', ?6, '[]')
                     ON CONFLICT (account, connector, kind, source_id) DO UPDATE SET
                         name = excluded.name, reason = excluded.reason,
                         candidates = excluded.candidates, suggestions = excluded.suggestions",
                    &values![
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
            "INSERT INTO decisions (account, connector, kind, source_id, action, scopable_id,
                                    decided_at)
             VALUES (?1, ?2, ?3, ?4, 'link', ?5, ?6)
             ON CONFLICT (account, connector, kind, source_id) DO UPDATE SET
                 action = excluded.action, scopable_id = excluded.scopable_id,
                 decided_at = excluded.decided_at",
            &values![account, connector, kind, source_id, scopable_id, &now],
        )?;
        tx.execute(
            "INSERT INTO links (account, connector, kind, source_id, scopable_id, source,
                                evidence, linked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'manual', '[\"manual\"]', ?6)
             ON CONFLICT (account, connector, kind, source_id) DO UPDATE SET
                 scopable_id = excluded.scopable_id, source = excluded.source,
                 evidence = excluded.evidence, linked_at = excluded.linked_at",
            &values![account, connector, kind, source_id, scopable_id, &now],
        )?;
        record_decision(
            tx,
            account,
            connector,
            DecisionAction::Link,
            Some((kind, source_id)),
            Some(scopable_id),
            actor,
        )?;
        Ok(true)
    })
}

/// Ignores an source record of `kind` (it is never linked), removing its link, logged with
/// `actor`, in one transaction holding the connector's decision lock. Returns how many links
/// were removed.
pub fn ignore(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
    actor: &str,
) -> Result<usize, DbError> {
    decide(db, connector, |tx, account| {
        tx.execute(
            "INSERT INTO decisions (account, connector, kind, source_id, action, scopable_id,
                                    decided_at)
             VALUES (?1, ?2, ?3, ?4, 'ignore', NULL, ?5)
             ON CONFLICT (account, connector, kind, source_id) DO UPDATE SET
                 action = excluded.action, scopable_id = excluded.scopable_id,
                 decided_at = excluded.decided_at",
            &values![account, connector, kind, source_id, db::now()],
        )?;
        let unlinked = tx.execute(
            "DELETE FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            &values![account, connector, kind, source_id],
        )?;
        record_decision(
            tx,
            account,
            connector,
            DecisionAction::Ignore,
            Some((kind, source_id)),
            None,
            actor,
        )?;
        Ok(unlinked as usize)
    })
}

/// Whether an source record of `kind` has a manual decision (a link by hand or an ignore).
pub fn has_decision(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
) -> Result<bool, DbError> {
    Ok(db
        .sql()
        .query_opt(
            "SELECT 1 FROM decisions
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            &values![db.account(), connector, kind, source_id],
        )?
        .is_some())
}

/// The target of an source record's automatic link, if it has one.
pub fn auto_link_target(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
) -> Result<Option<String>, DbError> {
    db.sql()
        .query_opt(
            "SELECT scopable_id FROM links
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4
               AND source = 'auto'",
            &values![db.account(), connector, kind, source_id],
        )?
        .map(|r| r.text(0))
        .transpose()
}

/// Drops an source record's manual decision and its manual link, logged with `actor` when
/// there was a decision, in one transaction holding the connector's decision lock. Returns how
/// many decisions were dropped (0: there was none, or another reset dropped it first).
pub fn reset(
    db: &Db,
    connector: &str,
    kind: &str,
    source_id: &str,
    actor: &str,
) -> Result<usize, DbError> {
    decide(db, connector, |tx, account| {
        // The target of the manual link it drops (none for an ignore), for the decisions log.
        let dropped_target = tx
            .query_opt(
                "SELECT scopable_id FROM decisions
                 WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
                &values![account, connector, kind, source_id],
            )?
            .map(|r| r.opt_text(0))
            .transpose()?
            .flatten();
        let removed = tx.execute(
            "DELETE FROM decisions
             WHERE account = ?1 AND connector = ?2 AND kind = ?3 AND source_id = ?4",
            &values![account, connector, kind, source_id],
        )?;
        if removed > 0 {
            record_decision(
                tx,
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
            &values![account, connector, kind, source_id],
        )?;
        Ok(removed as usize)
    })
}

/// Deletes a connector's connection and key (links stay), logged with `actor` when there was
/// one, in one transaction holding the connector's decision lock. Returns whether there was
/// one (`false` as well when another disconnect deleted it first).
pub fn disconnect(db: &Db, connector: &str, actor: &str) -> Result<bool, DbError> {
    decide(db, connector, |tx, account| {
        let removed = crate::connections::delete_connection(tx, account, connector)?;
        if removed {
            record_decision(
                tx,
                account,
                connector,
                DecisionAction::Disconnect,
                None,
                None,
                actor,
            )?;
        }
        Ok(removed)
    })
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

/// Every ignored record of a connector, by kind and source id (as text).
pub fn ignored_records(db: &Db, connector: &str) -> Result<Vec<IgnoredRecord>, DbError> {
    db.sql()
        .query(
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
             WHERE d.account = ?1 AND d.connector = ?2 AND d.action = 'ignore'
             ORDER BY d.kind, d.source_id",
            &values![db.account(), connector],
        )?
        .iter()
        .map(|r| {
            let id = r.text(1)?;
            Ok(IgnoredRecord {
                kind: r.text(0)?,
                itglue_id: id.clone(),
                source_id: id,
                name: r.opt_text(2)?,
                decided_at: r.text(3)?,
                actor: r.opt_text(4)?,
            })
        })
        .collect()
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
    db.sql()
        .query(
            "SELECT id, at, action, record_kind, source_id, scopable_id, actor FROM decision_log
             WHERE account = ?1 AND connector = ?2 ORDER BY id DESC LIMIT ?3",
            &values![
                db.account(),
                connector,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.int(0)?,
                LoggedDecision {
                    at: r.text(1)?,
                    action: r.text(2)?,
                    record_kind: r.opt_text(3)?,
                    source_id: r.opt_text(4)?,
                    scopable_id: r.opt_text(5)?,
                    actor: r.text(6)?,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::databases;

    /// The number of decisions of `action` logged for `connector`.
    fn logged(db: &Db, connector: &str, action: &str) -> usize {
        logged_decisions(db, connector, 1000)
            .unwrap()
            .iter()
            .filter(|(_, d)| d.action == action)
            .count()
    }

    /// The links of `kind` stored for `connector`: (source id, target, how it was made).
    fn links_of(db: &Db, connector: &str, kind: &str) -> Vec<(String, String, String)> {
        db.sql()
            .query(
                "SELECT source_id, scopable_id, source FROM links
                 WHERE account = ?1 AND connector = ?2 AND kind = ?3 ORDER BY source_id",
                &values![db.account(), connector, kind],
            )
            .unwrap()
            .iter()
            .map(|r| (r.text(0).unwrap(), r.text(1).unwrap(), r.text(2).unwrap()))
            .collect()
    }

    fn auto_link(db: &Db, source_id: &str, target: &str) {
        db.sql()
            .execute(
                "INSERT INTO links (account, connector, kind, source_id, scopable_id, source,
                                    evidence, linked_at)
                 VALUES (?1, 'itglue', 'organization', ?2, ?3, 'auto', '[\"name\"]', 't0')",
                &values![db.account(), source_id, target],
            )
            .unwrap();
    }

    #[test]
    fn a_decision_is_logged_with_its_actor() {
        for t in databases("review_log") {
            let db = t.open(crate::DEFAULT_ACCOUNT);
            record_decision(
                db.sql(),
                crate::DEFAULT_ACCOUNT,
                "itglue",
                DecisionAction::Link,
                Some(("organization", "1001")),
                Some("c1"),
                "cli:alice",
            )
            .unwrap();
            record_decision(
                db.sql(),
                crate::DEFAULT_ACCOUNT,
                "itglue",
                DecisionAction::Disconnect,
                None,
                None,
                "cli:bob",
            )
            .unwrap();
            let logged = logged_decisions(&db, "itglue", 10).unwrap();
            let rows: Vec<_> = logged.iter().map(|(_, d)| d.clone()).collect();
            assert_eq!(rows.len(), 2, "{}", t.name);
            assert_eq!(
                (
                    rows[0].action.as_str(),
                    rows[0].record_kind.as_deref(),
                    rows[0].actor.as_str()
                ),
                ("disconnect", None, "cli:bob"),
                "{}",
                t.name
            );
            assert_eq!(
                (
                    rows[1].action.as_str(),
                    rows[1].record_kind.as_deref(),
                    rows[1].source_id.as_deref(),
                    rows[1].scopable_id.as_deref()
                ),
                ("link", Some("organization"), Some("1001"), Some("c1")),
                "{}",
                t.name
            );
            assert!(logged[0].0 > logged[1].0, "{}: newest first", t.name);
            assert_eq!(logged_decisions(&db, "itglue", 1).unwrap().len(), 1);
            assert!(logged_decisions(&db, "other", 10).unwrap().is_empty());
            let elsewhere = t.open("elsewhere");
            assert!(
                logged_decisions(&elsewhere, "itglue", 10)
                    .unwrap()
                    .is_empty(),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn linking_by_hand_takes_the_target_from_the_agreed_holder_only() {
        for t in databases("review_link") {
            let db = t.open("a");
            auto_link(&db, "1001", "c1");
            // The holder is not the one agreed to (none): nothing changes.
            assert!(
                !link_by_hand(&db, "itglue", "organization", "1002", "c1", None, "cli:x").unwrap(),
                "{}",
                t.name
            );
            assert!(
                !link_by_hand(
                    &db,
                    "itglue",
                    "organization",
                    "1002",
                    "c1",
                    Some(("1003", "Other")),
                    "cli:x"
                )
                .unwrap(),
                "{}",
                t.name
            );
            assert_eq!(logged(&db, "itglue", "link"), 0, "{}", t.name);
            // Taken from its holder: the holder's automatic link goes, it is listed again.
            assert!(
                link_by_hand(
                    &db,
                    "itglue",
                    "organization",
                    "1002",
                    "c1",
                    Some(("1001", "Acme Old")),
                    "cli:x"
                )
                .unwrap(),
                "{}",
                t.name
            );
            assert_eq!(
                links_of(&db, "itglue", "organization"),
                vec![("1002".into(), "c1".into(), "manual".into())],
                "{}",
                t.name
            );
            let unplaced = crate::views::unplaced(&db, "itglue").unwrap();
            assert_eq!(unplaced.len(), 1, "{}", t.name);
            assert_eq!(
                (
                    unplaced[0].source_id.as_str(),
                    unplaced[0].name.as_str(),
                    unplaced[0].reason.as_str(),
                    unplaced[0].candidates.as_str()
                ),
                ("1001", "Acme Old", "target-taken", "[\"c1\"]"),
                "{}",
                t.name
            );
            assert!(has_decision(&db, "itglue", "organization", "1002").unwrap());
            assert_eq!(
                link_holder(&db, "itglue", "organization", "c1", "1001").unwrap(),
                Some(("1002".into(), "manual".into())),
                "{}",
                t.name
            );
            // Linked again elsewhere: the decision and the link are replaced, not doubled.
            assert!(
                link_by_hand(&db, "itglue", "organization", "1002", "c2", None, "cli:y").unwrap()
            );
            assert_eq!(
                links_of(&db, "itglue", "organization"),
                vec![("1002".into(), "c2".into(), "manual".into())],
                "{}",
                t.name
            );
            let last = &logged_decisions(&db, "itglue", 1).unwrap()[0].1;
            assert_eq!(
                (
                    last.action.as_str(),
                    last.scopable_id.as_deref(),
                    last.actor.as_str()
                ),
                ("link", Some("c2"), "cli:y"),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn ignore_and_reset_drop_links_and_are_logged() {
        for t in databases("review_ignore") {
            let db = t.open("a");
            auto_link(&db, "1001", "c1");
            assert_eq!(
                ignore(&db, "itglue", "organization", "1001", "cli:x").unwrap(),
                1,
                "{}",
                t.name
            );
            assert!(links_of(&db, "itglue", "organization").is_empty());
            // Ignoring again replaces the decision; there is no link left to drop.
            assert_eq!(
                ignore(&db, "itglue", "organization", "1001", "cli:y").unwrap(),
                0,
                "{}",
                t.name
            );
            let ignored = ignored_records(&db, "itglue").unwrap();
            assert_eq!(ignored.len(), 1, "{}", t.name);
            assert_eq!(
                (ignored[0].source_id.as_str(), ignored[0].name.as_deref()),
                ("1001", None),
                "{}",
                t.name
            );
            assert_eq!(ignored[0].actor.as_deref(), Some("cli:y"), "{}", t.name);
            assert!(crate::views::organization_ignored(&db, "itglue", "1001").unwrap());
            assert_eq!(logged(&db, "itglue", "ignore"), 2, "{}", t.name);

            // A reset drops the decision; a manual link's target is logged with it.
            assert_eq!(
                reset(&db, "itglue", "organization", "1001", "cli:x").unwrap(),
                1,
                "{}",
                t.name
            );
            assert!(ignored_records(&db, "itglue").unwrap().is_empty());
            assert!(
                link_by_hand(&db, "itglue", "organization", "1002", "c3", None, "cli:x").unwrap()
            );
            auto_link(&db, "1004", "c4");
            assert_eq!(
                reset(&db, "itglue", "organization", "1002", "cli:z").unwrap(),
                1,
                "{}",
                t.name
            );
            // The automatic link of another record stays; nothing to reset is no log row.
            assert_eq!(
                links_of(&db, "itglue", "organization"),
                vec![("1004".into(), "c4".into(), "auto".into())],
                "{}",
                t.name
            );
            assert_eq!(
                auto_link_target(&db, "itglue", "organization", "1004").unwrap(),
                Some("c4".into())
            );
            assert_eq!(
                reset(&db, "itglue", "organization", "1004", "cli:z").unwrap(),
                0,
                "{}",
                t.name
            );
            let resets: Vec<_> = logged_decisions(&db, "itglue", 100)
                .unwrap()
                .into_iter()
                .filter(|(_, d)| d.action == "reset")
                .map(|(_, d)| (d.source_id, d.scopable_id, d.actor))
                .collect();
            assert_eq!(
                resets,
                vec![
                    (Some("1002".into()), Some("c3".into()), "cli:z".into()),
                    (Some("1001".into()), None, "cli:x".into()),
                ],
                "{}",
                t.name
            );
        }
    }

    fn save_connection(db: &Db, connector: &str) {
        db.sql()
            .execute(
                "INSERT INTO connections (account, connector, region, endpoint, key_nonce,
                                          key_ciphertext, verified_at, connected_at)
                 VALUES (?1, ?2, 'us', 'https://api.example', ?3, ?3, 't0', 't0')",
                &values![db.account(), connector, &b"\x01"[..]],
            )
            .unwrap();
    }

    #[test]
    fn disconnecting_is_logged_only_when_there_was_a_connection() {
        for t in databases("review_disconnect") {
            let db = t.open("a");
            save_connection(&db, "itglue");
            auto_link(&db, "1001", "c1");
            assert!(disconnect(&db, "itglue", "cli:x").unwrap(), "{}", t.name);
            assert!(!disconnect(&db, "itglue", "cli:x").unwrap(), "{}", t.name);
            assert_eq!(logged(&db, "itglue", "disconnect"), 1, "{}", t.name);
            // Links stay.
            assert_eq!(links_of(&db, "itglue", "organization").len(), 1);
        }
    }

    /// `n` handles on `t` for `account`, each its own connection (a replica).
    fn replicas(t: &crate::testing::TestDb, n: usize) -> Vec<Db> {
        (0..n).map(|_| t.open("a")).collect()
    }

    #[test]
    fn replicas_linking_records_to_one_target_at_once_link_only_one() {
        for t in databases("review_link_race") {
            for round in 0..5 {
                let target = format!("c{round}");
                let won = std::sync::atomic::AtomicUsize::new(0);
                std::thread::scope(|s| {
                    for (i, db) in replicas(&t, 3).into_iter().enumerate() {
                        let (won, target) = (&won, &target);
                        s.spawn(move || {
                            let source = format!("{round}-{i}");
                            if link_by_hand(
                                &db,
                                "itglue",
                                "organization",
                                &source,
                                target,
                                None,
                                "cli:x",
                            )
                            .unwrap()
                            {
                                won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        });
                    }
                });
                // Links are one to one: a target linked by two replicas at once would be held
                // twice.
                assert_eq!(won.into_inner(), 1, "{}", t.name);
                let db = t.open("a");
                let holders = links_of(&db, "itglue", "organization")
                    .into_iter()
                    .filter(|(_, to, _)| *to == target)
                    .count();
                assert_eq!(holders, 1, "{}", t.name);
            }
            assert_eq!(logged(&t.open("a"), "itglue", "link"), 5, "{}", t.name);
        }
    }

    #[test]
    fn replicas_resetting_or_disconnecting_at_once_log_it_once() {
        for t in databases("review_reset_race") {
            let db = t.open("a");
            save_connection(&db, "itglue");
            for i in 0..4 {
                let id = format!("{i}");
                assert!(
                    link_by_hand(&db, "itglue", "organization", &id, &id, None, "cli:x").unwrap()
                );
            }
            let reset_won = std::sync::atomic::AtomicUsize::new(0);
            let disconnect_won = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for db in replicas(&t, 3) {
                    let (reset_won, disconnect_won) = (&reset_won, &disconnect_won);
                    s.spawn(move || {
                        for i in 0..4 {
                            let id = format!("{i}");
                            let dropped =
                                reset(&db, "itglue", "organization", &id, "cli:y").unwrap();
                            reset_won.fetch_add(dropped, std::sync::atomic::Ordering::SeqCst);
                        }
                        if disconnect(&db, "itglue", "cli:y").unwrap() {
                            disconnect_won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    });
                }
            });
            assert_eq!(reset_won.into_inner(), 4, "{}", t.name);
            assert_eq!(disconnect_won.into_inner(), 1, "{}", t.name);
            assert_eq!(logged(&db, "itglue", "reset"), 4, "{}", t.name);
            assert_eq!(logged(&db, "itglue", "disconnect"), 1, "{}", t.name);
            assert!(
                links_of(&db, "itglue", "organization").is_empty(),
                "{}",
                t.name
            );
        }
    }
}
