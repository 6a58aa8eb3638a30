//! Sink binary: [`sink::run`] under the shared service main.

fn main() -> std::process::ExitCode {
    cdr_kafka::service_main(sink::SERVICE, sink::run)
}
