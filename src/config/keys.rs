//! The file's keys against the file model (`raw`), each on its own. Deserializing the whole
//! file stops at its first unknown key or wrong type; checked one by one, every such key is
//! reported with its line, and taken out, so validation still judges everything else. Each key
//! is deserialized from the parsed document with its spans, so the message and the line are
//! the ones deserializing the whole file gives for it.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeArray, DeString, DeTable, DeValue, Deserializer};
use toml::{Spanned, Table, Value};

use super::problems::Problems;
use super::raw::RawConfig;

type Key<'i> = Spanned<DeString<'i>>;
type Item<'i> = Spanned<DeValue<'i>>;

/// Checks every section and key of the parsed file `table` (whose text is `text`) against the
/// model, records each that does not fit, and takes it out of `table`. A route with a value of
/// the wrong type or a missing key is taken out whole (what is left of it would be judged as a
/// different route); an unknown key in a route is taken out alone.
pub(super) fn set_aside_refused_keys(table: &mut Table, text: &str, problems: &mut Problems) {
    // Parsed again, for the spans the value table does not keep (the same text parsed a moment
    // ago, so this does not fail).
    let Ok(document) = DeTable::parse(text) else { return };
    let mut refused = Refused { text, found: Vec::new() };
    for (section, value) in document.get_ref() {
        let name: &str = section.get_ref();
        let Err(error) = fits(section, value) else { continue };
        match value.get_ref() {
            DeValue::Array(routes) if name == "routes" => {
                if let Some(Value::Array(kept)) = table.get_mut(name) {
                    refused.set_aside_in_routes(section, routes, kept);
                }
            }
            DeValue::Table(keys) if name != "routes" && fits(section, &spanned_table(value.span(), [])).is_ok() => {
                for (key, item) in keys {
                    let one = spanned_table(value.span(), [(key.clone(), item.clone())]);
                    if let Err(error) = fits(section, &one) {
                        refused.add(format!("{name}.{key}", key = key.get_ref()), key.span(), &error);
                        if let Some(Value::Table(kept)) = table.get_mut(name) {
                            kept.remove(key.get_ref().as_ref());
                        }
                    }
                }
            }
            // An unknown section, or one that is not a table (a route list that is not a list).
            _ => {
                refused.add(name.to_owned(), section.span(), &error);
                table.remove(name);
            }
        }
    }
    refused.found.sort_by_key(|(line, _, _)| *line);
    for (line, key, message) in refused.found {
        problems.refuse(key, line, message);
    }
}

/// The keys refused so far: line, key, the model's message.
struct Refused<'t> {
    text: &'t str,
    found: Vec<(usize, String, String)>,
}

impl Refused<'_> {
    /// Records `key`, at the error's span (else at `key_span`).
    fn add(&mut self, key: String, key_span: Range<usize>, error: &toml::de::Error) {
        let line = line_of(self.text, Some(error.span().unwrap_or(key_span)));
        self.found.push((line, key, error.message().trim().to_owned()));
    }

    /// Each `[[routes]]` entry ([`Refused::check_route`]); `kept` is the same list in the
    /// table, from which refused entries and keys are taken out.
    fn set_aside_in_routes(&mut self, section: &Key<'_>, routes: &DeArray<'_>, kept: &mut Vec<Value>) {
        let mut dropped = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            match self.check_route(section, route) {
                Some(unknown) => {
                    if let Some(Value::Table(kept)) = kept.get_mut(index) {
                        kept.retain(|key, _| !unknown.contains(&key));
                    }
                }
                None => dropped.push(index),
            }
        }
        for index in dropped.into_iter().rev() {
            if index < kept.len() {
                kept.remove(index);
            }
        }
    }

    /// One route: each key is checked with the keys of a valid route around it (a route must
    /// have `prefix` and `upstream`), then the route without its refused keys for what no
    /// single key shows (a missing `prefix`). `Some(unknown keys)` when only those are wrong
    /// (they go, the route stays); `None` when the route goes whole.
    fn check_route<'d>(&mut self, section: &Key<'_>, route: &'d Item<'_>) -> Option<Vec<&'d str>> {
        let DeValue::Table(keys) = route.get_ref() else {
            if let Err(error) = fits_route(section, route.clone()) {
                self.add("routes".into(), route.span(), &error);
            }
            return None;
        };
        let (mut unknown, mut refused) = (Vec::new(), Vec::new());
        for (key, item) in keys {
            let alone = placeholder_route(route.span()).chain([(key.clone(), item.clone())]);
            let Err(error) = fits_route(section, spanned_table(route.span(), alone)) else { continue };
            let name: &str = key.get_ref();
            // serde's words for a key no field takes; anything else is a wrong value.
            if error.message().starts_with("unknown field") {
                unknown.push(name);
            }
            refused.push(name);
            self.add(format!("routes.{name}"), key.span(), &error);
        }
        // A refused `prefix` or `upstream` is there, as far as "missing field" goes.
        let stand_ins = placeholder_route(route.span()).filter(|(key, _)| refused.contains(&key.get_ref().as_ref()));
        let fitting = keys.iter().filter(|(key, _)| !refused.contains(&key.get_ref().as_ref()));
        let rest = stand_ins.chain(fitting.map(|(key, item)| (key.clone(), item.clone())));
        if let Err(error) = fits_route(section, spanned_table(route.span(), rest)) {
            self.add("routes".into(), route.span(), &error);
            return None;
        }
        (unknown.len() == refused.len()).then_some(unknown)
    }
}

