//! The domain's vocabulary, shared by both paths and every surface: accounts and tokens as
//! records, a token's status and the one rule for when it is live, the filters of a listing,
//! the kinds of audit events (and which of them tell the owner), and what a notice says. No
//! database, no HTTP: the store persists these, the service decides with them, the CLI and the
//! admin API show them.

pub mod account;
pub mod duration;
pub mod event;
pub mod filter;
pub mod ids;
pub mod notice;
pub mod rate;
pub mod scope;
pub mod secret;
pub mod token;
pub mod usage;

pub use account::{AccountChanges, AccountRecord, AccountSummary, NewAccount};
pub use event::{EventKind, EventRecord, NewEvent};
pub use filter::{EventFilter, SortField, StatusFilter, TokenFilter, TokenSort};
pub use ids::{AccountId, TokenId};
pub use notice::{Notice, NoticeDetail};
pub use token::{NewToken, RevokeReason, TokenRecord, TokenStatus};
pub use usage::{UsageOutcome, UsageRow};
