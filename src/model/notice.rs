//! What a notice to a token's owner says, stored with it in the outbox so that it is sent as it
//! was when the action happened. One type for every writer (audited actions, expiry reminders,
//! inactivity warnings, refused uses of dead tokens) and for the senders that render it.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// A notice: what happened to which token, when, by whom and from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// `token.created`, `token.revoked`, `token.rotated`, `token.expiring`,
    /// `token.inactivity_warning`, `token.expiry_capped`, `token.refused_use`.
    pub kind: String,
    /// When the action happened.
    pub at: UnixTime,
    /// Who acted, named as the audit log names actors.
    #[serde(default)]
    pub actor: Option<String>,
    /// The client IP of the request that acted.
    #[serde(default)]
    pub ip: Option<String>,
    /// The user agent of that request.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The token and the particulars of what happened.
    #[serde(default)]
    pub detail: NoticeDetail,
}

/// The token and the particulars a notice shows; anything else its event said is kept in
/// `more`, so a webhook receives the whole event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoticeDetail {
    /// The token's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The token's display prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Why a token was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the token expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When a token stops working (a rotation's old token, an inactivity revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Since when the token is unused (an inactivity warning or revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unused_since: Option<String>,
    /// Whatever else the event said (`successor_prefix`, `from`, `to`, ...): the webhook gets it
    /// all.
    #[serde(flatten)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

impl Notice {
    /// The notice of an audited event (its detail becomes the notice's).
    pub fn of_event(event: &super::NewEvent, at: UnixTime) -> Notice {
        Notice {
            kind: event.kind.as_str().to_owned(),
            at,
            actor: Some(event.actor.clone()),
            ip: event.ip.clone(),
            user_agent: event.user_agent.clone(),
            detail: serde_json::from_value(event.detail.clone()).unwrap_or_default(),
        }
    }

    /// A notice the gateway sends of its own accord (reminders and warnings).
    pub fn from_gateway(kind: &str, at: UnixTime, detail: NoticeDetail) -> Notice {
        Notice { kind: kind.to_owned(), at, actor: Some("gateway".to_owned()), ip: None, user_agent: None, detail }
    }

    /// Reads a stored notice; an unreadable one still renders, with what it has.
    pub fn parse(text: &str) -> Notice {
        serde_json::from_str(text).unwrap_or_else(|_| Notice {
            kind: String::new(),
            at: 0,
            actor: None,
            ip: None,
            user_agent: None,
            detail: NoticeDetail::default(),
        })
    }

    /// The stored form, as the outbox holds it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_keeps_what_its_event_said() {
        let event = super::super::NewEvent::new(
            super::super::EventKind::TokenRevoked,
            "ann@example.com".into(),
            Some("203.0.113.9".into()),
            None,
            serde_json::json!({"name": "ci", "prefix": "tg_abc", "reason": "manual", "scopes": ["read"]}),
        );
        let notice = Notice::of_event(&event, 1_800_000_000);
        let text = notice.to_json();
        let back = Notice::parse(&text);
        assert_eq!(back, notice);
        assert_eq!((back.detail.name.as_deref(), back.detail.reason.as_deref()), (Some("ci"), Some("manual")));
        assert_eq!(back.detail.more["scopes"], serde_json::json!(["read"]), "the rest of the event is kept");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["detail"]["prefix"], "tg_abc");
        assert_eq!(value["actor"], "ann@example.com");
    }
}
