//! The built-in IT Glue connector: its component (built from `plugin/` and embedded at build
//! time) and its manifest, pinned to the embedded component's digest.
#![deny(missing_docs)]

use scopable_sandbox::manifest::{Manifest, ManifestError};

include!(concat!(env!("OUT_DIR"), "/itglue.rs"));

/// The built-in connector's name.
pub const ITGLUE: &str = "itglue";

/// The built-in IT Glue connector's manifest (its digest is pinned at build time).
pub const ITGLUE_MANIFEST: &str = include_str!("../../../plugin/manifest.toml");

/// The built-in manifest, pinned to the embedded component.
pub fn itglue_manifest() -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest::parse(ITGLUE_MANIFEST, "built-in manifest")?;
    manifest.sha256 = Some(ITGLUE_SHA256.to_string());
    Ok(manifest)
}
