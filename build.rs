//! Build-time facts the binary reports:
//!
//! - Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the files at
//!   compile time and would otherwise miss a new one.
//! - `TOKENGATE_COMMIT`, the git commit `tokengate --version` prints, so a report or a fleet
//!   listing says exactly which build runs. Taken from `TOKENGATE_BUILD_COMMIT` when set (a
//!   container build without `.git`), else from `git rev-parse --short HEAD` in this crate's own
//!   checkout, else `unknown` (a source tarball, `cargo package`'s copy, no git installed).
//!   Never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=TOKENGATE_BUILD_COMMIT");
    let commit = std::env::var("TOKENGATE_BUILD_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TOKENGATE_COMMIT={commit}");
}

/// The short commit of HEAD, when this crate is the top of a git work tree. A crate unpacked
/// inside some other repository (vendored, or `cargo package`'s copy under `target/`) must not
/// report that repository's commit.
fn git_commit() -> Option<String> {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let toplevel = git(&root, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&toplevel).ok()? != std::fs::canonicalize(&root).ok()? {
        return None;
    }
    watch_head(&root);
    git(&root, &["rev-parse", "--short", "HEAD"])
}

/// Reruns this script when HEAD moves: a checkout rewrites `HEAD`, a commit the branch's ref
/// (a loose file, or `packed-refs` after `git gc`), and both append to this work tree's
/// `logs/HEAD` (which also catches a commit whose branch was packed and had no loose file to
/// watch). `--git-path` finds them in a linked work tree too, where `.git` is a file and refs
/// live in the main repository. Only existing files are named: cargo reruns the script on
/// every build for a missing one. Other branches' refs are not watched, so commits in other
/// work trees of the same repository cause no rebuild here.
fn watch_head(root: &Path) {
    let mut names = vec!["HEAD".to_owned(), "logs/HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, &["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|r| r.starts_with("refs/")) {
        names.push(branch);
    }
    for name in names {
        let Some(path) = git(root, &["rev-parse", "--git-path", &name]) else { continue };
        let path = root.join(path);
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// One git command's trimmed stdout, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
