//! The store's contract, run against both backends: SQLite (always) and PostgreSQL (when a
//! server answers). The same assertions on both keep the one logical schema honest.

use std::time::Duration;

use tokengate::clock::Clock;
use tokengate::config::{Config, SecretUrl};
use tokengate::control::service::{
    Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService, ServiceError, TokenQuery,
};
use tokengate::control::store::{
    AccountChanges, ActivityBatch, StatusFilter, Store, TokenFilter, TokenSort, TokenStatus, UsageRecord,
};

use crate::postgres::TestDatabase;

const START: i64 = 1_800_000_000;

fn service(store: Store, clock: &Clock) -> LifecycleService {
    let mut policy = Config::load(None, Vec::new()).unwrap().tokens;
    policy.allow_never_expires = true;
    LifecycleService::new(store, policy, clock.clone(), None)
}

async fn account(service: &LifecycleService, email: &str) {
    let request = CreateAccount { email: email.into(), can_create_tokens: true, ..CreateAccount::default() };
    service.create_account(request, &Actor::cli()).await.unwrap();
}

async fn token(
    service: &LifecycleService,
    email: &str,
    name: &str,
    expiry: ExpiryRequest,
) -> Result<i64, ServiceError> {
    let request = CreateToken {
        owner_email: email.into(),
        name: name.into(),
        description: Some(format!("{name} description")),
        expiry,
        scopes: vec![],
        rate_limit: None,
    };
    service.create_token(request, &Actor::cli()).await.map(|created| created.token.id.0)
}

fn names(tokens: &[tokengate::control::store::TokenRecord]) -> Vec<&str> {
    tokens.iter().map(|t| t.name.as_str()).collect()
}

