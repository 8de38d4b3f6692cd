//! The contract versions the host runs, how a component's version is read, and the
//! conversions between a released version's records and the current ones.
//!
//! A component says which contract it was built for through the version of its
//! `scopable:integration/types@X` import. The host links it against that version's bindings
//! ([`crate::bindings::v0_1`], [`crate::bindings::v0_2`]) and refuses any other version by
//! name. Inside the host every record is a 0.2 record: a 0.1 component's answers are
//! converted on the way out of the component, and its inputs on the way in.

use crate::bindings::{v0_1, v0_2};
use crate::capabilities::GuestState;

/// A contract version the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `scopable:integration@0.1.0`, released and frozen (`wit/since_v0.1.0/`).
    V0_1,
    /// `scopable:integration@0.2.0`, the current contract (`wit/integration.wit`).
    V0_2,
}

/// The interface whose version names a component's contract.
pub const TYPES_INTERFACE: &str = "scopable:integration/types";

impl Contract {
    /// Every version the host runs, oldest first.
    pub const ALL: [Contract; 2] = [Contract::V0_1, Contract::V0_2];

    /// The contract's interfaces a component may import, at any version in [`Contract::ALL`].
    pub const INTERFACES: [&str; 3] = [
        TYPES_INTERFACE,
        "scopable:integration/storage",
        "scopable:integration/log",
    ];

    /// The version as written in WIT, such as `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// The version's `major.minor`, which an import's version must match.
    pub fn major_minor(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1",
            Contract::V0_2 => "0.2",
        }
    }

    /// The versions the host runs, for messages: `0.1.0 and 0.2.0`.
    pub fn supported() -> String {
        let all: Vec<&str> = Contract::ALL.iter().map(|c| c.version()).collect();
        all.join(" and ")
    }

    /// The contract of a component from its imports (`name@version` each): the version of its
    /// `scopable:integration/types` import. `Err` names what was found instead.
    pub fn of_imports(imports: &[String]) -> Result<Contract, String> {
        let found: Vec<&str> = imports
            .iter()
            .filter_map(|i| i.strip_prefix(TYPES_INTERFACE)?.strip_prefix('@'))
            .collect();
        match found.as_slice() {
            [] => Err(format!(
                "it does not import {TYPES_INTERFACE}, so it was not built from the Scopable contract WIT"
            )),
            [version] => {
                let major_minor = version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
                Contract::ALL
                    .into_iter()
                    .find(|c| c.major_minor() == major_minor)
                    .ok_or_else(|| {
                        format!(
                            "it imports {TYPES_INTERFACE}@{}: it was built for contract version {0}, which this host does not run (it runs {}); rebuild it against one of those",
                            crate::display::safe_within(version, 64),
                            Contract::supported()
                        )
                    })
            }
            _ => Err(format!(
                "it imports {TYPES_INTERFACE} in {} versions; a component is built for one contract version",
                found.len()
            )),
        }
    }
}

// ---- 0.2 inputs to 0.1 --------------------------------------------------------------------

use v0_1::scopable::integration::types as t1;
use v0_2::scopable::integration::types as t2;

/// `From` between two versions of a record whose fields have the same names and types.
macro_rules! same_fields {
    ($($from:ty => $to:ident :: $name:ident { $($field:ident),* $(,)? })*) => {$(
        impl From<$from> for $to::$name {
            fn from(r: $from) -> $to::$name {
                $to::$name { $($field: r.$field),* }
            }
        }
    )*};
}

same_fields! {
    t2::Endpoint => t1::Endpoint { base_url, page_size }
    t2::Organization => t1::Organization { id, name, short_name, type_name, status_name }
    t2::Configuration => t1::Configuration {
        id, organization_id, name, hostname, primary_ip, serial_number, mac_addresses, type_name,
        archived,
    }
    t2::Client => t1::Client { id, name }
    t2::ScopableConfiguration => t1::ScopableConfiguration {
        id, client_id, name, hostname, serial_number, mac_addresses,
    }
    t1::Verified => t2::Verified { detail, total_organizations }
    t1::PageInfo => t2::PageInfo { next_page, total_pages, total_count }
    t1::UnreadableRecord => t2::UnreadableRecord { id, detail }
    t1::Organization => t2::Organization { id, name, short_name, type_name, status_name }
    t1::Configuration => t2::Configuration {
        id, organization_id, name, hostname, primary_ip, serial_number, mac_addresses, type_name,
        archived,
    }
}

