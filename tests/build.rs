//! Builds every hostile component (one per feature of `tests/guests`), the example Docuvault
//! connector (`examples/docuvault`) and the connector guide's minimal connector
//! (`examples/minimal`) for wasm32-wasip2, and generates `$OUT_DIR/guests.rs`: a path constant
//! per component, `foreach_hostile!`, `EXAMPLE_CONNECTOR` and `MINIMAL_CONNECTOR`.
//!
//! The components are built by a nested cargo into `target/wasm-guests`, one feature at a time
//! (the features are read from `tests/guests/Cargo.toml`, so adding one there is enough).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const TARGET: &str = "wasm32-wasip2";
const PACKAGE: &str = "hostile-guests";
const ARTIFACT: &str = "hostile_guests.wasm";
/// The example connector's package and the component it builds.
const EXAMPLE_PACKAGE: &str = "scopable-docuvault";
const EXAMPLE_ARTIFACT: &str = "scopable_docuvault.wasm";
/// The connector guide's minimal connector: its package and the component it builds.
const MINIMAL_PACKAGE: &str = "scopable-exampledocs";
const MINIMAL_ARTIFACT: &str = "scopable_exampledocs.wasm";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf();
    let guests_dir = manifest_dir.join("guests");
    let guests_manifest = guests_dir.join("Cargo.toml");

    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rerun-if-changed={}",
        guests_dir.join("src").display()
    );
    println!("cargo:rerun-if-changed={}", guests_manifest.display());
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    let example_dir = workspace.join("examples").join("docuvault");
    println!(
        "cargo:rerun-if-changed={}",
        example_dir.join("src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        example_dir.join("Cargo.toml").display()
    );
    let minimal_dir = workspace.join("examples").join("minimal");
    for part in ["src", "wit", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            minimal_dir.join(part).display()
        );
    }
    // The example uses the shared normalization crate.
    let normalize_dir = workspace.join("plugin").join("normalize");
    println!(
        "cargo:rerun-if-changed={}",
        normalize_dir.join("src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        normalize_dir.join("Cargo.toml").display()
    );

    let manifest = fs::read_to_string(&guests_manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", guests_manifest.display()));
    let guests = features(&manifest);
    assert!(
        !guests.is_empty(),
        "{} declares no features: each feature is one hostile component",
        guests_manifest.display()
    );

    ensure_target();

    let target_dir = workspace.join("target").join("wasm-guests");
    let built = target_dir.join(TARGET).join("release").join(ARTIFACT);
    // Concurrent builds (say `cargo build` and `cargo clippy`) share the nested target dir:
    // hold a lock from each build to its copy, so that one cannot copy another's artifact.
    fs::create_dir_all(&target_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", target_dir.display()));
    let lock_path = target_dir.join("hostile-guests.lock");
    let lock = fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));

    let started = Instant::now();
    let mut components = Vec::new();
    // Each feature's component is kept beside the nested target dir, and reused while it is
    // newer than everything it is built from: the check and test profiles (and a rebuild after
    // an unrelated change) then build each component once, not once per profile.
    let by_feature = target_dir.join("by-feature");
    fs::create_dir_all(&by_feature)
        .unwrap_or_else(|e| panic!("creating {}: {e}", by_feature.display()));
    let sources_changed = newest_change(&[
        guests_dir.clone(),
        workspace.join("wit"),
        workspace.join("Cargo.lock"),
        manifest_dir.join("build.rs"),
    ]);
    for name in &guests {
        let guest_started = Instant::now();
        let dest = out_dir.join(format!("hostile_{}.wasm", snake(name)));
        let kept = by_feature.join(format!("hostile_{}.wasm", snake(name)));
        let fresh = fs::metadata(&kept)
            .and_then(|m| m.modified())
            .is_ok_and(|built_at| sources_changed.is_some_and(|changed| built_at > changed));
        if fresh && fs::copy(&kept, &dest).is_ok() {
            components.push((name.as_str(), dest));
            continue;
        }
        let status = nested_cargo()
            .current_dir(&workspace)
            .args(["build", "-p", PACKAGE, "--target", TARGET, "--release"])
            .args(["--no-default-features", "--features", name])
            .arg("--target-dir")
            .arg(&target_dir)
            // This script's stdout is read by cargo as directives: keep the nested output off it.
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .unwrap_or_else(|e| panic!("hostile guest `{name}`: could not run cargo: {e}"));
        if !status.success() {
            panic!(
                "hostile guest `{name}` failed to build ({status}); reproduce with: cargo build -p \
                 {PACKAGE} --target {TARGET} --release --no-default-features --features {name}"
            );
        }
        fs::copy(&built, &kept).unwrap_or_else(|e| {
            panic!(
                "hostile guest `{name}`: copying {} to {}: {e}",
                built.display(),
                kept.display()
            )
        });
        fs::copy(&built, &dest).unwrap_or_else(|e| {
            panic!(
                "hostile guest `{name}`: copying {} to {}: {e}",
                built.display(),
                dest.display()
            )
        });
        eprintln!(
            "built hostile guest `{name}` in {:.1?}: {}",
            guest_started.elapsed(),
            dest.display()
        );
        components.push((name.as_str(), dest));
    }
    eprintln!(
        "built {} hostile guests in {:.1?}",
        components.len(),
        started.elapsed()
    );
    let example = build_example(
        &workspace,
        &target_dir,
        &out_dir,
        (EXAMPLE_PACKAGE, EXAMPLE_ARTIFACT, "example_docuvault.wasm"),
    );
    let minimal = build_example(
        &workspace,
        &target_dir,
        &out_dir,
        (
            MINIMAL_PACKAGE,
            MINIMAL_ARTIFACT,
            "minimal_exampledocs.wasm",
        ),
    );
    drop(lock);

    let generated = out_dir.join("guests.rs");
    let mut text = generate(&components);
    let _ = writeln!(
        text,
        "/// The example Docuvault connector (wasm32-wasip2), built from `examples/docuvault`.\n\
         pub const EXAMPLE_CONNECTOR: &str = {:?};",
        example.to_str().expect("OUT_DIR is valid UTF-8")
    );
    let _ = writeln!(
        text,
        "/// The connector guide's minimal connector (wasm32-wasip2), built from `examples/minimal`.\n\
         pub const MINIMAL_CONNECTOR: &str = {:?};",
        minimal.to_str().expect("OUT_DIR is valid UTF-8")
    );
    fs::write(&generated, text).unwrap_or_else(|e| panic!("writing {}: {e}", generated.display()));
}

