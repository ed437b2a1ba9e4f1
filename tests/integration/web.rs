//! The web page at `/` of the admin listener: how it is served (embedded, strict CSP, nothing
//! from elsewhere), and what people do with it in a real headless Chromium — sign in, create a
//! token and read it from the dialog, use it through the proxy, revoke it through the
//! confirmation dialog and see the proxy refuse it, rotate, filter in the Token Manager (dates
//! typed as YYYY-MM-DD UTC days, in an English and a German browser alike), change accounts, and read each token's usage (a 30-day sparkline per row, a dialog by day,
//! route and outcome). Screenshots of each tab are saved under `target/test-artifacts/`.

use reqwest::StatusCode;
use tokengate::clock::Clock;
use tokengate::control::service::{Actor, CreateAccount};
use tokengate::control::store::EventFilter;

use crate::support::{TestGateway, client};
use crate::webdriver::{Browser, eventually};

const ROOT: &str = "root@example.com";
const ANN: &str = "ann@example.com";
const BOB: &str = "bob@example.com";
const MANAGER: &str = "manager@example.com";

/// Names that would become elements if the page ever parsed server text as HTML.
const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=1\">Ann";
const HOSTILE_TOKEN: &str = "<img src=x>admin";

async fn create_account(gw: &TestGateway, email: &str, superuser: bool) {
    let name = (email == ANN).then(|| HOSTILE_NAME.to_owned());
    let token_manager = email == MANAGER;
    let request = CreateAccount { email: email.into(), name, superuser, token_manager, can_create_tokens: true };
    gw.service.create_account(request, &Actor::cli()).await.unwrap();
}

fn admin_url(gw: &TestGateway, path: &str) -> String {
    format!("http://{}{path}", gw.admin)
}

/// A proxied GET (or `method`) with Basic `email:secret`; the status it gets.
async fn proxied(gw: &TestGateway, method: reqwest::Method, email: &str, secret: &str) -> StatusCode {
    client().request(method, gw.url("/things")).basic_auth(email, Some(secret)).send().await.unwrap().status()
}

async fn proxied_get(gw: &TestGateway, email: &str, secret: &str) -> StatusCode {
    proxied(gw, reqwest::Method::GET, email, secret).await
}