/// Whether `route` fits as the one entry of `[[routes]]` (`section`).
fn fits_route(section: &Key<'_>, route: Item<'_>) -> Result<(), toml::de::Error> {
    let mut list = DeArray::new();
    list.push(route);
    fits(section, &Spanned::new(section.span(), DeValue::Array(list)))
}

/// A valid route's required keys, to check one key of a route alone.
fn placeholder_route<'i>(span: Range<usize>) -> impl Iterator<Item = (Key<'i>, Item<'i>)> {
    [("prefix", "/"), ("upstream", "http://127.0.0.1:9000")].into_iter().map(move |(key, value)| {
        (
            Spanned::new(span.clone(), Cow::Borrowed(key)),
            Spanned::new(span.clone(), DeValue::String(Cow::Borrowed(value))),
        )
    })
}

fn spanned_table<'i>(span: Range<usize>, entries: impl IntoIterator<Item = (Key<'i>, Item<'i>)>) -> Item<'i> {
    let mut table = DeTable::new();
    for (key, item) in entries {
        table.insert(key, item);
    }
    Spanned::new(span, DeValue::Table(table))
}

/// Whether `section = value` alone fits the model; the error (with its span) when it does not.
fn fits(section: &Key<'_>, value: &Item<'_>) -> Result<(), toml::de::Error> {
    let mut document = DeTable::new();
    document.insert(section.clone(), value.clone());
    RawConfig::deserialize(Deserializer::from(Spanned::new(value.span(), document))).map(|_| ())
}

/// Whether `key = value` fits `[section]` alone: the model's message when it does not (an
/// unknown section or key, a wrong type). For environment variables, which have no line.
pub(super) fn fits_key(section: &str, key: &str, value: Value) -> Result<(), String> {
    let mut keys = Table::new();
    keys.insert(key.to_owned(), value);
    let mut document = Table::new();
    document.insert(section.to_owned(), Value::Table(keys));
    RawConfig::deserialize(Value::Table(document)).map(|_| ()).map_err(|e| e.message().trim().to_owned())
}

