//! `tokengate events`: the audit log.

use clap::Args;

use super::CliError;
use super::output::{or_dash, print_json, print_table};
use crate::control::service::{Actor, EventQuery, LifecycleService};
use crate::control::store::EventFilter;
use crate::view::EventView;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events about this account.
    #[arg(long)]
    user: Option<String>,
    /// Only events about this token.
    #[arg(long)]
    token: Option<i64>,
    /// Only this kind (`token.revoked`), or every kind under a prefix ending in `.` (`token.`).
    #[arg(long)]
    kind: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[arg(long, value_name = "T", value_parser = crate::clock::parse_rfc3339)]
    since: Option<crate::clock::UnixTime>,
    /// Only events before this time (RFC 3339).
    #[arg(long, value_name = "T", value_parser = crate::clock::parse_rfc3339)]
    until: Option<crate::clock::UnixTime>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
    /// Print the events as a JSON array (every field, `detail` as an object) instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: EventsArgs, service: &LifecycleService) -> Result<(), CliError> {
    let filter = EventFilter {
        token_id: args.token.map(crate::model::TokenId),
        kind: args.kind,
        since: args.since,
        until: args.until,
        limit: args.limit,
        ..EventFilter::default()
    };
    let query = EventQuery { user: args.user, filter };
    let events = service.find_events(query, &Actor::cli()).await?;
    let views: Vec<EventView> = events.iter().map(EventView::new).collect();
    if args.json {
        return print_json(&views);
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.at.clone(),
                e.kind.clone(),
                e.actor.clone(),
                or_dash(e.account.as_ref()),
                or_dash(e.token_id),
                or_dash(e.ip.as_ref()),
                readable_detail(&e.detail),
            ]
        })
        .collect();
    print_table(&["ID", "AT", "KIND", "ACTOR", "ACCOUNT", "TOKEN", "IP", "DETAIL"], &rows)
}

/// An event's detail as `key=value` pairs (`reason=manual successor=12`), nested values as
/// compact JSON: readable in a table; `--json` keeps the object.
fn readable_detail(detail: &serde_json::Value) -> String {
    match detail {
        serde_json::Value::Object(fields) if fields.is_empty() => "-".to_owned(),
        serde_json::Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key}={text}"),
                serde_json::Value::Null => format!("{key}=-"),
                other => format!("{key}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_as_key_value_pairs() {
        let detail = serde_json::json!({"reason": "manual", "attempts": 3, "to": null, "scopes": ["a", "b"]});
        assert_eq!(readable_detail(&detail), "attempts=3 reason=manual scopes=[\"a\",\"b\"] to=-");
        assert_eq!(readable_detail(&serde_json::json!({})), "-");
    }
}
