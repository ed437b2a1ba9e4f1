//! Loading: reading and parsing the file, then the `TOKENGATE_<SECTION>__<KEY>` environment
//! on top and the data directory under both, handed to validation as one raw model.

use std::path::Path;

use serde::Deserialize;

use super::keys::{line_of, set_aside_refused_keys};
use super::overrides::apply_overrides;
use super::problems::Problems;
use super::raw::RawConfig;
use super::{Config, ConfigError, validate};

/// The variable (also `--data-dir`) naming the directory of the SQLite database when the
/// configuration names no `database.url`: a package or a container says where state goes
/// without writing a config file for it.
pub const DATA_DIR_VAR: &str = "TOKENGATE_DATA_DIR";

/// The database's file name inside the data directory.
pub const DATABASE_FILE: &str = "tokengate.db";

impl Config {
    /// Loads the configuration: the file at `path` (or built-in defaults when `None`), then the
    /// `TOKENGATE_<SECTION>__<KEY>` variables in `env`, then `TOKENGATE_DATA_DIR` where no
    /// database URL is set, then `*_file` secrets; validates it. Past a file that cannot be read
    /// or parsed, every problem is collected and the error lists them all.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut problems = Problems::new(path);
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                let mut table = parse_file(path, &text)?;
                set_aside_refused_keys(&mut table, &text, &mut problems);
                table
            }
            None => toml::Table::new(),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        apply_overrides(&mut table, env.iter().cloned(), &mut problems);
        // The last value wins, so `--data-dir` (appended by the CLI) outranks the variable.
        if let Some((_, dir)) = env.iter().rev().find(|(name, _)| name == DATA_DIR_VAR) {
            problems.check(place_database_in(&mut table, dir));
        }
        // Every key that does not fit the model was taken out above, so this fits.
        let raw =
            RawConfig::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::invalid(e.message().to_owned()));
        let Some(raw) = problems.check(raw) else {
            return problems.finish(None);
        };
        let mut config = validate::validate(raw, problems)?;
        config.source = path.map(Path::to_owned);
        Ok(config)
    }
}

/// Points the default database into the data directory `dir`: `sqlite://DIR/tokengate.db`,
/// unless the file or the environment names `database.url` or `database.url_file` (an explicit
/// URL wins). An empty value is no directory, as systemd's `Environment=` can leave it.
fn place_database_in(table: &mut toml::Table, dir: &str) -> Result<(), ConfigError> {
    if dir.is_empty() {
        return Ok(());
    }
    let database = table.entry("database").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(database) = database.as_table_mut() else {
        return Err(ConfigError::invalid("[database] is not a section"));
    };
    if !database.contains_key("url") && !database.contains_key("url_file") {
        let file = Path::new(dir).join(DATABASE_FILE).display().to_string();
        // The driver decodes percent escapes in the path, and a `?` would start its parameters.
        let escaped = file.replace('%', "%25").replace('?', "%3F").replace('#', "%23");
        database.insert("url".into(), toml::Value::String(format!("sqlite://{escaped}")));
    }
    Ok(())
}

/// Parses the file's text, turning toml's multi-line report into one line with a line number.
/// A syntax error stops here: past it the parser cannot tell what was meant. Whether the keys
/// fit the model is checked next, key by key ([`set_aside_refused_keys`]).
fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let location = e.span().map(|span| format!("line {}: ", line_of(text, Some(span)))).unwrap_or_default();
        ConfigError::Parse { path: path.to_owned(), message: format!("{location}{}", e.message().trim()) }
    })
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
    fn the_data_directory_places_the_default_database_only() {
        let data_dir = |dir: &str| vec![(DATA_DIR_VAR.to_owned(), dir.to_owned())];
        let config = Config::load(None, data_dir("/var/lib/tokengate")).unwrap();
        assert_eq!(config.database.url.expose(), "sqlite:///var/lib/tokengate/tokengate.db");
        // An empty value is no directory.
        assert_eq!(Config::load(None, data_dir("")).unwrap().database.url.expose(), DEFAULT_DATABASE_URL);
        // A URL from the file or the environment wins over the directory.
        let file = load_with_env("[database]\nurl = \"sqlite:///srv/own.db\"\n", data_dir("/var/lib/tokengate"));
        assert_eq!(file.database.url.expose(), "sqlite:///srv/own.db");
        let mut env = data_dir("/var/lib/tokengate");
        env.push(("TOKENGATE_DATABASE__URL".to_owned(), "sqlite:///srv/env.db".to_owned()));
        assert_eq!(Config::load(None, env).unwrap().database.url.expose(), "sqlite:///srv/env.db");
        // The last value wins: `--data-dir` is appended after the environment's.
        let mut env = data_dir("/var/lib/tokengate");
        env.extend(data_dir("/srv/flag"));
        assert_eq!(Config::load(None, env).unwrap().database.url.expose(), "sqlite:///srv/flag/tokengate.db");
        // Characters the driver reads specially are escaped, so it opens the file named.
        let odd = Config::load(None, data_dir("/srv/50%?#")).unwrap();
        assert_eq!(odd.database.url.expose(), "sqlite:///srv/50%25%3F%23/tokengate.db");
        let path = crate::control::store::Store::sqlite_path(&odd.database.url).unwrap();
        assert_eq!(path, Path::new("/srv/50%?#/tokengate.db"));
    }

    fn load_with_env(text: &str, env: Vec<(String, String)>) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), env).unwrap()
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
