//! The released contracts stay as released.
//!
//! Every released version of the WIT is kept under `wit/since_vX.Y.Z/` and listed in
//! `wit/RELEASES` (`sha256sum` format, paths relative to `wit/`). These tests check that each
//! listed file still has its recorded sha256, that the recorded digests are the ones written in
//! [`RELEASED`] (so changing a frozen file and its line in `RELEASES` together is caught too),
//! that every `since_v*` folder is listed, and that the working contract `wit/integration.wit`
//! does not carry a released version number with different bytes.

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Each released version's frozen file (relative to `wit/`) and its sha256 as released.
const RELEASED: &[(&str, &str)] = &[(
    "since_v0.1.0/integration.wit",
    "44f47356e4cb6beb7ec45feb6674c394ec94f56d808f5efbcffc651a811dae87",
)];

/// The prefix of every folder holding a released version.
const FROZEN_PREFIX: &str = "since_v";

/// One line of `wit/RELEASES`.
#[derive(Debug, PartialEq, Eq)]
struct Release {
    /// The sha256 of the file, in lowercase hex.
    digest: String,
    /// The file, relative to `wit/`.
    path: String,
}

/// The repository's `wit/` folder.
fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("wit")
}

/// The releases listed in the repository's `wit/RELEASES`.
fn releases() -> Result<Vec<Release>> {
    let path = wit_dir().join("RELEASES");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_releases(&text)
}

/// Reads `sha256sum` lines (`<digest>  <path>`, or `<digest> *<path>`). Refuses anything else:
/// blank lines, comments, a malformed digest, a path outside a `since_v*` folder, a duplicate.
fn parse_releases(text: &str) -> Result<Vec<Release>> {
    let mut releases = Vec::new();
    let mut seen = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let Some((digest, path)) = line.split_once("  ").or_else(|| line.split_once(" *")) else {
            bail!("RELEASES line {number} is not `<sha256>  <path>`: {line:?}");
        };
        ensure!(
            digest.len() == 64
                && digest
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "RELEASES line {number}: {digest:?} is not a sha256 in lowercase hex"
        );
        let mut parts = path.split('/');
        let folder = parts.next().unwrap_or_default();
        ensure!(
            folder.len() > FROZEN_PREFIX.len()
                && folder.starts_with(FROZEN_PREFIX)
                && parts.clone().next().is_some()
                && parts.all(|part| !part.is_empty() && part != "." && part != ".."),
            "RELEASES line {number}: {path:?} is not a file inside a `{FROZEN_PREFIX}*` folder"
        );
        ensure!(
            seen.insert(path.to_string()),
            "RELEASES line {number}: {path:?} is listed twice"
        );
        releases.push(Release {
            digest: digest.to_string(),
            path: path.to_string(),
        });
    }
    Ok(releases)
}

/// The sha256 of `bytes` in lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that every file listed in `releases` (relative to `wit`) has its recorded digest.
fn check_digests(wit: &Path, releases: &[Release]) -> Result<()> {
    for release in releases {
        let path = wit.join(&release.path);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = sha256_hex(&bytes);
        ensure!(
            actual == release.digest,
            "{} changed: its sha256 is {actual}, the release's is {}. A released contract never \
             changes: put the change in `wit/integration.wit` under a new version",
            release.path,
            release.digest
        );
    }
    Ok(())
}

/// Checks that every `since_v*` folder in `wit`, and every file in it, is listed in `releases`,
/// and that each folder's name is the version its files declare.
fn check_listed(wit: &Path, releases: &[Release]) -> Result<()> {
    let listed: BTreeSet<&str> = releases.iter().map(|r| r.path.as_str()).collect();
    let mut folders = 0;
    for entry in fs::read_dir(wit).with_context(|| format!("listing {}", wit.display()))? {
        let entry = entry.with_context(|| format!("listing {}", wit.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !name.starts_with(FROZEN_PREFIX) || !entry.path().is_dir() {
            continue;
        }
        folders += 1;
        let version = &name[FROZEN_PREFIX.len()..];
        let package = format!("package scopable:integration@{version};");
        let mut files = 0;
        let folder = entry.path();
        for file in
            fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))?
        {
            let file = file.with_context(|| format!("listing {}", folder.display()))?;
            let file_name = file.file_name();
            let relative = format!("{name}/{}", file_name.to_string_lossy());
            ensure!(
                listed.contains(relative.as_str()),
                "{relative} is not listed in wit/RELEASES: a frozen contract is listed with its \
                 sha256 (see wit/README.md)"
            );
            let text = fs::read_to_string(file.path())
                .with_context(|| format!("reading {}", file.path().display()))?;
            ensure!(
                text.lines().any(|line| line == package),
                "{relative} does not declare `{package}`, the version its folder names"
            );
            files += 1;
        }
        ensure!(
            files > 0,
            "{name} holds no file: a release folder holds its frozen contract"
        );
    }
    ensure!(
        folders > 0,
        "no `{FROZEN_PREFIX}*` folder in {}",
        wit.display()
    );
    Ok(())
}

