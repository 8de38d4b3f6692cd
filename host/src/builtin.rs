//! The built-in IT Glue connector: its component (built from `plugin/` and embedded at build
//! time) and its manifest, pinned to the embedded component's digest.

use crate::manifest::{ITGLUE_MANIFEST, Manifest, ManifestError};

include!(concat!(env!("OUT_DIR"), "/itglue.rs"));

/// The built-in connector's name.
pub const ITGLUE: &str = "itglue";

/// The built-in manifest, pinned to the embedded component.
pub fn itglue_manifest() -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest::parse(ITGLUE_MANIFEST, "built-in manifest")?;
    manifest.sha256 = Some(ITGLUE_SHA256.to_string());
    Ok(manifest)
}
