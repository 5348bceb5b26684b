//! The `flotilla` binary: argument parsing, then the CLI (or, later, the daemon), or — before
//! the CLI parses anything or starts a thread — the hidden, single-threaded `flotilla shim`.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "shim") {
        return flotilla::runtime::shim::main(args.collect());
    }
    flotilla::cli::main()
}
