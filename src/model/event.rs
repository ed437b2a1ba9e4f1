//! The audit log's vocabulary: the kinds of events, which of them tell the token's owner, and
//! an event as written and as read.

use crate::clock::UnixTime;

/// What happened. Stored as its text (`token.revoked`); the one list of kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `account.created`.
    AccountCreated,
    /// `account.updated`: a flag changed; the detail lists the changed flags.
    AccountUpdated,
    /// `token.created`: minted, also as a rotation's successor.
    TokenCreated,
    /// `token.revoked`, with the reason in the detail.
    TokenRevoked,
    /// `token.rotated`: a successor was minted; the old token's end is in the detail.
    TokenRotated,
    /// `token.limit_changed`: the token's own rate limit, from and to.
    TokenLimitChanged,
    /// The owner's account was disabled or lost the token permission.
    TokenBlocked,
    /// The owner's account was enabled again or got the token permission back.
    TokenUnblocked,
    /// A revoked, expired or blocked token was presented (at most one per token a minute).
    TokenRefusedUse,
    /// `token cap-expiry` gave the token an earlier expiry (today's `tokens.max_lifetime`); the
    /// detail has the old and the new one.
    TokenExpiryCapped,
    /// A notice could not be delivered through a channel.
    NotificationFailed,
}

impl EventKind {
    /// The stored text, also the `kind` filter's and the webhook's.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AccountCreated => "account.created",
            EventKind::AccountUpdated => "account.updated",
            EventKind::TokenCreated => "token.created",
            EventKind::TokenRevoked => "token.revoked",
            EventKind::TokenRotated => "token.rotated",
            EventKind::TokenLimitChanged => "token.limit_changed",
            EventKind::TokenBlocked => "token.blocked",
            EventKind::TokenUnblocked => "token.unblocked",
            EventKind::TokenRefusedUse => "token.refused_use",
            EventKind::TokenExpiryCapped => "token.expiry_capped",
            EventKind::NotificationFailed => "notification.failed",
        }
    }

    /// Whether the token's owner is told with each event (through the notification outbox): the
    /// one place that decides. Creations, revocations, rotations and a shortened expiry are what
    /// an owner must know of, wherever they came from; the rest is for the audit log.
    /// `token.refused_use` is not notified with its event (one a minute): the flush of refused
    /// uses queues its own notice, at most one per token an hour ([`REFUSED_USE_NOTICE_EVERY`]).
    pub fn notifies_owner(self) -> bool {
        matches!(
            self,
            EventKind::TokenCreated | EventKind::TokenRevoked | EventKind::TokenRotated | EventKind::TokenExpiryCapped
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most one `token.refused_use` event per token in this many seconds: the audit log shows
/// who still holds a dead token, not every attempt (the token's `refused_count` counts them all).
pub const REFUSED_USE_EVENT_EVERY: i64 = 60;

/// At most one `token.refused_use` notice to the owner per token in this many seconds: the first
/// refused use tells the owner that a client still holds a dead token; repeating it with every
/// attempt of a script that retries forever would bury the owner's mailbox.
pub const REFUSED_USE_NOTICE_EVERY: i64 = 3600;

/// An audit event to append with a mutation. The store fills in the account and token.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// An email, `cli:<os user>`, `system:inactivity` or `gateway`.
    pub actor: String,
    /// The client IP of the request that caused it (`None` for the CLI and the gateway itself).
    pub ip: Option<String>,
    /// The user agent of that request (`cli` for the CLI).
    pub user_agent: Option<String>,
    /// A JSON object of what is particular to the kind (name, prefix, reason, changed flags, ...).
    pub detail: serde_json::Value,
    /// Also tell the account's owner (through the notification outbox): the kind's rule, unless
    /// [`NewEvent::without_notice`] says another event of the same change tells it already.
    pub notify: bool,
}

impl NewEvent {
    /// An event, notified to the owner when its kind is.
    pub fn new(
        kind: EventKind,
        actor: String,
        ip: Option<String>,
        user_agent: Option<String>,
        detail: serde_json::Value,
    ) -> Self {
        NewEvent { kind, actor, ip, user_agent, detail, notify: kind.notifies_owner() }
    }

    /// The same event, with no notice of its own: one change tells the owner once (a
    /// rotation's `token.rotated` notice covers its successor's `token.created`).
    pub fn without_notice(self) -> Self {
        NewEvent { notify: false, ..self }
    }

    /// The same change recorded under another kind (a block on each of an account's tokens).
    pub fn with_kind(&self, kind: EventKind) -> Self {
        NewEvent { kind, notify: kind.notifies_owner(), ..self.clone() }
    }
}

/// An event as the audit log holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRecord {
    /// The event's id; newer events have larger ids (listings order by it).
    pub id: i64,
    /// When it happened.
    pub at: UnixTime,
    /// The kind's text: older databases may hold kinds this version does not know.
    pub kind: String,
    /// Who acted: an email, `cli:<os user>`, `system:inactivity` or `gateway`.
    pub actor: String,
    /// The email of the account it is about, as it was written then.
    pub account: Option<String>,
    /// The token it is about.
    pub token_id: Option<i64>,
    /// The client IP of the request that caused it.
    pub ip: Option<String>,
    /// The user agent of that request.
    pub user_agent: Option<String>,
    /// JSON object text.
    pub detail: String,
}
