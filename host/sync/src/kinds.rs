//! The words every layer shares: record kinds, the order of ids, the names of reasons.

use scopable_sandbox::sandbox::wit_types as types;

/// A record kind, as named on the command line, in JSON and in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Organizations (linked to clients).
    Organization,
    /// Configurations (linked to configurations).
    Configuration,
}

impl RecordKind {
    /// Every kind, in sync order (organizations first: configurations are placed under them).
    pub const ALL: [RecordKind; 2] = [RecordKind::Organization, RecordKind::Configuration];

    /// The singular name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Organization => "organization",
            RecordKind::Configuration => "configuration",
        }
    }
}

/// A sort key giving [`id_order`]'s order, computed once per id.
pub fn id_key(id: &str) -> (u8, u64, String) {
    match id.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, id.to_string()),
    }
}

/// Orders ids numerically when both are numbers, else as text.
pub fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// The reason's name as listed by `unplaced`.
pub fn reason_name(r: types::Reason) -> &'static str {
    use types::Reason as R;
    match r {
        R::NoMatch => "no-match",
        R::MultipleClients => "multiple-clients",
        R::MultipleOrganizations => "multiple-organizations",
        R::TargetTaken => "target-taken",
        R::EmptyName => "empty-name",
        R::InvalidRecord => "invalid-record",
        R::ParentUnplaced => "parent-unplaced",
        R::MultipleConfigurations => "multiple-configurations",
        R::Conflict => "conflict",
        R::Archived => "archived",
    }
}
