//! Assembler binary: [`assembler::run`] under the shared service main.

fn main() -> std::process::ExitCode {
    cdr_kafka::service_main(assembler::SERVICE, assembler::run)
}
