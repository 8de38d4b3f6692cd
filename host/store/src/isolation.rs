//! Two accounts in one database share nothing: what one writes, the other neither reads,
//! changes nor spends.

use crate::audit::{AuditWriter, Retention, audit_records};
use crate::budget::BudgetTable;
use crate::connections::{self, StoredConnection};
use crate::db::{self, AuditRecord};
use crate::kv::KvTable;
use crate::records::{self, ImportedConfiguration};
use crate::runs::{self, Start};
use crate::shared::Shared;
use crate::{Db, accounts, review, views};
use std::time::Duration;

fn audit_row() -> AuditRecord {
    AuditRecord {
        at: db::now(),
        connector: "itglue".into(),
        component_sha256: "d1".into(),
        capability: "http".into(),
        method: "GET".into(),
        host: "127.0.0.1".into(),
        path: "/organizations".into(),
        decision: "allowed".into(),
        rule: None,
        status: Some(200),
        bytes: 0,
        duration_ms: 0,
        connection: None,
        detail: None,
    }
}

#[test]
fn two_accounts_in_one_file_share_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.db");
    let mut a = Db::open(&path, "a").unwrap();
    let mut b = Db::open(&path, "b").unwrap();
    accounts::add(&a, "a", None, "cli:op").unwrap();
    accounts::add(&a, "b", None, "cli:op").unwrap();

    // Everything written under `a`.
    records::import_clients(&a, &[("c1", "Acme")]).unwrap();
    records::import_configurations(
        &a,
        &[ImportedConfiguration {
            id: "k1",
            client_id: "c1",
            name: "pc",
            hostname: None,
            serial_number: None,
            mac_addresses: vec![],
        }],
    )
    .unwrap();
    assert!(
        review::link_by_hand(&a, "itglue", "organization", "1001", "c1", None, "cli:x").unwrap()
    );
    review::ignore(&a, "itglue", "organization", "1002", "cli:x").unwrap();
    connections::save_connection(
        &a,
        "itglue",
        &StoredConnection {
            region: "us".into(),
            endpoint: "https://api.itglue.com".into(),
            key_nonce: vec![1; 24],
            key_ciphertext: vec![2; 8],
            verified_at: db::now(),
        },
    )
    .unwrap();
    let shared_a = Shared::open(&path, "a").unwrap();
    let shared_b = Shared::open(&path, "b").unwrap();
    assert_eq!(shared_b.account(), "b");
    KvTable::new(&shared_a, "itglue")
        .set("cursor", b"page-2", 10, 1000)
        .unwrap();
    let window = Duration::from_secs(60);
    let budget_a = BudgetTable::new(&shared_a, "itglue");
    assert_eq!(budget_a.try_take(1, window, 1_000).unwrap(), None);
    assert!(
        budget_a.try_take(1, window, 1_001).unwrap().is_some(),
        "a's budget is spent"
    );
    let audit = AuditWriter::with_retention(&shared_a, Retention::default());
    audit.write(audit_row());
    audit.flush();
    let Start::Started(run) = runs::start(
        &mut a,
        "itglue",
        "organization",
        false,
        Duration::from_secs(60),
        Some("cli:x"),
    )
    .unwrap() else {
        panic!("a's run did not start");
    };
    accounts::record_event(&a, "cli:x", "import", Some("itglue"), None).unwrap();

    // `a` sees its own.
    assert_eq!(records::clients(&a).unwrap().len(), 1);
    assert_eq!(views::link_count(&a, "itglue").unwrap(), 1);
    assert!(connections::connection(&a, "itglue").unwrap().is_some());
    assert_eq!(audit_records(&a, "itglue", 10).unwrap().len(), 1);
    assert!(runs::run(&a, run.id).unwrap().is_some());

    // `b` sees none of it.
    assert!(records::clients(&b).unwrap().is_empty());
    assert!(records::client_ids(&b).unwrap().is_empty());
    let all: std::collections::HashSet<&str> = ["c1"].into_iter().collect();
    assert!(records::configurations_of(&b, &all).unwrap().is_empty());
    assert!(crate::search::clients(&b).unwrap().is_empty());
    assert!(crate::search::configurations(&b, None).unwrap().is_empty());
    assert_eq!(views::client_name(&b, "c1").unwrap(), None);
    assert!(!review::client_exists(&b, "c1").unwrap());
    assert!(views::links(&b, "itglue").unwrap().is_empty());
    assert_eq!(views::link_count(&b, "itglue").unwrap(), 0);
    assert!(review::ignored_records(&b, "itglue").unwrap().is_empty());
    assert!(
        review::logged_decisions(&b, "itglue", 10)
            .unwrap()
            .is_empty()
    );
    assert!(connections::connection(&b, "itglue").unwrap().is_none());
    assert!(KvTable::new(&shared_b, "itglue").keys().unwrap().is_empty());
    assert_eq!(
        KvTable::new(&shared_b, "itglue").get("cursor").unwrap(),
        None
    );
    let budget_b = BudgetTable::new(&shared_b, "itglue");
    assert_eq!(
        budget_b.try_take(1, window, 1_002).unwrap(),
        None,
        "b's budget is its own"
    );
    assert!(audit_records(&b, "itglue", 10).unwrap().is_empty());
    assert_eq!(runs::run(&b, run.id).unwrap(), None);
    assert!(
        runs::last_run(&b, "itglue", "organization")
            .unwrap()
            .is_none()
    );
    assert!(runs::recent_runs(&b, "itglue", 10).unwrap().is_empty());
    assert!(
        accounts::events(&b, 10)
            .unwrap()
            .iter()
            .all(|e| e.action == "account-created")
    );
    // Nor can it change or end `a`'s: its run is not `b`'s to finish, and a sync of the same
    // kind starts for `b` beside it.
    runs::finish(&b, run.held(), "failed", &runs::RunCounts::default(), None).unwrap();
    assert_eq!(
        runs::run(&a, run.id).unwrap().map(|r| r.status),
        Some("running".to_string())
    );
    assert!(matches!(
        runs::start(
            &mut b,
            "itglue",
            "organization",
            false,
            Duration::from_secs(60),
            None
        )
        .unwrap(),
        Start::Started(_)
    ));
    assert!(!review::disconnect(&b, "itglue", "cli:y").unwrap());
    assert_eq!(
        review::reset(&b, "itglue", "organization", "1002", "cli:y").unwrap(),
        0
    );
    assert!(connections::connection(&a, "itglue").unwrap().is_some());
    assert!(review::has_decision(&a, "itglue", "organization", "1002").unwrap());
    // `b` may use the same ids for its own records.
    records::import_clients(&b, &[("c1", "Other")]).unwrap();
    assert_eq!(
        views::client_name(&a, "c1").unwrap().as_deref(),
        Some("Acme")
    );
    assert_eq!(
        views::client_name(&b, "c1").unwrap().as_deref(),
        Some("Other")
    );
}
