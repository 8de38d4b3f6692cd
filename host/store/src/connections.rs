//! Connections: each account's connectors' region, endpoint and encrypted key (sealed by the
//! vault, bound to the account's vault binding read here), and re-sealing every stored key
//! under a new master key.

use crate::accounts::HandleTx;
use crate::db::{DbError, now};
use crate::handle::Db;
use crate::sql::Sql;
use crate::values;
use crate::vault::{Binding, Vault, VaultError};

/// The handle's account's vault binding: what its stored keys are bound to (for the account
/// `default` of an upgraded database, the id its keys were always bound to). An account that
/// does not exist is [`DbError::NoAccount`].
pub fn account_id(db: &Db) -> Result<String, DbError> {
    db.sql()
        .query_opt(
            "SELECT vault_binding FROM accounts WHERE id = ?1",
            &values![db.account()],
        )?
        .ok_or_else(|| DbError::NoAccount {
            account: db.account().to_string(),
        })?
        .text(0)
}

/// A stored connection (the key stays encrypted).
#[derive(Debug, Clone)]
pub struct StoredConnection {
    /// The region name.
    pub region: String,
    /// The base URL used.
    pub endpoint: String,
    /// The vault nonce.
    pub key_nonce: Vec<u8>,
    /// The encrypted key.
    pub key_ciphertext: Vec<u8>,
    /// When the key last passed a test.
    pub verified_at: String,
}

/// Reads a connector's stored connection of the handle's account.
pub fn connection(db: &Db, connector: &str) -> Result<Option<StoredConnection>, DbError> {
    db.sql()
        .query_opt(
            "SELECT region, endpoint, key_nonce, key_ciphertext, verified_at
             FROM connections WHERE account = ?1 AND connector = ?2",
            &values![db.account(), connector],
        )?
        .map(|r| {
            Ok(StoredConnection {
                region: r.text(0)?,
                endpoint: r.text(1)?,
                key_nonce: r.blob(2)?,
                key_ciphertext: r.blob(3)?,
                verified_at: r.text(4)?,
            })
        })
        .transpose()
}

/// Stores (replacing) a connector's connection of the handle's account.
pub fn save_connection(db: &Db, connector: &str, c: &StoredConnection) -> Result<(), DbError> {
    db.sql().execute(
        "INSERT INTO connections (account, connector, region, endpoint, key_nonce, key_ciphertext,
                                  verified_at, connected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (account, connector) DO UPDATE SET region = excluded.region,
             endpoint = excluded.endpoint, key_nonce = excluded.key_nonce,
             key_ciphertext = excluded.key_ciphertext, verified_at = excluded.verified_at,
             connected_at = excluded.connected_at",
        &values![
            db.account(),
            connector,
            &c.region,
            &c.endpoint,
            c.key_nonce.as_slice(),
            c.key_ciphertext.as_slice(),
            &c.verified_at
        ],
    )?;
    Ok(())
}

/// Records that the handle's account's stored key passed a test just now.
pub fn touch_verified(db: &Db, connector: &str) -> Result<(), DbError> {
    db.sql().execute(
        "UPDATE connections SET verified_at = ?3 WHERE account = ?1 AND connector = ?2",
        &values![db.account(), connector, now()],
    )?;
    Ok(())
}

/// Deletes a connector's connection and key of `account`; links stay. Returns whether there
/// was one.
pub(crate) fn delete_connection(
    sql: &dyn Sql,
    account: &str,
    connector: &str,
) -> Result<bool, DbError> {
    Ok(sql.execute(
        "DELETE FROM connections WHERE account = ?1 AND connector = ?2",
        &values![account, connector],
    )? > 0)
}

/// Why re-sealing the stored keys failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// A stored key does not decrypt with the current master key.
    #[error(
        "the stored key of {connector} in account {account:?} does not decrypt with the current master key; nothing was re-encrypted (reconnect that account, or use the master key it was stored with)"
    )]
    Undecryptable {
        /// The key's account.
        account: String,
        /// The key's connector.
        connector: String,
    },
    /// A stored key belongs to an account that no longer exists, so its binding is unknown.
    #[error(
        "a stored key of {connector} belongs to the account {account:?}, which does not exist; nothing was re-encrypted (remove that account's data with `scopable-host accounts remove {account}`)"
    )]
    Orphaned {
        /// The key's account.
        account: String,
        /// The key's connector.
        connector: String,
    },
    /// The current master key is not the one the database's key-check value was made with
    /// (another rotation went first, or another key is configured).
    #[error(
        "the current master key is not this database's (its key-check value does not open with it; another rotation may have gone first); nothing was re-encrypted"
    )]
    WrongMasterKey,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for RotateError {
    fn from(e: rusqlite::Error) -> RotateError {
        RotateError::Db(e.into())
    }
}

