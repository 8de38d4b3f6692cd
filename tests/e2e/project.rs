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

/// The host's crates, from the bottom layer up, and the folder of each one's sources.
const HOST_CRATES: &[(&str, &str)] = &[
    ("scopable-sandbox", "host/sandbox"),
    ("scopable-store", "host/store"),
    ("scopable-sync", "host/sync"),
    ("scopable-builtin", "host/builtin"),
    ("scopable-serve", "host/serve"),
    ("scopable-host", "host"),
];

/// The `[dependencies]` of a host crate, by name.
fn dependencies_of(dir: &str) -> Vec<String> {
    let manifest: toml::Table =
        toml::from_str(&read(&format!("{dir}/Cargo.toml"))).expect("a crate manifest");
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

/// The non-test Rust sources of a host crate, by file name: the text before its
/// `#[cfg(test)]` module, without comment lines.
fn sources_of(dir: &str) -> Vec<(String, String)> {
    let src = root().join(dir).join("src");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("reading {}: {e}", src.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a file name")
                .to_string();
            (name, code.join("\n"))
        })
        .collect();
    files.sort();
    files
}

/// Each layer depends only on the layers below it: the sandbox persists nothing and knows no
/// store; the store knows no sandbox (it keeps rows, not components); sync uses both and never
/// the binary; nothing depends on the binary.
#[test]
fn host_crates_depend_only_on_the_layers_below() {
    let sandbox = dependencies_of("host/sandbox");
    for forbidden in [
        "scopable-store",
        "scopable-sync",
        "scopable-builtin",
        "scopable-host",
        "rusqlite",
    ] {
        assert!(
            !sandbox.iter().any(|d| d == forbidden),
            "the sandbox depends on {forbidden}"
        );
    }
    let store = dependencies_of("host/store");
    for forbidden in [
        "scopable-sandbox",
        "scopable-sync",
        "scopable-builtin",
        "scopable-host",
        "wasmtime",
        "wasmtime-wasi",
        "wasmtime-wasi-http",
    ] {
        assert!(
            !store.iter().any(|d| d == forbidden),
            "the store depends on {forbidden}"
        );
    }
    let sync = dependencies_of("host/sync");
    assert!(sync.iter().any(|d| d == "scopable-sandbox"));
    assert!(sync.iter().any(|d| d == "scopable-store"));
    for forbidden in ["scopable-builtin", "scopable-host", "clap", "indicatif"] {
        assert!(
            !sync.iter().any(|d| d == forbidden),
            "sync depends on {forbidden}"
        );
    }
    // The runtime serves through sync; it never reaches below it for SQL, nor loads the
    // built-in connector itself (the binary hands it the connector).
    let serve = dependencies_of("host/serve");
    assert!(serve.iter().any(|d| d == "scopable-sync"));
    for forbidden in [
        "scopable-builtin",
        "scopable-host",
        "rusqlite",
        "clap",
        "indicatif",
    ] {
        assert!(
            !serve.iter().any(|d| d == forbidden),
            "serve depends on {forbidden}"
        );
    }
    let builtin = dependencies_of("host/builtin");
    assert_eq!(
        builtin,
        ["scopable-sandbox"],
        "the built-in connector's crate"
    );
    for (name, dir) in HOST_CRATES {
        assert!(
            !dependencies_of(dir).iter().any(|d| d == "scopable-host"),
            "{name} depends on the binary"
        );
    }
}

/// The modules a module of the same crate uses (`crate::x`), outside tests and comments.
fn module_graph(dir: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let files = sources_of(dir);
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    files
        .iter()
        .filter(|(name, _)| name != "lib" && name != "main")
        .map(|(name, code)| {
            let mut uses: Vec<String> = Vec::new();
            let mut rest = code.as_str();
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                // `crate::{a, b::c}` names several modules.
                let group = if let Some(inner) = rest.strip_prefix('{') {
                    inner.split('}').next().unwrap_or("")
                } else {
                    rest
                };
                for part in group.split(',') {
                    let module: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if module != *name && names.contains(&module) && !uses.contains(&module) {
                        uses.push(module);
                    }
                    if !rest.starts_with('{') {
                        break;
                    }
                }
            }
            (name.clone(), uses)
        })
        .collect()
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The cycle finder itself finds a cycle, and not where there is none.
#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &[&str])]| {
        edges
            .iter()
            .map(|(n, to)| (n.to_string(), to.iter().map(|t| t.to_string()).collect()))
            .collect::<std::collections::BTreeMap<String, Vec<String>>>()
    };
    let cyclic = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
    assert_eq!(
        find_cycle(&cyclic),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let layered = graph(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
    assert_eq!(find_cycle(&layered), None);
}

/// Within each host crate, modules import one another without a cycle.
#[test]
fn no_host_crate_has_a_module_cycle() {
    for (name, dir) in HOST_CRATES {
        let graph = module_graph(dir);
        assert!(
            graph.len() > 1 || *name == "scopable-builtin",
            "{name}: {graph:?}"
        );
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{name} has a module cycle: {}", cycle.join(" -> "));
        }
    }
}

/// Only the binary writes to the terminal: the library crates return results and events.
#[test]
fn only_the_binary_prints() {
    for (name, dir) in HOST_CRATES.iter().filter(|(n, _)| *n != "scopable-host") {
        for (file, code) in sources_of(dir) {
            for printing in [
                "println!",
                "print!(",
                "eprintln!",
                "eprint!(",
                "dbg!(",
                "io::stdout",
                "io::stderr",
            ] {
                assert!(
                    !code.contains(printing),
                    "{name}/src/{file}.rs uses {printing}"
                );
            }
        }
    }
}

/// SQL is written in the store and nowhere else in the host.
#[test]
fn sql_lives_in_the_store() {
    for (name, dir) in HOST_CRATES.iter().filter(|(n, _)| *n != "scopable-store") {
        assert!(
            !dependencies_of(dir).iter().any(|d| d == "rusqlite"),
            "{name} depends on rusqlite"
        );
        for (file, code) in sources_of(dir) {
            assert!(
                !code.contains("rusqlite"),
                "{name}/src/{file}.rs uses rusqlite"
            );
            for statement in [
                "SELECT ",
                "INSERT INTO",
                "UPDATE ",
                "DELETE FROM",
                "CREATE TABLE",
                "PRAGMA ",
            ] {
                assert!(
                    !code.contains(statement),
                    "{name}/src/{file}.rs holds SQL ({statement})"
                );
            }
        }
    }
}
