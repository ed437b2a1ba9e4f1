//! `tokengate user add|list|set`.

use clap::{ArgAction, Args, Subcommand, builder::BoolishValueParser};

use super::output::{or_dash, print_json, print_table};
use super::{CliError, confirm};
use crate::control::service::{Actor, CreateAccount, LifecycleService};
use crate::control::store::AccountChanges;
use crate::view::AccountView;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account; by default it may create and manage its own tokens.
    #[command(after_help = "Example:\n  tokengate user add ann@example.com --name Ann")]
    Add(AddArgs),
    /// List accounts.
    #[command(after_help = "Example:\n  tokengate user list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change an account. Disabling it or taking away the token permission blocks its tokens; the
    /// command returns once every running gateway applies the change (--no-wait: at once).
    #[command(after_help = "Example:\n  tokengate user set ann@example.com --can-create-tokens false")]
    Set(SetArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The account's email: its name everywhere, and the user name of its Basic credentials.
    email: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    superuser: bool,
    #[arg(long)]
    token_manager: bool,
    /// Create the account without the permission to hold tokens.
    #[arg(long)]
    no_token_permission: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The account to change, by email (any case).
    email: String,
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    enabled: Option<bool>,
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    superuser: Option<bool>,
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    token_manager: Option<bool>,
    #[arg(long, value_name = "BOOL", value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    can_create_tokens: Option<bool>,
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(command: UserCommand, service: &LifecycleService) -> Result<(), CliError> {
    let actor = Actor::cli();
    match command {
        UserCommand::Add(args) => {
            let request = CreateAccount {
                email: args.email,
                name: args.name,
                superuser: args.superuser,
                token_manager: args.token_manager,
                can_create_tokens: !args.no_token_permission,
            };
            let account = service.create_account(request, &actor).await?;
            if args.json {
                print_json(&AccountView::new(&account))?;
            } else {
                note!("created account {}", account.email);
            }
        }
        UserCommand::List { json } => {
            let accounts = service.list_accounts(&actor).await?;
            let views: Vec<AccountView> = accounts.iter().map(AccountView::summary).collect();
            if json {
                print_json(&views)?;
            } else {
                let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|a| {
                        vec![
                            a.email.clone(),
                            or_dash(a.name.as_ref()),
                            yes_no(a.superuser),
                            yes_no(a.token_manager),
                            yes_no(a.enabled),
                            yes_no(a.can_create_tokens),
                            or_dash(a.tokens),
                        ]
                    })
                    .collect();
                print_table(
                    &["EMAIL", "NAME", "SUPERUSER", "TOKEN_MANAGER", "ENABLED", "CAN_CREATE_TOKENS", "TOKENS"],
                    &rows,
                )?;
            }
        }
        UserCommand::Set(args) => {
            let changes = AccountChanges {
                enabled: args.enabled,
                superuser: args.superuser,
                token_manager: args.token_manager,
                can_create_tokens: args.can_create_tokens,
            };
            if changes.enabled.is_none()
                && changes.superuser.is_none()
                && changes.token_manager.is_none()
                && changes.can_create_tokens.is_none()
            {
                return Err(CliError::Usage(
                    "nothing to change: give --enabled, --superuser, --token-manager or --can-create-tokens".into(),
                ));
            }
            let updated = service.update_account(&args.email, changes, &actor).await?;
            let account = &updated.value;
            if args.json {
                print_json(&AccountView::new(account).confirmed(updated.confirmation.as_ref()))?;
            } else {
                let what = format!(
                    "updated account {}: enabled={} superuser={} token_manager={} can_create_tokens={}",
                    account.email, account.enabled, account.superuser, account.token_manager, account.can_create_tokens
                );
                confirm::report(&what, "applied", updated.confirmation.as_ref());
            }
        }
    }
    Ok(())
}