/// Everything the store promises, on whichever backend `url` names.
async fn exercise(url: &str) {
    let store = Store::open(&SecretUrl::new(url)).await.unwrap();
    let clock = Clock::manual(START);
    let svc = service(store.clone(), &clock);
    let actor = Actor::cli();

    // Accounts: unique without regard to case.
    account(&svc, "Ann@Example.com").await;
    account(&svc, "bob@example.com").await;
    let duplicate = svc.create_account(CreateAccount { email: "ann@example.COM".into(), ..Default::default() }, &actor);
    assert!(matches!(duplicate.await, Err(ServiceError::Conflict(_))));
    assert_eq!(svc.account("ANN@example.com").await.unwrap().email, "Ann@Example.com");

    // Names are unique among live tokens only.
    let ci = token(&svc, "ann@example.com", "ci", ExpiryRequest::Default).await.unwrap();
    assert!(matches!(
        token(&svc, "ann@example.com", "ci", ExpiryRequest::Default).await,
        Err(ServiceError::Conflict(_))
    ));
    token(&svc, "bob@example.com", "ci", ExpiryRequest::Default).await.unwrap();
    let short = token(&svc, "ann@example.com", "short", ExpiryRequest::In(Duration::from_secs(60))).await.unwrap();
    token(&svc, "ann@example.com", "50% off_sale", ExpiryRequest::Never).await.unwrap();
    clock.advance(120);
    let short_again = token(&svc, "ann@example.com", "short", ExpiryRequest::Default).await.unwrap();
    assert_ne!(short, short_again, "an expired token gives up its name");
    let revoked = svc.revoke_token(ci, &actor).await.unwrap();
    assert!(!revoked.already);
    assert_eq!(revoked.token.revoke_reason.as_deref(), Some("manual"));
    assert!(svc.revoke_token(ci, &actor).await.unwrap().already, "revoking twice changes nothing");
    token(&svc, "ann@example.com", "ci", ExpiryRequest::Default).await.unwrap();

    // Listings: statuses, owners, text, sorting.
    let host = tokengate::control::service::Actor::cli();
    let list = |filter: TokenFilter, users: Vec<&str>| {
        let query = TokenQuery { users: users.into_iter().map(str::to_owned).collect(), unused_for: None, filter };
        svc.list_tokens(query, &host)
    };
    let live = list(TokenFilter::default(), vec!["ann@example.com"]).await.unwrap();
    assert_eq!(live.len(), 3, "{:?}", names(&live));
    let expired = list(TokenFilter { status: StatusFilter::Expired, ..Default::default() }, vec![]).await.unwrap();
    assert_eq!(names(&expired), ["short"]);
    assert_eq!(expired[0].status(clock.now()), TokenStatus::Expired);
    let revoked_list = list(TokenFilter { status: StatusFilter::Revoked, ..Default::default() }, vec![]).await.unwrap();
    assert_eq!(revoked_list.iter().map(|t| t.id).collect::<Vec<_>>(), [ci]);
    let all = list(TokenFilter { status: StatusFilter::All, ..Default::default() }, vec![]).await.unwrap();
    assert_eq!(all.len(), 6);
    let search = |text: &str| list(TokenFilter { search: Some(text.into()), ..Default::default() }, vec![]);
    assert_eq!(names(&search("50%").await.unwrap()), ["50% off_sale"]);
    assert_eq!(names(&search("OFF_").await.unwrap()), ["50% off_sale"]);
    assert!(search("0%_o").await.unwrap().is_empty(), "% and _ are literal, not wildcards");
    assert_eq!(search("DESCRIPTION").await.unwrap().len(), 4, "descriptions are searched too (live tokens)");
    let sorted = list(TokenFilter { sort: "name".parse::<TokenSort>().unwrap(), ..Default::default() }, vec![]);
    assert_eq!(names(&sorted.await.unwrap()), ["50% off_sale", "ci", "ci", "short"]);

    // Blocking shows in the status and is undone by restoring the permission.
    let block = AccountChanges { can_create_tokens: Some(false), ..Default::default() };
    svc.update_account("bob@example.com", block, &actor).await.unwrap();
    let blocked = list(TokenFilter { status: StatusFilter::Blocked, ..Default::default() }, vec![]).await.unwrap();
    assert_eq!(blocked.iter().map(|t| t.user_email.as_str()).collect::<Vec<_>>(), ["bob@example.com"]);
    assert!(matches!(
        token(&svc, "bob@example.com", "new", ExpiryRequest::Default).await,
        Err(ServiceError::Forbidden(_))
    ));
    let restore = AccountChanges { can_create_tokens: Some(true), ..Default::default() };
    svc.update_account("bob@example.com", restore, &actor).await.unwrap();
    let active = list(TokenFilter { status: StatusFilter::Active, ..Default::default() }, vec!["bob@example.com"]);
    assert_eq!(active.await.unwrap().len(), 1);

    // Last use: the newest record wins, whichever writer comes last.
    let use_at = |at: i64, path: &str| UsageRecord {
        token_id: short_again,
        at,
        method: "GET".into(),
        path: path.into(),
        ip: "192.0.2.1".into(),
    };
    let uses = |record| ActivityBatch { uses: vec![record], ..ActivityBatch::default() };
    store.record_activity(&uses(use_at(START + 500, "/new"))).await.unwrap();
    store.record_activity(&uses(use_at(START + 400, "/old"))).await.unwrap();
    let used = svc.token(short_again).await.unwrap();
    assert_eq!((used.last_used_at, used.last_used_path.as_deref()), (Some(START + 500), Some("/new")));
    let never = list(TokenFilter { never_used: true, ..Default::default() }, vec!["ann@example.com"]).await.unwrap();
    assert!(!never.iter().any(|t| t.id == short_again));

    // Every time range. Tokens so far: created at START (ci, short, 50%, ci/bob) and START+120.
    let ids = |tokens: Vec<tokengate::control::store::TokenRecord>| tokens.iter().map(|t| t.id.0).collect::<Vec<_>>();
    let all_status = TokenFilter { status: StatusFilter::All, ..Default::default() };
    let created_late = TokenFilter { created_after: Some(START + 60), ..all_status.clone() };
    let late = ids(list(created_late, vec![]).await.unwrap());
    assert!(late.contains(&short_again) && !late.contains(&short), "{late:?}");
    let created_early = TokenFilter { created_before: Some(START + 60), ..all_status.clone() };
    assert!(!ids(list(created_early, vec![]).await.unwrap()).contains(&short_again));
    let used_late = TokenFilter { used_after: Some(START + 450), ..all_status.clone() };
    assert_eq!(ids(list(used_late, vec![]).await.unwrap()), [short_again]);
    let used_early = TokenFilter { used_before: Some(START + 450), ..all_status.clone() };
    assert!(ids(list(used_early, vec![]).await.unwrap()).is_empty());
    let expiring = TokenFilter { expires_before: Some(START + 3600), ..all_status.clone() };
    assert_eq!(ids(list(expiring, vec![]).await.unwrap()), [short], "only the one-minute token");
    let lasting = TokenFilter { expires_after: Some(START + 3600), ..all_status.clone() };
    assert!(!ids(list(lasting, vec![]).await.unwrap()).contains(&short));
    // Unused for a while: never used and created before, or last used before.
    clock.advance(1000);
    let unused = TokenQuery {
        users: vec!["ann@example.com".into()],
        unused_for: Some(Duration::from_secs(600)),
        filter: TokenFilter::default(),
    };
    let unused = ids(svc.list_tokens(unused, &tokengate::control::service::Actor::cli()).await.unwrap());
    assert!(unused.contains(&short_again), "last used 620 s ago: {unused:?}");
    let recently = TokenQuery {
        users: vec!["ann@example.com".into()],
        unused_for: Some(Duration::from_secs(700)),
        filter: TokenFilter::default(),
    };
    assert!(
        !ids(svc.list_tokens(recently, &tokengate::control::service::Actor::cli()).await.unwrap())
            .contains(&short_again)
    );

    // Revoke-all, audit events and the change log.
    assert_eq!(svc.revoke_all_tokens("ann@example.com", &actor).await.unwrap().value, 3);
    assert!(list(TokenFilter::default(), vec!["ann@example.com"]).await.unwrap().is_empty());
    let events = svc.events(Some("ann@example.com"), None, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "token.revoked").count(), 4, "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"account.created"), "newest first");
    let all_revoked = events.iter().find(|e| e.detail.contains("revoke_all")).unwrap();
    assert!(all_revoked.detail.contains("\"name\"") && all_revoked.detail.contains("tg_"), "{}", all_revoked.detail);
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));
    let token_events = svc.events(None, Some(ci), 100).await.unwrap();
    assert_eq!(token_events.len(), 2, "created and revoked, not the no-op second revocation");
    let changes = store.changes_after(0, 1000).await.unwrap();
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.latest_change_seq().await.unwrap(), changes.last().unwrap().seq);
    let scanned = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&scanned);
    let count = move |_: tokengate::control::store::IndexTokenRef<'_>| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let _ = store.scan_index_tokens(count).await.unwrap();
    assert_eq!(scanned.load(std::sync::atomic::Ordering::Relaxed), 6);

    // Several tokens' uses in one batch (one statement): each row gets its own, the older one
    // still loses.
    let both = ActivityBatch {
        uses: vec![use_at(START + 450, "/older"), UsageRecord { token_id: short, ..use_at(START + 600, "/short") }],
        ..ActivityBatch::default()
    };
    store.record_activity(&both).await.unwrap();
    assert_eq!(svc.token(short_again).await.unwrap().last_used_path.as_deref(), Some("/new"));
    assert_eq!(svc.token(short).await.unwrap().last_used_path.as_deref(), Some("/short"));
    store.close().await;
}

