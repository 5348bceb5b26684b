//! The built-in init (`init: true`, `--init`; the behaviour is described in
//! [`crate::runtime::init`]): PID 1 of the container that starts the command as its child,
//! forwards signals to it, reaps every zombie and exits with the command's status.
//!
//! How the init gets into the container, and why so: the container's process is forked by the
//! shim, which runs from a sealed memfd copy of the flotilla binary ([`super::exe`]). When the
//! spec asks for the init, the container's process does not execute anything at the end of its
//! setup ([`run_if_requested`], the one hook in [`super::container`], right where it would
//! execute the command): with its root filesystem, namespaces, credentials, capabilities,
//! `no_new_privs`, rlimits and working directory already those of the container, it *becomes*
//! the init in place — it closes every inherited descriptor beyond the standard streams, names
//! itself `flotilla-init` (comm and `/proc/1/cmdline`, so no host path shows), and runs
//! [`run`]. Executing a binary from inside the container was the alternative: a sealed memfd can
//! be executed with `execveat(fd, "", AT_EMPTY_PATH)`, but flotilla is dynamically linked and
//! the container's root has no (or another) dynamic loader and libc, so that only works for a
//! static build. In place, nothing is mounted into or executed from the container: `/proc/1/exe`
//! is the anonymous, sealed memfd (`F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`),
//! which the container can neither write nor replace (checked before the init starts).
//!
//! The command is looked up before the init starts, so a missing command fails the start with
//! 127 (and its message) like a container without init.
//!
//! The forwarded signals stay blocked and are read from a signalfd, but each gets a real (empty)
//! handler so that `SigCgt` in `/proc/1/status` says the init catches them, which the lifecycle's
//! `stop` relies on (a PID 1 that does not catch the stop signal is killed at once).

use std::ffi::CString;
use std::io;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Spec;

use super::container::ContainerError;
use super::process::{
    self, EXIT_NOT_FOUND, EXIT_SETUP_FAILED, FORWARDED, ProcessError, execute, find_executable,
};
use crate::runtime::config::ANNOTATION_INIT;

/// The init's name (comm and `/proc/1/cmdline`).
pub const INIT_NAME: &str = "flotilla-init";

/// Why the init could not start its child.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("the init must be single-threaded, this process has {threads} threads")]
    NotSingleThreaded { threads: usize },
    #[error("init: {step}: {source}")]
    Setup {
        step: &'static str,
        source: io::Error,
    },
}

fn setup(step: &'static str) -> impl Fn(nix::Error) -> InitError {
    move |e| InitError::Setup {
        step,
        source: e.into(),
    }
}

/// Whether the spec asks for the built-in init.
pub fn wants_init(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_INIT))
        .is_some_and(|v| v == "true")
}

/// The container-setup hook, called right where the container's command would be executed
/// (`env`: its environment): when the spec asks for `init`, this process becomes the init and
/// exits with the command's status; it returns only on failure. Without `init` it does nothing.
pub(crate) fn run_if_requested(spec: &Spec, env: &[String]) -> Result<(), ContainerError> {
    if !wants_init(spec) {
        return Ok(());
    }
    let fail = |status: u8, message: String| ContainerError::Process {
        source: ProcessError::Exec { status, message },
    };
    let args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    let Some(name) = args.first() else {
        return Err(fail(EXIT_NOT_FOUND, "no command".into()));
    };
    find_executable(name, env).map_err(|source| ContainerError::Process { source })?;
    if !super::exe::is_sealed().unwrap_or(false) {
        return Err(fail(
            EXIT_SETUP_FAILED,
            "init: the runtime does not run from a sealed copy of its binary".into(),
        ));
    }
    if let Ok(name) = CString::new(INIT_NAME) {
        let _ = rustix::thread::set_name(&name);
    }
    rename_cmdline(INIT_NAME);
    // Everything beyond the standard streams goes, including the pipe on which the shim waits
    // for this process to execute: closing it is what tells the shim the container started.
    close_from(3);
    let status = match run(&args, env) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("flotilla init: {e}");
            EXIT_SETUP_FAILED
        }
    };
    std::process::exit(i32::from(status))
}

