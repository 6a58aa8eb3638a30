//! Enricher binary: [`enricher::run`] under the shared service main.

fn main() -> std::process::ExitCode {
    cdr_kafka::service_main(enricher::SERVICE, enricher::run)
}