#[tokio::test]
async fn page_is_embedded_with_a_strict_content_security_policy() {
    let gw = TestGateway::spawn().await;
    for (path, content_type) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let response = client().get(admin_url(&gw, path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(content_type), "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, tokengate::admin::web::CONTENT_SECURITY_POLICY, "{path}");
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        let body = response.text().await.unwrap();
        // No third-party assets: the only absolute URL is the SVG namespace.
        let outside = body.matches("://").count() - body.matches("http://www.w3.org/2000/svg").count();
        assert_eq!(outside, 0, "{path} refers to another origin");
        assert!(!body.contains("@import") && !body.contains("url("), "{path} loads nothing else");
        if path == "/" {
            // No inline script or style: every <script> has a src, and no element has a
            // style or an event-handler attribute.
            assert_eq!(body.matches("<script").count(), body.matches("<script src=\"/assets/").count());
            assert!(!body.contains(" style="), "inline style in the page");
            assert!(!body.contains(" onclick=") && !body.contains(" onload="), "inline handler in the page");
        }
        if path == "/assets/app.js" {
            assert!(
                !body.contains("localStorage.") && !body.contains("document.cookie"),
                "the script must not persist the token"
            );
            assert!(!body.contains("innerHTML"), "server text must never be parsed as HTML");
        }
    }
}

#[tokio::test]
async fn script_callers_get_no_basic_challenge() {
    let gw = TestGateway::spawn().await;
    let plain = client().get(admin_url(&gw, "/api/v1/me")).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
    assert!(plain.headers().contains_key("www-authenticate"), "curl users get the challenge");
    let scripted =
        client().get(admin_url(&gw, "/api/v1/me")).header("x-requested-with", "tokengate-web").send().await.unwrap();
    assert_eq!(scripted.status(), StatusCode::UNAUTHORIZED);
    // Without a challenge the browser shows the page's message, not its own sign-in box.
    assert!(!scripted.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn requests_from_another_sites_page_cannot_change_anything() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "laptop", &["read", "write", "admin"]).await;
    let create = |name: &str| {
        client()
            .post(admin_url(&gw, "/api/v1/tokens"))
            .basic_auth(ANN, Some(&secret))
            .header("content-type", "text/plain")
            .body(format!(r#"{{"name": "{name}"}}"#))
    };
    // What a form on another site would make a browser with remembered credentials send.
    let forged = create("forged").header("origin", "http://evil.example").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = create("forged").header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let list = gw
        .service
        .list_tokens(tokengate::control::service::TokenQuery::default(), &tokengate::control::service::Actor::cli())
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "nothing was created");
    // The page itself (same origin), and tools that send no origin, go through.
    let page = create("from-page").header("origin", format!("http://{}", gw.admin)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::CREATED);
    let same = create("same-origin").header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(same.status(), StatusCode::CREATED);
    assert_eq!(create("curl").send().await.unwrap().status(), StatusCode::CREATED);
    // Reading is not a change: a cross-site GET is answered (and unreadable to that site).
    let read = client()
        .get(admin_url(&gw, "/api/v1/me"))
        .basic_auth(ANN, Some(&secret))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["x-content-type-options"], "nosniff");
}

/// Signs in through the form and waits for the API Tokens tab.
async fn sign_in(browser: &Browser, gw: &TestGateway, email: &str, secret: &str) {
    browser.goto(&admin_url(gw, "/")).await;
    browser.fill("#sign-in-email", email).await;
    browser.fill("#sign-in-token", secret).await;
    browser.click("#sign-in-submit").await;
    browser.visible("#panel-tokens").await;
    browser.text_containing("#whoami-email", email).await;
}

/// Reads the secret from the "shown once" dialog, copies it, and closes the dialog.
async fn take_secret(browser: &Browser, screenshot: Option<&str>) -> String {
    browser.visible("#secret-dialog").await;
    let warning = browser.text("#secret-dialog .warning").await;
    assert!(warning.contains("will not be shown again"), "{warning}");
    let secret = browser.value("#secret-value").await;
    assert!(secret.starts_with("tg_"), "the dialog shows {secret:?}");
    // The whole secret is selected, ready to copy, and the box shows its beginning (tg_…),
    // not its end.
    let shown = browser
        .script(
            "const input = document.getElementById('secret-value');
             return [input.selectionStart, input.selectionEnd, input.scrollLeft];",
        )
        .await;
    assert_eq!(shown, serde_json::json!([0, secret.len(), 0]), "the secret box is scrolled or not selected");
    browser.click("#secret-copy").await;
    browser.text_containing("#secret-copied", "Copied").await;
    if let Some(name) = screenshot {
        browser.screenshot(name).await;
    }
    browser.click("#secret-done").await;
    browser.gone("#secret-dialog").await;
    // The secret leaves the page with the dialog.
    assert_eq!(browser.value("#secret-value").await, "");
    secret
}

/// Whether the checkbox `css` is ticked.
async fn is_checked(browser: &Browser, css: &str) -> bool {
    browser.visible(css).await.prop("checked").await.unwrap().as_deref() == Some("true")
}

/// Waits until a token table shows exactly the tokens named `expected` (in any order): a
/// table is refilled after each change, so a single read could see the one before.
async fn expect_names(browser: &Browser, table: &str, expected: &[&str]) {
    let mut expected = expected.to_vec();
    expected.sort();
    let expected = &expected;
    eventually(|| async move {
        let names = sorted_names(browser, table).await;
        if names == *expected { Ok(()) } else { Err(format!("{table} shows {names:?}, never {expected:?}")) }
    })
    .await
}

/// The token names a table shows once it has settled, sorted.
async fn sorted_names(browser: &Browser, table: &str) -> Vec<String> {
    let mut names = browser.texts(&format!("{table} tbody td.name .token-name")).await;
    names.sort();
    names
}

/// The UTC date `days` from today, as the page's date fields take it: `2026-12-07`.
fn utc_date_from_today(days: i64) -> String {
    tokengate::clock::day_to_date(tokengate::clock::utc_day(Clock::System.now()) + days)
}

/// Types `text` into the date field `css` as a person would, key by key (empty: clears it).
async fn type_date(browser: &Browser, css: &str, text: &str) {
    if text.is_empty() {
        browser.visible(css).await.clear().await.unwrap();
    } else {
        browser.fill(css, text).await;
    }
}

/// Checks that `css` is a date field of the page's one format: a text field (never the
/// browser's `<input type="date">`, which shows dates in the browser's locale format) with
/// `YYYY-MM-DD` as its placeholder, a number pad on phones, a pattern, no autofill, and a label
/// that names the format and UTC.
async fn expect_date_field(browser: &Browser, css: &str) {
    let script = "const input = document.querySelector(arguments[0]);
        const label = input.getAttribute('aria-label') || [...input.labels].map(l => l.textContent).join(' ');
        return [input.type, input.placeholder, input.inputMode, input.autocomplete, input.pattern, label];";
    let field = browser.client.execute(script, vec![serde_json::json!(css)]).await.unwrap();
    let (kind, placeholder, input_mode, autocomplete, pattern, label): (
        String,
        String,
        String,
        String,
        String,
        String,
    ) = serde_json::from_value(field).unwrap();
    assert_eq!(
        (kind.as_str(), placeholder.as_str(), input_mode.as_str(), autocomplete.as_str()),
        ("text", "YYYY-MM-DD", "numeric", "off"),
        "{css}"
    );
    assert!(!pattern.is_empty(), "{css} has no pattern");
    assert!(label.contains("YYYY-MM-DD") && label.contains("(UTC)"), "{css} is labelled {label:?}");
}

/// Waits until the date field `css` is marked invalid (for assistive technology too) and has
/// the focus, as the page leaves a field it refused once the form was submitted.
async fn expect_refused_field(browser: &Browser, css: &str) {
    let script = "const input = document.querySelector(arguments[0]);
        return [input.getAttribute('aria-invalid'), input.validity.valid, document.activeElement === input];";
    eventually(|| async {
        let state = browser.client.execute(script, vec![serde_json::json!(css)]).await.unwrap();
        if state == serde_json::json!(["true", false, true]) {
            Ok(())
        } else {
            Err(format!("{css} is not marked invalid with the focus: [aria-invalid, valid, focused] = {state}"))
        }
    })
    .await
}

/// Records the page's calls to the admin API from now on ([`listing_calls`] reads them), so that a
/// test can tell that a step sent nothing.
async fn record_api_calls(browser: &Browser) {
    browser
        .script(
            "window.apiCalls = [];
             if (!window.fetchRecorded) {
               const fetch = window.fetch;
               window.fetch = function (resource, init) { window.apiCalls.push(String(resource)); return fetch.call(window, resource, init); };
               window.fetchRecorded = true;
             }",
        )
        .await;
}

/// The token listings the page asked for since [`record_api_calls`].
async fn listing_calls(browser: &Browser) -> Vec<String> {
    let calls = browser.script("return window.apiCalls.filter(url => url.startsWith('/api/v1/tokens?'))").await;
    serde_json::from_value(calls).unwrap()
}

#[tokio::test]
async fn an_account_creates_uses_rotates_and_revokes_its_tokens_in_the_browser() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, laptop) = gw.token(ANN, "laptop", &["read", "write", "admin"]).await;
    let Some(browser) = Browser::start().await else { return };

    // A wrong token is refused with the page's own message.
    browser.goto(&admin_url(&gw, "/")).await;
    browser.fill("#sign-in-email", ANN).await;
    browser.fill("#sign-in-token", "tg_not_a_real_token").await;
    browser.click("#sign-in-submit").await;
    browser.text_containing("#sign-in-error", "Sign-in failed").await;
    browser.screenshot("sign-in").await;
    // The form says which tokens may sign in, and valid tokens without `admin` cannot.
    assert!(browser.text("#sign-in-view").await.contains("admin"));
    // ... and how a first-time user gets one.
    let first_time = browser.text("#sign-in-first-time").await;
    assert!(
        first_time.contains("Ask an administrator")
            && first_time.contains("tokengate token create --user YOUR_EMAIL --name web --scope admin"),
        "{first_time}"
    );
    gw.account(BOB).await;
    for scopes in [&["read", "write"][..], &["admin:read"][..]] {
        let (_, without_admin) = gw.token(BOB, &format!("no-admin {scopes:?}"), scopes).await;
        browser.fill("#sign-in-email", BOB).await;
        browser.fill("#sign-in-token", &without_admin).await;
        browser.click("#sign-in-submit").await;
        browser.text_containing("#sign-in-error", "lacks the admin scope").await;
    }

    sign_in(&browser, &gw, ANN, &laptop).await;
    // An ordinary account sees its own tokens only: no Token Manager, no Accounts.
    browser.gone("#tab-manager").await;
    browser.gone("#tab-accounts").await;
    expect_names(&browser, "#tokens-table", &["laptop"]).await;
    assert!(browser.text("#tokens-table tr.this-session").await.contains("laptop"));
    // The credential lives in this tab's sessionStorage only.
    let storage = browser
        .script(
            "return [localStorage.length, document.cookie, sessionStorage.getItem('tokengate.credential') !== null]",
        )
        .await;
    assert_eq!(storage, serde_json::json!([0, "", true]));

    // Create: read scope only, then read the secret from the dialog.
    browser.click("#create-token").await;
    browser.visible("#create-dialog").await;
    // The reserved admin scopes are offered, never ticked by default.
    let admin_boxes = browser
        .script(
            "return ['create-scope-admin', 'create-scope-admin_read'].map(id => document.getElementById(id)?.checked)",
        )
        .await;
    assert_eq!(admin_boxes, serde_json::json!([false, false]));
    browser.fill("#create-name", "ci deploy").await;
    let expiry = browser.value("#create-expiry").await;
    assert_eq!(expiry, format!("{}s", gw.config.tokens.default_lifetime.as_secs()), "the policy's default is chosen");
    // The expiry choices stay within the policy: nothing past the maximum lifetime.
    let choices =
        browser.script("return [...document.querySelectorAll('#create-expiry option')].map(o => o.value)").await;
    let max = gw.config.tokens.max_lifetime.as_secs();
    for choice in choices.as_array().unwrap() {
        let choice = choice.as_str().unwrap();
        if let Some(seconds) = choice.strip_suffix('s') {
            assert!(seconds.parse::<u64>().unwrap() <= max, "{choice} exceeds the policy");
        } else {
            assert!(["date", "never"].contains(&choice), "{choice}");
        }
    }
    browser.click("#create-scope-write").await;
    browser.screenshot("create-token-form").await;
    browser.click("#create-submit").await;
    let secret = take_secret(&browser, Some("create-token-dialog")).await;
    browser.text_containing("#tokens-table tbody", "ci deploy").await;
    let row = browser.text("#tokens-table tr[data-token-name='ci deploy']").await;
    assert!(row.contains(&secret[..11]), "the row shows the prefix: {row}");
    // Times are shown in UTC, in one format that says so (the browser runs in another zone).
    let created = browser
        .script(
            "const time = document.querySelector(\"#tokens-table tr[data-token-name='ci deploy'] time\");
             return [time.textContent, time.getAttribute('datetime')];",
        )
        .await;
    let (shown, iso): (String, String) = serde_json::from_value(created).unwrap();
    assert_eq!(shown, format!("{} {} UTC", &iso[..10], &iso[11..16]), "created at {iso}");
    browser.screenshot("api-tokens").await;

    // The new token works through the proxy, with exactly the scopes chosen in the dialog.
    assert_eq!(proxied_get(&gw, ANN, &secret).await, StatusCode::OK);
    assert_eq!(proxied(&gw, reqwest::Method::POST, ANN, &secret).await, StatusCode::FORBIDDEN);
    // ... and the page shows that last use (method and path) once it is flushed.
    eventually(|| async {
        browser.click("#tab-tokens").await;
        let row = browser.text("#tokens-table tr[data-token-name='ci deploy']").await;
        if row.contains("GET /things") && row.contains("127.0.0.1") {
            Ok(())
        } else {
            Err(format!("last use never shown: {row}"))
        }
    })
    .await;

    // An expiry date is typed as YYYY-MM-DD, a UTC day, labelled so: the token lives to its
    // last second, 23:59:59Z.
    browser.click("#create-token").await;
    browser.fill("#create-name", "dated").await;
    browser.visible("#create-expiry").await.select_by_value("date").await.unwrap();
    expect_date_field(&browser, "#create-date").await;
    browser.text_containing("label[for='create-date']", "YYYY-MM-DD (UTC)").await;
    // The days allowed: tomorrow to the last day within tokens.max_lifetime, stated beside the
    // field, and enforced there before anything is sent.
    let max_days = gw.config.tokens.max_lifetime.as_secs() as i64 / 86_400;
    let (first, last) = (utc_date_from_today(1), utc_date_from_today(max_days - 1));
    browser.text_containing("#create-date-range", &format!("A day from {first} to {last}")).await;
    let range = format!("choose a day from {first} to {last} (UTC)");
    for (typed, why) in [
        (utc_date_from_today(max_days), format!("is too late: {range}. Tokens live at most")),
        (utc_date_from_today(0), format!("is too early: {range}.")),
        ("2027-02-29".to_owned(), "2027-02-29 is not a date: February 2027 has 28 days.".to_owned()),
        ("".to_owned(), format!("Type the expiry day as YYYY-MM-DD (UTC): a day from {first} to {last}.")),
    ] {
        type_date(&browser, "#create-date", &typed).await;
        browser.click("#create-submit").await;
        let error = browser.text_containing("#create-date-error", &why).await;
        assert!(error.starts_with(&typed), "{error}");
        expect_refused_field(&browser, "#create-date").await;
        browser.visible("#create-dialog").await;
    }
    let query = tokengate::control::service::TokenQuery { users: vec![ANN.into()], ..Default::default() };
    let tokens = gw.service.list_tokens(query.clone(), &Actor::cli()).await.unwrap();
    assert!(!tokens.iter().any(|t| t.name == "dated"), "a refused expiry created a token");
    browser.screenshot("create-token-date-refused").await;
    let day = tokengate::clock::utc_day(Clock::System.now()) + 3;
    let date = tokengate::clock::day_to_date(day);
    // Typed into the field that says it is empty, the right day takes the error away.
    browser.visible("#create-date").await.send_keys(&date).await.unwrap();
    browser.gone("#create-date-error").await;
    browser.click("#create-submit").await;
    take_secret(&browser, None).await;
    let tokens = gw.service.list_tokens(query, &Actor::cli()).await.unwrap();
    let dated = tokens.iter().find(|t| t.name == "dated").unwrap();
    assert_eq!(dated.expires_at, Some((day + 1) * 86_400 - 1), "expires at the end of {date} UTC");

    // A second token of the same name is refused, and the dialog says why.
    browser.click("#create-token").await;
    browser.fill("#create-name", "ci deploy").await;
    browser.click("#create-submit").await;
    browser.text_containing("#create-error", "already exists").await;
    browser.click("#create-cancel").await;
    browser.gone("#create-dialog").await;

    // Cancelling the confirmation revokes nothing.
    browser.click("#tokens-table tr[data-token-name='ci deploy'] button[data-action='revoke']").await;
    browser.visible("#revoke-dialog").await;
    browser.click("#revoke-cancel").await;
    browser.gone("#revoke-dialog").await;
    assert_eq!(proxied_get(&gw, ANN, &secret).await, StatusCode::OK);

    // Revoke through the confirmation dialog, which names what is about to stop working.
    browser.click("#tokens-table tr[data-token-name='ci deploy'] button[data-action='revoke']").await;
    let details = browser.text("#revoke-details").await;
    assert!(details.contains("ci deploy") && details.contains(&secret[..11]), "{details}");
    assert!(details.contains("GET /things"), "the dialog shows the last use: {details}");
    browser.gone("#revoke-self").await;
    browser.screenshot("revoke-dialog").await;
    browser.click("#revoke-confirm").await;
    browser.text_containing("#banner", "was revoked").await;
    // ... and says which running gateways refuse the token already.
    browser.text_containing("#banner", "Refused by 1 of 1 gateway").await;
    expect_names(&browser, "#tokens-table", &["dated", "laptop"]).await;
    assert_eq!(proxied_get(&gw, ANN, &secret).await, StatusCode::UNAUTHORIZED, "refused at once");
    // The revocation is audited with the browser's address and user agent.
    let filter = EventFilter { kind: Some("token.revoked".into()), limit: 10, ..EventFilter::default() };
    let events = gw.store().list_events(&filter).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, ANN);
    assert_eq!(events[0].ip.as_deref(), Some("127.0.0.1"));
    assert!(events[0].user_agent.as_deref().unwrap_or("").contains("Chrome"), "{:?}", events[0].user_agent);

    // Revoked tokens show when asked for.
    browser.visible("#tokens-status").await.select_by_value("all").await.unwrap();
    browser.text_containing("#tokens-table tr[data-token-name='ci deploy']", "revoked").await;

    // Rotating the token this tab signed in with: the tab moves to the successor.
    browser
        .click("#tokens-table tr[data-token-name='laptop'][data-status='active'] button[data-action='rotate']")
        .await;
    browser.visible("#rotate-dialog").await;
    browser.click("#rotate-confirm").await;
    let successor = take_secret(&browser, None).await;
    assert_eq!(proxied_get(&gw, ANN, &laptop).await, StatusCode::UNAUTHORIZED, "the old token stops at once");
    assert_eq!(proxied_get(&gw, ANN, &successor).await, StatusCode::OK);
    browser.click("#tab-tokens").await;
    browser.text_containing("#tokens-table tr.this-session", "laptop").await;

    // Signing out forgets the credential.
    browser.click("#sign-out").await;
    browser.visible("#sign-in-view").await;
    let stored = browser.script("return sessionStorage.getItem('tokengate.credential')").await;
    assert_eq!(stored, serde_json::Value::Null);

    // A session whose token is revoked elsewhere ends on its next request, with a reason.
    sign_in(&browser, &gw, ANN, &successor).await;
    let query = tokengate::control::service::TokenQuery { users: vec![ANN.into()], ..Default::default() };
    let tokens = gw.service.list_tokens(query, &tokengate::control::service::Actor::cli()).await.unwrap();
    let successor_id = tokens.iter().find(|t| t.name == "laptop").unwrap().id;
    gw.service.revoke_token(successor_id, &Actor::cli()).await.unwrap();
    browser.click("#tab-tokens").await;
    browser.text_containing("#sign-in-error", "signed out").await;
    assert_eq!(browser.script("return sessionStorage.getItem('tokengate.credential')").await, serde_json::Value::Null);
    browser.close().await;
}

