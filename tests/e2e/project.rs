//! Checks on the project's own files: dependencies where they belong, and scripts that follow
//! the build's conventions.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Test-only crates are dev-dependencies, unused crates are not declared, and retry jitter does
/// not borrow the vault's cryptographic generator.
#[test]
fn dependencies_are_where_they_belong() {
    let manifest: toml::Table = toml::from_str(&read("host/Cargo.toml")).expect("host/Cargo.toml");
    let deps = manifest["dependencies"].as_table().expect("[dependencies]");
    let dev = manifest["dev-dependencies"]
        .as_table()
        .expect("[dev-dependencies]");
    assert!(!deps.contains_key("proptest"), "proptest is a test tool");
    assert!(dev.contains_key("proptest"));
    assert!(!deps.contains_key("hyper"), "hyper is not used directly");
    let retry = read("host/sync/src/retry.rs");
    assert!(
        !retry.contains("chacha20poly1305") && !retry.contains("OsRng"),
        "retry jitter borrows the AEAD crate's generator"
    );
    let workspace = read("Cargo.toml");
    assert!(
        !workspace.contains("codegen-units"),
        "a codegen-units setting with no effect"
    );
}

/// `scripts/demo.sh` finds the binaries where cargo puts them, `CARGO_TARGET_DIR` included.
#[test]
fn demo_follows_cargo_target_dir() {
    let script = read("scripts/demo.sh");
    let setup: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("target=") || l.starts_with("bin="))
        .collect();
    assert_eq!(setup.len(), 2, "the demo's target and bin lines: {setup:?}");
    let probe = format!("{}\nprintf '%s' \"$bin\"", setup.join("\n"));
    let run = |target_dir: Option<&str>| {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(&probe).env_remove("CARGO_TARGET_DIR");
        if let Some(dir) = target_dir {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
        let out = cmd.output().expect("bash");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(None), "target/release");
    assert_eq!(run(Some("/elsewhere/t")), "/elsewhere/t/release");
}