/// The line (from 1) where `span` starts; line 1 when the span is not known.
pub(super) fn line_of(text: &str, span: Option<Range<usize>>) -> usize {
    let start = span.map_or(0, |span| span.start.min(text.len()));
    text[..start].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::super::load::load_text;
    use super::*;

    fn problems(text: &str) -> String {
        load_text(text).unwrap_err().to_string()
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported_with_its_line() {
        let text = "[proxy]\nlisen = \"x\"\nrealm = 5\n\n[proxxy]\nlisten = \"y\"\n\n[tokens]\nscope = []\n";
        let error = problems(text);
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines[0], "invalid configuration: 4 problems:", "{error}");
        assert!(lines[1].starts_with("  - proxy.lisen (line 2): unknown field `lisen`"), "{error}");
        assert!(
            lines[2].starts_with("  - proxy.realm (line 3): invalid type: integer `5`, expected a string"),
            "{error}"
        );
        assert!(lines[3].starts_with("  - proxxy (line 5): unknown field `proxxy`"), "{error}");
        assert!(lines[4].starts_with("  - tokens.scope (line 9): unknown field `scope`"), "{error}");
        assert_eq!(lines.len(), 5, "{error}");
    }

    #[test]
    fn one_refused_key_reads_as_before() {
        let error = problems("[proxy]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
        assert!(error.starts_with("config file "), "{error}");
        assert!(error.contains(": line 3: unknown field `lisen`, expected one of `listen`, "), "{error}");
        assert_eq!(error.lines().count(), 1, "{error}");
        // Word for word what deserializing the whole file said, when that was how it was checked.
        for text in [
            "[usage]\nkeep_days = \"long\"\n",
            "[proxxy]\nlisten = \"x\"\n",
            "proxy = 5\n",
            "[tokens]\nscopes = [\n  \"read\",\n  5,\n]\n",
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://h:1\"\nhots = \"x\"\n",
            "[[routes]]\nprefix = \"/\"\n",
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n\n[[routes]]\nprefix = 1\nupstream = \"http://h:1\"\n",
        ] {
            let whole = toml::from_str::<RawConfig>(text).unwrap_err();
            let line = line_of(text, whole.span());
            let error = problems(text);
            assert!(error.ends_with(&format!(": line {line}: {}", whole.message().trim())), "{text}: {error}");
        }
    }

    #[test]
    fn routes_are_checked_key_by_key() {
        let text = "[[routes]]\nprefix = \"/a\"\nupstream = \"http://h:1\"\nhots = \"a.example.com\"\n\n\
                    [[routes]]\nprefix = \"/b\"\npublic = \"yes\"\nupstream = \"http://h:2\"\n\n\
                    [[routes]]\nupstream = \"http://h:3\"\n";
        let error = problems(text);
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines[0], "invalid configuration: 3 problems:", "{error}");
        assert!(lines[1].starts_with("  - routes.hots (line 4): unknown field `hots`"), "{error}");
        assert!(lines[2].starts_with("  - routes.public (line 8): invalid type: string \"yes\", expected a boolean"));
        assert!(lines[3].starts_with("  - routes (line 11): missing field `prefix`"), "{error}");
        // The route with only an unknown key is still validated.
        let text = "[[routes]]\nprefix = \"a\"\nupstream = \"http://h:1\"\nhots = \"x\"\n";
        let error = problems(text);
        assert!(error.contains("routes.hots (line 4)") && error.contains("prefix must start with /"), "{error}");
        // A missing key is reported beside a wrong one, but not for a key that is there and wrong.
        let error = problems("[[routes]]\npublic = 1\nprefix = 2\n");
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines.len(), 4, "{error}");
        assert!(lines[1].starts_with("  - routes (line 1): missing field `upstream`"), "{error}");
        assert!(lines[2].starts_with("  - routes.public (line 2): invalid type: integer `1`, expected a boolean"));
        assert!(lines[3].starts_with("  - routes.prefix (line 3): invalid type: integer `2`, expected a string"));
        let error = problems("routes = 5\n");
        assert!(error.contains("line 1: invalid type: integer `5`, expected a sequence"), "{error}");
    }

    #[test]
    fn a_value_of_the_wrong_type_does_not_hide_the_other_problems() {
        let text = "[tokens]\nscopes = \"read\"\ndefault_scopes = [\"deploy\"]\nwarn_before = \"soon\"\n";
        let error = problems(text);
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines[0], "invalid configuration: 2 problems:", "{error}");
        assert!(lines[1].starts_with("  - tokens.scopes (line 2): invalid type: string \"read\""), "{error}");
        // Not judged against the default scopes that stand in for the refused ones.
        assert!(lines[2].starts_with("  - tokens.warn_before: "), "{error}");
    }
}
