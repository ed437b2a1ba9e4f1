//! `tokengate serve` and `tokengate check-config`.

use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::clock::Clock;
use crate::config::Config;
use crate::control::store::Store;
use crate::gateway::{Gateway, Listeners};

pub(super) async fn serve(config: Config) -> Result<(), CliError> {
    let listeners = Listeners::bind(&config).await.map_err(|e| CliError::Runtime(e.to_string()))?;
    let gateway = Gateway::start(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tokio::spawn(reload_on_hangup(config.clone()));
    gateway.serve(&config, listeners, Clock::System, shutdown).await;
    Ok(())
}

/// Reloads the listeners' TLS certificates on SIGHUP (after a renewal). Without a handler,
/// SIGHUP would end the process.
async fn reload_on_hangup(config: Config) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else { return };
        while hangup.recv().await.is_some() {
            reload_certificates(&config);
        }
    }
    #[cfg(not(unix))]
    let _ = config;
}

/// Each listener's certificate is read again; on any error the previous one stays in use.
fn reload_certificates(config: &Config) {
    let listeners = [("proxy", &config.proxy.tls), ("admin", &config.admin.tls)];
    if listeners.iter().all(|(_, tls)| tls.is_none()) {
        tracing::info!("SIGHUP: no listener uses TLS; nothing to reload");
    }
    for (listener, tls) in listeners {
        let Some(certificate) = tls else { continue };
        let cert_file = certificate.cert_file.display().to_string();
        match certificate.reload() {
            Ok(()) => tracing::info!(listener, cert_file, "TLS certificate reloaded"),
            Err(error) => {
                tracing::error!(listener, %error, "TLS certificate not reloaded; the previous one stays in use")
            }
        }
    }
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
