//! Where the configuration and the database come from, through the real binary run in a
//! directory of its own: every command says which configuration applies, the commands that
//! read or change tokens and accounts refuse to create a database (naming the path they looked
//! for), and `TOKENGATE_DATA_DIR` / `--data-dir` place the SQLite database.

use std::path::Path;
use std::process::Command;

use crate::support::binary;

/// `tokengate ARGS` run in `dir` with no `--config` and no inherited `TOKENGATE_*` variables;
/// returns (status, stdout, stderr).
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(binary());
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("TOKENGATE_")) {
        command.env_remove(name);
    }
    let output = command.args(args).envs(env.iter().copied()).current_dir(dir).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The machine's own configuration would be found after the empty directory's.
fn etc_config_present() -> bool {
    let present = Path::new("/etc/tokengate/tokengate.toml").exists();
    if present {
        eprintln!("SKIPPED: /etc/tokengate/tokengate.toml exists on this machine and would apply");
    }
    present
}

const DEFAULTS_NOTE: &str =
    "config: none found (config/tokengate.toml, /etc/tokengate/tokengate.toml); built-in defaults";

#[test]
fn management_commands_in_an_empty_directory_refuse_to_create_a_database() {
    if etc_config_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("data/tokengate.db");
    for args in [
        &["user", "list"][..],
        &["token", "list", "--json"],
        &["token", "show", "1"],
        &["token", "revoke", "1"],
        &["user", "set", "ann@example.com", "--enabled", "false"],
        &["events"],
        &["gateways"],
    ] {
        let (code, stdout, stderr) = run_in(dir.path(), args, &[]);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert_eq!(lines[0], DEFAULTS_NOTE, "{args:?}");
        assert!(lines[1].starts_with("tokengate: no database at "), "{args:?}: {stderr}");
        assert!(lines[1].contains(&expected.display().to_string()), "{args:?} does not name the path: {stderr}");
    }
    assert!(!dir.path().join("data").exists(), "a refusing command created the database's directory");

    // `user add` creates it; then the same commands work on it, and `--json` keeps stdout one
    // JSON document while the note goes to stderr.
    let (code, _, stderr) = run_in(dir.path(), &["user", "add", "ann@example.com"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.starts_with(DEFAULTS_NOTE), "{stderr}");
    assert!(expected.is_file());
    let (code, stdout, stderr) = run_in(dir.path(), &["user", "list", "--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let accounts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(accounts[0]["email"], "ann@example.com");
}

#[test]
fn every_command_names_the_configuration_it_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let file = dir.path().join("config/tokengate.toml");
    std::fs::write(&file, "[database]\nurl = \"sqlite://own.db\"\n").unwrap();
    let note = format!("config: {}", file.display());
    for args in [&["check-config"][..], &["user", "add", "ann@example.com"], &["token", "list", "--json"]] {
        let (code, stdout, stderr) = run_in(dir.path(), args, &[]);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().next(), Some(note.as_str()), "{args:?}");
        assert!(!stdout.contains("config: "), "{args:?}: the note went to stdout");
    }
    assert!(dir.path().join("own.db").is_file());

    // A file named by TOKENGATE_CONFIG (or --config) is named, also when it cannot be read.
    let missing = dir.path().join("missing.toml");
    let (code, _, stderr) = run_in(dir.path(), &["user", "list"], &[("TOKENGATE_CONFIG", missing.to_str().unwrap())]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().next(), Some(format!("config: {}", missing.display()).as_str()), "{stderr}");

    // Commands that need no configuration print no note.
    let (code, stdout, stderr) = run_in(dir.path(), &["completions", "bash"], &[]);
    assert_eq!(code, 0);
    assert!(stderr.is_empty() && stdout.contains("tokengate"), "{stderr}");
}

#[test]
fn the_data_directory_holds_the_database() {
    if etc_config_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = [("TOKENGATE_DATA_DIR", state.to_str().unwrap())];
    let (code, _, stderr) = run_in(dir.path(), &["user", "add", "ann@example.com"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(state.join("tokengate.db").is_file(), "not in TOKENGATE_DATA_DIR");
    assert!(!dir.path().join("data").exists());
    let (code, stdout, _) = run_in(dir.path(), &["check-config"], &env);
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("url = \"sqlite://{}/tokengate.db\"", state.display())), "{stdout}");

    // --data-dir outranks the variable; there is no database there yet.
    let other = dir.path().join("other");
    let (code, _, stderr) = run_in(dir.path(), &["user", "list", "--data-dir", other.to_str().unwrap()], &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&other.join("tokengate.db").display().to_string()), "{stderr}");

    // An explicit database URL wins over the data directory.
    let url = format!("sqlite://{}", dir.path().join("explicit.db").display());
    let (code, _, stderr) = run_in(dir.path(), &["user", "add", "bob@example.com", "--database", &url], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(dir.path().join("explicit.db").is_file());
    let (code, stdout, _) = run_in(dir.path(), &["user", "list", "--json"], &env);
    assert_eq!(code, 0);
    assert!(!stdout.contains("bob@example.com"), "bob went into the data directory's database: {stdout}");
}
