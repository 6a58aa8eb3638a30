//! KPI binary: [`kpi::run`] under the shared service main.

fn main() -> std::process::ExitCode {
    cdr_kafka::service_main(kpi::SERVICE, kpi::run)
}
