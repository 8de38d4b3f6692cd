//! Testing a key against the connector's service and storing it: the command line's `test`
//! and `connect` and the runtime's API do both through here.

use crate::app::{self, App, AppError, Exit};
use scopable_sandbox::policy::BaseUrl;
use scopable_sandbox::sandbox::wit_types as types;

/// Tests `key` against `base` (of `region`) with the connector's `test` export, retried as
/// the manifest allows, on `rt`. A failure is mapped to an exit status and a message that says
/// what to do ([`app::call_failure`]); `verified_before` is when a stored key last passed.
pub fn test_key(
    app: &App,
    rt: &tokio::runtime::Runtime,
    region: &str,
    base: &BaseUrl,
    key: &str,
    verified_before: Option<&str>,
) -> Result<types::Verified, AppError> {
    let ctx = app.call_context(base.clone(), key)?;
    rt.block_on(app.test(&ctx))
        .map_err(|e| app::call_failure(&e, &app.connector.manifest, region, base, verified_before))
}

/// Stores `key` encrypted (bound to the account, connector, region and endpoint) with its
/// region and endpoint, replacing any earlier connection, and records `actor`'s `connect` in
/// the account's activity. Call it only after [`test_key`] passed.
pub fn store_key(
    app: &App,
    region: &str,
    base: &BaseUrl,
    key: &str,
    actor: &str,
) -> Result<(), AppError> {
    let vault = scopable_store::connections::open_vault(&app.db, true)?
        .ok_or_else(|| AppError::new(Exit::BadInput, "cannot create the vault key file"))?;
    let account = scopable_store::connections::account_id(&app.db)?;
    let endpoint = base.to_url();
    let (nonce, ciphertext) = vault.seal(
        key,
        scopable_store::vault::Binding {
            account: &account,
            connector: app.name(),
            region,
            endpoint: &endpoint,
        },
    );
    scopable_store::connections::save_connection(
        &app.db,
        app.name(),
        &scopable_store::connections::StoredConnection {
            region: region.to_string(),
            endpoint,
            key_nonce: nonce,
            key_ciphertext: ciphertext,
            verified_at: scopable_store::db::now(),
        },
    )?;
    scopable_store::accounts::record_event(
        &app.db,
        actor,
        "connect",
        Some(app.name()),
        Some(&format!("region {region}, {}", base.to_url())),
    )
    .map_err(AppError::from)?;
    Ok(())
}
