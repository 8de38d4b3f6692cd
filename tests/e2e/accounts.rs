//! Accounts on the command line: tenants, tokens shown once and kept as hashes, the feature
//! flag (obeyed by the command line too), removal, the vault's rotation, `--account`, and the
//! upgrade of a single-account database to the account `default`.

use crate::util::Env;
use itglue_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

#[test]
fn accounts_and_tokens_are_managed_on_the_command_line() {
    let env = Env::new();
    env.run(&["accounts", "add", "acme", "--name", "Acme MSP"])
        .ok();
    env.run(&["accounts", "add", "acme"]).fails(6, "exists");
    env.run(&["accounts", "add", "Not_An_Id"])
        .fails(6, "account id");
    let listed = env.run(&["accounts", "list", "--json"]).json();
    assert_eq!(listed[0]["id"], "acme");
    assert_eq!(listed[0]["name"], "Acme MSP");
    assert_eq!(
        listed[0]["features"],
        json!([]),
        "a new account has every feature off"
    );
    // A token is printed alone, once.
    let made = env.run(&["accounts", "token", "acme", "--role", "admin"]);
    let printed = made.ok().to_string();
    assert!(
        printed.ends_with('\n') && printed.lines().count() == 1,
        "{printed:?}"
    );
    let token = printed.trim().to_string();
    let parts: Vec<&str> = token.split('_').collect();
    assert_eq!(parts.len(), 4, "{token}");
    assert_eq!((parts[0], parts[1]), ("scopable", "tok"));
    assert_eq!(parts[3].len(), 64, "{token}");
    let as_json = env
        .run(&["accounts", "token", "acme", "--role", "viewer", "--json"])
        .json();
    let keys: Vec<&str> = as_json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["account", "role", "token", "token_id"]);
    assert_eq!(as_json["role"], "viewer");
    // Only a hash of the secret is kept: the secret is nowhere in the database file.
    let file = std::fs::read(env.db()).unwrap();
    let wal = std::fs::read(env.path("scopable.db-wal")).unwrap_or_default();
    for secret in [
        parts[3],
        as_json["token"]
            .as_str()
            .unwrap()
            .rsplit('_')
            .next()
            .unwrap(),
    ] {
        let needle = secret.as_bytes();
        for bytes in [&file, &wal] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a token secret is stored"
            );
        }
    }
    let tokens = env.run(&["accounts", "tokens", "acme", "--json"]).json();
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    assert!(
        tokens.to_string().find(parts[3]).is_none(),
        "tokens never lists a secret"
    );
    let id = format!("tok_{}", parts[2]);
    env.run(&["accounts", "revoke", &id]).ok();
    env.run(&["accounts", "revoke", &id])
        .fails(6, "no live token");
    let tokens = env.run(&["accounts", "tokens", "acme", "--json"]).json();
    let revoked = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["token_id"] == json!(id))
        .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    env.run(&["accounts", "enable", "acme", "passwords"])
        .fails(2, "no feature");
    env.run(&["accounts", "enable", "ghost", "itglue"])
        .fails(6, "no account");
    env.run(&["accounts", "enable", "acme", "itglue"]).ok();
    let listed = env.run(&["accounts", "list", "--json"]).json();
    assert_eq!(listed[0]["features"], json!(["itglue"]));
}

