//! The key vault: API keys are encrypted at rest with XChaCha20-Poly1305 under a master key
//! kept outside the database, and bound (as associated data) to the account and connector.

use crate::location::Location;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable holding the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "SCOPABLE_VAULT_KEY";

/// A vault problem, phrased for the admin. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key is malformed.
    #[error("the vault master key from {source_name} is not base64 of 32 bytes; fix or unset it")]
    BadMasterKey {
        /// Where it came from.
        source_name: String,
    },
    /// The key file is readable by others.
    #[error("{path} is readable by group or others; run `chmod 600 {path}`")]
    InsecureKeyFile {
        /// The key file.
        path: String,
    },
    /// The key file could not be read or created.
    #[error("cannot use the vault key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Decryption failed: another master key, another database, or tampering.
    #[error(
        "the stored key cannot be decrypted with this master key (another {MASTER_KEY_ENV} or key file, or a copied database); reconnect with `connect`"
    )]
    Undecryptable,
    /// A PostgreSQL database was named, and no master key was given in the environment.
    #[error(
        "a PostgreSQL database needs the vault master key in {MASTER_KEY_ENV} (base64 of 32 bytes, the same on every replica); set it (for a new installation: `head -c 32 /dev/urandom | base64`)"
    )]
    KeyRequired,
    /// The master key is not the one the database's keys are sealed with.
    #[error(
        "{MASTER_KEY_ENV} is not the master key this database's keys are sealed with (its key-check value does not open with it); give every replica the same {MASTER_KEY_ENV}"
    )]
    WrongMasterKey,
    /// The database failed while checking the master key.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// What a stored key is bound to: decrypting it under any other account, connector, region
/// or endpoint fails, so a database edited to point the key elsewhere cannot use it.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The database's account id.
    pub account: &'a str,
    /// The connector's name.
    pub connector: &'a str,
    /// The region name.
    pub region: &'a str,
    /// The base URL the key is sent to.
    pub endpoint: &'a str,
}