impl From<t2::Pair> for t1::Pair {
    fn from(p: t2::Pair) -> t1::Pair {
        t1::Pair {
            itglue_id: p.source_id,
            scopable_id: p.scopable_id,
        }
    }
}

fn all<A, B: From<A>>(list: Vec<A>) -> Vec<B> {
    list.into_iter().map(B::from).collect()
}

impl From<t2::MatchInput> for t1::MatchInput {
    fn from(input: t2::MatchInput) -> t1::MatchInput {
        match input {
            t2::MatchInput::Organizations(m) => {
                t1::MatchInput::Organizations(t1::OrganizationMatch {
                    organizations: all(m.organizations),
                    clients: all(m.clients),
                    manual_links: all(m.manual_links),
                    ignored: m.ignored,
                })
            }
            t2::MatchInput::Configurations(m) => {
                t1::MatchInput::Configurations(t1::ConfigurationMatch {
                    configurations: all(m.configurations),
                    scopable_configurations: all(m.scopable_configurations),
                    parents: all(m.parents),
                    manual_links: all(m.manual_links),
                    ignored: m.ignored,
                })
            }
        }
    }
}

// ---- 0.1 answers to 0.2 -------------------------------------------------------------------

impl From<t1::Error> for t2::Error {
    fn from(e: t1::Error) -> t2::Error {
        match e {
            t1::Error::Unauthorized(d) => t2::Error::Unauthorized(d),
            t1::Error::NotFound(d) => t2::Error::NotFound(d),
            t1::Error::RateLimited(r) => t2::Error::RateLimited(t2::RateLimited {
                retry_after_seconds: r.retry_after_seconds,
                detail: r.detail,
            }),
            t1::Error::Unavailable(d) => t2::Error::Unavailable(d),
            t1::Error::BadResponse(d) => t2::Error::BadResponse(d),
            t1::Error::Denied(d) => t2::Error::Denied(d),
        }
    }
}

impl From<t1::OrganizationPage> for t2::OrganizationPage {
    fn from(p: t1::OrganizationPage) -> t2::OrganizationPage {
        t2::OrganizationPage {
            records: all(p.records),
            unreadable: all(p.unreadable),
            info: p.info.into(),
        }
    }
}

impl From<t1::ConfigurationPage> for t2::ConfigurationPage {
    fn from(p: t1::ConfigurationPage) -> t2::ConfigurationPage {
        t2::ConfigurationPage {
            records: all(p.records),
            unreadable: all(p.unreadable),
            info: p.info.into(),
        }
    }
}

impl From<t1::Evidence> for t2::Evidence {
    fn from(e: t1::Evidence) -> t2::Evidence {
        match e {
            t1::Evidence::Name => t2::Evidence::Name,
            t1::Evidence::Serial => t2::Evidence::Serial,
            t1::Evidence::Mac => t2::Evidence::Mac,
            t1::Evidence::Hostname => t2::Evidence::Hostname,
        }
    }
}

impl From<t1::Reason> for t2::Reason {
    fn from(r: t1::Reason) -> t2::Reason {
        match r {
            t1::Reason::NoMatch => t2::Reason::NoMatch,
            t1::Reason::MultipleClients => t2::Reason::MultipleClients,
            t1::Reason::MultipleOrganizations => t2::Reason::MultipleOrganizations,
            t1::Reason::TargetTaken => t2::Reason::TargetTaken,
            t1::Reason::EmptyName => t2::Reason::EmptyName,
            t1::Reason::InvalidRecord => t2::Reason::InvalidRecord,
            t1::Reason::ParentUnplaced => t2::Reason::ParentUnplaced,
            t1::Reason::MultipleConfigurations => t2::Reason::MultipleConfigurations,
            t1::Reason::Conflict => t2::Reason::Conflict,
            t1::Reason::Archived => t2::Reason::Archived,
        }
    }
}

impl From<t1::Placement> for t2::Placement {
    fn from(p: t1::Placement) -> t2::Placement {
        t2::Placement {
            source_id: p.itglue_id,
            outcome: match p.outcome {
                t1::Outcome::Linked(l) => t2::Outcome::Linked(t2::Link {
                    scopable_id: l.scopable_id,
                    evidence: all(l.evidence),
                }),
                t1::Outcome::Unplaced(u) => t2::Outcome::Unplaced(t2::Unplaced {
                    reason: u.reason.into(),
                    candidates: u.candidates,
                    suggestions: u.suggestions,
                }),
            },
        }
    }
}