/// Re-seals every stored key of every account (an operator's act: `db`'s account does not
/// limit it) from the master key `old` to `new`, in one transaction: each is decrypted with
/// `old` under its own binding and sealed with `new` under the same binding. Returns how many
/// keys were re-sealed. A key that does not decrypt aborts it with nothing changed.
pub fn rotate(db: &Db, old: &Vault, new: &Vault) -> Result<usize, RotateError> {
    let tx = HandleTx::begin(db)?;
    // Two rotations at once from two replicas: the second finds the keys under the first's
    // new master key, which its `old` does not open, and changes nothing.
    tx.lock("vault/rotate")?;
    let rows = tx.query(
        "SELECT c.account, c.connector, c.region, c.endpoint, c.key_nonce, c.key_ciphertext,
                a.vault_binding
         FROM connections c LEFT JOIN accounts a ON a.id = c.account
         ORDER BY c.account, c.connector",
        &[],
    )?;
    for row in &rows {
        let (account, connector, region, endpoint) =
            (row.text(0)?, row.text(1)?, row.text(2)?, row.text(3)?);
        let Some(binding) = row.opt_text(6)? else {
            return Err(RotateError::Orphaned { account, connector });
        };
        let bound = Binding {
            account: &binding,
            connector: &connector,
            region: &region,
            endpoint: &endpoint,
        };
        // Opening a secret fails only as undecryptable.
        let secret = old
            .open_secret(&row.blob(4)?, &row.blob(5)?, bound)
            .map_err(|_| RotateError::Undecryptable {
                account: account.clone(),
                connector: connector.clone(),
            })?;
        let (new_nonce, new_ciphertext) = new.seal(&secret, bound);
        tx.execute(
            "UPDATE connections SET key_nonce = ?3, key_ciphertext = ?4
             WHERE account = ?1 AND connector = ?2",
            &values![
                &account,
                &connector,
                new_nonce.as_slice(),
                new_ciphertext.as_slice()
            ],
        )?;
    }
    // The key-check value follows the keys, when the database keeps one (PostgreSQL's
    // always does once a key was used): a rotation from a key that is not the database's
    // changes nothing, so two rotations at once cannot leave the replicas split.
    let check = tx.query_opt("SELECT value FROM meta WHERE key = ?1", &values![KEY_CHECK])?;
    if let Some(row) = check {
        if !old.opens_check_value(&row.text(0)?) {
            return Err(RotateError::WrongMasterKey);
        }
        tx.execute(
            "UPDATE meta SET value = ?2 WHERE key = ?1",
            &values![KEY_CHECK, new.check_value()],
        )?;
    }
    tx.commit()?;
    Ok(rows.len())
}

/// The `meta` row holding the vault's key-check value ([`Vault::check_value`]).
const KEY_CHECK: &str = "vault_key_check";

