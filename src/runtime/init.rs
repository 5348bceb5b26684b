//! The built-in init (`init: true`, `--init`), run as the container's PID 1. Like tini, it
//!
//! - starts the command as its only direct child, in a new process group (made the terminal's
//!   foreground group when the container has a terminal);
//! - forwards SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 and SIGWINCH to it (a PID 1
//!   without handlers never sees them: the kernel drops default-action signals sent to a
//!   namespace's init — the reason `init: true` exists);
//! - reaps every process that ends up as its child (orphans are re-parented to PID 1), so no
//!   zombie accumulates;
//! - exits with the command's exit status (128 + signal when it was killed) once it ended.
//!
//! In a container the shim's process becomes the init in place, after the container's setup
//! (see [`crate::runtime::sys::init`] for how and why). This module is also the hidden
//! `flotilla shim init -- CMD…`, the same init as a program (for a static build executed inside
//! a container, and to try it by hand), with this process's environment.

use std::ffi::OsString;

use crate::runtime::sys::container::EXIT_SETUP_FAILED;
use crate::runtime::sys::init::{self, InitError};

/// The command after `--` (a leading `--` is optional); none: a usage error.
fn command(args: &[OsString]) -> Option<Vec<String>> {
    let args = match args.first() {
        Some(a) if a == "--" => &args[1..],
        _ => args,
    };
    let cmd: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect::<Option<_>>()?;
    (!cmd.is_empty()).then_some(cmd)
}

/// Entry point of `flotilla shim init -- CMD…`; returns the exit status.
pub fn main(args: &[OsString]) -> u8 {
    let Some(cmd) = command(args) else {
        eprintln!("flotilla init: usage: flotilla shim init -- CMD [ARG…]");
        return 2;
    };
    let env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v.to_str()?)))
        .collect();
    match init::run(&cmd, &env) {
        Ok(status) => status,
        Err(e @ (InitError::NotSingleThreaded { .. } | InitError::Setup { .. })) => {
            eprintln!("flotilla init: {e}");
            EXIT_SETUP_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_after_dashes() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            command(&os(&["--", "sh", "-c", "x"])).unwrap(),
            ["sh", "-c", "x"]
        );
        assert_eq!(command(&os(&["sleep", "1"])).unwrap(), ["sleep", "1"]);
        assert_eq!(command(&os(&["--"])), None);
        assert_eq!(command(&[]), None);
    }

    #[test]
    fn refuses_a_multi_threaded_process() {
        // The test harness runs tests on their own threads.
        let r = init::run(&["true".into()], &[]);
        assert!(matches!(r, Err(InitError::NotSingleThreaded { .. })));
    }
}
