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
mod docs;
mod events;
mod expiry_cap;
mod gateways;
mod output;
mod run;
mod tokens;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, ConfigSource, DATA_DIR_VAR};
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

/// What `tokengate --version` prints: the crate's version and the git commit it was built
/// from (`unknown` outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TOKENGATE_COMMIT"), ")");

/// The parsed command line: the global flags and one command.
#[derive(Debug, Parser)]
#[command(
    name = "tokengate",
    version = VERSION,
    about = "A reverse-proxy authentication gateway with API-token lifecycle management",
    long_about = "A reverse-proxy authentication gateway with API-token lifecycle management.\n\n\
                  The web page (tokens, usage, accounts) is on the admin listener: \
                  http://127.0.0.1:8081/ with the default admin.listen; sign in with your email and \
                  a token carrying the admin scope (tokengate token create ... --scope admin).",
    after_help = "Examples:\n  tokengate serve\n  tokengate user add ann@example.com\n  \
                  tokengate token create --user ann@example.com --name laptop\n  tokengate token list\n\n\
                  Global options (--config, --database, --data-dir, --no-wait) go before or after the command."
)]
pub struct Cli {
    /// Configuration file (default: the first of config/tokengate.toml and
    /// /etc/tokengate/tokengate.toml that exists, else built-in defaults).
    #[arg(long, global = true, env = "TOKENGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL, overriding database.url (sqlite://PATH or postgres://...).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Directory of the SQLite database (DIR/tokengate.db) when neither the configuration nor
    /// --database names a database URL.
    #[arg(long, global = true, env = DATA_DIR_VAR, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
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
    #[command(after_help = "Example:\n  tokengate --config /etc/tokengate/tokengate.toml serve")]
    Serve,
    /// Validate the configuration and report the database's migration state.
    #[command(after_help = "Example:\n  tokengate --config config/tokengate.toml check-config")]
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
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write every command's page into a directory.
    Man(docs::ManArgs),
}

impl Command {
    /// Whether the command may create the database when its SQLite file does not exist. The
    /// others only read or change what is there; run from the wrong directory they must say
    /// so, not report on a new, empty database.
    fn creates_database(&self) -> bool {
        matches!(self, Command::Serve | Command::User(accounts::UserCommand::Add(_)))
    }
}

impl Cli {
    /// Which configuration file these flags and the environment select.
    pub fn config_source(&self) -> ConfigSource {
        Config::source(self.config.as_deref())
    }

    /// Loads the configuration these flags and the environment select.
    pub fn load_config(&self) -> Result<Config, CliError> {
        load_config(self.config.as_deref(), self.database.as_deref(), self.data_dir.as_deref())
    }

    /// Loads the configuration again as these flags say, each time it is called: `serve`
    /// reloads with it on SIGHUP (the environment is read again too).
    fn config_loader(&self) -> crate::gateway::reload::LoadConfig {
        let (config, database, data_dir) = (self.config.clone(), self.database.clone(), self.data_dir.clone());
        Box::new(move || {
            load_config(config.as_deref(), database.as_deref(), data_dir.as_deref()).map_err(|e| e.to_string())
        })
    }
}

/// The configuration selected by `--config` (else the search path), with the environment's
/// overrides, `--database` and `--data-dir` on top.
fn load_config(
    config: Option<&std::path::Path>,
    database: Option<&str>,
    data_dir: Option<&std::path::Path>,
) -> Result<Config, CliError> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if let Some(url) = database {
        // The flag outranks the environment: apply it as the last override.
        env.push(("TOKENGATE_DATABASE__URL".to_owned(), url.to_owned()));
        env.retain(|(k, _)| k != "TOKENGATE_DATABASE__URL_FILE");
    }
    if let Some(dir) = data_dir {
        // From the flag or the variable (clap reads both); the last value is the one used.
        let dir = dir.to_str().ok_or_else(|| CliError::Usage(format!("--data-dir {}: not UTF-8", dir.display())))?;
        env.push((DATA_DIR_VAR.to_owned(), dir.to_owned()));
    }
    Ok(Config::load(Config::source(config).path(), env)?)
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Completions(args) => return docs::completions(args),
        Command::Man(args) => return docs::man(args),
        _ => {}
    }
    announce_config(&cli.config_source(), matches!(cli.command, Command::Serve));
    let config = cli.load_config()?;
    let create = cli.command.creates_database();
    let reload = cli.config_loader();
    match cli.command {
        Command::Serve => run::serve(config, reload).await,
        Command::CheckConfig => run::check_config(config).await,
        Command::User(command) => accounts::run(command, &service(&config, cli.no_wait, create).await?).await,
        Command::Token(command) => tokens::run(command, &service(&config, cli.no_wait, create).await?).await,
        Command::Events(args) => events::run(args, &service(&config, cli.no_wait, create).await?).await,
        Command::Gateways(args) => gateways::run(args, &config).await,
        Command::Db(command) => db::run(command).await,
        // Answered above, without a configuration.
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}

/// Says which configuration applies, before it is loaded (so also when it fails to load): a
/// command run in another directory must not quietly act on another configuration. `serve`
/// logs it (one more log line, JSON with `TOKENGATE_LOG_FORMAT=json`); the other commands
/// write one line on stderr, which keeps `--json` output on stdout clean.
fn announce_config(source: &ConfigSource, serving: bool) {
    match (serving, source.path()) {
        (true, Some(_)) => tracing::info!(file = %source, "configuration file"),
        (true, None) => tracing::info!("configuration: {source}"),
        (false, _) => note!("config: {source}"),
    }
}

/// The lifecycle service on the configured database, for commands that change or read it;
/// only those that `create` may create a SQLite file that does not exist.
/// The CLI writes the database directly; running gateways learn of it through the change log.
/// Changes wait for every running gateway unless `--no-wait` says otherwise.
async fn service(config: &Config, no_wait: bool, create: bool) -> Result<LifecycleService, CliError> {
    let url = &config.database.url;
    let store = if create { Store::open(url).await? } else { Store::open_existing(url).await? };
    let confirm = (!no_wait).then(|| config.sync.confirm_policy());
    Ok(LifecycleService::new(store, config.tokens.clone(), crate::clock::Clock::System, None)
        .with_confirmation(confirm, None)
        .with_usage_retention(config.usage.keep_days)
        .with_default_rate(config.rate_limit.default))
}
