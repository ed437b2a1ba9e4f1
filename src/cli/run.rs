//! `tokengate serve` and `tokengate check-config`.

use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::clock::Clock;
use crate::config::Config;
use crate::control::store::Store;
use crate::gateway::reload::{LoadConfig, Reloads};
use crate::gateway::{Gateway, Listeners};

/// `tokengate serve`; `load` reads the configuration again on SIGHUP, as at start.
pub(super) async fn serve(config: Config, load: LoadConfig) -> Result<(), CliError> {
    let listeners = Listeners::bind(&config).await.map_err(|e| CliError::Runtime(e.to_string()))?;
    let gateway = Gateway::start(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let (hangups, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(forward_hangups(hangups));
    gateway.serve(&config, listeners, Clock::System, shutdown, Some(Reloads { requests, load })).await;
    Ok(())
}

/// Turns each SIGHUP into a reload request. Without a handler, SIGHUP would end the process.
async fn forward_hangups(requests: tokio::sync::mpsc::UnboundedSender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else { return };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the TLS certificates and the configuration");
            if requests.send(()).is_err() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = requests;
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested; draining");
    shutdown.cancel();
}

pub(super) async fn check_config(config: Config) -> Result<(), CliError> {
    match &config.source {
        Some(path) => note!("configuration {} is valid", path.display()),
        None => note!("no configuration file; built-in defaults are valid"),
    }
    outln!("{}", config.describe().trim_end_matches('\n'))?;
    note!("{}", config.notify.delivery_summary());
    let url = &config.database.url;
    if let Some(file) = Store::sqlite_path(url)
        && !file.exists()
    {
        note!("database {url}: file does not exist yet; it will be created and migrated on first use");
        return Ok(());
    }
    let store = Store::connect(url).await?;
    let status = store.migration_status().await?;
    if status.pending.is_empty() {
        note!("database {url} ({}): up to date, {} migration(s) applied", store.backend_name(), status.applied.len());
    } else {
        note!(
            "database {url} ({}): {} pending migration(s), applied on the next start:",
            store.backend_name(),
            status.pending.len()
        );
        for (version, description) in &status.pending {
            note!("  {version} {description}");
        }
    }
    store.close().await;
    Ok(())
}
