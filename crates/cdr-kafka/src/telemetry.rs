//! Tracing set-up and the shutdown token wired to SIGTERM/SIGINT.

use tokio_util::sync::CancellationToken;

/// Structured logs: JSON lines when `CDR_LOG_FORMAT=json`, human text
/// otherwise; level from `RUST_LOG` (default `info`).
pub fn init_tracing(service: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    let json = std::env::var("CDR_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    tracing::info!(service, "starting");
}

/// A token cancelled on the first SIGTERM or SIGINT. Services drain in-flight
/// work and commit before returning from `run`.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        }
        t.cancel();
    });
    token
}
