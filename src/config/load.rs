//! Loading: which file, reading and parsing it, then the `TOKENGATE_<SECTION>__<KEY>`
//! environment on top, handed to validation as one raw model.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::raw::RawConfig;
use super::{Config, ConfigError, DEFAULT_CONFIG_PATH, apply_env_overrides, validate};

impl Config {
    /// Loads the configuration: the file at `path` (or built-in defaults when `None`), then the
    /// `TOKENGATE_<SECTION>__<KEY>` variables in `env`, then `*_file` secrets; validates it.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                parse_file(path, &text)?
            }
            None => toml::Table::new(),
        };
        apply_env_overrides(&mut table, env)?;
        let raw = RawConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.message().to_owned()))?;
        let mut config = validate::validate(raw)?;
        config.source = path.map(Path::to_owned);
        Ok(config)
    }

    /// Resolves which file to read: an explicit path, else `config/tokengate.toml` if present.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        match explicit {
            Some(path) => Some(path.to_owned()),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                default.exists().then(|| default.to_owned())
            }
        }
    }
}

/// Parses the file's text, turning toml's multi-line report into one line with a line number.
fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    let parse_error = |message: &str, span: Option<std::ops::Range<usize>>| {
        let location = span
            .map(|s| format!("line {}: ", text[..s.start.min(text.len())].matches('\n').count() + 1))
            .unwrap_or_default();
        ConfigError::Parse { path: path.to_owned(), message: format!("{location}{}", message.trim()) }
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.message(), e.span()))?;
    // Check the file alone against the model first, so a mistake in it is reported with its line.
    toml::from_str::<RawConfig>(text).map_err(|e| parse_error(e.message(), e.span()))?;
    Ok(table)
}

/// Loads `text` as if it were a config file (no environment), for the tests of every part.
#[cfg(test)]
pub(super) fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_DATABASE_URL;
    use super::*;

    #[test]
    fn the_shipped_config_files_are_valid() {
        for file in ["config/tokengate.toml", "config/tokengate.example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = Config::load(Some(&path), Vec::new()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!config.routes.is_empty(), "{file}");
        }
    }

    #[test]
    fn built_in_defaults_are_valid() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.proxy.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.rate_limit.failed_auth.map(|r| r.to_string()).as_deref(), Some("30/min"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = load_text("[proxy]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("lisen") && err.contains("line 3"), "{err}");
        let err = load_text("[proxxy]\n").unwrap_err().to_string();
        assert!(err.contains("proxxy"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[proxy]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let env = vec![("TOKENGATE_PROXY__LISTEN".to_owned(), "127.0.0.1:2".to_owned())];
        let config = Config::load(Some(&path), env).unwrap();
        assert_eq!(config.proxy.listen.port(), 2);
    }
}
