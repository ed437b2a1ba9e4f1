//! A real headless Chromium for the web page's tests, driven over WebDriver: Debian's `chromium`
//! and `chromedriver` (packages chromium and chromium-driver, which `scripts/test` installs).
//!
//! Where no browser can be found the test prints SKIPPED and returns, unless
//! `TOKENGATE_REQUIRE_BROWSER=1` (CI sets it), which makes it fail instead.
//! `TOKENGATE_CHROMIUM` and `TOKENGATE_CHROMEDRIVER` name other binaries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tempfile::TempDir;

use crate::support::closed_port;

/// How long a test waits for the page to reach an expected state.
const PATIENCE: Duration = Duration::from_secs(10);

pub struct Browser {
    pub client: Client,
    driver: Driver,
    _profile: TempDir,
}

/// The chromedriver process and the port it listens on.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Stops chromedriver and every browser it started, even when a test fails half-way:
    /// chromedriver's own `/shutdown` quits its browsers; killing it alone would orphan them.
    fn stop(&mut self) {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request =
                format!("GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.port);
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|name| {
        std::env::split_paths(&path_dirs).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
    })
}

fn skip_or_fail(why: &str) -> Option<Browser> {
    if std::env::var("TOKENGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("a browser is required (TOKENGATE_REQUIRE_BROWSER=1) but {why}");
    }
    eprintln!(
        "SKIPPED: this test needs a headless browser and {why}; scripts/test installs chromium and chromium-driver"
    );
    None
}

/// How [`Browser`]'s element helpers find their element.
#[derive(Clone, Copy)]
enum Find {
    /// Wait until it is displayed (what a user can click or read).
    Visible,
    /// Present in the page, shown or not (an input's value).
    Present,
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh headless Chromium session behind it, in
    /// the browser's default (English) locale.
    pub async fn start() -> Option<Browser> {
        Self::start_in_locale(None).await
    }

