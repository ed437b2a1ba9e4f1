//! The token and account lifecycle: every rule of the control path, shared by the CLI and the
//! admin API. Each mutation is one store transaction (with its audit event and change-log row),
//! then applied to this process's index, then — when the caller asks — confirmed by every
//! running gateway before returning.
//!
//! | file | what |
//! |---|---|
//! | `service/actor.rs` | who acts, with which powers: the permission rules |
//! | `service/accounts.rs` | creating and changing accounts |
//! | `service/tokens.rs` | minting, rotating, revoking, limiting, listing tokens |
//! | `service/policy.rs` | the administrator's bounds: lifetimes, scopes, names |
//! | `service/housekeeping.rs` | periodic work: inactivity, expiry reminders |
//! | `service/expiry_cap.rs` | `token cap-expiry`: today's maximum lifetime for existing tokens |
//! | `service/audit.rs` | reading the audit log |
//! | `service/usage.rs` | a token's usage counts, and their retention |
//! | `service/error.rs` | what can go wrong, sorted by whose fault it is |

mod accounts;
mod actor;
mod audit;
mod error;
mod expiry_cap;
pub mod housekeeping;
mod policy;
mod tokens;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::{Clock, UnixTime};
use crate::config::TokenPolicy;
use crate::control::fleet::{ConfirmPolicy, Confirmation};
use crate::control::store::Store;
use crate::control::sync::IndexSync;
use crate::metrics::Metrics;
use crate::model::rate::Rate;

pub use accounts::CreateAccount;
pub use actor::{Actor, Authority, Principal};
pub use audit::EventQuery;
pub use error::ServiceError;
pub use tokens::{Confirmed, CreateToken, CreatedToken, ExpiryRequest, Revoked, Rotated, TokenQuery};
pub use usage::DEFAULT_USAGE_DAYS;

/// `usage.keep_days` when the configuration says nothing.
const DEFAULT_KEEP_DAYS: u32 = 400;

/// The lifecycle service: what the CLI, the admin API and the periodic work call.
pub struct LifecycleService {
    store: Store,
    /// The rules `SIGHUP` can change, swapped whole: each call reads one version.
    settings: ArcSwap<ServiceSettings>,
    clock: Clock,
    /// Present in a process that serves traffic: mutations reach its index before returning.
    sync: Option<Arc<IndexSync>>,
    /// Set: changes the data path obeys wait until every running gateway applied them.
    confirm: Option<ConfirmPolicy>,
    /// Where confirmation times are reported (in a gateway: `/metrics`).
    metrics: Option<Arc<Metrics>>,
}

/// The part of the configuration the service enforces, which a gateway reloads on `SIGHUP`.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// `[tokens]`: lifetimes, scopes, the inactivity policy and how often it is applied.
    pub policy: Arc<TokenPolicy>,
    /// `rate_limit.default`: the most a plain account may give its own tokens.
    pub default_rate: Option<Rate>,
    /// `usage.keep_days`: how far back usage counts are kept (and can be asked for).
    pub usage_keep_days: u32,
    /// `notify.expiry_reminders`: how long before expiry owners are reminded.
    pub expiry_reminders: Vec<Duration>,
}

impl LifecycleService {
    /// A service over `store` within `policy`. With `sync` (a process that serves traffic), its
    /// changes reach this process's index before they return.
    pub fn new(store: Store, policy: TokenPolicy, clock: Clock, sync: Option<Arc<IndexSync>>) -> Self {
        let settings = ServiceSettings {
            policy: Arc::new(policy),
            default_rate: None,
            usage_keep_days: DEFAULT_KEEP_DAYS,
            expiry_reminders: Vec::new(),
        };
        LifecycleService { store, settings: ArcSwap::from_pointee(settings), clock, sync, confirm: None, metrics: None }
    }

    /// All the settings of `config` the service enforces (a gateway's, or a reloaded one).
    pub fn settings_of(config: &crate::config::Config) -> ServiceSettings {
        ServiceSettings {
            policy: Arc::new(config.tokens.clone()),
            default_rate: config.rate_limit.default,
            usage_keep_days: config.usage.keep_days,
            expiry_reminders: config.notify.expiry_reminders.clone(),
        }
    }