/// The master key for `db`'s database ([`Vault::open`]), checked, on PostgreSQL, against
/// the key-check value the database holds: the first replica to start stores it, and a
/// replica given another master key is refused ([`VaultError::WrongMasterKey`]) before it
/// uses or stores a key. A SQLite file's key sits beside it and is not checked.
pub fn open_vault(db: &Db, create: bool) -> Result<Option<Vault>, VaultError> {
    let vault = Vault::open(db.location(), create)?;
    let Some(vault) = vault else {
        return Ok(None);
    };
    if !db.is_postgres() {
        return Ok(Some(vault));
    }
    let tx = HandleTx::begin(db)?;
    tx.lock("vault/rotate")?;
    let stored = tx.query_opt("SELECT value FROM meta WHERE key = ?1", &values![KEY_CHECK])?;
    match stored {
        Some(row) if !vault.opens_check_value(&row.text(0)?) => {
            return Err(VaultError::WrongMasterKey);
        }
        Some(_) => {}
        None => {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                &values![KEY_CHECK, vault.check_value()],
            )?;
        }
    }
    tx.commit()?;
    Ok(Some(vault))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(db: &Db, vault: &Vault, key: &str) {
        let binding = account_id(db).unwrap();
        let endpoint = "https://api.itglue.com";
        let (key_nonce, key_ciphertext) = vault.seal(
            key,
            Binding {
                account: &binding,
                connector: "itglue",
                region: "us",
                endpoint,
            },
        );
        save_connection(
            db,
            "itglue",
            &StoredConnection {
                region: "us".into(),
                endpoint: endpoint.into(),
                key_nonce,
                key_ciphertext,
                verified_at: now(),
            },
        )
        .unwrap();
    }

    fn open_key(db: &Db, vault: &Vault) -> Result<String, crate::vault::VaultError> {
        let stored = connection(db, "itglue").unwrap().unwrap();
        let binding = account_id(db).unwrap();
        vault.open_secret(
            &stored.key_nonce,
            &stored.key_ciphertext,
            Binding {
                account: &binding,
                connector: "itglue",
                region: &stored.region,
                endpoint: &stored.endpoint,
            },
        )
    }

    #[test]
    fn each_account_s_key_is_bound_to_its_own_binding() {
        for t in crate::testing::databases("connections_bound") {
            let a = t.open("a");
            let b = t.open("b");
            assert!(
                matches!(account_id(&a), Err(DbError::NoAccount { .. })),
                "{}",
                t.name
            );
            crate::accounts::add(&a, "a", None, "cli:op").unwrap();
            crate::accounts::add(&a, "b", None, "cli:op").unwrap();
            assert_ne!(
                account_id(&a).unwrap(),
                account_id(&b).unwrap(),
                "{}",
                t.name
            );
            let vault = Vault::generate();
            connect(&a, &vault, "key-a");
            assert_eq!(open_key(&a, &vault).unwrap(), "key-a", "{}", t.name);
            assert!(connection(&b, "itglue").unwrap().is_none(), "{}", t.name);
            // A's ciphertext copied into b's row does not open under b's binding.
            let stored = connection(&a, "itglue").unwrap().unwrap();
            save_connection(&b, "itglue", &stored).unwrap();
            assert!(open_key(&b, &vault).is_err(), "{}", t.name);
        }
    }

    #[test]
    fn a_connection_is_replaced_verified_and_deleted() {
        for t in crate::testing::databases("connections_saved") {
            let a = t.open("a");
            crate::accounts::add(&a, "a", None, "cli:op").unwrap();
            let vault = Vault::generate();
            connect(&a, &vault, "key-1");
            a.sql()
                .execute(
                    "UPDATE connections SET verified_at = '2001-01-01T00:00:00Z',
                                            connected_at = '2001-01-01T00:00:00Z'",
                    &[],
                )
                .unwrap();
            touch_verified(&a, "itglue").unwrap();
            let stored = connection(&a, "itglue").unwrap().unwrap();
            assert_ne!(stored.verified_at, "2001-01-01T00:00:00Z", "{}", t.name);
            // Saving again replaces every field, the time of connecting included.
            connect(&a, &vault, "key-2");
            assert_eq!(open_key(&a, &vault).unwrap(), "key-2", "{}", t.name);
            let row = a
                .sql()
                .query_one(
                    "SELECT count(*), min(connected_at) FROM connections WHERE account = 'a'",
                    &[],
                )
                .unwrap();
            assert_eq!(row.int(0).unwrap(), 1, "{}", t.name);
            assert_ne!(row.text(1).unwrap(), "2001-01-01T00:00:00Z", "{}", t.name);
            assert!(
                delete_connection(a.sql(), "a", "itglue").unwrap(),
                "{}",
                t.name
            );
            assert!(
                !delete_connection(a.sql(), "a", "itglue").unwrap(),
                "{}",
                t.name
            );
            assert!(connection(&a, "itglue").unwrap().is_none(), "{}", t.name);
        }
    }

    #[test]
    fn rotating_re_seals_every_account_s_key_or_none() {
        for t in crate::testing::databases("connections_rotate") {
            let a = t.open("a");
            let b = t.open("b");
            crate::accounts::add(&a, "a", None, "cli:op").unwrap();
            crate::accounts::add(&a, "b", None, "cli:op").unwrap();
            let old = Vault::generate();
            connect(&a, &old, "key-a");
            connect(&b, &old, "key-b");
            let new = Vault::generate();
            assert_eq!(rotate(&a, &old, &new).unwrap(), 2, "{}", t.name);
            assert_eq!(open_key(&a, &new).unwrap(), "key-a", "{}", t.name);
            assert_eq!(open_key(&b, &new).unwrap(), "key-b", "{}", t.name);
            assert!(open_key(&a, &old).is_err(), "{}", t.name);

            // A key that does not decrypt with the current master key aborts it: nothing
            // changes.
            let c = t.open("c");
            crate::accounts::add(&a, "c", None, "cli:op").unwrap();
            connect(&c, &Vault::generate(), "key-c");
            let before = connection(&a, "itglue").unwrap().unwrap().key_ciphertext;
            let newer = Vault::generate();
            match rotate(&a, &new, &newer) {
                Err(RotateError::Undecryptable { account, .. }) => {
                    assert_eq!(account, "c", "{}", t.name)
                }
                other => panic!("{}: {other:?}", t.name),
            }
            assert_eq!(
                connection(&a, "itglue").unwrap().unwrap().key_ciphertext,
                before,
                "{}",
                t.name
            );
            assert_eq!(open_key(&b, &new).unwrap(), "key-b", "{}", t.name);
            // A key of an account that no longer exists aborts it too.
            delete_connection(c.sql(), "c", "itglue").unwrap();
            a.sql()
                .execute("DELETE FROM accounts WHERE id = 'b'", &[])
                .unwrap();
            assert!(
                matches!(rotate(&a, &new, &newer), Err(RotateError::Orphaned { .. })),
                "{}",
                t.name
            );
            assert_eq!(open_key(&a, &new).unwrap(), "key-a", "{}", t.name);
            // The handle is usable after the rollback.
            assert_eq!(account_id(&a).unwrap().len(), 32, "{}", t.name);
        }
    }

    #[test]
    fn replicas_rotating_at_once_re_seal_each_key_once() {
        for t in crate::testing::databases("connections_rotate_race") {
            let a = t.open("a");
            let b = t.open("b");
            crate::accounts::add(&a, "a", None, "cli:op").unwrap();
            crate::accounts::add(&a, "b", None, "cli:op").unwrap();
            let old = Vault::generate();
            connect(&a, &old, "key-a");
            connect(&b, &old, "key-b");
            // Each replica rotates from the same master key to a new one of its own.
            let news: Vec<Vault> = (0..4).map(|_| Vault::generate()).collect();
            let handles: Vec<Db> = (0..4).map(|_| t.open("a")).collect();
            let start = std::sync::Barrier::new(4);
            let outcomes: Vec<Result<usize, RotateError>> = std::thread::scope(|s| {
                let running: Vec<_> = handles
                    .into_iter()
                    .zip(&news)
                    .map(|(db, new)| {
                        let (start, old) = (&start, &old);
                        s.spawn(move || {
                            start.wait();
                            rotate(&db, old, new)
                        })
                    })
                    .collect();
                running.into_iter().map(|r| r.join().unwrap()).collect()
            });
            let winners: Vec<usize> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| o.is_ok())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(winners.len(), 1, "{}: {outcomes:?}", t.name);
            for o in &outcomes {
                assert!(
                    matches!(o, Ok(2) | Err(RotateError::Undecryptable { .. })),
                    "{}: {o:?}",
                    t.name
                );
            }
            // Both keys are under the winner's master key.
            let winner = &news[winners[0]];
            assert_eq!(open_key(&a, winner).unwrap(), "key-a", "{}", t.name);
            assert_eq!(open_key(&b, winner).unwrap(), "key-b", "{}", t.name);
        }
    }

    #[test]
    fn the_key_check_value_follows_a_rotation_and_a_stale_rotation_changes_nothing() {
        for t in crate::testing::databases("connections_rotate_check") {
            let db = t.open("a");
            crate::accounts::add(&db, "a", None, "cli:op").unwrap();
            let (old, new, other) = (Vault::generate(), Vault::generate(), Vault::generate());
            db.sql()
                .execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    &values![KEY_CHECK, old.check_value()],
                )
                .unwrap();
            let check = |db: &Db| {
                db.sql()
                    .query_one("SELECT value FROM meta WHERE key = ?1", &values![KEY_CHECK])
                    .unwrap()
                    .text(0)
                    .unwrap()
            };
            // No stored key: the check value alone moves to the new key.
            assert_eq!(rotate(&db, &old, &new).unwrap(), 0, "{}", t.name);
            assert!(new.opens_check_value(&check(&db)), "{}", t.name);
            assert!(!old.opens_check_value(&check(&db)), "{}", t.name);
            // A second rotation from the old key (another operator, at the same time) is
            // refused and changes nothing.
            assert!(
                matches!(rotate(&db, &old, &other), Err(RotateError::WrongMasterKey)),
                "{}",
                t.name
            );
            assert!(new.opens_check_value(&check(&db)), "{}", t.name);
        }
    }
}
