//! Which configuration file applies: the one named by `--config` or `TOKENGATE_CONFIG`, else
//! the first file of the search path that exists, else none (built-in defaults).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, DEFAULT_CONFIG_PATH};

/// Where the configuration is looked for when no file is named, in order: the working
/// directory's (a checkout, a project directory), then the system's (a package install).
pub const CONFIG_SEARCH_PATH: [&str; 2] = [DEFAULT_CONFIG_PATH, "/etc/tokengate/tokengate.toml"];

/// Where the configuration comes from, so every command can say which one it used: a command
/// run in the wrong directory must not quietly act on another configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Named by `--config` or `TOKENGATE_CONFIG`: read even when missing, which is an error.
    Named(PathBuf),
    /// The first file of the search path that exists.
    Found(PathBuf),
    /// No file named and none found: built-in defaults.
    Defaults,
}

impl ConfigSource {
    /// The file to read; `None` for built-in defaults.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Named(path) | ConfigSource::Found(path) => Some(path),
            ConfigSource::Defaults => None,
        }
    }

    /// Chooses among `candidates` (the search path, or a test's stand-in for it): the named
    /// file, else the first candidate that exists. A candidate whose existence cannot be
    /// determined (a directory it may not read) counts as found, so the read error names it
    /// instead of the defaults silently applying.
    pub fn choose(named: Option<&Path>, candidates: &[PathBuf]) -> ConfigSource {
        if let Some(path) = named {
            return ConfigSource::Named(path.to_owned());
        }
        candidates
            .iter()
            .find(|path| path.try_exists().unwrap_or(true))
            .map_or(ConfigSource::Defaults, |path| ConfigSource::Found(path.clone()))
    }
}

/// The absolute path of the file (so a relative one found from another directory is
/// recognisable), or that none was found where and built-in defaults apply.
impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path() {
            Some(path) => {
                let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
                write!(f, "{}", shown.display())
            }
            None => write!(f, "none found ({}); built-in defaults", CONFIG_SEARCH_PATH.join(", ")),
        }
    }
}

impl Config {
    /// Which configuration applies for a `--config`/`TOKENGATE_CONFIG` value (or none), over
    /// [`CONFIG_SEARCH_PATH`].
    pub fn source(named: Option<&Path>) -> ConfigSource {
        let candidates: Vec<PathBuf> = CONFIG_SEARCH_PATH.iter().map(PathBuf::from).collect();
        ConfigSource::choose(named, &candidates)
    }

    /// The file to read for a `--config`/`TOKENGATE_CONFIG` value: see [`Config::source`].
    pub fn locate(named: Option<&Path>) -> Option<PathBuf> {
        Config::source(named).path().map(Path::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_working_directory_comes_before_etc() {
        assert_eq!(CONFIG_SEARCH_PATH, ["config/tokengate.toml", "/etc/tokengate/tokengate.toml"]);
    }

    /// The search path under a fake root: the working directory's file and the system's.
    fn fake_root() -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        let candidates =
            CONFIG_SEARCH_PATH.iter().map(|p| root.path().join(p.trim_start_matches('/'))).collect::<Vec<_>>();
        for path in &candidates {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        }
        (root, candidates)
    }

    #[test]
    fn the_first_existing_file_of_the_search_path_wins() {
        let (_root, candidates) = fake_root();
        let [local, etc] = [&candidates[0], &candidates[1]];
        assert_eq!(ConfigSource::choose(None, &candidates), ConfigSource::Defaults);
        std::fs::write(etc, "").unwrap();
        assert_eq!(ConfigSource::choose(None, &candidates), ConfigSource::Found(etc.clone()));
        std::fs::write(local, "").unwrap();
        assert_eq!(ConfigSource::choose(None, &candidates), ConfigSource::Found(local.clone()));
    }

    #[test]
    fn a_named_file_wins_even_when_missing() {
        let (root, candidates) = fake_root();
        std::fs::write(&candidates[0], "").unwrap();
        let named = root.path().join("missing.toml");
        assert_eq!(ConfigSource::choose(Some(&named), &candidates), ConfigSource::Named(named.clone()));
    }

    #[test]
    fn the_note_names_the_file_or_the_search_path() {
        let found = ConfigSource::Found(PathBuf::from("config/tokengate.toml")).to_string();
        assert!(found.starts_with('/') && found.ends_with("/config/tokengate.toml"), "{found}");
        let defaults = ConfigSource::Defaults.to_string();
        assert!(defaults.contains("config/tokengate.toml, /etc/tokengate/tokengate.toml"), "{defaults}");
        assert!(defaults.contains("built-in defaults"), "{defaults}");
    }
}
