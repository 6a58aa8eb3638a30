//! Detector binary: [`detector::run`] under the shared service main.

fn main() -> std::process::ExitCode {
    cdr_kafka::service_main(detector::SERVICE, detector::run)
}
