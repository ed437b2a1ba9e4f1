//! Secrets in the configuration: read from `*_file` paths, and never shown whole — `Debug`,
//! `Display` and `check-config` see them masked.

use std::fmt;
use std::path::Path;

use super::ConfigError;

/// What a secret, or the secret part of a URL, is shown as.
pub(super) const MASK: &str = "****";

/// A secret from the configuration: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub(super) fn new(secret: String) -> Self {
        SecretString(secret)
    }

    /// The secret itself, for the one place that uses it (a login, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{MASK}\"")
    }
}

/// A URL that may carry a password (the database's, Redis's): `Debug` and `Display` mask it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// A URL to keep masked.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password, for opening the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `****`: everything between `user:` and the last
    /// `@` (a password may itself contain `?`, `/` or `@`), and `password=` query parameters.
    pub fn masked(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return if self.0.starts_with("sqlite:") { self.0.clone() } else { "<unparseable database URL>".into() };
        };
        let (userinfo, after) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let mut masked = format!("{scheme}://");
        if let Some(userinfo) = userinfo {
            match userinfo.split_once(':') {
                Some((user, _password)) => masked += &format!("{user}:{MASK}@"),
                None => masked += &format!("{userinfo}@"),
            }
        }
        match after.split_once('?') {
            Some((location, query)) => {
                let params: Vec<String> = query
                    .split('&')
                    .map(|param| match param.split_once('=') {
                        Some((key, _)) if key.to_ascii_lowercase().contains("password") => format!("{key}={MASK}"),
                        _ => param.to_owned(),
                    })
                    .collect();
                masked += &format!("{location}?{}", params.join("&"));
            }
            None => masked += after,
        }
        masked
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Path segments at least this long are masked in a webhook URL: services such as Slack
/// (`/services/T…/B…/<24 characters>`) and Discord (`/api/webhooks/<id>/<68 characters>`) put
/// the secret in the path, while readable path names are rarely this long.
const MASKED_SEGMENT_CHARS: usize = 16;

/// A webhook URL fit to print: its host and short path segments stay, so the operator can see
/// where notices go; the password, every query value, the fragment and long path segments
/// become `****`. Parsed with the URL parser the webhook sender itself uses (reqwest's), so
/// the parts masked are the parts that will be sent.
pub fn masked_webhook_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<unparseable URL>".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    } else if !parsed.username().is_empty() {
        // A user name alone is how some services take an API key (`https://KEY@host/`).
        let _ = parsed.set_username(MASK);
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed.query_pairs().map(|(name, _)| name.into_owned()).collect();
        parsed.query_pairs_mut().clear().extend_pairs(names.iter().map(|name| (name, MASK)));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some(MASK));
    }
    let path: Vec<&str> = parsed
        .path()
        .split('/')
        .map(|segment| if segment.chars().count() >= MASKED_SEGMENT_CHARS { MASK } else { segment })
        .collect();
    let path = path.join("/");
    parsed.set_path(&path);
    parsed.to_string()
}

/// Reads a secret from the file a `*_file` key names (the way container platforms hand out
/// secrets), without the trailing newline editors and `echo` add. `key` is the `*_file` key,
/// so an error names what the operator wrote.
pub(super) fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| ConfigError::invalid(format!("{key}: cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::super::load::load_text;
    use super::*;

    #[test]
    fn secrets_come_from_files_and_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "postgres://app:hunter2@db/tokens\n").unwrap();
        let config = load_text(&format!("[database]\nurl_file = {:?}\n", secret.display().to_string())).unwrap();
        assert_eq!(config.database.url.expose(), "postgres://app:hunter2@db/tokens");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!config.describe().contains("hunter2"));
        let in_query = SecretUrl::new("postgres://app@db/tokens?sslmode=require&password=hunter2");
        assert_eq!(in_query.masked(), "postgres://app@db/tokens?sslmode=require&password=****");
        let odd = SecretUrl::new("postgres://app:s3?cr/3@t@db:5432/x?password=p?w");
        assert_eq!(odd.masked(), "postgres://app:****@db:5432/x?password=****");
        assert_eq!(SecretUrl::new("not a url hunter2").masked(), "<unparseable database URL>");
    }

    #[test]
    fn webhook_urls_are_masked() {
        for (url, masked) in [
            ("https://user:secret@hooks.example.com/x", "https://user:****@hooks.example.com/x"),
            ("https://hooks.example.com/x?token=secret&v=2", "https://hooks.example.com/x?token=****&v=****"),
            ("https://secret@hooks.example.com/x", "https://****@hooks.example.com/x"),
            ("https://hooks.example.com/x#secret", "https://hooks.example.com/x#****"),
            (
                "https://hooks.slack.com/services/T0000/B0000/XXXXsecretXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/T0000/B0000/****",
            ),
            ("http://127.0.0.1:9000/tokengate", "http://127.0.0.1:9000/tokengate"),
        ] {
            assert_eq!(masked_webhook_url(url), masked, "{url}");
        }
        assert_eq!(masked_webhook_url("not a url secret"), "<unparseable URL>");
        let config = load_text("[notify]\nwebhook_url = \"https://u:hunter2@h.example.com/x?key=hunter2\"\n").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        assert!(!config.describe().contains("hunter2"));
        assert!(config.describe().contains("h.example.com"));
    }

    #[test]
    fn masking_a_masked_url_changes_nothing() {
        // `check-config` output loaded again must mean the same configuration.
        for url in [
            "https://user:secret@hooks.example.com/x?token=secret#s",
            "https://secret@h.example.com/services/T0/B0/0123456789abcdefXY",
        ] {
            let once = masked_webhook_url(url);
            assert_eq!(masked_webhook_url(&once), once, "{url}");
        }
        for url in ["postgres://app:hunter2@db/x?password=p", "redis://:hunter2@127.0.0.1:6379/0", "sqlite://data/t.db"]
        {
            let once = SecretUrl::new(url).masked();
            assert_eq!(SecretUrl::new(once.clone()).masked(), once, "{url}");
        }
    }
}
