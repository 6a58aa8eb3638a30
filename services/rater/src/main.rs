//! Enricher binary: config, tracing, metrics, then [`rater::run`].

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdr_kafka::telemetry::init_tracing(rater::SERVICE);
    let path = std::env::args().nth(1).map(PathBuf::from);
    let config: rater::Config = cdr_kafka::load_config(path.as_deref())?;
    config.validate()?;
    rater::run(config, cdr_kafka::telemetry::shutdown_on_signals()).await
}
