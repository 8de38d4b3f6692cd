//! Connections: each account's connectors' region, endpoint and encrypted key (sealed by the
//! vault, bound to the account's vault binding read here), and re-sealing every stored key
//! under a new master key.

use crate::db::{DbError, now};
use crate::handle::Db;
use crate::vault::{Binding, Vault};
use rusqlite::{Connection, OptionalExtension, params};

/// The handle's account's vault binding: what its stored keys are bound to (for the account
/// `default` of an upgraded database, the id its keys were always bound to). An account that
/// does not exist is [`DbError::NoAccount`].
pub fn account_id(db: &Db) -> Result<String, DbError> {
    db.conn()
        .query_row(
            "SELECT vault_binding FROM accounts WHERE id = ?1",
            [db.account()],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| DbError::NoAccount {
            account: db.account().to_string(),
        })
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
    Ok(db
        .conn()
        .query_row(
            "SELECT region, endpoint, key_nonce, key_ciphertext, verified_at
             FROM connections WHERE account = ?1 AND connector = ?2",
            params![db.account(), connector],
            |r| {
                Ok(StoredConnection {
                    region: r.get(0)?,
                    endpoint: r.get(1)?,
                    key_nonce: r.get(2)?,
                    key_ciphertext: r.get(3)?,
                    verified_at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Stores (replacing) a connector's connection of the handle's account.
pub fn save_connection(db: &Db, connector: &str, c: &StoredConnection) -> Result<(), DbError> {
    db.conn().execute(
        "INSERT INTO connections (account, connector, region, endpoint, key_nonce, key_ciphertext,
                                  verified_at, connected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (account, connector) DO UPDATE SET region = ?3, endpoint = ?4,
             key_nonce = ?5, key_ciphertext = ?6, verified_at = ?7, connected_at = ?7",
        params![
            db.account(),
            connector,
            c.region,
            c.endpoint,
            c.key_nonce,
            c.key_ciphertext,
            c.verified_at
        ],
    )?;
    Ok(())
}

/// Records that the handle's account's stored key passed a test just now.
pub fn touch_verified(db: &Db, connector: &str) -> Result<(), DbError> {
    db.conn().execute(
        "UPDATE connections SET verified_at = ?3 WHERE account = ?1 AND connector = ?2",
        params![db.account(), connector, now()],
    )?;
    Ok(())
}

/// Deletes a connector's connection and key of `account`; links stay. Returns whether there
/// was one.
pub(crate) fn delete_connection(
    conn: &Connection,
    account: &str,
    connector: &str,
) -> Result<bool, DbError> {
    Ok(conn.execute(
        "DELETE FROM connections WHERE account = ?1 AND connector = ?2",
        params![account, connector],
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
    let tx =
        rusqlite::Transaction::new_unchecked(db.conn(), rusqlite::TransactionBehavior::Immediate)?;
    type Row = (
        String,
        String,
        String,
        String,
        Vec<u8>,
        Vec<u8>,
        Option<String>,
    );
    let rows: Vec<Row> = {
        let mut stmt = tx.prepare(
            "SELECT c.account, c.connector, c.region, c.endpoint, c.key_nonce, c.key_ciphertext,
                    a.vault_binding
             FROM connections c LEFT JOIN accounts a ON a.id = c.account
             ORDER BY c.account, c.connector",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (account, connector, region, endpoint, nonce, ciphertext, binding) in &rows {
        let Some(binding) = binding else {
            return Err(RotateError::Orphaned {
                account: account.clone(),
                connector: connector.clone(),
            });
        };
        let bound = Binding {
            account: binding,
            connector,
            region,
            endpoint,
        };
        // Opening a secret fails only as undecryptable.
        let secret =
            old.open_secret(nonce, ciphertext, bound)
                .map_err(|_| RotateError::Undecryptable {
                    account: account.clone(),
                    connector: connector.clone(),
                })?;
        let (new_nonce, new_ciphertext) = new.seal(&secret, bound);
        tx.execute(
            "UPDATE connections SET key_nonce = ?3, key_ciphertext = ?4
             WHERE account = ?1 AND connector = ?2",
            params![account, connector, new_nonce, new_ciphertext],
        )?;
    }
    tx.commit()?;
    Ok(rows.len())
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let a = Db::open(&path, "a").unwrap();
        let b = Db::open(&path, "b").unwrap();
        assert!(matches!(account_id(&a), Err(DbError::NoAccount { .. })));
        crate::accounts::add(&a, "a", None, "cli:op").unwrap();
        crate::accounts::add(&a, "b", None, "cli:op").unwrap();
        let vault = Vault::generate();
        connect(&a, &vault, "key-a");
        assert_eq!(open_key(&a, &vault).unwrap(), "key-a");
        assert!(connection(&b, "itglue").unwrap().is_none());
        // A's ciphertext copied into b's row does not open under b's binding.
        let stored = connection(&a, "itglue").unwrap().unwrap();
        save_connection(&b, "itglue", &stored).unwrap();
        assert!(open_key(&b, &vault).is_err());
    }

    #[test]
    fn rotating_re_seals_every_account_s_key_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let a = Db::open(&path, "a").unwrap();
        let b = Db::open(&path, "b").unwrap();
        crate::accounts::add(&a, "a", None, "cli:op").unwrap();
        crate::accounts::add(&a, "b", None, "cli:op").unwrap();
        let old = Vault::generate();
        connect(&a, &old, "key-a");
        connect(&b, &old, "key-b");
        let new = Vault::generate();
        assert_eq!(rotate(&a, &old, &new).unwrap(), 2);
        assert_eq!(open_key(&a, &new).unwrap(), "key-a");
        assert_eq!(open_key(&b, &new).unwrap(), "key-b");
        assert!(open_key(&a, &old).is_err());

        // A key that does not decrypt with the current master key aborts it: nothing changes.
        let c = Db::open(&path, "c").unwrap();
        crate::accounts::add(&a, "c", None, "cli:op").unwrap();
        connect(&c, &Vault::generate(), "key-c");
        let before = connection(&a, "itglue").unwrap().unwrap().key_ciphertext;
        let newer = Vault::generate();
        match rotate(&a, &new, &newer) {
            Err(RotateError::Undecryptable { account, .. }) => assert_eq!(account, "c"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            connection(&a, "itglue").unwrap().unwrap().key_ciphertext,
            before
        );
        assert_eq!(open_key(&b, &new).unwrap(), "key-b");
        // A key of an account that no longer exists aborts it too.
        crate::review::disconnect(&c, "itglue", "cli:op").unwrap();
        a.conn()
            .execute("DELETE FROM accounts WHERE id = 'b'", [])
            .unwrap();
        assert!(matches!(
            rotate(&a, &new, &newer),
            Err(RotateError::Orphaned { .. })
        ));
        assert_eq!(open_key(&a, &new).unwrap(), "key-a");
    }
}
