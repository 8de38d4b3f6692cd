//! Paged fetching owned by the host: page 1 first, then the remaining pages concurrently
//! (bounded), each with retries; records de-duplicated by id and the count checked against
//! the API's total, so a partial listing fails instead of being linked from.

use crate::app::{App, AppError, Exit};
use crate::sandbox::{CallContext, CallError, LoadedConnector, wit_types as types};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

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

/// One fetched page, split into its parts.
type Parts<R> = (Vec<R>, Vec<types::UnreadableRecord>, types::PageInfo);

/// Everything a listing returned, de-duplicated by id.
pub struct Listing<R> {
    /// Readable records, in id order of first appearance.
    pub records: Vec<R>,
    /// Records the connector could not read.
    pub unreadable: Vec<types::UnreadableRecord>,
    /// Pages fetched.
    pub pages: u32,
}

async fn fetch_with_retries<P: Page>(
    connector: Arc<LoadedConnector>,
    ctx: CallContext,
    page: u32,
) -> Result<P, CallError> {
    let limits = connector.manifest.limits.clone();
    crate::retry::with_retries(
        &limits,
        || {
            let (connector, ctx) = (connector.clone(), ctx.clone());
            P::fetch(connector, ctx, page)
        },
        |e, attempt, wait| {
            tracing::warn!("page {page}: attempt {attempt} failed ({e}); retrying in {wait:?}");
        },
    )
    .await
    .map_err(|e| match e {
        CallError::Guest(g) => CallError::Guest(with_page(g, page)),
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

/// Fetches every page of a listing. `progress` hears (pages done, total pages if known).
pub async fn fetch_all<P: Page>(
    app: &App,
    ctx: &CallContext,
    mut progress: impl FnMut(u32, Option<u32>),
) -> Result<Listing<P::Record>, FetchError> {
    let connector = app.connector.clone();
    // HTTP requests in flight are bounded by `concurrency` (the context's semaphore); twice as
    // many calls run, so parsing one page overlaps fetching the next.
    let concurrency = connector.manifest.limits.concurrency as usize * 2;
    let first = fetch_with_retries::<P>(connector.clone(), ctx.clone(), 1).await?;
    let (records, unreadable, info) = first.into_parts();
    let mut pages: BTreeMap<u32, Parts<P::Record>> = BTreeMap::new();
    let expected_total = info.total_count;
    let total_pages = info.total_pages;
    let mut next = info.next_page;
    pages.insert(1, (records, unreadable, info));
    progress(1, total_pages);
    match total_pages {
        Some(total) if total > MAX_PAGES => {
            return Err(FetchError::Inconsistent(format!(
                "the API reports {total} pages, more than the {MAX_PAGES} a listing may have"
            )));
        }
        Some(total) if total > 1 => {
            // The total is known: fetch the rest at once, bounded.
            let mut set = tokio::task::JoinSet::new();
            let mut queue = 2..=total;
            let spawn = |set: &mut tokio::task::JoinSet<_>, page: u32| {
                let (c, x) = (connector.clone(), ctx.clone());
                set.spawn(async move { (page, fetch_with_retries::<P>(c, x, page).await) });
            };
            for page in queue.by_ref().take(concurrency) {
                spawn(&mut set, page);
            }
            while let Some(joined) = set.join_next().await {
                let (page, result) =
                    joined.map_err(|e| FetchError::Host(format!("a fetch task failed: {e}")))?;
                let parts = result?.into_parts();
                pages.insert(page, parts);
                progress(pages.len() as u32, Some(total));
                if let Some(page) = queue.next() {
                    spawn(&mut set, page);
                }
            }
            // The last page must be the last: a listing that grew while paging is partial.
            if let Some(next) = pages.get(&total).and_then(|p| p.2.next_page) {
                return Err(FetchError::Inconsistent(format!(
                    "page {total} of {total} points to a page {next}: the listing changed while paging; sync again"
                )));
            }
        }
        _ => {
            // No total: follow next-page one at a time.
            while let Some(page) = next {
                if pages.contains_key(&page) || page > MAX_PAGES {
                    return Err(FetchError::Inconsistent(format!(
                        "the API pointed to page {page} again; paging would not end"
                    )));
                }
                let parts = fetch_with_retries::<P>(connector.clone(), ctx.clone(), page)
                    .await?
                    .into_parts();
                next = parts.2.next_page;
                pages.insert(page, parts);
                progress(pages.len() as u32, None);
            }
        }
    }
    assemble::<P>(pages, expected_total)
}

fn assemble<P: Page>(
    pages: BTreeMap<u32, Parts<P::Record>>,
    expected_total: Option<u64>,
) -> Result<Listing<P::Record>, FetchError> {
    let page_count = pages.len() as u32;
    let mut seen = HashSet::new();
    let mut listing = Listing {
        records: Vec::new(),
        unreadable: Vec::new(),
        pages: page_count,
    };
    for (number, (records, unreadable, info)) in pages {
        if info.total_count.is_some() && info.total_count != expected_total {
            return Err(FetchError::Inconsistent(format!(
                "the total changed while paging (page 1 said {}, page {number} said {}); sync again",
                expected_total.map_or("?".into(), |n| n.to_string()),
                info.total_count.map_or("?".into(), |n| n.to_string()),
            )));
        }
        for record in records {
            if seen.insert(P::id(&record).to_string()) {
                listing.records.push(record);
            }
        }
        for bad in unreadable {
            let fresh = match &bad.id {
                Some(id) => seen.insert(id.clone()),
                None => true,
            };
            if fresh {
                listing.unreadable.push(bad);
            }
        }
    }
    let received = (listing.records.len() + listing.unreadable.len()) as u64;
    if let Some(total) = expected_total
        && received != total
    {
        return Err(FetchError::Inconsistent(format!(
            "the API reported {total} records but {received} distinct records arrived; nothing was linked from a partial list"
        )));
    }
    Ok(listing)
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
}

impl FetchError {
    /// The exit status and message for the admin.
    pub fn into_app_error(
        self,
        app: &App,
        region: &str,
        base: &crate::policy::BaseUrl,
        verified: Option<&str>,
    ) -> AppError {
        match self {
            FetchError::Call(e) => {
                crate::app::call_failure(&e, &app.connector.manifest, region, base, verified)
            }
            FetchError::Inconsistent(m) => AppError::new(Exit::Unavailable, m),
            FetchError::Host(m) => AppError::new(Exit::Failure, m),
        }
    }
}