#[tokio::test]
async fn a_superuser_filters_creates_for_others_revokes_and_manages_accounts_in_the_browser() {
    let gw = TestGateway::spawn().await;
    create_account(&gw, ROOT, true).await;
    create_account(&gw, ANN, false).await;
    create_account(&gw, BOB, false).await;
    create_account(&gw, MANAGER, false).await;
    let (_, root) = gw.token(ROOT, "admin", &["*"]).await;
    let (_, manager) = gw.token(MANAGER, HOSTILE_TOKEN, &["*"]).await;
    let (_, ann_laptop) = gw.token(ANN, "laptop", &["read", "write", "admin"]).await;
    gw.token(ANN, "ci deploy", &[]).await;
    let (_, deploy) = gw.token(BOB, "deploy-prod", &[]).await;
    let (_, old_script) = gw.token(BOB, "old-script", &[]).await;
    let Some(browser) = Browser::start().await else { return };
    sign_in(&browser, &gw, ROOT, &root).await;
    browser.text_containing("#whoami-roles", "superuser").await;

    // Token Manager: every account's tokens, then filters.
    browser.click("#tab-manager").await;
    browser.text_containing("#manager-count", "6 tokens").await;
    browser.screenshot("token-manager").await;
    // Server text is shown as text: the hostile token name is a name, not an element.
    assert!(browser.texts("#manager-table td.name .token-name").await.contains(&HOSTILE_TOKEN.to_owned()));
    assert_eq!(browser.script("return document.querySelectorAll('#manager-table img').length").await, 0);

    browser.fill("#filter-users", BOB).await;
    browser.fill("#filter-search", "old").await;
    browser.click("#filter-apply").await;
    browser.text_containing("#manager-count", "1 token").await;
    expect_names(&browser, "#manager-table", &["old-script"]).await;

    browser.click("#filter-reset").await;
    browser.fill("#filter-users", &format!("{ANN}, {BOB}")).await;
    browser.click("#filter-apply").await;
    browser.text_containing("#manager-count", "4 tokens").await;
    expect_names(&browser, "#manager-table", &["ci deploy", "deploy-prod", "laptop", "old-script"]).await;

    // Dates, typed as YYYY-MM-DD: nothing was created from tomorrow on; everything up to today.
    type_date(&browser, "#filter-created-from", &utc_date_from_today(1)).await;
    browser.click("#filter-apply").await;
    browser.text_containing("#manager-count", "0 tokens").await;
    browser.visible("#manager-empty").await;
    type_date(&browser, "#filter-created-from", "").await;
    type_date(&browser, "#filter-created-to", &utc_date_from_today(0)).await;
    browser.click("#filter-apply").await;
    browser.text_containing("#manager-count", "4 tokens").await;
    // The date fields say they are UTC days, and the filters mean UTC days: a "from" date is
    // its UTC midnight, a "to" date includes its whole UTC day.
    for legend in browser.texts("#filter-form legend").await {
        assert!(legend.ends_with("(UTC)"), "{legend}");
    }
    type_date(&browser, "#filter-created-from", "2026-03-01").await;
    type_date(&browser, "#filter-created-to", "2026-03-01").await;
    browser.click("#filter-apply").await;
    browser.text_containing("#manager-count", "0 tokens").await;
    let asked = browser
        .script(
            "return performance.getEntriesByType('resource').map(e => e.name)
                 .filter(url => url.includes('created_after=')).pop()",
        )
        .await;
    let asked = asked.as_str().unwrap_or_default().to_owned();
    assert!(
        asked.contains("created_after=2026-03-01T00%3A00%3A00Z")
            && asked.contains("created_before=2026-03-02T00%3A00%3A00Z"),
        "{asked}"
    );

    // Never used: once bob's deploy token has been used (and the use flushed), only the others.
    assert_eq!(proxied_get(&gw, BOB, &deploy).await, StatusCode::OK);
    browser.click("#filter-reset").await;
    browser.fill("#filter-users", BOB).await;
    browser.click("#filter-never-used").await;
    eventually(|| async {
        browser.click("#filter-apply").await;
        let names = sorted_names(&browser, "#manager-table").await;
        if names == ["old-script"] { Ok(()) } else { Err(format!("deploy-prod's use never counted: {names:?}")) }
    })
    .await;

    // Create a token for another account; it works as that account, and the manager made it.
    browser.click("#manager-create").await;
    browser.visible("#create-owner").await;
    browser.fill("#create-owner", BOB).await;
    browser.fill("#create-name", "from-manager").await;
    browser.click("#create-submit").await;
    let secret = take_secret(&browser, None).await;
    assert_eq!(proxied_get(&gw, BOB, &secret).await, StatusCode::OK);
    let query = tokengate::control::service::TokenQuery { users: vec![BOB.into()], ..Default::default() };
    let made = gw.service.list_tokens(query, &tokengate::control::service::Actor::cli()).await.unwrap();
    let made = made.iter().find(|t| t.name == "from-manager").unwrap();
    assert_eq!(made.created_by, ROOT);

    // Revoke another account's token from the manager's table.
    browser.click("#filter-reset").await;
    browser.text_containing("#manager-count", "7 tokens").await;
    browser.click("#manager-table tr[data-token-name='old-script'] button[data-action='revoke']").await;
    assert!(browser.text("#revoke-details").await.contains(BOB));
    browser.click("#revoke-confirm").await;
    browser.text_containing("#banner", "old-script").await;
    assert_eq!(proxied_get(&gw, BOB, &old_script).await, StatusCode::UNAUTHORIZED);
    browser.visible("#filter-status").await.select_by_value("revoked").await.unwrap();
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["old-script"]).await;

    // Accounts: taking away bob's token permission blocks his tokens at once; giving it back
    // restores them.
    browser.click("#tab-accounts").await;
    browser.visible("#accounts-table tr[data-email='bob@example.com']").await;
    browser.screenshot("accounts").await;
    // Server text is shown as text: the hostile account name is neither an element nor script.
    let ann_name = browser.text("#accounts-table tr[data-email='ann@example.com'] td:nth-child(2)").await;
    assert_eq!(ann_name, HOSTILE_NAME);
    assert_eq!(browser.script("return document.querySelectorAll('#accounts-table img').length").await, 0);
    let permission = "#accounts-table tr[data-email='bob@example.com'] input[data-field='can_create_tokens']";
    // A change that stops bob's tokens asks first; cancelling leaves the box as it was.
    browser.click(permission).await;
    browser.visible("#account-dialog").await;
    browser.text_containing("#account-dialog-title", "token permission of bob@example.com").await;
    browser.text_containing("#account-dialog-text", "refused from the very next request").await;
    browser.screenshot("account-confirm-dialog").await;
    browser.click("#account-dialog-cancel").await;
    browser.gone("#account-dialog").await;
    assert!(is_checked(&browser, permission).await, "cancelled: the box is as it was");
    assert_eq!(proxied_get(&gw, BOB, &deploy).await, StatusCode::OK, "cancelled: nothing changed");
    browser.click(permission).await;
    browser.click("#account-dialog-confirm").await;
    browser.text_containing("#banner", "token permission off").await;
    assert!(!is_checked(&browser, permission).await);
    assert_eq!(proxied_get(&gw, BOB, &deploy).await, StatusCode::UNAUTHORIZED, "blocked at once");
    // Giving it back stops nothing: no question asked.
    browser.click(permission).await;
    browser.text_containing("#banner", "token permission on").await;
    assert_eq!(proxied_get(&gw, BOB, &deploy).await, StatusCode::OK, "restored at once");
    let enabled = "#accounts-table tr[data-email='bob@example.com'] input[data-field='enabled']";
    browser.click(enabled).await;
    browser.text_containing("#account-dialog-title", "Disable bob@example.com?").await;
    browser.click("#account-dialog-cancel").await;
    browser.gone("#account-dialog").await;
    assert!(is_checked(&browser, enabled).await, "cancelled: still enabled");
    assert_eq!(proxied_get(&gw, BOB, &deploy).await, StatusCode::OK, "cancelled: nothing changed");
    browser.click(enabled).await;
    browser.click("#account-dialog-confirm").await;
    browser.text_containing("#banner", "enabled off").await;
    assert_eq!(proxied_get(&gw, BOB, &deploy).await, StatusCode::UNAUTHORIZED, "a disabled account's tokens stop");
    browser.click(enabled).await;
    browser.text_containing("#banner", "enabled on").await;
    assert_eq!(proxied_get(&gw, BOB, &deploy).await, StatusCode::OK);

    // Revoke all of ann's tokens behind a confirmation.
    browser.click("#accounts-table tr[data-email='ann@example.com'] button[data-action='revoke-all']").await;
    browser.visible("#revoke-all-dialog").await;
    browser.click("#revoke-all-confirm").await;
    browser.text_containing("#banner", "2 tokens of ann@example.com revoked").await;
    assert_eq!(proxied_get(&gw, ANN, &ann_laptop).await, StatusCode::UNAUTHORIZED);

    // A new account.
    browser.fill("#account-email", "carol@example.com").await;
    browser.click("#account-add").await;
    browser.visible("#accounts-table tr[data-email='carol@example.com']").await;

    // A token manager gets the Token Manager but not the Accounts tab.
    browser.click("#sign-out").await;
    sign_in(&browser, &gw, MANAGER, &manager).await;
    browser.text_containing("#whoami-roles", "token manager").await;
    browser.visible("#tab-manager").await;
    browser.gone("#tab-accounts").await;
    browser.close().await;
}

