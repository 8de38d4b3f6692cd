//! Paged fetching owned by the host: page 1 first, then the remaining pages concurrently
//! (bounded), each with retries, each checked and handed to the caller as it arrives (which
//! stages it: the records are de-duplicated by id there); the caller then checks the count
//! against the API's total ([`Fetched::check_received`]), so a partial listing fails instead
//! of being linked from.

use crate::app::{App, AppError, Exit};
use crate::notice::{notice, retry_notice};
use scopable_sandbox::sandbox::{CallContext, CallError, LoadedConnector, wit_types as types};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::watch;

/// A page of either kind, reduced to what paging needs.
pub trait Page: Send + 'static {
    /// The record type.
    type Record: Send;
    /// The records, unreadable records and page info.
    fn into_parts(
        self,
    ) -> (
        Vec<Self::Record>,
        Vec<types::UnreadableRecord>,
        types::PageInfo,
    );
    /// A record's id.
    fn id(record: &Self::Record) -> &str;
    /// Why a record cannot be used as received (an id that is not an id), if it cannot.
    fn invalid(record: &Self::Record) -> Option<String>;
    /// The bytes of text a record holds (what keeping it costs).
    fn text_bytes(record: &Self::Record) -> usize;
    /// Calls the matching export.
    fn fetch(
        connector: Arc<LoadedConnector>,
        ctx: CallContext,
        page: u32,
    ) -> impl Future<Output = Result<Self, CallError>> + Send
    where
        Self: Sized;
}

/// Implements [`Page`] for a page type, its record type and the export that fetches it.
macro_rules! page {
    ($page:ty, $record:ty, $export:ident) => {
        impl Page for $page {
            type Record = $record;
            fn into_parts(self) -> Parts<Self::Record> {
                (self.records, self.unreadable, self.info)
            }
            fn id(record: &Self::Record) -> &str {
                &record.id
            }
            fn invalid(record: &Self::Record) -> Option<String> {
                Checked::invalid(record)
            }
            fn text_bytes(record: &Self::Record) -> usize {
                Checked::text_bytes(record)
            }
            async fn fetch(
                connector: Arc<LoadedConnector>,
                ctx: CallContext,
                page: u32,
            ) -> Result<Self, CallError> {
                connector.$export(&ctx, page).await
            }
        }
    };
}

page!(types::OrganizationPage, types::Organization, fetch_orgs);
page!(
    types::ConfigurationPage,
    types::Configuration,
    fetch_configs
);

/// Most pages one listing may have (100 million records at 1000 a page).
const MAX_PAGES: u32 = 100_000;

/// Most bytes of text (ids, names, identifiers) one listing may hold in the host's memory,
/// whatever its record count: a connector cannot grow the host without bound with long names.
pub const MAX_LISTING_BYTES: usize = 512 * 1024 * 1024;

/// Most bytes of text one page may hold, whatever the manifest's response limits allow.
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// Longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 255;

/// Why `id` is not a usable id: empty, longer than [`MAX_ID_BYTES`], or holding a control
/// character (which would forge output rows and terminal escapes).
pub fn invalid_id(what: &str, id: &str) -> Option<String> {
    if id.is_empty() {
        Some(format!("{what} is empty"))
    } else if id.len() > MAX_ID_BYTES {
        Some(format!("{what} is longer than {MAX_ID_BYTES} bytes"))
    } else if id.chars().any(scopable_sandbox::display::is_unsafe) {
        Some(format!(
            "{what} contains a control or bidirectional formatting character"
        ))
    } else {
        None
    }
}

fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

/// What the host checks of a received record.
trait Checked {
    /// Why the record cannot be used, if it cannot.
    fn invalid(&self) -> Option<String>;
    /// The bytes of text it holds.
    fn text_bytes(&self) -> usize;
}

impl Checked for types::Organization {
    fn invalid(&self) -> Option<String> {
        invalid_id("the id", &self.id)
    }

    fn text_bytes(&self) -> usize {
        self.id.len()
            + self.name.len()
            + opt_len(&self.short_name)
            + opt_len(&self.type_name)
            + opt_len(&self.status_name)
    }
}

impl Checked for types::Configuration {
    fn invalid(&self) -> Option<String> {
        invalid_id("the id", &self.id)
            .or_else(|| invalid_id("the organization id", &self.organization_id))
    }

    fn text_bytes(&self) -> usize {
        self.id.len()
            + self.organization_id.len()
            + self.name.len()
            + opt_len(&self.hostname)
            + opt_len(&self.primary_ip)
            + opt_len(&self.serial_number)
            + opt_len(&self.type_name)
            + self.mac_addresses.iter().map(String::len).sum::<usize>()
    }
}

/// What one listing may hold: records per page, records and bytes in all.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    page_size: usize,
    max_page_bytes: usize,
    max_records: u64,
    max_bytes: usize,
}

