//! Rater binary: [`rater::run`] under the shared service main.

fn main() -> std::process::ExitCode {
    cdr_kafka::service_main(rater::SERVICE, rater::run)
}
