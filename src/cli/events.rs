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
                e.detail.to_string(),
            ]
        })
        .collect();
    print_table(&["ID", "AT", "KIND", "ACTOR", "ACCOUNT", "TOKEN", "IP", "DETAIL"], &rows)
}
