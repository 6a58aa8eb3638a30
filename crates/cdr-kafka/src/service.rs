//! The whole of every service's `main`: tracing, configuration (file named
//! by the first argument, then `CDR__…` environment overrides), the
//! shutdown token wired to SIGTERM/SIGINT, the service's `run`, and an exit
//! code a supervisor can act on.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// Runs `run(config, shutdown)` on a multi-threaded runtime. A start-up or
/// runtime error is logged whole (with its context chain) and exits 1.
pub fn service_main<C, F, Fut>(name: &'static str, run: F) -> ExitCode
where
    C: DeserializeOwned,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::telemetry::init_tracing(name);
    if !crate::disable_transparent_huge_pages() {
        tracing::debug!(
            service = name,
            "transparent huge pages stay as the kernel set them"
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(service = name, error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let path = std::env::args().nth(1).map(PathBuf::from);
    let result = rt.block_on(async {
        let config: C = crate::load_config(path.as_deref())?;
        run(config, crate::telemetry::shutdown_on_signals()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(service = name, error = %format!("{e:#}"), "exiting with an error");
            ExitCode::FAILURE
        }
    }
}