#[tokio::test]
async fn the_store_contract_holds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    exercise(&format!("sqlite://{}/t.db", dir.path().display())).await;
}

#[tokio::test]
async fn the_store_contract_holds_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    exercise(&db.url).await;
}

/// The full load on both of its paths — a SQLite file read directly, PostgreSQL through the pool
/// — skips a row whose digest could never match (as it always did) and gives a rotation's
/// successor its predecessor's digest, which the hand-over finds the predecessor by.
async fn full_load_skips_malformed_digests_and_carries_predecessors(url: &str) {
    use sqlx::Connection;
    use tokengate::model::secret::TokenDigest;
    let store = Store::open(&SecretUrl::new(url)).await.unwrap();
    let insert = "INSERT INTO tokens (id, account_id, name, digest, prefix, scopes, created_at, created_by, \
                  handover_from) VALUES ($1, 1, $2, $3, 'tg_x', 'read', 0, 'test', $4)";
    let rows: [(i64, &str, Vec<u8>, Option<i64>); 3] = [
        (1, "old", TokenDigest::of("old").as_bytes().to_vec(), None),
        (2, "short", b"not a digest".to_vec(), None),
        (3, "new", TokenDigest::of("new").as_bytes().to_vec(), Some(1)),
    ];
    let account = "INSERT INTO accounts (id, email, email_norm, created_at, updated_at) \
                   VALUES (1, 'a@example.com', 'a@example.com', 0, 0)";
    macro_rules! fill {
        ($db:expr) => {{
            let mut db = $db;
            sqlx::query(account).execute(&mut db).await.unwrap();
            for (id, name, digest, handover_from) in rows {
                sqlx::query(insert)
                    .bind(id)
                    .bind(name)
                    .bind(digest)
                    .bind(handover_from)
                    .execute(&mut db)
                    .await
                    .unwrap();
            }
        }};
    }
    if url.starts_with("sqlite:") {
        fill!(sqlx::SqliteConnection::connect(url).await.unwrap());
    } else {
        fill!(sqlx::PgConnection::connect(url).await.unwrap());
    }
    let sync = tokengate::control::sync::IndexSync::load(store.clone()).await.unwrap();
    assert_eq!(sync.index().token_count(), 2, "the malformed digest is skipped");
    let new = sync.index().token(&TokenDigest::of("new")).unwrap();
    let predecessor = new.handover_from().unwrap();
    assert_eq!((predecessor.id, predecessor.digest), (1, Some(TokenDigest::of("old"))));
    assert!(sync.index().token(&TokenDigest::of("old")).unwrap().handover_from().is_none());
    store.close().await;
}

#[tokio::test]
async fn the_full_load_skips_malformed_digests_and_carries_predecessors_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    full_load_skips_malformed_digests_and_carries_predecessors(&format!("sqlite://{}/t.db", dir.path().display()))
        .await;
}

#[tokio::test]
async fn the_full_load_skips_malformed_digests_and_carries_predecessors_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    full_load_skips_malformed_digests_and_carries_predecessors(&db.url).await;
}

#[tokio::test]
async fn migrations_are_reported_before_they_are_applied() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = Store::connect(&SecretUrl::new(&db.url)).await.unwrap();
    let status = store.migration_status().await.unwrap();
    assert!(status.applied.is_empty() && !status.pending.is_empty());
    store.migrate().await.unwrap();
    let status = store.migration_status().await.unwrap();
    assert!(status.pending.is_empty() && !status.applied.is_empty());
    store.close().await;
}
