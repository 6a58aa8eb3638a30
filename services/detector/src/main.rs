//! Detector binary: config, tracing, metrics, then [`detector::run`].

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdr_kafka::telemetry::init_tracing(detector::SERVICE);
    let path = std::env::args().nth(1).map(PathBuf::from);
    let config: detector::Config = cdr_kafka::load_config(path.as_deref())?;
    config.validate()?;
    detector::run(config, cdr_kafka::telemetry::shutdown_on_signals()).await
}
