//! What is wrong with a configuration, gathered while it is read and validated, so that
//! `check-config` (and every command that refuses to start) reports every problem in one run
//! instead of one per edit.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// One problem, kept apart by where it was found because the two are shown differently alone.
#[derive(Debug)]
enum Problem {
    /// A key of the file that does not fit the model: unknown, or a value of the wrong type.
    InFile {
        /// `section.key` (`routes.key` for a route's key, the section alone for a section).
        key: String,
        /// Where the key is written, from 1.
        line: usize,
        /// The model's words (`unknown field ...`, `invalid type: ...`).
        message: String,
    },
    /// Anything else, already `key: message`.
    Other(String),
}

/// Every problem found so far, in the order found. Checks record here and go on; a check that
/// needs another key's value is skipped when that value is wrong, since its verdict would be a
/// confusing follow-on of a problem already reported.
#[derive(Debug, Default)]
pub(super) struct Problems {
    found: Vec<Problem>,
    /// Keys whose value was taken out of the configuration (refused by the model, or an
    /// environment variable that cannot be applied): the default stands in for it, and keys
    /// judged against it (see [`Problems::usable`]) are not.
    set_aside: HashSet<String>,
    /// The file read, named when its one problem is a refused key (the text that always was).
    file: Option<PathBuf>,
}

impl Problems {
    /// Problems of the configuration read from `file` (`None`: built-in defaults).
    pub(super) fn new(file: Option<&Path>) -> Self {
        Problems { file: file.map(Path::to_owned), ..Problems::default() }
    }

    /// The value of a check that passed. A failed check's problems are recorded and `None`
    /// comes back, so whatever needs the value is skipped.
    pub(super) fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.record(error);
                None
            }
        }
    }

    /// Checks every item of a list, so each wrong entry is reported; all the values when every
    /// one passed.
    pub(super) fn check_each<T>(
        &mut self,
        results: impl IntoIterator<Item = Result<T, ConfigError>>,
    ) -> Option<Vec<T>> {
        let mut values = Some(Vec::new());
        for result in results {
            match (self.check(result), values.as_mut()) {
                (Some(value), Some(values)) => values.push(value),
                (None, _) => values = None,
                (Some(_), None) => {}
            }
        }
        values
    }

    /// Records `error`'s problems.
    pub(super) fn record(&mut self, error: ConfigError) {
        match error {
            ConfigError::Invalid(problems) => self.found.extend(problems.into_iter().map(Problem::Other)),
            other => self.found.push(Problem::Other(other.to_string())),
        }
    }

    /// Records a key of the file that does not fit the model; the caller takes it out.
    pub(super) fn refuse(&mut self, key: String, line: usize, message: String) {
        self.set_aside.insert(key.clone());
        self.found.push(Problem::InFile { key, line, message });
    }

    /// Records `problem` (`key: message` or `environment variable ...: message`) about `key`,
    /// whose value the caller takes out.
    pub(super) fn set_aside(&mut self, key: String, problem: String) {
        self.set_aside.insert(key);
        self.found.push(Problem::Other(problem));
    }

    /// Whether `key`'s value is the one written: false once it was set aside, when the default
    /// in its place must not be used to judge other keys (`tokens.default_scopes` against a
    /// default `tokens.scopes` would be a confusing second problem).
    pub(super) fn usable(&self, key: &str) -> bool {
        !self.set_aside.contains(key)
    }

    /// `value` when nothing was found; otherwise every problem as one error. A single refused
    /// key reads as it always did: `config file PATH: line N: ...`.
    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        if let ([Problem::InFile { line, message, .. }], Some(path)) = (self.found.as_slice(), &self.file) {
            return Err(ConfigError::Parse { path: path.clone(), message: format!("line {line}: {message}") });
        }
        match value {
            Some(value) if self.found.is_empty() => Ok(value),
            // A check failed without a problem: cannot happen, as every `None` comes from one.
            None if self.found.is_empty() => Err(ConfigError::invalid("the configuration could not be validated")),
            _ => Err(ConfigError::Invalid(self.found.into_iter().map(Problem::into_text).collect())),
        }
    }
}

impl Problem {
    /// The problem as one item of a list: `key: message`, with the line for a refused key.
    fn into_text(self) -> String {
        match self {
            Problem::InFile { key, line, message } => format!("{key} (line {line}): {message}"),
            Problem::Other(text) => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_problem_reads_as_it_always_did() {
        let mut problems = Problems::new(None);
        assert_eq!(problems.check(Err::<(), _>(ConfigError::invalid("proxy.listen: bad"))), None);
        let error = problems.finish(None::<()>).unwrap_err();
        assert_eq!(error.to_string(), "invalid configuration: proxy.listen: bad");

        let mut problems = Problems::new(Some(Path::new("/etc/t.toml")));
        problems.refuse("proxy.lisen".into(), 3, "unknown field `lisen`".into());
        let error = problems.finish(Some(())).unwrap_err();
        assert_eq!(error.to_string(), "config file /etc/t.toml: line 3: unknown field `lisen`");
    }

    #[test]
    fn several_problems_are_listed_one_a_line() {
        let mut problems = Problems::new(Some(Path::new("/etc/t.toml")));
        problems.refuse("proxy.lisen".into(), 3, "unknown field `lisen`".into());
        let checked = problems.check_each([
            Ok(1),
            Err(ConfigError::invalid("proxy.trusted_proxies: \"x\" is bad")),
            Err(ConfigError::invalid("proxy.trusted_proxies: \"y\" is bad")),
        ]);
        assert_eq!(checked, None, "one wrong entry fails the list");
        assert_eq!(problems.check_each([Ok(1), Ok(2)]), Some(vec![1, 2]));
        let error = problems.finish(Some(())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: 3 problems:\n  \
             - proxy.lisen (line 3): unknown field `lisen`\n  \
             - proxy.trusted_proxies: \"x\" is bad\n  \
             - proxy.trusted_proxies: \"y\" is bad"
        );
    }

    #[test]
    fn a_key_set_aside_is_not_usable() {
        let mut problems = Problems::new(None);
        assert!(problems.usable("tokens.scopes"));
        problems.set_aside("tokens.scopes".into(), "environment variable TOKENGATE_TOKENS__SCOPES: bad".into());
        assert!(!problems.usable("tokens.scopes"));
        assert!(problems.usable("tokens.default_scopes"));
    }
}