    /// As [`Browser::start`], with the browser's locale set to `locale` (a BCP 47 tag such as
    /// `de-DE`): the languages its pages ask for and see (`intl.accept_languages`:
    /// `navigator.language`, `Accept-Language`), and the locale its pages format with (`Intl`,
    /// `toLocaleDateString`), through DevTools' `Emulation.setLocaleOverride`. Neither `--lang`
    /// nor `LANG` / `LANGUAGE` would do: headless Chromium ignores `--lang`, and Debian's
    /// chromium package carries the English UI only (the others are in chromium-l10n).
    pub async fn start_in_locale(locale: Option<&str>) -> Option<Browser> {
        let Some(chromium) = find_binary("TOKENGATE_CHROMIUM", &["chromium", "chromium-browser", "google-chrome"])
        else {
            return skip_or_fail("no chromium was found");
        };
        let Some(chromedriver) = find_binary("TOKENGATE_CHROMEDRIVER", &["chromedriver"]) else {
            return skip_or_fail("no chromedriver was found");
        };
        let port = closed_port().port();
        let driver = match Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            // A zone away from UTC (and off the hour), so that the page's date handling is
            // tested where local days and UTC days differ.
            .env("TZ", "Asia/Kolkata")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return skip_or_fail(&format!("{} cannot start: {error}", chromedriver.display())),
        };
        let profile = tempfile::tempdir().unwrap();
        let mut browser = BrowserStarting { driver: Some(Driver { child: driver, port }) };
        let url = format!("http://127.0.0.1:{port}");
        wait_for_driver(port);
        let mut options = json!({
            "binary": chromium,
            // The flags this machine kind needs: no sandbox as root, and no background
            // traffic towards a network that is closed.
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if let Some(locale) = locale {
            let language = locale.split('-').next().unwrap_or(locale);
            options["prefs"] = json!({ "intl.accept_languages": format!("{locale},{language}") });
        }
        let capabilities = json!({ "browserName": "chrome", "goog:chromeOptions": options });
        let capabilities = capabilities.as_object().unwrap().clone();
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|error| {
                panic!("{} did not open a session in {}: {error}", chromedriver.display(), chromium.display())
            });
        if let Some(locale) = locale {
            let set_locale = DevTools { command: "Emulation.setLocaleOverride", params: json!({ "locale": locale }) };
            client.issue_cmd(set_locale).await.unwrap_or_else(|error| panic!("the browser kept its locale: {error}"));
        }
        Some(Browser { client, driver: browser.driver.take().unwrap(), _profile: profile })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits until `css` matches an element that is displayed, and returns it.
    pub async fn visible(&self, css: &str) -> fantoccini::elements::Element {
        eventually(|| async move {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) if element.is_displayed().await.unwrap_or(false) => Ok(element),
                _ => Err(format!("{css} did not show")),
            }
        })
        .await
    }

    /// Waits until nothing displayed matches `css`.
    pub async fn gone(&self, css: &str) {
        eventually(|| async move {
            for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
                if element.is_displayed().await.unwrap_or(false) {
                    return Err(format!("{css} still shows"));
                }
            }
            Ok(())
        })
        .await
    }

    /// Runs `act` on `css`'s element (`Find::Visible`: once it is visible), finding it again
    /// when the page re-rendered it between the finding and the acting (a stale element),
    /// which a busy machine makes likely.
    async fn on_element<T, F, Fut>(&self, css: &str, find: Find, act: F) -> T
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let mut tries = 0;
        loop {
            let element = match find {
                Find::Visible => self.visible(css).await,
                Find::Present => self.client.find(Locator::Css(css)).await.unwrap(),
            };
            match act(element).await {
                Ok(value) => return value,
                Err(error) if is_stale(&error) && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("{css}: {error}"),
            }
        }
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, Find::Visible, |element| async move { element.click().await.map(|_| ()) }).await;
    }

    /// Replaces the text of an input.
    pub async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, Find::Visible, |input| async move {
            input.clear().await?;
            input.send_keys(text).await
        })
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.on_element(css, Find::Visible, |element| async move { element.text().await }).await
    }

    /// An input's current value (the DOM property, not the attribute).
    pub async fn value(&self, css: &str) -> String {
        let value = self.on_element(css, Find::Present, |input| async move { input.prop("value").await }).await;
        value.unwrap_or_default()
    }

    /// Waits until `css`'s text contains `needle`, and returns the text.
    pub async fn text_containing(&self, css: &str, needle: &str) -> String {
        eventually(|| async move {
            let text = self.text(css).await;
            if text.contains(needle) { Ok(text) } else { Err(format!("{css} shows {text:?}, never {needle:?}")) }
        })
        .await
    }

    /// The texts of the elements matching `css`, once they have settled (two equal reads).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let read = || async {
            let mut texts = Vec::new();
            for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
                texts.push(element.text().await.unwrap_or_default());
            }
            texts
        };
        let mut last = read().await;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = read().await;
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Runs a script in the page and returns what it returns.
    pub async fn script(&self, body: &str) -> serde_json::Value {
        self.client.execute(body, vec![]).await.unwrap()
    }

    /// Saves a PNG of the window under the test artifacts directory, and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session; dropping the browser also stops chromedriver and the browser.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        self.driver.stop();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.driver.stop();
    }
}

/// A Chrome DevTools Protocol command, sent through chromedriver's `goog/cdp/execute`; it
/// applies to the session's page from then on.
#[derive(Debug)]
struct DevTools {
    command: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &reqwest::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "cmd": self.command, "params": self.params }).to_string()))
    }
}

/// Holds chromedriver while the session opens, so that a failure there stops it too.
struct BrowserStarting {
    driver: Option<Driver>,
}

impl Drop for BrowserStarting {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.as_mut() {
            driver.stop();
        }
    }
}

fn wait_for_driver(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "chromedriver did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Retries `attempt` every 50 ms until it gives `Ok`, for at most [`PATIENCE`]; then fails
/// with its last `Err`, which says what the page showed instead.
pub async fn eventually<T, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(why) => assert!(started.elapsed() < PATIENCE, "{why} (after {PATIENCE:?})"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where screenshots go: `TOKENGATE_ARTIFACTS_DIR`, else `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("TOKENGATE_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts"))
}

/// The element was replaced in the page after it was found.
fn is_stale(error: &fantoccini::error::CmdError) -> bool {
    matches!(error, fantoccini::error::CmdError::Standard(e) if e.error == fantoccini::error::ErrorStatus::StaleElementReference)
}