/// The Token Manager's date filters, in the order of the page.
const DATE_FILTERS: [&str; 6] = [
    "#filter-created-from",
    "#filter-created-to",
    "#filter-used-from",
    "#filter-used-to",
    "#filter-expires-from",
    "#filter-expires-to",
];

#[tokio::test]
async fn date_filters_are_typed_as_utc_days_whatever_the_browsers_locale_in_the_browser() {
    // Bob's tokens are created on three known UTC days, at 22:30 UTC: in the browser's zone
    // (UTC+5:30) that is already the next day, so a filter that took local days would be off.
    let day = tokengate::clock::utc_day(Clock::System.now()) - 20;
    let clock = Clock::manual(day * 86_400 + 22 * 3600 + 30 * 60);
    let gw = TestGateway::spawn_with("", &[], clock.clone()).await;
    create_account(&gw, ROOT, true).await;
    create_account(&gw, BOB, false).await;
    let (_, root) = gw.token(ROOT, "admin", &["*"]).await;
    for (offset, name) in ["first-day", "second-day", "third-day"].into_iter().enumerate() {
        if offset > 0 {
            clock.advance(86_400);
        }
        gw.token(BOB, name, &[]).await;
    }
    let (first, second, third) = (
        tokengate::clock::day_to_date(day),
        tokengate::clock::day_to_date(day + 1),
        tokengate::clock::day_to_date(day + 2),
    );

    // A German browser: its own date format is 7.12.2026, its date picker's 07.12.2026.
    let Some(browser) = Browser::start_in_locale(Some("de-DE")).await else { return };
    sign_in(&browser, &gw, ROOT, &root).await;
    let locale = browser
        .script("return [navigator.language, new Intl.DateTimeFormat().resolvedOptions().locale, new Date(Date.UTC(2026, 11, 7, 12)).toLocaleDateString()]")
        .await;
    let (language, intl, shown): (String, String, String) = serde_json::from_value(locale).unwrap();
    assert!(language.starts_with("de") && intl.starts_with("de"), "not a German browser: {language}, {intl}");
    assert_eq!(shown, "7.12.2026");

    // ... yet every date field on the page is typed in the page's own format, named beside it.
    browser.click("#tab-manager").await;
    browser.text_containing("#manager-count", "4 tokens").await;
    for field in DATE_FILTERS {
        expect_date_field(&browser, field).await;
    }
    assert_eq!(browser.script("return document.querySelectorAll('input[type=date]').length").await, 0);
    browser.fill("#filter-users", BOB).await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["first-day", "second-day", "third-day"]).await;

    // A typed day is a UTC day: created on the second day only, from it on, up to it.
    type_date(&browser, "#filter-created-from", &second).await;
    type_date(&browser, "#filter-created-to", &second).await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["second-day"]).await;
    browser.text_containing("#manager-count", "1 token").await;
    type_date(&browser, "#filter-created-to", "").await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["second-day", "third-day"]).await;
    // Typed as its 8 digits (a phone's number pad may have no hyphen), a day is shown as
    // YYYY-MM-DD.
    type_date(&browser, "#filter-created-from", "").await;
    type_date(&browser, "#filter-created-to", &second.replace('-', "")).await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["first-day", "second-day"]).await;
    assert_eq!(browser.value("#filter-created-to").await, second);
    // Expiry days too: the default lifetime from each creation day.
    let lifetime_days = gw.config.tokens.default_lifetime.as_secs() as i64 / 86_400;
    type_date(&browser, "#filter-created-to", "").await;
    type_date(&browser, "#filter-expires-from", &tokengate::clock::day_to_date(day + 2 + lifetime_days)).await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["third-day"]).await;
    type_date(&browser, "#filter-expires-from", "").await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["first-day", "second-day", "third-day"]).await;

    // A day that is not in the calendar, or the browser's own format, or a "to" day before its
    // "from" day: the field says why beside it, gets the focus, and nothing is asked of the
    // gateway — the listing stays as it was.
    let wrong = [
        ("#filter-created-from", "2026-02-30", "2026-02-30 is not a date: February 2026 has 28 days."),
        ("#filter-used-to", "7.12.2026", "“7.12.2026” is not a date: type it as YYYY-MM-DD, for example 2026-12-07."),
        ("#filter-expires-from", "2026-13-01", "2026-13-01 is not a date: the month (MM) must be from 01 to 12."),
    ];
    for (field, typed, why) in wrong {
        record_api_calls(&browser).await;
        type_date(&browser, field, typed).await;
        browser.click("#filter-apply").await;
        let error = format!("{}-error", field);
        assert_eq!(browser.text_containing(&error, why).await, why);
        expect_refused_field(&browser, field).await;
        assert_eq!(listing_calls(&browser).await, Vec::<String>::new(), "{typed} in {field} was sent");
        expect_names(&browser, "#manager-table", &["first-day", "second-day", "third-day"]).await;
        browser.text_containing("#manager-count", "3 tokens").await;
        if field == "#filter-created-from" {
            browser.screenshot("date-filter-refused").await;
        }
        type_date(&browser, field, "").await;
        browser.gone(&error).await;
    }
    record_api_calls(&browser).await;
    type_date(&browser, "#filter-created-from", &third).await;
    type_date(&browser, "#filter-created-to", &first).await;
    browser.click("#filter-apply").await;
    browser
        .text_containing(
            "#filter-created-to-error",
            &format!("{first} is before the “from” day {third}: no token could match."),
        )
        .await;
    assert_eq!(listing_calls(&browser).await, Vec::<String>::new(), "a reversed range was sent");
    // Put right, the error goes, and the listing follows.
    type_date(&browser, "#filter-created-to", &third).await;
    browser.gone("#filter-created-to-error").await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["third-day"]).await;
    let asked = listing_calls(&browser).await;
    let from = format!("created_after={third}T00%3A00%3A00Z");
    let to = format!("created_before={}T00%3A00%3A00Z", tokengate::clock::day_to_date(day + 3));
    assert!(asked.iter().any(|url| url.contains(&from) && url.contains(&to)), "{asked:?}");

    // Reset empties the fields and their errors.
    type_date(&browser, "#filter-used-from", "2026-02-30").await;
    browser.click("#filter-apply").await;
    browser.visible("#filter-used-from-error").await;
    browser.click("#filter-reset").await;
    browser.gone("#filter-used-from-error").await;
    browser.text_containing("#manager-count", "4 tokens").await;
    browser.close().await;
}

