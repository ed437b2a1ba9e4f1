//! `tokengate gateways`: the running gateways on this database, what they applied of the
//! change log and how far behind they are.

use clap::Args;

use super::CliError;
use super::output::{print_json, print_table};
use crate::config::Config;
use crate::control::store::Store;
use crate::view::GatewayView;

#[derive(Debug, Args)]
pub struct GatewaysArgs {
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: GatewaysArgs, config: &Config) -> Result<(), CliError> {
    let store = Store::open_existing(&config.database.url).await?;
    let statuses = crate::control::fleet::running(&store, config.sync.stale_after).await?;
    let views: Vec<GatewayView> = statuses.iter().map(GatewayView::new).collect();
    if args.json {
        return print_json(&views);
    }
    if views.is_empty() {
        note!(
            "no gateway is running on this database (none with a heartbeat in the last {})",
            crate::model::duration::format_duration(config.sync.stale_after)
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|g| {
            vec![
                g.id.clone(),
                g.host.clone(),
                g.pid.to_string(),
                g.proxy.clone(),
                g.version.clone(),
                g.started_at.clone(),
                g.heartbeat_at.clone(),
                g.applied_seq.to_string(),
                format!("{} ({} ms)", g.lag_seqs, g.lag_ms),
            ]
        })
        .collect();
    print_table(&["ID", "HOST", "PID", "PROXY", "VERSION", "STARTED", "HEARTBEAT", "APPLIED_SEQ", "LAG"], &rows)
}