    /// Replaces every setting at once: calls from now on obey `settings`, calls under way
    /// finish with the version they started with.
    pub fn reconfigure(&self, settings: ServiceSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<ServiceSettings> {
        self.settings.load_full()
    }

    /// Changes one setting while building the service.
    fn with_setting(self, change: impl FnOnce(&mut ServiceSettings)) -> Self {
        let mut settings = ServiceSettings::clone(&self.settings.load());
        change(&mut settings);
        self.settings.store(Arc::new(settings));
        self
    }

    /// Keeps usage counts for `keep_days` days (`usage.keep_days`) instead of the default 400.
    pub fn with_usage_retention(self, keep_days: u32) -> Self {
        self.with_setting(|settings| settings.usage_keep_days = keep_days)
    }

    /// `rate_limit.default`: the limit of tokens without one of their own, if any.
    pub fn default_rate(&self) -> Option<Rate> {
        self.settings.load().default_rate
    }

    /// Bounds the limits plain accounts give their own tokens by `rate_limit.default`.
    pub fn with_default_rate(self, default_rate: Option<Rate>) -> Self {
        self.with_setting(|settings| settings.default_rate = default_rate)
    }

    /// Makes changes that the data path obeys wait for every running gateway (`None`: return
    /// at commit, as `--no-wait` asks).
    pub fn with_confirmation(mut self, policy: Option<ConfirmPolicy>, metrics: Option<Arc<Metrics>>) -> Self {
        self.confirm = policy;
        self.metrics = metrics;
        self
    }

    /// Waits until every running gateway has applied what was just committed (the change log's
    /// latest sequence: at least this change's, since writers commit one at a time). Failing to
    /// read the registry does not fail the change, which is committed: it is logged.
    async fn confirm_change(&self) -> Option<Confirmation> {
        let policy = self.confirm?;
        let waited = async {
            let seq = self.store.latest_change_seq().await?;
            crate::control::fleet::confirm(&self.store, seq, policy).await
        };
        match waited.await {
            Ok(confirmation) => {
                if let Some(metrics) = &self.metrics {
                    metrics.confirm_duration.observe(confirmation.elapsed.as_secs_f64());
                }
                if !confirmation.complete() {
                    tracing::info!(seq = confirmation.seq, pending = %confirmation.laggards(),
                        "change committed; not every running gateway confirmed it in time (they will apply it)");
                }
                Some(confirmation)
            }
            Err(error) => {
                tracing::warn!(%error, "change committed; cannot read the gateway registry to confirm it");
                None
            }
        }
    }

    /// The token policy: the bounds the create dialogs and the API validate against.
    pub fn policy(&self) -> Arc<TokenPolicy> {
        Arc::clone(&self.settings.load().policy)
    }

    /// The store underneath, for what has no rule to enforce (counting accounts, say).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The service's now, from its clock: tests move it to expire and age tokens.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Brings this process's index up to date with what was just committed. A failure here
    /// is logged, not returned: the change is committed and the poller will apply it.
    async fn apply_locally(&self) {
        if let Some(sync) = &self.sync
            && let Err(error) = sync.catch_up().await
        {
            tracing::warn!(%error, "change committed but not yet applied to the index; the poller will retry");
        }
    }

    // ---- the fleet ----

    /// The running gateways and their lag (superusers; the host).
    pub async fn running_gateways(
        &self,
        actor: &Actor,
    ) -> Result<Vec<crate::control::fleet::GatewayStatus>, ServiceError> {
        match actor.principal() {
            Some(p) if !p.account.superuser => {
                Err(ServiceError::Forbidden("only a superuser may list the running gateways".into()))
            }
            _ => Ok(crate::control::fleet::running(&self.store, self.stale_after()).await?),
        }
    }

    /// When a gateway without a heartbeat counts as not running.
    fn stale_after(&self) -> Duration {
        self.confirm.map_or(crate::control::fleet::DEFAULT_STALE_AFTER, |policy| policy.stale_after)
    }
}
