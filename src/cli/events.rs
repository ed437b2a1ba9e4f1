//! `tokengate events`: the audit log.

use clap::Args;

use super::CliError;
use super::output::{or_dash, print_json, print_table};
use crate::service::LifecycleService;
use crate::view::EventView;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events about this account.
    #[arg(long)]
    user: Option<String>,
    /// Only events about this token.
    #[arg(long)]
    token: Option<i64>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: EventsArgs, service: &LifecycleService) -> Result<(), CliError> {
    let events = service.events(args.user.as_deref(), args.token, args.limit).await?;
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
    print_table(&["ID", "AT", "KIND", "ACTOR", "ACCOUNT", "TOKEN", "IP", "DETAIL"], &rows);
    Ok(())
}