/// Builds an example connector (`package`, which builds `artifact`) into the shared nested
/// target dir and copies it to `out_dir` as `dest_name`.
fn build_example(
    workspace: &Path,
    target_dir: &Path,
    out_dir: &Path,
    (package, artifact, dest_name): (&str, &str, &str),
) -> PathBuf {
    let started = Instant::now();
    let status = nested_cargo()
        .current_dir(workspace)
        .args(["build", "-p", package, "--target", TARGET, "--release"])
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .unwrap_or_else(|e| panic!("example connector {package}: could not run cargo: {e}"));
    if !status.success() {
        panic!(
            "the example connector {package} failed to build ({status}); reproduce with: cargo \
             build -p {package} --target {TARGET} --release"
        );
    }
    let built = target_dir.join(TARGET).join("release").join(artifact);
    let dest = out_dir.join(dest_name);
    fs::copy(&built, &dest).unwrap_or_else(|e| {
        panic!(
            "example connector {package}: copying {} to {}: {e}",
            built.display(),
            dest.display()
        )
    });
    eprintln!(
        "built the example connector {package} in {:.1?}: {}",
        started.elapsed(),
        dest.display()
    );
    dest
}

/// The feature names in the `[features]` table of the guests' manifest, in order, without
/// `default`. Expects the plain `name = [...]` form, one per line.
fn features(manifest: &str) -> Vec<String> {
    let mut in_features = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_features = line == "[features]";
            continue;
        }
        if !in_features || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && name.starts_with(|c: char| c.is_ascii_lowercase()),
            "hostile guest feature `{name}`: use lowercase letters, digits and `-` only"
        );
        if name != "default" {
            names.push(name.to_string());
        }
    }
    names
}

/// Makes sure the standard library for the wasm target is installed: tries
/// `rustup target add` once, then gives up with the command to run.
fn ensure_target() {
    if target_installed() {
        return;
    }
    eprintln!("the {TARGET} target is missing; running `rustup target add {TARGET}`");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .is_ok_and(|s| s.success());
    if !added || !target_installed() {
        panic!("the {TARGET} target is not installed: run `rustup target add {TARGET}`");
    }
}

fn target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    output.status.success()
        && Path::new(&sysroot)
            .join("lib/rustlib")
            .join(TARGET)
            .join("lib")
            .is_dir()
}

/// A cargo command for the nested build, cleared of what this build would otherwise leak
/// into it: its flags, target dir and target, the package's own build-script variables, and
/// clippy's wrapper (so `cargo clippy` builds the same components as `cargo build`).
/// Toolchain, registry, network, profile and jobserver settings are kept.
fn nested_cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    const EXACT: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "NUM_JOBS",
        "OPT_LEVEL",
        "DEBUG",
        "PROFILE",
    ];
    const PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_FEATURE_", "CARGO_PKG_", "__CARGO"];
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `foreign-host` -> `foreign_host`.
fn snake(feature: &str) -> String {
    feature.replace('-', "_")
}

/// The text of `guests.rs`.
fn generate(components: &[(&str, PathBuf)]) -> String {
    let mut out = String::new();
    for (name, path) in components {
        let path = path.to_str().expect("OUT_DIR is valid UTF-8");
        let _ = writeln!(
            out,
            "/// The `{name}` hostile component (wasm32-wasip2), built from `tests/guests` with \
             `--features {name}`.\npub const {}: &str = {path:?};",
            snake(name).to_uppercase()
        );
    }
    let _ = writeln!(
        out,
        "/// Every hostile component as `(feature, path)`, in the order of the guests' \
         manifest.\npub const ALL: &[(&str, &str)] = &["
    );
    for (name, _) in components {
        let _ = writeln!(out, "    ({name:?}, {}),", snake(name).to_uppercase());
    }
    out.push_str("];\n");
    out.push_str(
        "/// Invokes `$mac!(name)` once per hostile component, `name` being the feature in \
         snake case\n/// (`foreign_host`), so a test file can assert that every component has \
         a test.\n#[macro_export]\nmacro_rules! foreach_hostile {\n    ($mac:ident) => {\n",
    );
    for (name, _) in components {
        let _ = writeln!(out, "        $mac!({});", snake(name));
    }
    out.push_str("    };\n}\n");
    out
}

/// The latest modification time of any file under `paths` (files or folders), if any could be
/// read.
fn newest_change(paths: &[PathBuf]) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in fs::read_dir(&path).into_iter().flatten().flatten() {
                stack.push(entry.path());
            }
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(Some(modified));
        }
    }
    newest
}
