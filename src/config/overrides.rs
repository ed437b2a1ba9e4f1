//! Environment overrides: `TOKENGATE_<SECTION>__<KEY>=value` replaces `[section] key`.

use toml::{Table, Value};

use super::ConfigError;
use super::keys::fits_key;
use super::problems::Problems;

const ENV_PREFIX: &str = "TOKENGATE_";

/// Applies every `TOKENGATE_<SECTION>__<KEY>` variable to the parsed file. Variables without
/// the double underscore (such as `TOKENGATE_CONFIG`) are not overrides and are left alone.
/// A variable naming an unknown section or key, or holding a value of the wrong type, is an
/// error that names the variable; every such variable is named.
pub fn apply_env_overrides(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut problems = Problems::new(None);
    apply_overrides(table, vars, &mut problems);
    problems.finish(Some(()))
}

/// [`apply_env_overrides`], recording each variable that cannot be applied in `problems` and
/// going on with the next. Such a variable's key is set aside, the file's value with it: the
/// operator meant to replace that value, so it is not judged (nor other keys against it).
pub(super) fn apply_overrides(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
    problems: &mut Problems,
) {
    for (name, text) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // `TOKENGATE_LOG_FORMAT`, from before the `[log]` section, is `log.format`.
        let path = if path == "LOG_FORMAT" { "LOG__FORMAT" } else { path };
        let Some((section, key)) = path.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = match typed_value(&section, &key, &text) {
            Ok(value) => value,
            Err(message) => {
                if let Some(Value::Table(entries)) = table.get_mut(&section) {
                    entries.remove(&key);
                }
                problems.set_aside(format!("{section}.{key}"), format!("environment variable {name}: {message}"));
                continue;
            }
        };
        let section_table = table.entry(section.clone()).or_insert_with(|| Value::Table(Table::new()));
        match section_table {
            Value::Table(entries) => {
                // `url` from the environment outranks the file's `url_file`, and the reverse.
                let sibling = match key.strip_suffix("_file") {
                    Some(base) => base.to_owned(),
                    None => format!("{key}_file"),
                };
                entries.remove(&sibling);
                entries.insert(key, value);
            }
            _ => {
                problems.set_aside(
                    format!("{section}.{key}"),
                    format!("environment variable {name}: [{section}] is not a section"),
                );
            }
        }
    }
}

/// Finds the TOML value for an override: the text as a string when that is what the key
/// takes, else the text read as a TOML value (`true`, `42`, `["a", "b"]`). Each candidate is
/// checked against the file model on its own, so an unknown key or a wrong type is caught here
/// with the variable's name rather than later without it.
fn typed_value(section: &str, key: &str, text: &str) -> Result<Value, String> {
    let as_string = Value::String(text.to_owned());
    let first_error = match fits_key(section, key, as_string.clone()) {
        Ok(()) => return Ok(as_string),
        Err(message) => message,
    };
    if let Ok(mut parsed) = toml::from_str::<Table>(&format!("v = {text}"))
        && let Some(value) = parsed.remove("v")
        && fits_key(section, key, value.clone()).is_ok()
    {
        return Ok(value);
    }
    Err(first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_strings_bools_and_lists() {
        let mut table = Table::new();
        apply_env_overrides(
            &mut table,
            vars(&[
                ("TOKENGATE_PROXY__LISTEN", "127.0.0.1:9090"),
                ("TOKENGATE_TOKENS__ALLOW_NEVER_EXPIRES", "true"),
                ("TOKENGATE_TOKENS__SCOPES", "[\"read\"]"),
                ("TOKENGATE_CONFIG", "ignored.toml"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(table["proxy"]["listen"].as_str(), Some("127.0.0.1:9090"));
        assert_eq!(table["tokens"]["allow_never_expires"].as_bool(), Some(true));
        assert_eq!(table["tokens"]["scopes"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_variable() {
        let mut table = Table::new();
        let err = apply_env_overrides(&mut table, vars(&[("TOKENGATE_PROXY__LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("TOKENGATE_PROXY__LISTN"), "{err}");
        let err =
            apply_env_overrides(&mut table, vars(&[("TOKENGATE_TOKENS__ALLOW_NEVER_EXPIRES", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("ALLOW_NEVER_EXPIRES"), "{err}");
    }

    #[test]
    fn every_variable_that_cannot_be_applied_is_named() {
        let mut table = Table::new();
        let err = apply_env_overrides(
            &mut table,
            vars(&[
                ("TOKENGATE_PROXY__LISTN", "x"),
                ("TOKENGATE_PROXY__LISTEN", "127.0.0.1:9090"),
                ("TOKENGATE_USAGE__KEEP_DAYS", "many"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("invalid configuration: 2 problems:\n"), "{err}");
        assert!(err.contains("\n  - environment variable TOKENGATE_PROXY__LISTN: unknown field `listn`"), "{err}");
        assert!(err.contains("\n  - environment variable TOKENGATE_USAGE__KEEP_DAYS: "), "{err}");
        assert_eq!(table["proxy"]["listen"].as_str(), Some("127.0.0.1:9090"), "the good one is applied");
    }
}