#[tokio::test]
async fn a_superuser_sees_refused_uses_and_caps_expiries_after_a_dry_run_in_the_browser() {
    let gw = TestGateway::spawn_with("", &[("TOKENGATE_TOKENS__MAX_LIFETIME", "30d")], tokengate::clock::Clock::System)
        .await;
    create_account(&gw, ROOT, true).await;
    create_account(&gw, BOB, false).await;
    create_account(&gw, MANAGER, false).await;
    let (_, root) = gw.token(ROOT, "admin", &["*"]).await;
    let (_, manager) = gw.token(MANAGER, "admin", &["*"]).await;
    let never = tokengate::control::service::ExpiryRequest::Never;
    let (forever, forever_secret) = gw.token_with(BOB, "forever", &[], never).await;
    let (old, old_secret) = gw.token(BOB, "old-laptop", &[]).await;
    gw.service.revoke_token(old, &Actor::cli()).await.unwrap();
    // The revoked token is still sent by some client.
    assert_eq!(proxied_get(&gw, BOB, &old_secret).await, StatusCode::UNAUTHORIZED);
    crate::support::eventually("the refused use is flushed", || async {
        gw.service.token(old).await.unwrap().refused_count == 1
    })
    .await;
    let refused_at = gw.service.token(old).await.unwrap().refused_last_at.unwrap();
    let Some(browser) = Browser::start().await else { return };
    sign_in(&browser, &gw, ROOT, &root).await;

    // The dead token's row says how often and when it was still presented, from where, for what
    // (in UTC: the browser runs in another zone).
    browser.click("#tab-manager").await;
    browser.visible("#filter-status").await.select_by_value("all").await.unwrap();
    browser.click("#filter-apply").await;
    let utc = time::OffsetDateTime::from_unix_timestamp(refused_at).unwrap();
    let when = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute()
    );
    let row = browser.text_containing("#manager-table tr[data-token-name='old-laptop'] .refused", "refused 1×").await;
    assert_eq!(row, format!("refused 1× · last {when} from 127.0.0.1 GET /things"));
    browser.screenshot("refused-uses").await;

    // The filter for tokens that never expire.
    browser.visible("#filter-status").await.select_by_value("live").await.unwrap();
    browser.click("#filter-no-expiry").await;
    browser.click("#filter-apply").await;
    expect_names(&browser, "#manager-table", &["forever"]).await;

    // The button asks for a dry run first; cancelling changes nothing.
    browser.click("#cap-expiry").await;
    browser.visible("#cap-dialog").await;
    let summary = browser.text("#cap-summary").await;
    assert!(summary.contains("1 live token would get an earlier expiry") && summary.contains("30d"), "{summary}");
    assert_eq!(browser.texts("#cap-table tbody tr").await.len(), 1);
    browser.text_containing("#cap-table tbody", "forever").await;
    browser.text_containing("#cap-table tbody", "never").await;
    browser.text_containing("#cap-confirm", "Cap 1 expiry").await;
    browser.screenshot("cap-expiry-dialog").await;
    browser.click("#cap-cancel").await;
    browser.gone("#cap-dialog").await;
    assert_eq!(gw.service.token(forever).await.unwrap().expires_at, None);

    // Confirmed: the token expires within the maximum, every gateway obeys it, the page says so.
    browser.click("#cap-expiry").await;
    browser.visible("#cap-dialog").await;
    browser.click("#cap-confirm").await;
    browser.text_containing("#banner", "The expiry of 1 token now fits the maximum lifetime of 30d").await;
    browser.text_containing("#banner", "Applied by 1 of 1 gateway").await;
    let capped = gw.service.token(forever).await.unwrap();
    assert_eq!(capped.expires_at, Some(capped.created_at + 30 * 86_400));
    let expires = client().get(gw.url("/things")).basic_auth(BOB, Some(&forever_secret)).send().await.unwrap();
    assert_eq!(
        expires.headers()["x-auth-token-expires"],
        tokengate::clock::to_rfc3339(capped.created_at + 30 * 86_400)
    );
    expect_names(&browser, "#manager-table", &[]).await;

    // Nothing left to cap: the dialog says so and offers no change.
    browser.click("#cap-expiry").await;
    browser.text_containing("#cap-summary", "nothing would change").await;
    browser.gone("#cap-confirm").await;
    browser.click("#cap-cancel").await;

    // A token manager has the Token Manager, but not the button.
    browser.click("#sign-out").await;
    sign_in(&browser, &gw, MANAGER, &manager).await;
    browser.click("#tab-manager").await;
    browser.visible("#manager-create").await;
    browser.gone("#cap-expiry").await;
    browser.close().await;
}

