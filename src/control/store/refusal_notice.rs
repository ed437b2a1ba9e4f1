//! The owner's notice of a refused use: the first attempt with a dead (revoked, expired or
//! blocked) token tells its owner that some client still holds it — at most once per token an
//! hour, whichever gateway saw the attempt.
//!
//! The hour is kept on the token (`refused_notified_at`) and claimed with one conditional
//! `UPDATE` inside the flush's write transaction: writers take turns on both backends (see
//! `BeginWrite`), and the condition is checked against the committed row, so two gateways
//! flushing attempts with the same token queue one notice between them.

use serde_json::json;

use super::RefusalRecord;
use crate::clock::UnixTime;
use crate::model::{EventKind, Notice, NoticeDetail};

/// The notice of `refusal`, a refused use of the token `name` (`prefix`), which has been refused
/// `refused_count` times in all: what was presented where, from where, and why it failed.
pub(super) fn refused_use_notice(refusal: &RefusalRecord, name: String, prefix: String, refused_count: i64) -> Notice {
    let more = json!({
        "method": refusal.method,
        "path": refusal.path,
        "attempts": refusal.count,
        "refused_count": refused_count,
    });
    let detail = NoticeDetail {
        name: Some(name),
        prefix: Some(prefix),
        reason: Some(refusal.reason.to_owned()),
        more: more.as_object().cloned().unwrap_or_default(),
        ..NoticeDetail::default()
    };
    Notice {
        ip: Some(refusal.ip.clone()),
        user_agent: refusal.user_agent.clone(),
        ..Notice::from_gateway(EventKind::TokenRefusedUse.as_str(), refusal.at, detail)
    }
}

/// Before this time, a notice already queued for the token still counts: the claim's bound.
pub(super) fn notice_quiet_since(at: UnixTime) -> UnixTime {
    at - crate::model::event::REFUSED_USE_NOTICE_EVERY
}

/// Inside the transaction `$tx`: queues the owner's notice of the refused use `$refusal` unless
/// one was queued for the token within the hour. Evaluates to `Result<bool, sqlx::Error>`:
/// whether a notice was queued. Runs after the token's refusal counters were updated, so the
/// notice carries the new total.
macro_rules! queue_refused_use_notice {
    ($tx:expr, $refusal:expr) => {{
        let refusal: &$crate::control::store::RefusalRecord = $refusal;
        let claimed: Option<(i64, String, String, i64)> = sqlx::query_as(
            "UPDATE tokens SET refused_notified_at = $1 WHERE id = $2 \
             AND (refused_notified_at IS NULL OR refused_notified_at <= $3) \
             RETURNING account_id, name, prefix, refused_count",
        )
        .bind(refusal.at)
        .bind(refusal.token_id)
        .bind($crate::control::store::refusal_notice::notice_quiet_since(refusal.at))
        .fetch_optional(&mut *$tx)
        .await?;
        match claimed {
            None => Ok::<bool, sqlx::Error>(false),
            Some((account_id, name, prefix, refused_count)) => {
                let email: String = sqlx::query_scalar("SELECT email FROM accounts WHERE id = $1")
                    .bind(account_id)
                    .fetch_one(&mut *$tx)
                    .await?;
                let notice =
                    $crate::control::store::refusal_notice::refused_use_notice(refusal, name, prefix, refused_count);
                $crate::control::store::insert_outbox!(
                    $tx,
                    refusal.at,
                    account_id,
                    &email,
                    refusal.token_id,
                    &notice,
                    None::<&str>
                )
            }
        }
    }};
}
pub(crate) use queue_refused_use_notice;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_says_what_was_presented_where_from_where_and_why() {
        let refusal = RefusalRecord {
            token_id: 7,
            count: 3,
            at: 1_800_000_000,
            reason: "revoked",
            method: "GET".into(),
            path: "/x".into(),
            ip: "10.0.0.7".into(),
            user_agent: Some("legacy-script/1.0".into()),
        };
        let notice = refused_use_notice(&refusal, "ci".into(), "tg_AbC12345".into(), 9);
        assert_eq!(notice.kind, "token.refused_use");
        assert_eq!((notice.at, notice.actor.as_deref()), (1_800_000_000, Some("gateway")));
        assert_eq!((notice.ip.as_deref(), notice.user_agent.as_deref()), (Some("10.0.0.7"), Some("legacy-script/1.0")));
        assert_eq!(notice.detail.reason.as_deref(), Some("revoked"));
        let stored: serde_json::Value = serde_json::from_str(&notice.to_json()).unwrap();
        assert_eq!(stored["detail"]["method"], "GET");
        assert_eq!(stored["detail"]["path"], "/x");
        assert_eq!(stored["detail"]["attempts"], 3);
        assert_eq!(stored["detail"]["refused_count"], 9);
        assert_eq!(stored["detail"]["prefix"], "tg_AbC12345");
    }
}