#[test]
fn removing_an_account_deletes_its_data_and_nothing_else() {
    let env = Env::new();
    env.import_sample();
    env.connect();
    env.sync("organization");
    let (clients, configurations) = itglue_sim::sample_scopable_csv();
    let c = env.write("c.csv", clients);
    let k = env.write("k.csv", configurations);
    env.run(&[
        "--account",
        "acme",
        "import",
        "clients",
        c.to_str().unwrap(),
    ])
    .ok();
    env.run(&[
        "--account",
        "acme",
        "import",
        "configurations",
        k.to_str().unwrap(),
    ])
    .ok();
    env.connect_account("acme");
    env.run(&["--account", "acme", "itglue", "sync", "organizations"])
        .ok();
    env.run(&["accounts", "token", "acme", "--role", "admin"])
        .ok();
    let count = |account: &str| -> i64 {
        let db = env.sqlite();
        let tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%account%' AND name NOT IN ('accounts', 'meta')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        tables
            .iter()
            .map(|t| {
                db.query_row(
                    &format!("SELECT count(*) FROM {t} WHERE account = ?1"),
                    [account],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
            })
            .sum()
    };
    let before = count("default");
    assert!(count("acme") > 0);
    env.run(&["accounts", "remove", "acme"]).ok();
    assert_eq!(count("acme"), 0, "every row of the account is gone");
    assert_eq!(count("default"), before, "the other account is untouched");
    env.run(&["accounts", "remove", "acme"])
        .fails(6, "no account");
    let status = env.run(&["itglue", "status", "--json"]).json();
    assert_eq!(status["connected"], true);
}

#[test]
fn the_command_line_obeys_the_feature_flag_and_keeps_accounts_apart() {
    let env = Env::new();
    env.import_sample();
    // `default` was created on first use, with the integration on.
    let listed = env.run(&["accounts", "list", "--json"]).json();
    assert_eq!(listed[0]["id"], "default");
    assert_eq!(listed[0]["features"], json!(["itglue"]));
    env.run(&["accounts", "disable", "default", "itglue"]).ok();
    env.run(&["itglue", "status"])
        .fails(1, "not available for your account");
    env.run(&["itglue", "sync", "organizations"])
        .fails(1, "not available for your account");
    env.run(&["accounts", "enable", "default", "itglue"]).ok();
    env.run(&["itglue", "status"]).ok();
    // Another account sees none of default's records.
    let found = env.run(&["--account", "other", "search", "clients", "acme", "--json"]);
    assert_eq!(found.json(), json!([]));
    let found = env.run(&["search", "clients", "acme", "--json"]).json();
    assert!(!found.as_array().unwrap().is_empty());
    env.run(&["--account", "Bad!", "itglue", "status"])
        .fails(2, "not an account id");
}

#[test]
fn a_single_account_database_upgrades_and_its_stored_key_still_syncs() {
    // The fixture was made by the command line at schema 4, connected to a simulator on this
    // port with the key stored encrypted.
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/schema-v4");
    let sim = Simulator::start(SimConfig {
        port: 38517,
        ..SimConfig::default()
    })
    .expect("the simulator on the fixture's port 38517");
    let env = Env::new();
    for name in ["scopable.db", "scopable.db.key"] {
        std::fs::copy(fixture.join(name), env.path(name)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.path(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let before = env
        .sqlite()
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(before, 4);
    let synced = env
        .run(&["itglue", "sync", "organizations", "--json"])
        .json();
    assert_eq!(synced["linked"], 20, "{synced}");
    assert_eq!(synced["fetched"], 33);
    assert!(sim.requests().iter().any(|r| r.path == "/organizations"));
    let tested = env.run(&["itglue", "test", "--json"]).json();
    assert_eq!(tested["stored_connection"], true);
    let listed = env.run(&["accounts", "list", "--json"]).json();
    assert_eq!(listed[0]["id"], "default");
    assert_eq!(listed[0]["features"], json!(["itglue"]));
    let ignored = env.run(&["itglue", "ignored", "--json"]).json();
    assert_eq!(
        ignored[0]["source_id"], "3100113",
        "the decision made before the upgrade stays"
    );
    let links = env.run(&["itglue", "links", "--json"]).json();
    assert_eq!(links.as_array().unwrap().len(), 38);
}

#[test]
fn vault_rotate_re_encrypts_every_account_s_key() {
    let env = Env::new();
    env.import_sample();
    env.connect();
    env.connect_account("acme");
    let old_key = std::fs::read_to_string(env.path("scopable.db.key")).unwrap();
    let rotated = env.run(&["vault", "rotate"]);
    assert!(
        rotated.ok().contains("Re-encrypted 2 stored key(s)"),
        "{}",
        rotated.stdout
    );
    let new_key = std::fs::read_to_string(env.path("scopable.db.key")).unwrap();
    assert_ne!(old_key, new_key);
    for account in ["default", "acme"] {
        let tested: Value = env
            .run(&["--account", account, "itglue", "test", "--json"])
            .json();
        assert_eq!(tested["verified"], true, "{account}");
    }
    // Under the old master key, the stored keys no longer open.
    std::fs::write(env.path("scopable.db.key"), old_key).unwrap();
    env.run(&["itglue", "test"]).fails(6, "");
}

#[test]
fn a_postgres_url_is_never_a_file_and_its_password_is_never_shown() {
    let env = Env::new();
    let run = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_scopable-host"))
            .args(["--db", url, "accounts", "list"])
            .env_remove("SCOPABLE_DB")
            .current_dir(env.path(""))
            .output()
            .unwrap()
    };
    // Nothing listens there: the server is named without its password.
    let out = run("postgres://scopable:secret@127.0.0.1:1/scopable");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cannot use the PostgreSQL database postgres://scopable@127.0.0.1:1/scopable"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    // A URL that does not parse is bad usage, and never echoed.
    let out = run("postgresql://scopable:secret@127.0.0.1:port/scopable");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not be parsed"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    let made: Vec<_> = std::fs::read_dir(env.path("")).unwrap().collect();
    assert!(made.is_empty(), "{made:?}");
}