/// A loaded master key.
pub struct Vault {
    cipher: XChaCha20Poly1305,
    /// The key itself, kept to hand a new key to its file ([`Vault::write_key_file`]).
    key: [u8; 32],
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

/// The key file used when `SCOPABLE_VAULT_KEY` is not set: `<database path>.key`.
pub fn key_file_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

impl Vault {
    /// Loads the master key from the environment, else (for a SQLite file) from the key
    /// file. With `create`, a missing key file is created (mode 0600) with a fresh random
    /// key. A PostgreSQL database has no key file: the environment must hold the key
    /// ([`VaultError::KeyRequired`]); see [`crate::connections::open_vault`], which also
    /// checks it against the database.
    pub fn open(db: impl Into<Location>, create: bool) -> Result<Option<Vault>, VaultError> {
        if let Some(value) = std::env::var_os(MASTER_KEY_ENV) {
            let key =
                decode_key(value.to_string_lossy().trim()).ok_or(VaultError::BadMasterKey {
                    source_name: MASTER_KEY_ENV.into(),
                })?;
            return Ok(Some(Vault::from_key(&key)));
        }
        let Location::File(db) = db.into() else {
            return Err(VaultError::KeyRequired);
        };
        let path = key_file_for(&db);
        let io = |source| VaultError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(VaultError::InsecureKeyFile {
                        path: path.display().to_string(),
                    });
                }
                let text = std::fs::read_to_string(&path).map_err(io)?;
                let key = decode_key(text.trim()).ok_or(VaultError::BadMasterKey {
                    source_name: path.display().to_string(),
                })?;
                Ok(Some(Vault::from_key(&key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                OsRng.fill_bytes(&mut key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                file.write_all(format!("{encoded}\n").as_bytes())
                    .map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Some(Vault::from_key(&key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn from_key(key: &[u8; 32]) -> Vault {
        Vault {
            cipher: XChaCha20Poly1305::new(key.into()),
            key: *key,
        }
    }

    /// A new random master key (to rotate to: see [`crate::connections::rotate`]).
    pub fn generate() -> Vault {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Vault::from_key(&key)
    }

    /// A master key given as base64 of 32 bytes (the form of [`MASTER_KEY_ENV`] and of the
    /// key file); `source_name` says where it came from in the error.
    pub fn from_base64(text: &str, source_name: &str) -> Result<Vault, VaultError> {
        let key = decode_key(text.trim()).ok_or_else(|| VaultError::BadMasterKey {
            source_name: source_name.to_string(),
        })?;
        Ok(Vault::from_key(&key))
    }

    /// The master key as base64, the form [`MASTER_KEY_ENV`] takes. Key material: only for
    /// handing a new key to the operator who keeps it in the environment.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key)
    }

    /// Writes the master key to `path` (mode 0600), replacing any file there atomically: the
    /// key is written to a new file beside it, synced, then renamed over it, so `path` holds
    /// the old key or the new one, never a part of either.
    pub fn write_key_file(&self, path: &Path) -> Result<(), VaultError> {
        let io = |source| VaultError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{}.tmp", random_hex(8)));
        let temporary = PathBuf::from(name);
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(format!("{}\n", self.to_base64()).as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)?;
            // The rename itself is durable once the folder is synced.
            if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(folder)?.sync_all()?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(io)
    }

    /// The key-check value: a known text sealed under this key, stored in the database so
    /// that a replica given another master key finds out before it uses or stores a key.
    pub fn check_value(&self) -> String {
        let (nonce, ciphertext) = self.seal(KEY_CHECK_TEXT, KEY_CHECK_BINDING);
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("{}:{}", b64.encode(nonce), b64.encode(ciphertext))
    }

    /// Whether `value` ([`Vault::check_value`]) was made with this key.
    pub fn opens_check_value(&self, value: &str) -> bool {
        let b64 = base64::engine::general_purpose::STANDARD;
        let Some((nonce, ciphertext)) = value.split_once(':') else {
            return false;
        };
        match (b64.decode(nonce), b64.decode(ciphertext)) {
            (Ok(nonce), Ok(ciphertext)) => self
                .open_secret(&nonce, &ciphertext, KEY_CHECK_BINDING)
                .is_ok_and(|text| text == KEY_CHECK_TEXT),
            _ => false,
        }
    }

    /// Encrypts `secret`; returns (nonce, ciphertext).
    pub fn seal(&self, secret: &str, binding: Binding<'_>) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(binding);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            // Encryption only fails for messages beyond 256 GiB.
            .unwrap_or_default();
        (nonce.to_vec(), ciphertext)
    }

    /// Decrypts a stored key.
    pub fn open_secret(
        &self,
        nonce: &[u8],
        ciphertext: &[u8],
        binding: Binding<'_>,
    ) -> Result<String, VaultError> {
        if nonce.len() != 24 {
            return Err(VaultError::Undecryptable);
        }
        let aad = associated_data(binding);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| VaultError::Undecryptable)
    }
}

/// What the key-check value seals.
const KEY_CHECK_TEXT: &str = "scopable vault key check";

/// The key-check value's binding: no account or connector has these names.
const KEY_CHECK_BINDING: Binding<'static> = Binding {
    account: "",
    connector: "vault-key-check",
    region: "",
    endpoint: "",
};

fn associated_data(b: Binding<'_>) -> Vec<u8> {
    format!(
        "scopable-vault-v2\naccount={}\nconnector={}\nregion={}\nendpoint={}",
        b.account, b.connector, b.region, b.endpoint
    )
    .into_bytes()
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    bytes.try_into().ok()
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_binds_account_connector_and_endpoint() {
        let b = |account, connector, endpoint| Binding {
            account,
            connector,
            region: "us",
            endpoint,
        };
        let v = Vault::from_key(&[7u8; 32]);
        let (nonce, ct) = v.seal("secret-key", b("acct", "itglue", "https://api.itglue.com"));
        assert!(!ct.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            v.open_secret(&nonce, &ct, b("acct", "itglue", "https://api.itglue.com"))
                .unwrap(),
            "secret-key"
        );
        assert!(
            v.open_secret(&nonce, &ct, b("other", "itglue", "https://api.itglue.com"))
                .is_err()
        );
        assert!(
            v.open_secret(&nonce, &ct, b("acct", "other", "https://api.itglue.com"))
                .is_err()
        );
        assert!(
            v.open_secret(&nonce, &ct, b("acct", "itglue", "https://evil.test"))
                .is_err()
        );
        let w = Vault::from_key(&[8u8; 32]);
        assert!(matches!(
            w.open_secret(&nonce, &ct, b("acct", "itglue", "https://api.itglue.com")),
            Err(VaultError::Undecryptable)
        ));
    }

    #[test]
    fn a_written_key_file_replaces_the_old_one_privately() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let old = Vault::open(&db, true).unwrap().unwrap();
        let bind = Binding {
            account: "a",
            connector: "c",
            region: "us",
            endpoint: "https://x.test",
        };
        let new = Vault::generate();
        assert_ne!(new.to_base64(), old.to_base64());
        let (n, c) = new.seal("k", bind);
        new.write_key_file(&key_file_for(&db)).unwrap();
        let mode = std::fs::metadata(key_file_for(&db))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let reread = Vault::open(&db, false).unwrap().unwrap();
        assert_eq!(reread.open_secret(&n, &c, bind).unwrap(), "k");
        assert_eq!(reread.to_base64(), new.to_base64());
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // The base64 form loads the same key; anything else is refused.
        let again = Vault::from_base64(&new.to_base64(), "test").unwrap();
        assert_eq!(again.open_secret(&n, &c, bind).unwrap(), "k");
        assert!(matches!(
            Vault::from_base64("c2hvcnQ=", "test"),
            Err(VaultError::BadMasterKey { .. })
        ));
    }

    #[test]
    fn key_file_is_created_private_and_refused_when_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        // The environment variable would take precedence; these tests never set it.
        assert!(Vault::open(&db, false).unwrap().is_none());
        let v = Vault::open(&db, true).unwrap().unwrap();
        let bind = Binding {
            account: "a",
            connector: "c",
            region: "us",
            endpoint: "https://x.test",
        };
        let (n, c) = v.seal("k", bind);
        let mode = std::fs::metadata(key_file_for(&db))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Vault::open(&db, false).unwrap().unwrap();
        assert_eq!(again.open_secret(&n, &c, bind).unwrap(), "k");
        std::fs::set_permissions(key_file_for(&db), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(matches!(
            Vault::open(&db, false),
            Err(VaultError::InsecureKeyFile { .. })
        ));
    }
}
