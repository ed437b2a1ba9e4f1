//! How a command says what the running gateways confirmed of its change: one line on stderr
//! (`revoked token 7; refused by 3 of 3 running gateways after 12 ms`), and a warning naming
//! the gateways that did not confirm in time. A timeout is not a failure: the change is
//! committed and every gateway applies it when it catches up.

use crate::control::fleet::Confirmation;

/// Says `what` was done and who obeys it now. `verb`: `refused`, `accepted`, `applied`.
pub(super) fn report(what: &str, verb: &str, confirmation: Option<&Confirmation>) {
    let Some(confirmation) = confirmation else {
        note!("{what}");
        return;
    };
    if confirmation.running == 0 {
        note!("{what}; no gateway is running (each applies it when it starts)");
        return;
    }
    note!("{what}; {verb} by {}", confirmation.summary());
    if !confirmation.complete() {
        note!(
            "warning: not yet applied by {}; the change is committed and they will apply it when they catch up",
            confirmation.laggards()
        );
    }
}