impl Bounds {
    fn of(limits: &scopable_sandbox::manifest::Limits) -> Bounds {
        Bounds {
            page_size: limits.page_size as usize,
            max_page_bytes: usize::try_from(
                limits
                    .max_response_bytes
                    .saturating_mul(u64::from(limits.max_requests_per_call))
                    .min(MAX_PAGE_BYTES as u64),
            )
            .unwrap_or(MAX_PAGE_BYTES),
            max_records: limits.max_listing_records,
            max_bytes: MAX_LISTING_BYTES,
        }
    }
}

/// The checks a sync applies to each page as it is read, for other readers of a listing
/// (`check`): the same bounds, the same id validation.
pub struct PageGuard {
    bounds: Bounds,
    held: std::sync::Mutex<Held>,
}

impl PageGuard {
    /// A guard for one listing under `limits`.
    pub fn new(limits: &scopable_sandbox::manifest::Limits) -> PageGuard {
        PageGuard {
            bounds: Bounds::of(limits),
            held: Default::default(),
        }
    }

    /// Checks page `page` as a sync would: its records (those with unusable ids moved to
    /// the unreadable ones), or why the sync would fail.
    pub fn admit<P: Page>(
        &self,
        page: u32,
        parts: Parts<P::Record>,
    ) -> Result<Parts<P::Record>, FetchError> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| FetchError::Host("the page guard was poisoned".into()))?;
        check_page::<P>(page, parts, self.bounds, &mut held)
    }
}

/// Running totals of a listing, checked against its [`Bounds`] as each page arrives.
#[derive(Debug, Default)]
struct Held {
    records: u64,
    bytes: usize,
}

/// Checks one page as it is read: at most the page size asked for, within the listing's
/// bounds, and every id a usable id (records with unusable ids become unreadable, their id
/// kept only when it is short and printable-safe to store).
fn check_page<P: Page>(
    page: u32,
    parts: Parts<P::Record>,
    bounds: Bounds,
    held: &mut Held,
) -> Result<Parts<P::Record>, FetchError> {
    let (records, mut unreadable, info) = parts;
    let count = records.len() + unreadable.len();
    if count > bounds.page_size {
        return Err(FetchError::Connector(format!(
            "the connector returned {count} records for page {page}, but pages of {} were asked for (page_size); nothing was applied",
            bounds.page_size
        )));
    }
    let mut bytes = 0usize;
    let mut kept = Vec::with_capacity(records.len());
    for record in records {
        bytes = bytes.saturating_add(P::text_bytes(&record));
        match P::invalid(&record) {
            None => kept.push(record),
            Some(why) => {
                let id = P::id(&record);
                unreadable.push(types::UnreadableRecord {
                    id: (!id.is_empty() && id.len() <= MAX_ID_BYTES).then(|| id.to_string()),
                    detail: why,
                });
            }
        }
    }
    for bad in &mut unreadable {
        bytes = bytes.saturating_add(bad.detail.len() + opt_len(&bad.id));
        if bad
            .id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.len() > MAX_ID_BYTES)
        {
            bad.id = None;
        }
    }
    if bytes > bounds.max_page_bytes {
        return Err(FetchError::Connector(format!(
            "page {page} holds {bytes} bytes of text, more than the responses of one call may carry ({} bytes: max_response_bytes x max_requests_per_call, at most 64 MiB); nothing was applied",
            bounds.max_page_bytes
        )));
    }
    held.records += count as u64;
    held.bytes = held.bytes.saturating_add(bytes);
    if held.records > bounds.max_records {
        return Err(FetchError::Connector(format!(
            "the listing holds more than {} records (max_listing_records); nothing was applied. Raise the limit in the manifest if the account really is that large",
            bounds.max_records
        )));
    }
    if held.bytes > bounds.max_bytes {
        return Err(FetchError::Connector(format!(
            "the listing holds more than {} MiB of text; nothing was applied",
            bounds.max_bytes / (1024 * 1024)
        )));
    }
    Ok((kept, unreadable, info))
}

/// One fetched page, split into its parts.
pub type Parts<R> = (Vec<R>, Vec<types::UnreadableRecord>, types::PageInfo);

/// What the pages of a listing added up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Pages fetched.
    pub pages: u32,
    /// The number of records page 1 reported, if it did.
    pub expected_total: Option<u64>,
    /// The number of pages page 1 reported, if it did.
    pub total_pages: Option<u32>,
}

impl Fetched {
    /// Checks that `received` distinct records (readable or not) are what page 1 reported.
    pub fn check_received(&self, received: u64) -> Result<(), FetchError> {
        match self.expected_total {
            Some(total) if received != total => Err(FetchError::Inconsistent(format!(
                "the API reported {total} records but {received} distinct records arrived; nothing was linked from a partial list"
            ))),
            _ => Ok(()),
        }
    }
}