/// Closes every fd from `first` on.
fn close_from(first: u32) {
    // SAFETY: after this call no fd above the standard streams is used again by this process:
    // the caller is the container's single-threaded process about to run the init, which
    // creates its own fds afterwards; Rust objects that still own a closed fd are never used
    // (the process exits from the init loop without returning to them).
    let _ = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
}

/// Overwrites this process's argument area (what `/proc/<pid>/cmdline` shows) with `name`, so
/// the shim's command line (with host paths) does not show inside the container.
fn rename_cmdline(name: &str) {
    super::process::overwrite_cmdline(None, name.as_bytes(), name.len() + 1);
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs an empty handler for each of `signals` (which stay blocked and are read from a
/// signalfd), so that `SigCgt` shows them as caught. `execve` resets such handlers to the
/// default, so the command starts clean.
fn install_handlers(signals: &[Signal]) -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(ignore_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &s in signals {
        // SAFETY: the handler does nothing, which is trivially async-signal-safe; the signals
        // stay blocked, so it is not even expected to run.
        unsafe { nix::sys::signal::sigaction(s, &action) }?;
    }
    Ok(())
}

/// The init: starts `cmd` with environment `env` as its child in a new process group (the
/// terminal's foreground group when there is a terminal), forwards signals to it, reaps every
/// child, and returns the command's exit status once it has ended. Single-threaded only.
pub fn run(cmd: &[String], env: &[String]) -> Result<u8, InitError> {
    let threads = super::container::thread_count();
    if threads != 1 {
        return Err(InitError::NotSingleThreaded { threads });
    }
    // Orphans come to a namespace's PID 1 anyway; as a subreaper the init also reaps them
    // outside a new pid namespace.
    let _ = rustix::process::set_child_subreaper(rustix::process::getpid().into());
    let mask = process::block_forwarded().map_err(setup("block signals"))?;
    install_handlers(&FORWARDED).map_err(setup("install signal handlers"))?;
    let signals =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(setup("create the signalfd"))?;
    let child = match super::fork().map_err(setup("fork"))? {
        ForkResult::Child => {
            drop(signals);
            child_exec(cmd, env)
        }
        ForkResult::Parent { child } => child,
    };
    Ok(supervise(child, &signals))
}

/// In the child: a new process group, the terminal's foreground one when stdin is a terminal,
/// then the command. Never returns.
fn child_exec(cmd: &[String], env: &[String]) -> ! {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let stdin = io::stdin();
    if nix::unistd::isatty(&stdin).unwrap_or(false) {
        // A background group may take the terminal only with SIGTTOU blocked (it stays blocked,
        // with the rest of the init's mask, until the command executes).
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
        let _ = nix::unistd::tcsetpgrp(&stdin, nix::unistd::getpid());
    }
    let error = execute(cmd, env);
    eprintln!("flotilla init: {error}");
    std::process::exit(i32::from(error.exit_status()))
}

/// Forwards signals to `child` and reaps every child until `child` has ended; returns its exit
/// status.
fn supervise(child: Pid, signals: &SignalFd) -> u8 {
    loop {
        // Reap everything that has ended: the command, and orphans re-parented to the init.
        let mut exit = None;
        while let Ok(status) =
            nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
        {
            if status == WaitStatus::StillAlive {
                break;
            }
            if status.pid() == Some(child) {
                exit = process::status_code(status);
            }
        }
        if let Some(code) = exit {
            return code;
        }
        if let Ok(Some(info)) = signals.read_signal()
            && let Ok(sig) = Signal::try_from(info.ssi_signo as i32)
            && sig != Signal::SIGCHLD
        {
            let _ = nix::sys::signal::kill(child, sig);
        }
    }
}
