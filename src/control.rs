//! The control path: tokens and accounts change. The CLI and the admin API call the
//! [`service`] (every rule, every audit event), which commits through the [`store`] (one
//! transaction that also appends to the change log); [`sync`] applies the change to this
//! process's index and every other gateway's; [`fleet`] confirms that every running gateway
//! applied it; [`notify`] tells token owners what happened.

pub mod fleet;
pub mod notify;
pub mod service;
pub mod store;
pub mod sync;