/// Fetches page `page`, retrying as the limits say, until `wanted` (the last page still
/// wanted, if it changes) no longer covers it: then a failure is not retried.
async fn fetch_with_retries<P: Page>(
    connector: Arc<LoadedConnector>,
    ctx: CallContext,
    page: u32,
    mut wanted: Option<watch::Receiver<u32>>,
) -> Result<P, CallError> {
    let limits = connector.manifest.limits.clone();
    let unwanted = async move {
        match &mut wanted {
            // An error means the listing's fetch is over: nothing is wanted any more.
            Some(wanted) => drop(wanted.wait_for(|&last| page > last).await),
            None => std::future::pending().await,
        }
    };
    crate::retry::with_retries_until(
        &limits,
        || {
            let (connector, ctx) = (connector.clone(), ctx.clone());
            P::fetch(connector, ctx, page)
        },
        |e, attempt, wait| {
            notice(&retry_notice(
                &format!("page {page}"),
                e,
                attempt,
                limits.max_attempts,
                wait,
            ));
        },
        unwanted,
    )
    .await
    .map_err(|e| match e {
        CallError::Guest(g) => CallError::Guest(with_page(g, page)),
        CallError::Rejected { status, error } => CallError::Rejected {
            status,
            error: with_page(error, page),
        },
        other => other,
    })
}

fn with_page(e: types::Error, page: u32) -> types::Error {
    use types::Error as E;
    let add = |d: String| format!("page {page}: {d}");
    match e {
        E::Unauthorized(d) => E::Unauthorized(d),
        E::NotFound(d) => E::NotFound(add(d)),
        E::RateLimited(r) => E::RateLimited(types::RateLimited {
            retry_after_seconds: r.retry_after_seconds,
            detail: add(r.detail),
        }),
        E::Unavailable(d) => E::Unavailable(add(d)),
        E::BadResponse(d) => E::BadResponse(add(d)),
        E::Denied(d) => E::Denied(add(d)),
    }
}

