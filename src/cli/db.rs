//! `tokengate db copy`: moving every account, token and event to another database.

use clap::Subcommand;

use super::CliError;
use super::output::print_json;
use crate::config::SecretUrl;
use crate::control::store::Store;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy everything from one database into an empty one (e.g. SQLite → PostgreSQL) and
    /// verify the row counts. Token ids and secrets keep working.
    Copy {
        #[arg(long, value_name = "URL")]
        from: String,
        #[arg(long, value_name = "URL")]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(command: DbCommand) -> Result<(), CliError> {
    match command {
        DbCommand::Copy { from, to, json } => {
            let (from, to) = (SecretUrl::new(from), SecretUrl::new(to));
            if from == to {
                return Err(CliError::Usage("--from and --to name the same database".into()));
            }
            // The source must exist; the target is created when it is a new SQLite file.
            let source = Store::open_existing(&from).await?;
            let target = Store::open(&to).await?;
            let counts = source.copy_into(&target).await?;
            source.close().await;
            target.close().await;
            if json {
                print_json(&counts)?;
            } else {
                note!(
                    "copied {} accounts, {} tokens, {} events and {} change-log rows from {from} to {to}; counts verified",
                    counts.accounts,
                    counts.tokens,
                    counts.events,
                    counts.changes
                );
            }
            Ok(())
        }
    }
}