/// The version declared by a WIT file's `package scopable:integration@X;` line.
fn package_version(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        line.strip_prefix("package scopable:integration@")?
            .strip_suffix(';')
    })
}

/// A scratch copy of the repository's `wit/` folder (released files and `RELEASES` only),
/// removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("scopable-contract-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for release in releases()? {
            let to = dir.join(&release.path);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            fs::copy(wit_dir().join(&release.path), &to)
                .with_context(|| format!("copying {}", release.path))?;
        }
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_frozen_contract_is_byte_identical_to_its_release() -> Result<()> {
    let releases = releases()?;
    ensure!(!releases.is_empty(), "wit/RELEASES lists no release");
    check_digests(&wit_dir(), &releases)
}

#[test]
fn the_recorded_digests_are_the_released_ones() -> Result<()> {
    let releases = releases()?;
    let recorded: BTreeSet<(&str, &str)> = releases
        .iter()
        .map(|r| (r.path.as_str(), r.digest.as_str()))
        .collect();
    let released: BTreeSet<(&str, &str)> = RELEASED.iter().copied().collect();
    ensure!(
        recorded == released,
        "wit/RELEASES records {recorded:?}, the releases are {released:?}: a release is added to \
         both (see wit/README.md), and never changed in either"
    );
    let v010 = releases
        .iter()
        .find(|r| r.path == "since_v0.1.0/integration.wit")
        .context("0.1.0 is not listed in wit/RELEASES")?;
    assert_eq!(
        v010.digest,
        "44f47356e4cb6beb7ec45feb6674c394ec94f56d808f5efbcffc651a811dae87"
    );
    Ok(())
}

#[test]
fn every_frozen_folder_is_listed_in_releases() -> Result<()> {
    check_listed(&wit_dir(), &releases()?)
}

#[test]
fn the_working_contract_does_not_change_a_released_version() -> Result<()> {
    let path = wit_dir().join("integration.wit");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let version = package_version(&text).context("wit/integration.wit declares no version")?;
    let frozen = wit_dir()
        .join(format!("{FROZEN_PREFIX}{version}"))
        .join("integration.wit");
    if frozen.exists() {
        let released =
            fs::read_to_string(&frozen).with_context(|| format!("reading {}", frozen.display()))?;
        ensure!(
            released == text,
            "wit/integration.wit declares the released version {version} but differs from it: \
             give the change a new version"
        );
    }
    Ok(())
}

#[test]
fn a_changed_frozen_contract_is_caught() -> Result<()> {
    let scratch = Scratch::new("changed")?;
    let releases = releases()?;
    check_digests(&scratch.0, &releases)?;
    let first = releases.first().context("wit/RELEASES lists no release")?;
    let path = scratch.0.join(&first.path);
    let mut bytes = fs::read(&path)?;
    bytes.push(b'\n');
    fs::write(&path, bytes)?;
    let err = match check_digests(&scratch.0, &releases) {
        Ok(()) => bail!("a frozen contract with one more byte passed"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains(&first.path), "{err}");
    Ok(())
}

#[test]
fn an_unlisted_frozen_folder_or_file_is_caught() -> Result<()> {
    let scratch = Scratch::new("unlisted")?;
    let releases = releases()?;
    check_listed(&scratch.0, &releases)?;

    let extra = scratch.0.join("since_v9.9.9");
    fs::create_dir_all(&extra)?;
    fs::write(
        extra.join("integration.wit"),
        "package scopable:integration@9.9.9;\n",
    )?;
    let err = match check_listed(&scratch.0, &releases) {
        Ok(()) => bail!("an unlisted release folder passed"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("since_v9.9.9/integration.wit"), "{err}");
    fs::remove_dir_all(&extra)?;

    let first = releases.first().context("wit/RELEASES lists no release")?;
    let folder = first.path.split('/').next().unwrap_or_default();
    fs::write(scratch.0.join(folder).join("notes.wit"), "// later\n")?;
    let err = match check_listed(&scratch.0, &releases) {
        Ok(()) => bail!("an unlisted file in a release folder passed"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("notes.wit"), "{err}");
    Ok(())
}

#[test]
fn releases_lines_are_read_strictly() {
    let digest = "0".repeat(64);
    assert_eq!(
        parse_releases(&format!("{digest}  since_v1.2.3/integration.wit\n")).ok(),
        Some(vec![Release {
            digest: digest.clone(),
            path: "since_v1.2.3/integration.wit".to_string(),
        }])
    );
    for bad in [
        format!("# digests\n{digest}  since_v1.2.3/integration.wit"),
        format!("{digest} since_v1.2.3/integration.wit"),
        format!("{}  since_v1.2.3/integration.wit", "A".repeat(64)),
        format!("{}  since_v1.2.3/integration.wit", "0".repeat(63)),
        format!("{digest}  integration.wit"),
        format!("{digest}  since_v1.2.3/../integration.wit"),
        format!("{digest}  since_v1.2.3"),
        format!("{digest}  since_v1.2.3/a.wit\n{digest}  since_v1.2.3/a.wit"),
    ] {
        assert!(parse_releases(&bad).is_err(), "accepted {bad:?}");
    }
}
