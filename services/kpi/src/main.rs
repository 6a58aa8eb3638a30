//! Enricher binary: config, tracing, metrics, then [`kpi::run`].

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdr_kafka::telemetry::init_tracing(kpi::SERVICE);
    let path = std::env::args().nth(1).map(PathBuf::from);
    let config: kpi::Config = cdr_kafka::load_config(path.as_deref())?;
    config.validate()?;
    kpi::run(config, cdr_kafka::telemetry::shutdown_on_signals()).await
}