/// The sparkline of the token row `row` once its counts are drawn: (UTC day, requests, bar
/// height) per bar, oldest first; `None` while its counts have not been loaded.
async fn sparkline(browser: &Browser, row: &str) -> Option<Vec<(String, i64, f64)>> {
    let script = "const svg = document.querySelector(arguments[0] + ' svg.spark');
        if (!svg || svg.dataset.state !== 'ready') return null;
        return [...svg.querySelectorAll('rect.bar')].map(r =>
            [r.dataset.day, Number(r.dataset.requests), Number(r.getAttribute('height'))]);";
    let bars = browser.client.execute(script, vec![serde_json::json!(row)]).await.unwrap();
    serde_json::from_value(bars).unwrap()
}

/// Waits for the sparkline of `row`, and checks it shows `today_requests` on today's bar and
/// nothing on the 29 days before (the tokens are all created today).
async fn expect_sparkline(browser: &Browser, row: &str, today_requests: i64) {
    let bars = eventually(|| async {
        sparkline(browser, row).await.ok_or_else(|| format!("the sparkline of {row} was never drawn"))
    })
    .await;
    let today = tokengate::clock::utc_day(Clock::System.now());
    let days: Vec<String> = (today - 29..=today).map(tokengate::clock::day_to_date).collect();
    let shown: Vec<(String, i64)> = bars.iter().map(|(day, requests, _)| (day.clone(), *requests)).collect();
    let expected: Vec<(String, i64)> =
        days.iter().map(|day| (day.clone(), if *day == days[29] { today_requests } else { 0 })).collect();
    assert_eq!(shown, expected, "{row}: one bar per UTC day, the last one today");
    // A day with requests stands out above the empty days' baseline.
    let today_height = bars[29].2;
    for (day, _, height) in &bars[..29] {
        if today_requests > 0 {
            assert!(today_height > *height, "{row}: today's bar ({today_height}) is not above {day}'s ({height})");
        } else {
            assert_eq!(today_height, *height, "{row}: an idle token's bars are all the same baseline");
        }
    }
}

