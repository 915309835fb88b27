//! The `portmon` command. All logic lives in the library; this only runs it.

fn main() -> std::process::ExitCode {
    portmon::cli::main()
}
