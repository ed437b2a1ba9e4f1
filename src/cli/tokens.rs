//! `tokengate token create|list|show|revoke|revoke-all|rotate|set-limit|sweep|cap-expiry`.

use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};

use super::output::{or_dash, print_json, print_table};
use super::{CliError, confirm};
use crate::clock::{UnixTime, parse_rfc3339};
use crate::control::service::{Actor, CreateToken, ExpiryRequest, LifecycleService, TokenQuery};
use crate::control::store::{StatusFilter, TokenSort};
use crate::control::store::{TokenFilter, TokenRecord};
use crate::model::duration::parse_duration;
use crate::model::rate::Rate;
use crate::view::{RevokedAllView, TokenView, UsageView};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token. The secret is printed once and never again; the command returns once every
    /// running gateway accepts the token (at most sync.confirm_timeout; --no-wait: at once).
    #[command(
        after_help = "Example:\n  tokengate token create --user ann@example.com --name laptop --expires-in 30d --scope read"
    )]
    Create(CreateArgs),
    /// List tokens (default: live ones, i.e. active and blocked).
    #[command(
        after_help = "Example:\n  tokengate token list --user ann@example.com --unused-for 90d --sort -requests_30d"
    )]
    List(ListArgs),
    /// Show one token's metadata (never the secret).
    #[command(after_help = "Example:\n  tokengate token show 7 --json")]
    Show {
        /// The token's id, as `token list` shows it.
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token. Returns once every running gateway refuses it (at most
    /// sync.confirm_timeout, naming any that have not; --no-wait: at once), so the very next
    /// request to any of them gets 401.
    #[command(after_help = "Example:\n  tokengate token revoke 7")]
    Revoke {
        /// The token's id, as `token list` shows it.
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Mint a successor with the same name, owner, scopes and limit; the old token keeps
    /// working for the grace period (default: revoked now), or until the successor is first used.
    #[command(after_help = "Example:\n  tokengate token rotate 7 --grace 1h")]
    Rotate {
        /// The token's id, as `token list` shows it.
        id: i64,
        /// How long the old token keeps working (default 0; with --until-first-use: at most 7d).
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        grace: Option<Duration>,
        /// Keep the old token working until the gateway first sees the new one.
        #[arg(long)]
        until_first_use: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change a token's own rate limit (`none`: back to the default); returns once every running
    /// gateway applies it (at most sync.confirm_timeout; --no-wait: at once).
    #[command(after_help = "Example:\n  tokengate token set-limit 7 100/min   (or: none)")]
    SetLimit {
        /// The token's id, as `token list` shows it.
        id: i64,
        /// A rate such as 100/min or 20/s burst 40, or `none`.
        #[arg(value_name = "RATE|none", value_parser = parse_limit)]
        rate: LimitArg,
        #[arg(long)]
        json: bool,
    },
    /// Apply the inactivity policy now: revoke tokens unused for tokens.revoke_unused_after.
    #[command(after_help = "Example:\n  tokengate token sweep --dry-run")]
    Sweep {
        /// Only list the tokens that would be revoked.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply today's tokens.max_lifetime to existing tokens: every live token that never expires,
    /// or expires later than max_lifetime after its creation, then expires at
    /// max(created + max_lifetime, now + tokens.warn_before); each owner is notified. Returns once
    /// every running gateway applies it (at most sync.confirm_timeout; --no-wait: at once).
    #[command(after_help = "Example:\n  tokengate token cap-expiry --dry-run --json")]
    CapExpiry {
        /// Only list the tokens that would change.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke every live token of an account; returns once every running gateway refuses them.
    #[command(after_help = "Example:\n  tokengate token revoke-all --user ann@example.com")]
    RevokeAll {
        #[arg(long, value_name = "EMAIL")]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// What a token is used for: its requests per UTC day, route and outcome (2xx, 3xx, 4xx, 5xx,
    /// forbidden, limited, refused), as the gateways counted them (written every
    /// usage.flush_interval).
    #[command(after_help = "Example:\n  tokengate token usage 7 --days 7")]
    Usage {
        /// The token's id.
        id: i64,
        /// The last N UTC days, today included (default 30, at most usage.keep_days).
        #[arg(long, value_name = "N")]
        days: Option<u32>,
        /// The usage document as JSON, as GET /api/v1/tokens/{id}/usage answers it.
        #[arg(long)]
        json: bool,
    },
}

/// A rate, or `none`.
#[derive(Debug, Clone, Copy)]
pub struct LimitArg(Option<Rate>);

fn parse_limit(text: &str) -> Result<LimitArg, String> {
    match text.trim() {
        "none" | "off" => Ok(LimitArg(None)),
        other => other.parse::<Rate>().map(|rate| LimitArg(Some(rate))),
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("expiry").args(["expires_in", "expires_at", "never_expires"])))]
pub struct CreateArgs {
    /// The owner's email.
    #[arg(long, value_name = "EMAIL")]
    user: String,
    /// A name unique among the owner's live tokens.
    #[arg(long)]
    name: String,
    #[arg(long)]
    description: Option<String>,
    /// Lifetime such as 30d or 1y (default: tokens.default_lifetime).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    expires_in: Option<Duration>,
    /// Expiry time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    expires_at: Option<UnixTime>,
    /// No expiry (only when tokens.allow_never_expires is true).
    #[arg(long)]
    never_expires: bool,
    /// A scope the token carries (repeatable; `*` for all; default: tokens.default_scopes).
    /// Besides tokens.scopes, `admin` (the admin API and web page) and `admin:read` (the admin
    /// API's GET endpoints) are always valid and never given by default.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// The token's own rate limit, such as 100/min or 20/s burst 40.
    #[arg(long, value_name = "N/PERIOD", value_parser = |s: &str| s.parse::<Rate>())]
    rate_limit: Option<Rate>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tokens of this account (repeatable).
    #[arg(long = "user", value_name = "EMAIL")]
    users: Vec<String>,
    /// Case-insensitive text in the name or description.
    #[arg(long)]
    search: Option<String>,
    /// active, blocked, live (active and blocked), revoked, expired or all.
    #[arg(long, default_value = "live", value_parser = |s: &str| s.parse::<StatusFilter>())]
    status: StatusFilter,
    #[arg(long, value_name = "T", value_parser = parse_rfc3339)]
    created_after: Option<UnixTime>,
    #[arg(long, value_name = "T", value_parser = parse_rfc3339)]
    created_before: Option<UnixTime>,
    #[arg(long, value_name = "T", value_parser = parse_rfc3339)]
    used_after: Option<UnixTime>,
    #[arg(long, value_name = "T", value_parser = parse_rfc3339)]
    used_before: Option<UnixTime>,
    #[arg(long)]
    never_used: bool,
    #[arg(long, value_name = "T", value_parser = parse_rfc3339)]
    expires_after: Option<UnixTime>,
    #[arg(long, value_name = "T", value_parser = parse_rfc3339)]
    expires_before: Option<UnixTime>,
    /// Only tokens that never expire.
    #[arg(long)]
    no_expiry: bool,
    /// Not used for this long (or never used and older than it).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    unused_for: Option<Duration>,
    /// created, name, user, last_used or expires; prefix - for descending (default: -created).
    #[arg(long, value_name = "FIELD", allow_hyphen_values = true, value_parser = |s: &str| s.parse::<TokenSort>())]
    sort: Option<TokenSort>,
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(command: TokenCommand, service: &LifecycleService) -> Result<(), CliError> {
    let actor = Actor::cli();
    match command {
        TokenCommand::Create(args) => create(args, service, &actor).await,
        TokenCommand::List(args) => list(args, service).await,
        TokenCommand::Show { id, json } => {
            let token = service.token(id).await?;
            let view = TokenView::new(&token, service.now());
            if json { print_json(&view) } else { print_details(&view, service.default_rate().as_ref()) }
        }
        TokenCommand::Revoke { id, json } => {
            let revoked = service.revoke_token(id, &actor).await?;
            if json {
                print_json(&TokenView::new(&revoked.token, service.now()).confirmed(revoked.confirmation.as_ref()))
            } else {
                if revoked.already {
                    note!("token {id} ({}) was already revoked", revoked.token.name);
                } else {
                    let what = format!("revoked token {id} ({}) of {}", revoked.token.name, revoked.token.user_email);
                    confirm::report(&what, "refused", revoked.confirmation.as_ref());
                }
                Ok(())
            }
        }
        TokenCommand::Rotate { id, grace, until_first_use, json } => {
            let rotated = service.rotate_token(id, grace, until_first_use, &actor).await?;
            let successor = &rotated.successor;
            let view = TokenView::with_secret(&successor.token, service.now(), successor.secret.expose())
                .confirmed(successor.confirmation.as_ref());
            if json {
                return print_json(&view);
            }
            let old = &rotated.predecessor;
            let stops_now = old.revoked_at.is_some_and(|at| at <= service.now());
            let what = format!("rotated token {id} ({}) of {}: new token {}", old.name, old.user_email, view.id);
            let verb = if stops_now { "old token refused" } else { "applied" };
            confirm::report(&what, verb, successor.confirmation.as_ref());
            if !stops_now {
                let until = old.revoked_at.map(crate::clock::to_rfc3339).unwrap_or_default();
                let handover = if until_first_use { " or when the new token is first used" } else { "" };
                note!("the old token stops working at {until}{handover}");
            }
            note!("copy the new token now: it will not be shown again");
            outln!("{}", successor.secret.expose())
        }
        TokenCommand::SetLimit { id, rate, json } => {
            let changed = service.set_rate_limit(id, rate.0, &actor).await?;
            if json {
                return print_json(&TokenView::new(&changed, service.now()).confirmed(changed.confirmation.as_ref()));
            }
            let limit = changed.rate_limit.as_deref().unwrap_or("none (the default applies)");
            confirm::report(
                &format!("token {id} ({}): rate limit {limit}", changed.name),
                "applied",
                changed.confirmation.as_ref(),
            );
            Ok(())
        }
        TokenCommand::Sweep { dry_run, json } => {
            let tokens = service.sweep_inactive(dry_run, &actor).await?;
            let now = service.now();
            let views: Vec<TokenView> = tokens.iter().map(|t| TokenView::new(t, now)).collect();
            if json {
                return print_json(&views);
            }
            let verb = if dry_run { "would revoke" } else { "revoked" };
            note!("{verb} {} token(s) unused for the policy's period", views.len());
            print_token_table(&views)
        }
        TokenCommand::Usage { id, days, json } => {
            let (token_id, days, rows) = service.token_usage(id, days, &actor).await?;
            let view = UsageView::new(token_id, days, rows);
            if json { print_json(&view) } else { print_usage(&view) }
        }
        TokenCommand::CapExpiry { dry_run, json } => super::expiry_cap::run(dry_run, json, service, &actor).await,
        TokenCommand::RevokeAll { user, json } => {
            let revoked = service.revoke_all_tokens(&user, &actor).await?;
            let count = revoked.value;
            if json {
                print_json(&RevokedAllView::new(&user, count, revoked.confirmation.as_ref()))
            } else {
                confirm::report(
                    &format!("revoked {count} token(s) of {user}"),
                    "refused",
                    revoked.confirmation.as_ref(),
                );
                Ok(())
            }
        }
    }
}

async fn create(args: CreateArgs, service: &LifecycleService, actor: &Actor) -> Result<(), CliError> {
    let expiry = match (args.expires_in, args.expires_at, args.never_expires) {
        (Some(lifetime), _, _) => ExpiryRequest::In(lifetime),
        (_, Some(at), _) => ExpiryRequest::At(at),
        (_, _, true) => ExpiryRequest::Never,
        _ => ExpiryRequest::Default,
    };
    let request = CreateToken {
        owner_email: args.user,
        name: args.name,
        description: args.description,
        expiry,
        scopes: args.scopes,
        rate_limit: args.rate_limit,
    };
    let created = service.create_token(request, actor).await?;
    let view = TokenView::with_secret(&created.token, service.now(), created.secret.expose())
        .confirmed(created.confirmation.as_ref());
    if args.json {
        return print_json(&view);
    }
    let what = format!(
        "created token {} ({}) for {}, expires {}, scopes {}",
        view.id,
        view.name,
        view.user,
        view.expires_at.as_deref().unwrap_or("never"),
        view.scopes.join(" ")
    );
    confirm::report(&what, "accepted", created.confirmation.as_ref());
    note!("copy it now: it will not be shown again");
    outln!("{}", created.secret.expose())
}

async fn list(args: ListArgs, service: &LifecycleService) -> Result<(), CliError> {
    let query = TokenQuery {
        users: args.users,
        unused_for: args.unused_for,
        filter: TokenFilter {
            search: args.search,
            status: args.status,
            created_after: args.created_after,
            created_before: args.created_before,
            used_after: args.used_after,
            used_before: args.used_before,
            never_used: args.never_used,
            expires_after: args.expires_after,
            expires_before: args.expires_before,
            no_expiry: args.no_expiry,
            sort: args.sort.unwrap_or_default(),
            ..TokenFilter::default()
        },
    };
    let tokens = service.list_tokens(query, &Actor::cli()).await?;
    let now = service.now();
    let views: Vec<TokenView> = tokens.iter().map(|t: &TokenRecord| TokenView::new(t, now)).collect();
    if args.json {
        return print_json(&views);
    }
    print_token_table(&views)
}

fn print_token_table(views: &[TokenView]) -> Result<(), CliError> {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.user.clone(),
                t.name.clone(),
                t.prefix.clone(),
                t.status.to_owned(),
                t.scopes.join(" "),
                t.created_at.clone(),
                or_dash(t.expires_at.as_ref()),
                or_dash(t.last_used_at.as_ref()),
                or_dash(t.requests_30d),
            ]
        })
        .collect();
    print_table(
        &["ID", "USER", "NAME", "PREFIX", "STATUS", "SCOPES", "CREATED", "EXPIRES", "LAST_USED", "REQUESTS_30D"],
        &rows,
    )
}

fn print_usage(view: &UsageView) -> Result<(), CliError> {
    let rows: Vec<Vec<String>> = view
        .rows
        .iter()
        .map(|r| vec![r.day.clone(), r.route.clone(), r.outcome.clone(), r.requests.to_string()])
        .collect();
    print_table(&["DAY", "ROUTE", "OUTCOME", "REQUESTS"], &rows)?;
    note!("token {}: {} request(s) in the last {} day(s) (UTC, today included)", view.token_id, view.total, view.days);
    Ok(())
}

/// The limit a gateway applies to the token: its own, else `rate_limit.default`, said so.
fn limit_in_force(own: Option<&str>, default: Option<&Rate>) -> String {
    match (own, default) {
        (Some(own), _) => own.to_owned(),
        (None, Some(default)) => format!("{default} (default)"),
        (None, None) => "none (rate_limit.default is off)".to_owned(),
    }
}

fn print_details(view: &TokenView, default_rate: Option<&Rate>) -> Result<(), CliError> {
    let fields: Vec<(&str, String)> = vec![
        ("id", view.id.to_string()),
        ("user", view.user.clone()),
        ("name", view.name.clone()),
        ("description", or_dash(view.description.as_ref())),
        ("prefix", view.prefix.clone()),
        ("status", view.status.to_owned()),
        ("scopes", view.scopes.join(" ")),
        ("rate_limit", limit_in_force(view.rate_limit.as_deref(), default_rate)),
        ("created_at", view.created_at.clone()),
        ("created_by", view.created_by.clone()),
        ("expires_at", view.expires_at.clone().unwrap_or_else(|| "never".into())),
        ("last_used_at", or_dash(view.last_used_at.as_ref())),
        (
            "last_used",
            format!(
                "{} {} from {}",
                or_dash(view.last_used_method.as_ref()),
                or_dash(view.last_used_path.as_ref()),
                or_dash(view.last_used_ip.as_ref())
            ),
        ),
        ("revoked_at", or_dash(view.revoked_at.as_ref())),
        ("revoked_by", or_dash(view.revoked_by.as_ref())),
        ("revoke_reason", or_dash(view.revoke_reason.as_ref())),
        // Attempts with the token while it was dead: a client somewhere still holds it.
        ("refused_count", view.refused_count.to_string()),
        ("refused_last_at", or_dash(view.refused_last_at.as_ref())),
        (
            "refused_last",
            format!(
                "{} {} from {}",
                or_dash(view.refused_last_method.as_ref()),
                or_dash(view.refused_last_path.as_ref()),
                or_dash(view.refused_last_ip.as_ref())
            ),
        ),
    ];
    for (name, value) in fields {
        outln!("{name:<15} {value}")?;
    }
    Ok(())
}