/// Fetches every page of a listing and hands each to `on_page` (page number, readable
/// records, unreadable records) as it arrives, checked ([`check_page`]) and in no particular
/// order; nothing is kept here, so the listing's size never shows in memory. The pages must
/// agree with page 1 (the same total; the last page points nowhere); that the records add up
/// to page 1's total is for the caller to check with [`Fetched::check_received`], once it
/// knows how many distinct records it kept. `progress` hears (pages done, total pages if
/// known).
///
/// `last_pages` is how many pages the listing reported the last time it was read, if it did
/// ([`Fetched::total_pages`]; a listing paged by `next-page` alone reports none). Page
/// 1 is needed for the page count, so it is asked for first; but when the listing had more
/// pages last time, the next ones (up to `concurrency` requests in all) are asked for with
/// it, which saves a round trip. A page asked for that way and beyond the count page 1
/// reports is dropped unread, whatever it held or however it failed, and not retried once
/// page 1 has told: the listing is what page 1 says, as when nothing is asked ahead. Its
/// request is not cut off, so it is counted and audited as any other: asking ahead costs one
/// request per page the listing lost since it was last read.
pub async fn fetch_pages<P: Page>(
    app: &App,
    ctx: &CallContext,
    last_pages: Option<u32>,
    mut progress: impl FnMut(u32, Option<u32>),
    mut on_page: impl FnMut(u32, Vec<P::Record>, Vec<types::UnreadableRecord>) -> Result<(), FetchError>,
) -> Result<Fetched, FetchError> {
    let connector = app.connector.clone();
    // HTTP requests in flight are bounded by `concurrency` (the context's semaphore); twice as
    // many calls run, so parsing one page overlaps fetching the next.
    let limits = &connector.manifest.limits;
    let concurrency = limits.concurrency as usize * 2;
    let bounds = Bounds::of(limits);
    let mut held = Held::default();
    let mut set = tokio::task::JoinSet::new();
    // The last page still wanted: every page, until page 1 tells how many there are.
    let (wanted, wanted_by) = watch::channel(u32::MAX);
    let spawn = |set: &mut tokio::task::JoinSet<_>, page: u32| {
        let (c, x, w) = (connector.clone(), ctx.clone(), wanted_by.clone());
        set.spawn(async move { (page, fetch_with_retries::<P>(c, x, page, Some(w)).await) });
    };
    // With page 1, the pages after it that the listing had last time: as many as fit in the
    // requests allowed in flight at once, so that page 1 never waits for a slot.
    let ahead = last_pages
        .unwrap_or(1)
        .min(limits.concurrency)
        .clamp(1, MAX_PAGES);
    let first = fetch_with_retries::<P>(connector.clone(), ctx.clone(), 1, None);
    for page in 2..=ahead {
        spawn(&mut set, page);
    }
    // An early return (the sync fails) drops the set, which stops what was asked ahead.
    let first = first.await?;
    let (records, unreadable, info) = check_page::<P>(1, first.into_parts(), bounds, &mut held)?;
    if let Some(total) = info.total_count
        && total > bounds.max_records
    {
        return Err(FetchError::Connector(format!(
            "the listing reports {total} records, more than {} (max_listing_records); nothing was applied. Raise the limit in the manifest if the account really is that large",
            bounds.max_records
        )));
    }
    let expected_total = info.total_count;
    let total_pages = info.total_pages;
    // What was asked ahead and is not in the listing is not retried when it fails (a request
    // under way ends as any other); without a page count, none of it is used.
    wanted.send_replace(total_pages.unwrap_or(1));
    let mut next = info.next_page;
    let mut fetched: HashSet<u32> = HashSet::from([1]);
    // Every page after the first must report page 1's total, if any.
    let same_total = |number: u32, info: &types::PageInfo| {
        if info.total_count.is_some() && info.total_count != expected_total {
            return Err(FetchError::Inconsistent(format!(
                "the total changed while paging (page 1 said {}, page {number} said {}); sync again",
                expected_total.map_or("?".into(), |n| n.to_string()),
                info.total_count.map_or("?".into(), |n| n.to_string()),
            )));
        }
        Ok(())
    };
    on_page(1, records, unreadable)?;
    progress(1, total_pages);
    match total_pages {
        Some(total) if total > MAX_PAGES => {
            return Err(FetchError::Inconsistent(format!(
                "the API reports {total} pages, more than the {MAX_PAGES} a listing may have"
            )));
        }
        Some(total) if total > 1 => {
            let mut queue = (ahead + 1)..=total;
            for page in queue.by_ref().take(concurrency.saturating_sub(set.len())) {
                spawn(&mut set, page);
            }
            while let Some(joined) = set.join_next().await {
                let (page, result) =
                    joined.map_err(|e| FetchError::Host(format!("a fetch task failed: {e}")))?;
                if page > total {
                    // Asked for ahead, and no longer in the listing: dropped unread.
                    if let Some(page) = queue.next() {
                        spawn(&mut set, page);
                    }
                    continue;
                }
                let (records, unreadable, info) =
                    check_page::<P>(page, result?.into_parts(), bounds, &mut held)?;
                same_total(page, &info)?;
                if page == total
                    && let Some(next) = info.next_page
                {
                    return Err(FetchError::Inconsistent(format!(
                        "page {total} of {total} points to a page {next}: the listing changed while paging; sync again"
                    )));
                }
                // The next page is asked for before this one is handed over, so that the
                // fetch goes on while it is written.
                if let Some(page) = queue.next() {
                    spawn(&mut set, page);
                }
                on_page(page, records, unreadable)?;
                fetched.insert(page);
                progress(fetched.len() as u32, Some(total));
            }
        }
        _ => {
            // No page count: the pages are followed one by one, and none asked ahead is used.
            while let Some(page) = next {
                if fetched.contains(&page) || page > MAX_PAGES {
                    return Err(FetchError::Inconsistent(format!(
                        "the API pointed to page {page} again; paging would not end"
                    )));
                }
                let parts = fetch_with_retries::<P>(connector.clone(), ctx.clone(), page, None)
                    .await?
                    .into_parts();
                let (records, unreadable, info) = check_page::<P>(page, parts, bounds, &mut held)?;
                same_total(page, &info)?;
                next = info.next_page;
                on_page(page, records, unreadable)?;
                fetched.insert(page);
                progress(fetched.len() as u32, None);
            }
            // What was asked ahead ends as any request does, and is dropped unread.
            while set.join_next().await.is_some() {}
        }
    }
    Ok(Fetched {
        pages: fetched.len() as u32,
        expected_total,
        total_pages,
    })
}

/// Why a listing could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// An export call failed (after retries).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The pages do not add up.
    #[error("{0}")]
    Inconsistent(String),
    /// The host itself failed.
    #[error("{0}")]
    Host(String),
    /// The connector returned pages the host does not accept (too many records, too much).
    #[error("{0}")]
    Connector(String),
}

impl FetchError {
    /// The exit status and message for the admin.
    pub fn into_app_error(
        self,
        app: &App,
        region: &str,
        base: &scopable_sandbox::policy::BaseUrl,
        verified: Option<&str>,
    ) -> AppError {
        match self {
            FetchError::Call(e) => {
                crate::app::call_failure(&e, &app.connector.manifest, region, base, verified)
            }
            FetchError::Inconsistent(m) => AppError::new(Exit::Unavailable, m),
            FetchError::Host(m) => AppError::new(Exit::Failure, m),
            FetchError::Connector(m) => AppError::new(Exit::ConnectorFailed, m),
        }
    }
}
