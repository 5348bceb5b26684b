//! The `flotilla` binary: argument parsing, then the CLI (or, later, the daemon or a shim).

fn main() -> std::process::ExitCode {
    flotilla::cli::main()
}
