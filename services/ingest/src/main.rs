//! Ingest binary: [`ingest::run`] under the shared service main.

fn main() -> std::process::ExitCode {
    cdr_kafka::service_main(ingest::SERVICE, ingest::run)
}
