//! Accounts: creating them, and changing the roles and permissions that block or unblock their
//! tokens.

use serde_json::json;

use super::policy::validate_email;
use super::{Actor, Confirmed, LifecycleService, ServiceError};
use crate::model::{AccountChanges, AccountRecord, AccountSummary, EventKind, NewAccount};

/// An account to create, as the CLI and the admin API both ask for it.
#[derive(Debug, Clone, Default)]
pub struct CreateAccount {
    /// Its name and its tokens' Basic user name; validated, unique without case.
    pub email: String,
    /// A display name; blank means none.
    pub name: Option<String>,
    /// Manages every account and token.
    pub superuser: bool,
    /// Sees, creates and revokes every account's tokens, but changes no account.
    pub token_manager: bool,
    /// The token permission; the CLI and the API default it to `true`.
    pub can_create_tokens: bool,
}

impl LifecycleService {
    /// Creates an account (superusers only); audited as `account.created`.
    pub async fn create_account(&self, request: CreateAccount, actor: &Actor) -> Result<AccountRecord, ServiceError> {
        actor.require_superuser()?;
        let email = validate_email(&request.email)?;
        let name = request.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let event = actor.event(
            EventKind::AccountCreated,
            json!({
                "superuser": request.superuser,
                "token_manager": request.token_manager,
                "can_create_tokens": request.can_create_tokens,
            }),
        );
        let new = NewAccount {
            email,
            name,
            superuser: request.superuser,
            token_manager: request.token_manager,
            can_create_tokens: request.can_create_tokens,
        };
        let account = self.store.insert_account(&new, self.now(), &event).await?;
        self.apply_locally().await;
        Ok(account)
    }

    /// The account with this email (compared without case), or `NotFound`.
    pub async fn account(&self, email: &str) -> Result<AccountRecord, ServiceError> {
        self.store
            .account_by_email(email)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no account with email {email}")))
    }

    /// Every account with its number of live tokens (superusers only).
    pub async fn list_accounts(&self, actor: &Actor) -> Result<Vec<AccountSummary>, ServiceError> {
        actor.require_superuser()?;
        Ok(self.store.list_accounts(self.now()).await?)
    }

    /// Changes an account's flags. Disabling it or taking away the token permission blocks its
    /// tokens at once (they stay in the database and come back when the change is undone).
    pub async fn update_account(
        &self,
        email: &str,
        changes: AccountChanges,
        actor: &Actor,
    ) -> Result<Confirmed<AccountRecord>, ServiceError> {
        actor.require_superuser()?;
        let account = self.account(email).await?;
        let mut detail = serde_json::Map::new();
        for (field, value) in [
            ("enabled", changes.enabled),
            ("superuser", changes.superuser),
            ("token_manager", changes.token_manager),
            ("can_create_tokens", changes.can_create_tokens),
        ] {
            if let Some(value) = value {
                detail.insert(field.to_owned(), json!(value));
            }
        }
        let event = actor.event(EventKind::AccountUpdated, serde_json::Value::Object(detail));
        let (_, after) = self
            .store
            .update_account(account.id, &changes, self.now(), &event)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no account with email {email}")))?;
        self.apply_locally().await;
        Ok(Confirmed { value: after, confirmation: self.confirm_change().await })
    }
}