// ---- 0.1 imports, served by the 0.2 implementations -----------------------------------------

use v0_1::scopable::integration::{log as log1, storage as storage1};
use v0_2::scopable::integration::{log as log2, storage as storage2};

fn storage_error(e: storage2::StorageError) -> storage1::StorageError {
    match e {
        storage2::StorageError::TooLarge(m) => storage1::StorageError::TooLarge(m),
        storage2::StorageError::QuotaExceeded(m) => storage1::StorageError::QuotaExceeded(m),
        storage2::StorageError::InvalidKey(m) => storage1::StorageError::InvalidKey(m),
        storage2::StorageError::Unavailable(m) => storage1::StorageError::Unavailable(m),
    }
}

impl storage1::Host for GuestState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, storage1::StorageError>> {
        Ok(storage2::Host::get(self, key).await?.map_err(storage_error))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), storage1::StorageError>> {
        Ok(storage2::Host::set(self, key, value)
            .await?
            .map_err(storage_error))
    }

    async fn delete(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<(), storage1::StorageError>> {
        Ok(storage2::Host::delete(self, key)
            .await?
            .map_err(storage_error))
    }

    async fn keys(&mut self) -> wasmtime::Result<Result<Vec<String>, storage1::StorageError>> {
        Ok(storage2::Host::keys(self).await?.map_err(storage_error))
    }
}

/// The contract's `types` interface holds only types; there is nothing to implement.
impl t1::Host for GuestState {}

impl log1::Host for GuestState {
    fn emit(&mut self, level: log1::Level, message: String) {
        let level = match level {
            log1::Level::Debug => log2::Level::Debug,
            log1::Level::Info => log2::Level::Info,
            log1::Level::Warn => log2::Level::Warn,
            log1::Level::Error => log2::Level::Error,
        };
        log2::Host::emit(self, level, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imports(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_types_import_names_the_contract() {
        let of = |v: &str| {
            Contract::of_imports(&imports(&[
                "wasi:io/streams@0.2.6",
                &format!("scopable:integration/types@{v}"),
            ]))
        };
        assert_eq!(of("0.1.0"), Ok(Contract::V0_1));
        assert_eq!(of("0.1.3"), Ok(Contract::V0_1));
        assert_eq!(of("0.2.0"), Ok(Contract::V0_2));
        let refused = of("0.3.0").unwrap_err();
        assert!(
            refused.contains("scopable:integration/types@0.3.0"),
            "{refused}"
        );
        assert!(refused.contains("contract version 0.3.0"), "{refused}");
        assert!(refused.contains("0.1.0 and 0.2.0"), "{refused}");
        let none = Contract::of_imports(&imports(&["wasi:io/streams@0.2.6"])).unwrap_err();
        assert!(
            none.contains("does not import scopable:integration/types"),
            "{none}"
        );
        let two = Contract::of_imports(&imports(&[
            "scopable:integration/types@0.1.0",
            "scopable:integration/types@0.2.0",
        ]))
        .unwrap_err();
        assert!(two.contains("2 versions"), "{two}");
    }

    #[test]
    fn a_placement_keeps_its_id_and_outcome_across_versions() {
        let old = t1::Placement {
            itglue_id: "42".into(),
            outcome: t1::Outcome::Linked(t1::Link {
                scopable_id: "c-1".into(),
                evidence: vec![t1::Evidence::Serial, t1::Evidence::Mac],
            }),
        };
        let new: t2::Placement = old.into();
        assert_eq!(new.source_id, "42");
        match new.outcome {
            t2::Outcome::Linked(l) => {
                assert_eq!(l.scopable_id, "c-1");
                assert_eq!(l.evidence, vec![t2::Evidence::Serial, t2::Evidence::Mac]);
            }
            other => panic!("{other:?}"),
        }
        let pair: t1::Pair = t2::Pair {
            source_id: "7".into(),
            scopable_id: "s".into(),
        }
        .into();
        assert_eq!(
            (pair.itglue_id.as_str(), pair.scopable_id.as_str()),
            ("7", "s")
        );
    }
}
