//! Assembler binary: config, tracing, metrics, then [`assembler::run`].

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdr_kafka::telemetry::init_tracing(assembler::SERVICE);
    let path = std::env::args().nth(1).map(PathBuf::from);
    let config: assembler::Config = cdr_kafka::load_config(path.as_deref())?;
    config.validate()?;
    assembler::run(config, cdr_kafka::telemetry::shutdown_on_signals()).await
}
