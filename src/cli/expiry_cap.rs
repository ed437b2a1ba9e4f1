//! `tokengate token cap-expiry [--dry-run] [--json]`: today's `tokens.max_lifetime` for the
//! tokens minted before it. The table (or with `--json` the document) lists each token's old and
//! new expiry; the note on stderr says how many and, after a real run, which running gateways
//! applied the new expiries.

use super::output::{print_json, print_table};
use super::{CliError, confirm};
use crate::control::service::{Actor, LifecycleService};
use crate::view::CapExpiryView;

pub(super) async fn run(dry_run: bool, json: bool, service: &LifecycleService, actor: &Actor) -> Result<(), CliError> {
    let capped = service.cap_expiry(dry_run, actor).await?;
    let view = CapExpiryView::new(dry_run, service.policy().max_lifetime, &capped.value, capped.confirmation.as_ref());
    if json {
        return print_json(&view);
    }
    let count = view.tokens.len();
    let limit = format!("tokens.max_lifetime ({})", view.max_lifetime);
    if dry_run {
        note!("would cap the expiry of {count} token(s) to {limit}; nothing changed");
    } else if count == 0 {
        note!("no live token outlives {limit}; nothing changed");
    } else {
        let what = format!("capped the expiry of {count} token(s) to {limit}; their owners are notified");
        confirm::report(&what, "applied", capped.confirmation.as_ref());
    }
    let rows: Vec<Vec<String>> = view
        .tokens
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.user.clone(),
                t.name.clone(),
                t.prefix.clone(),
                t.old_expires_at.clone().unwrap_or_else(|| "never".into()),
                t.new_expires_at.clone(),
            ]
        })
        .collect();
    print_table(&["ID", "USER", "NAME", "PREFIX", "OLD_EXPIRES", "NEW_EXPIRES"], &rows)
}
