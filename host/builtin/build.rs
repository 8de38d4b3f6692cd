//! Builds the IT Glue connector component for wasm32-wasip2 and embeds it, with its sha256,
//! so `scopable-host` runs the built-in connector with no further files. Set
//! `SCOPABLE_ITGLUE_WASM` to embed a prebuilt component instead.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("host/builtin/ sits in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed=SCOPABLE_ITGLUE_WASM");

    let wasm = match std::env::var_os("SCOPABLE_ITGLUE_WASM") {
        Some(path) => PathBuf::from(path),
        None => {
            for watched in [
                "plugin/src",
                "plugin/Cargo.toml",
                "plugin/normalize/src",
                "plugin/normalize/Cargo.toml",
                "plugin/manifest.toml",
                "wit",
                "Cargo.lock",
            ] {
                println!("cargo:rerun-if-changed={}", root.join(watched).display());
            }
            build_component(&root)
        }
    };
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "cannot read the connector component {}: {e}",
            wasm.display()
        )
    });
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let embedded = out_dir.join("itglue.wasm");
    std::fs::write(&embedded, &bytes).expect("write OUT_DIR/itglue.wasm");
    std::fs::write(
        out_dir.join("itglue.rs"),
        format!(
            "/// The IT Glue connector component, built from `plugin/`.\n\
             pub const ITGLUE_WASM: &[u8] = include_bytes!({:?});\n\
             /// Its sha256 (hex), pinned at build time.\n\
             pub const ITGLUE_SHA256: &str = {:?};\n",
            embedded.display().to_string(),
            digest
        ),
    )
    .expect("write OUT_DIR/itglue.rs");
}

fn build_component(root: &Path) -> PathBuf {
    ensure_target();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--package",
            "scopable-itglue",
            "--release",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status()
        .expect("run cargo to build the connector component");
    if !status.success() {
        panic!(
            "building the IT Glue connector component (plugin/) for {TARGET} failed; see the errors above"
        );
    }
    target_dir
        .join(TARGET)
        .join("release")
        .join("scopable_itglue.wasm")
}

/// Installs the wasm32-wasip2 target through rustup when it is missing.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let installed = sysroot
        .map(|s| Path::new(&s).join("lib/rustlib").join(TARGET).exists())
        .unwrap_or(false);
    if installed {
        return;
    }
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!("the {TARGET} target is missing; run `rustup target add {TARGET}` and build again");
    }
}