/// The cells of the usage dialog's table part (`thead`, `tbody` or `tfoot`), row by row.
async fn usage_table(browser: &Browser, part: &str) -> Vec<Vec<String>> {
    let script = "return [...document.querySelectorAll('#usage-table ' + arguments[0] + ' tr')]
        .map(tr => [...tr.cells].map(cell => cell.textContent))";
    let cells = browser.client.execute(script, vec![serde_json::json!(part)]).await.unwrap();
    serde_json::from_value(cells).unwrap()
}

fn cells(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn token_rows_show_30_days_of_usage_and_open_it_by_day_and_route_in_the_browser() {
    // Usage counts kept 30 days: the dialog's 90-day view is refused, and says why.
    let gw = TestGateway::spawn_with("", &[("TOKENGATE_USAGE__KEEP_DAYS", "30")], Clock::System).await;
    create_account(&gw, ROOT, true).await;
    create_account(&gw, BOB, false).await;
    let (_, root) = gw.token(ROOT, "admin", &["*"]).await;
    let (_, busy) = gw.token(ROOT, "busy", &["read"]).await;
    gw.token(ROOT, "idle", &["read"]).await;
    // Route `/`: 3 answered GETs, and a POST refused for lack of the write scope; route
    // `/dead`: a GET the gateway answers 502 for.
    for _ in 0..3 {
        assert_eq!(proxied_get(&gw, ROOT, &busy).await, StatusCode::OK);
    }
    assert_eq!(proxied(&gw, reqwest::Method::POST, ROOT, &busy).await, StatusCode::FORBIDDEN);
    let dead = client().get(gw.url("/dead/x")).basic_auth(ROOT, Some(&busy)).send().await.unwrap();
    assert_eq!(dead.status(), StatusCode::BAD_GATEWAY);
    // More used tokens than the screen holds rows, once each.
    for i in 0..40 {
        let (_, secret) = gw.token(BOB, &format!("script-{i:02}"), &["read"]).await;
        assert_eq!(proxied_get(&gw, BOB, &secret).await, StatusCode::OK);
    }
    let today = tokengate::clock::day_to_date(tokengate::clock::utc_day(Clock::System.now()));

    let Some(browser) = Browser::start().await else { return };
    browser.goto(&admin_url(&gw, "/")).await;
    // Whatever the page's Content-Security-Policy refuses is recorded: the bars must be drawn
    // without inline styles.
    browser
        .script(
            "window.cspViolations = []; document.addEventListener('securitypolicyviolation', \
             e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));",
        )
        .await;
    browser.fill("#sign-in-email", ROOT).await;
    browser.fill("#sign-in-token", &root).await;
    browser.click("#sign-in-submit").await;
    browser.visible("#panel-tokens").await;

    // API Tokens: the row's total counts every outcome, once the gateway flushed its counts.
    let busy_row = "#tokens-table tr[data-token-name='busy']";
    eventually(|| async {
        browser.click("#tab-tokens").await;
        let total = browser.text(&format!("{busy_row} .usage-total")).await;
        if total == "5" { Ok(()) } else { Err(format!("busy's total shows {total:?}, never 5")) }
    })
    .await;
    expect_sparkline(&browser, busy_row, 5).await;
    let button = browser.visible(&format!("{busy_row} button[data-action='usage']")).await;
    let label = button.attr("aria-label").await.unwrap().unwrap_or_default();
    assert!(label.starts_with("5 requests in 30 days"), "{label}");
    let idle_row = "#tokens-table tr[data-token-name='idle']";
    assert_eq!(browser.text(&format!("{idle_row} .usage-total")).await, "0");
    expect_sparkline(&browser, idle_row, 0).await;
    browser.screenshot("usage-sparklines").await;

    // The usage dialog: one line per day and route, each outcome in its column.
    browser.click(&format!("{busy_row} button[data-action='usage']")).await;
    browser.visible("#usage-dialog").await;
    browser.text_containing("#usage-summary", "5 requests in the last 30 days").await;
    assert_eq!(
        usage_table(&browser, "thead").await,
        [cells(&["Day (UTC)", "Route", "2xx", "3xx", "4xx", "5xx", "forbidden", "limited", "refused", "Total"])]
    );
    let lines = [
        cells(&[&today, "/", "3", "", "", "", "1", "", "", "4"]),
        cells(&[&today, "/dead", "", "", "", "1", "", "", "", "1"]),
    ];
    assert_eq!(usage_table(&browser, "tbody").await, lines);
    assert_eq!(usage_table(&browser, "tfoot").await, [cells(&["Total", "3", "", "", "1", "1", "", "", "5"])]);
    browser.gone("#usage-empty").await;
    browser.screenshot("usage-dialog").await;
    // Another period: the same requests, all of them today.
    browser.visible("#usage-days").await.select_by_value("7").await.unwrap();
    browser.text_containing("#usage-summary", "5 requests in the last 7 days").await;
    assert_eq!(usage_table(&browser, "tbody").await, lines);
    // Longer than usage.keep_days: the API's refusal, shown like the page's other errors.
    browser.visible("#usage-days").await.select_by_value("90").await.unwrap();
    browser.text_containing("#usage-error", "usage.keep_days").await;
    browser.gone("#usage-details").await;
    assert!(usage_table(&browser, "tbody").await.is_empty());
    browser.click("#usage-close").await;
    browser.gone("#usage-dialog").await;

    // A token without requests: the dialog says so instead of showing an empty table.
    browser.click(&format!("{idle_row} button[data-action='usage']")).await;
    browser.text_containing("#usage-empty", "No requests in the last 30 days").await;
    browser.gone("#usage-details").await;
    browser.gone("#usage-error").await;
    browser.click("#usage-close").await;
    browser.gone("#usage-dialog").await;

    // Token Manager: every account's tokens; daily counts are loaded only for rows near the
    // screen, not for the whole table.
    browser.click("#tab-manager").await;
    browser.text_containing("#manager-count", "43 tokens").await;
    let manager_busy = "#manager-table tr[data-token-name='busy']";
    let oldest_script = "#manager-table tr[data-token-name='script-00']";
    let loaded = eventually(|| async {
        // The sparklines of the rows on screen, and which of bob's tokens had their usage asked.
        let state = browser
            .script(
                "const sparks = [...document.querySelectorAll('#manager-table svg.spark')];
                 const onScreen = sparks.filter(s => s.getBoundingClientRect().top < innerHeight);
                 const bobs = new Set([...document.querySelectorAll('#manager-table tbody tr')]
                     .filter(tr => tr.dataset.tokenName.startsWith('script-')).map(tr => tr.dataset.tokenId));
                 const asked = new Set(performance.getEntriesByType('resource')
                     .map(e => (e.name.match(/\\/tokens\\/(\\d+)\\/usage\\?/) || [])[1]).filter(id => bobs.has(id)));
                 return [onScreen.map(s => s.dataset.state), asked.size];",
            )
            .await;
        let (on_screen, asked): (Vec<String>, u64) = serde_json::from_value(state).unwrap();
        if !on_screen.is_empty() && on_screen.iter().all(|s| s == "ready") && asked > 0 {
            Ok(asked)
        } else {
            Err(format!("the rows on screen never all got their bars: {on_screen:?}, {asked} of bob's asked"))
        }
    })
    .await;
    assert!(loaded < 40, "the usage of {loaded} of bob's 40 tokens was asked: rows far off screen too");
    assert!(sparkline(&browser, oldest_script).await.is_none(), "script-00 is off screen, not loaded");
    browser.screenshot("usage-token-manager").await;
    // Scrolled into view, the bottom rows get theirs.
    browser
        .client
        .execute("document.querySelector(arguments[0]).scrollIntoView()", vec![serde_json::json!(manager_busy)])
        .await
        .unwrap();
    expect_sparkline(&browser, manager_busy, 5).await;
    expect_sparkline(&browser, oldest_script, 1).await;
    assert_eq!(browser.text(&format!("{manager_busy} .usage-total")).await, "5");

    assert_eq!(browser.script("return window.cspViolations").await, serde_json::json!([]));
    browser.close().await;
}

/// Whether the page scrolls sideways, and the header's parts that overlap or leave the window:
/// `[scrollWidth, innerWidth, [overlapping pairs], [parts outside], [elements sticking out]]`.
async fn narrow_layout(browser: &Browser) -> serde_json::Value {
    browser
        .script(
            "const parts = ['.brand', '#whoami > span', '#sign-out']
                 .map(css => [css, document.querySelector(css)])
                 .filter(([, node]) => node.getClientRects().length > 0)
                 .map(([css, node]) => [css, node.getBoundingClientRect()]);
             const overlaps = [];
             for (let i = 0; i < parts.length; i += 1) {
               for (let j = i + 1; j < parts.length; j += 1) {
                 const [a, b] = [parts[i][1], parts[j][1]];
                 // Closer than 4 px counts as touching: text that runs into the next part's
                 // text ('tokengateroot@example.com') reads as one.
                 const m = 4;
                 if (a.left - m < b.right && b.left - m < a.right && a.top - m < b.bottom && b.top - m < a.bottom) {
                   overlaps.push(parts[i][0] + ' / ' + parts[j][0]);
                 }
               }
             }
             const outside = parts.filter(([, r]) => r.left < 0 || r.right > innerWidth).map(([css]) => css);
             // What sticks out: the outermost elements reaching past the window's right edge.
             const wide = [...document.querySelectorAll('body *')]
                 .filter(n => n.getClientRects().length > 0 && n.getBoundingClientRect().right > innerWidth + 0.5)
                 .filter(n => !n.parentElement.closest('.table-wrap, dialog:not([open])'))
                 .filter(n => !(n.parentElement.getBoundingClientRect().right > innerWidth + 0.5))
                 .map(n => n.tagName.toLowerCase() + (n.id ? '#' + n.id : '') + (n.className ? '.' + n.className : ''));
             return [document.documentElement.scrollWidth, innerWidth, overlaps, outside, wide];",
        )
        .await
}

/// Checks that the page does not scroll sideways and that the header's parts neither overlap,
/// touch, nor leave the window; `what` names the view in the failure.
async fn expect_narrow_layout(browser: &Browser, what: &str) {
    let layout = narrow_layout(browser).await;
    let (scroll_width, inner_width, overlaps, outside, wide): (f64, f64, Vec<String>, Vec<String>, Vec<String>) =
        serde_json::from_value(layout).unwrap();
    assert!(inner_width <= 420.0, "{what}: the window is {inner_width} px wide, not 420");
    assert!(
        scroll_width <= inner_width,
        "{what}: the page is {scroll_width} px wide in a {inner_width} px window; sticking out: {wide:?}"
    );
    assert!(overlaps.is_empty(), "{what}: header parts overlap or touch: {overlaps:?}");
    assert!(outside.is_empty(), "{what}: header parts outside the window: {outside:?}");
}

#[tokio::test]
async fn the_page_holds_at_420_px_wide_in_the_browser() {
    let gw = TestGateway::spawn().await;
    create_account(&gw, ROOT, true).await;
    create_account(&gw, BOB, false).await;
    let (_, root) = gw.token(ROOT, "admin", &["*"]).await;
    gw.token(BOB, "a token with a rather long name for a narrow screen", &[]).await;
    let Some(browser) = Browser::start().await else { return };
    browser.client.set_window_size(420, 900).await.unwrap();
    browser.goto(&admin_url(&gw, "/")).await;
    browser.visible("#sign-in-form").await;
    expect_narrow_layout(&browser, "sign-in").await;
    browser.screenshot("narrow-sign-in").await;

    sign_in(&browser, &gw, ROOT, &root).await;
    browser.text_containing("#whoami-roles", "superuser").await;
    expect_names(&browser, "#tokens-table", &["admin"]).await;
    expect_narrow_layout(&browser, "API Tokens").await;
    browser.screenshot("narrow-api-tokens").await;
    browser.click("#tab-manager").await;
    browser.text_containing("#manager-count", "2 tokens").await;
    expect_narrow_layout(&browser, "Token Manager").await;
    browser.screenshot("narrow-token-manager").await;
    // A date filter's error takes its own line within the range, not the page's width.
    type_date(&browser, "#filter-expires-to", "2026-02-30").await;
    browser.click("#filter-apply").await;
    browser.text_containing("#filter-expires-to-error", "February 2026 has 28 days").await;
    expect_narrow_layout(&browser, "Token Manager with a date error").await;
    browser.screenshot("narrow-token-manager-date-error").await;
    browser.click("#filter-reset").await;
    browser.gone("#filter-expires-to-error").await;
    // A table wider than the window scrolls inside its own box, not the page.
    let table = browser
        .script(
            "const wrap = document.querySelector('#manager-table').closest('.table-wrap');
             return [getComputedStyle(wrap).overflowX, wrap.scrollWidth > wrap.clientWidth];",
        )
        .await;
    assert_eq!(table, serde_json::json!(["auto", true]));
    browser.click("#tab-accounts").await;
    browser.visible("#accounts-table tr[data-email='bob@example.com']").await;
    expect_narrow_layout(&browser, "Accounts").await;
    browser.screenshot("narrow-accounts").await;

    // A new token in a box narrower than it: the box shows its beginning, tg_….
    browser.click("#tab-tokens").await;
    browser.click("#create-token").await;
    browser.fill("#create-name", "phone").await;
    browser.click("#create-submit").await;
    browser.visible("#secret-dialog").await;
    let secret_box = browser
        .script(
            "const input = document.getElementById('secret-value');
             return [input.scrollWidth > input.clientWidth, input.scrollLeft];",
        )
        .await;
    assert_eq!(secret_box, serde_json::json!([true, 0]), "the secret box is scrolled to the token's end");
    browser.screenshot("narrow-secret").await;
    take_secret(&browser, None).await;
    expect_narrow_layout(&browser, "after creating a token").await;
    browser.close().await;
}
