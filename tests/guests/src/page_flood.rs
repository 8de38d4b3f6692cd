//! `page-flood`: pages the host must not hold. With a page size of 7 asked for, page 1 carries
//! 100,000 organizations; with 9, a page of nine organizations whose names are 1 MiB each;
//! with any other page size, every page is full and points to the next, forever, with no
//! totals, so only a bound on the whole listing stops it.

use crate::types::{Endpoint, Organization, OrganizationPage, PageInfo, Verified};

/// Records on the oversized page.
pub const OVERSIZED: usize = 100_000;

pub fn verified() -> Verified {
    Verified {
        detail: "page-flood: verified".to_string(),
        total_organizations: None,
    }
}

pub fn organizations(endpoint: &Endpoint, page: u32) -> OrganizationPage {
    let count = if endpoint.page_size == 7 {
        OVERSIZED
    } else {
        endpoint.page_size as usize
    };
    let first = (u64::from(page) - 1) * count as u64;
    let records = (0..count as u64)
        .map(|i| Organization {
            id: (first + i + 1).to_string(),
            name: if endpoint.page_size == 9 {
                "n".repeat(1 << 20)
            } else {
                format!("Org {}", first + i + 1)
            },
            short_name: None,
            type_name: None,
            status_name: None,
        })
        .collect();
    OrganizationPage {
        records,
        unreadable: Vec::new(),
        info: PageInfo {
            next_page: Some(page + 1),
            total_pages: None,
            total_count: None,
        },
    }
}
