//! Stamps the build with the git commit it was made from, for `hookgate --version`.
//!
//! Sets `HOOKGATE_BUILD_COMMIT` to `<short hash>, <commit date>` or `unknown`. It
//! never fails the build: outside a git checkout (a crates.io tarball, a source
//! archive, no `git` installed) the commit is read from `.cargo_vcs_info.json` when
//! the package has one, else it is `unknown`. Cheap: a few `git rev-parse` calls,
//! rerun only when `HEAD` or the branch it points to moves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo::rerun-if-changed=build.rs");
    let commit = from_git(&dir)
        .or_else(|| from_vcs_info(&dir))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=HOOKGATE_BUILD_COMMIT={commit}");
}

/// Runs git in `dir`; `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// The commit of the checkout this package is the top of. A package unpacked
/// inside some other repository (vendored, or a registry cache kept in git)
/// must not report that repository's commit, hence the top-level check.
fn from_git(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    // Rerun when HEAD moves to another branch or commit, when the branch it
    // points to gets a new commit, or when refs are packed. `--git-path` finds
    // the files in a linked worktree too, where `.git` is a file. Only existing
    // paths are named: cargo reruns the script on every build for a missing one.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(r);
    }
    for name in &watched {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", name]) {
            let p = dir.join(p);
            if p.exists() {
                println!("cargo::rerun-if-changed={}", p.display());
            }
        }
    }
    let line = git(dir, &["log", "-1", "--format=%h %cs"])?;
    let (hash, date) = line.split_once(' ')?;
    Some(format!("{hash}, {date}"))
}

/// `cargo package` records the commit in `.cargo_vcs_info.json`
/// (`{"git": {"sha1": "…"}, …}`); read it without a JSON parser, which a build
/// script would have to compile first.
fn from_vcs_info(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let rest = &text[text.find("\"sha1\"")? + 6..];
    let start = rest.find('"')? + 1;
    let sha: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (sha.len() >= 7).then(|| sha[..7].to_owned())
}
