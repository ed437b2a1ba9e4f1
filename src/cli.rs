//! The command line: clap definitions and dispatch. One file per command group under `cli/`.

// Output goes through `outln!` and `note!` (cli/output.rs), which survive a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

/// `println!` for commands: `Err(CliError::OutputClosed)` instead of a panic when stdout is a
/// closed pipe; use it with `?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::out_line(format_args!($($arg)*))
    };
}

/// `eprintln!` for commands: a human note on stderr that never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::output::note(format_args!($($arg)*))
    };
}

mod accounts;
mod confirm;
mod db;
mod events;
mod expiry_cap;
mod gateways;
mod output;
mod run;
mod tokens;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::control::service::{LifecycleService, ServiceError};
use crate::control::store::{Store, StoreError};

/// A failure, sorted by exit status: 2 for usage and configuration, 1 for everything else.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad flag value, or a request the rules refuse as malformed or outside the policy: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The configuration file or environment cannot be used: exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Everything else (the database, a missing account or token, a conflict): exit 1.
    #[error("{0}")]
    Runtime(String),
    /// Stdout was a pipe whose reader went away (`| head -n 1`): the command stops, quietly.
    #[error("stdout was closed")]
    OutputClosed,
}

impl CliError {
    /// The process's exit status: 2 for usage and configuration, 1 at run time, 0 for a closed
    /// stdout.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Runtime(_) => 1,
            CliError::OutputClosed => 0,
        }
    }

    /// Whether the error line is left out: a closed stdout is the reader's choice, not a failure.
    pub fn is_quiet(&self) -> bool {
        matches!(self, CliError::OutputClosed)
    }
}

impl From<ServiceError> for CliError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(m) | ServiceError::OutsidePolicy(m) => CliError::Usage(m),
            other => CliError::Runtime(other.to_string()),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        CliError::Runtime(error.to_string())
    }
}

/// The parsed command line: the global flags and one command.
#[derive(Debug, Parser)]
#[command(
    name = "tokengate",
    version,
    about = "A reverse-proxy authentication gateway with API-token lifecycle management"
)]
pub struct Cli {
    /// Configuration file (default: config/tokengate.toml when it exists, else built-in defaults).
    #[arg(long, global = true, env = "TOKENGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL, overriding database.url (sqlite://PATH or postgres://...).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Return as soon as a change is committed, without waiting until every running gateway
    /// has applied it (by default token create/revoke/revoke-all/rotate/set-limit and user set
    /// wait up to sync.confirm_timeout and say how many gateways obey the change).
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands; each group's flags are defined in its file under `cli/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and admin listeners until SIGINT/SIGTERM.
    Serve,
    /// Validate the configuration and report the database's migration state.
    CheckConfig,
    /// Manage accounts.
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// Manage tokens.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Show the audit log, newest first.
    Events(events::EventsArgs),
    /// List the running gateways: what they applied of the change log, and how far behind they are.
    Gateways(gateways::GatewaysArgs),
    /// Database maintenance.
    #[command(subcommand)]
    Db(db::DbCommand),
}

impl Cli {
    /// Loads the configuration these flags and the environment select.
    pub fn load_config(&self) -> Result<Config, CliError> {
        let path = Config::locate(self.config.as_deref());
        let mut env: Vec<(String, String)> = std::env::vars().collect();
        if let Some(url) = &self.database {
            // The flag outranks the environment: apply it as the last override.
            env.push(("TOKENGATE_DATABASE__URL".to_owned(), url.clone()));
            env.retain(|(k, _)| k != "TOKENGATE_DATABASE__URL_FILE");
        }
        Ok(Config::load(path.as_deref(), env)?)
    }
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let config = cli.load_config()?;
    match cli.command {
        Command::Serve => run::serve(config).await,
        Command::CheckConfig => run::check_config(config).await,
        Command::User(command) => accounts::run(command, &service(&config, cli.no_wait).await?).await,
        Command::Token(command) => tokens::run(command, &service(&config, cli.no_wait).await?).await,
        Command::Events(args) => events::run(args, &service(&config, cli.no_wait).await?).await,
        Command::Gateways(args) => gateways::run(args, &config).await,
        Command::Db(command) => db::run(command).await,
    }
}

/// The lifecycle service on the configured database, for commands that change or read it.
/// The CLI writes the database directly; running gateways learn of it through the change log.
/// Changes wait for every running gateway unless `--no-wait` says otherwise.
async fn service(config: &Config, no_wait: bool) -> Result<LifecycleService, CliError> {
    let store = Store::open(&config.database.url).await?;
    let confirm = (!no_wait).then(|| config.sync.confirm_policy());
    Ok(LifecycleService::new(store, config.tokens.clone(), crate::clock::Clock::System, None)
        .with_confirmation(confirm, None)
        .with_usage_retention(config.usage.keep_days)
        .with_default_rate(config.rate_limit.default))
}
