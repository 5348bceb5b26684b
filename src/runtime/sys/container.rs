//! Creating the container's process from an OCI runtime spec, in the (single-threaded) shim:
//! the shim unshares a new PID namespace for its children and forks, so the child is PID 1 of
//! it; the child joins or creates the other namespaces, builds the root filesystem
//! ([`super::rootfs`]), sets hostname, sysctls, rlimits, user, groups, capabilities and
//! `no_new_privs`, and executes the process. The shim forwards signals to it and waits.
//!
//! Child and shim talk over two close-on-exec pipes: the shim releases the child when it may go
//! on (after `place` put it in its cgroup, when the shim places it), and the child reports a
//! failure before `execve` as one status byte and a message; a successful `execve` closes the
//! pipe with nothing written. A child given `join` files moves itself into its cgroup (writes
//! `0` to each, before it unshares anything): on cgroup v1, a thread moving itself through
//! `tasks` skips the kernel's global threadgroup lock, whose RCU grace period a shim writing
//! the child's pid to `cgroup.procs` waits out (8–12 ms per start on this machine).
//!
//! [`spawn`] creates the process and returns once it has executed (the detached shim then
//! supervises it in its own event loop); [`run`] is spawn plus a foreground wait. The
//! container's standard streams are the shim's ([`Stdio::Inherit`]), pipes the shim holds
//! ([`Stdio::Pipes`]), or a pseudo-terminal slave ([`Stdio::Terminal`]), which also becomes the
//! controlling terminal of the process and `/dev/console`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::exe::ExeError;
use super::process::{self, ProcessError};
use super::rootfs::{self, RootfsError};
use super::seccomp::{self, SeccompError};

pub use super::process::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED};

/// Why the container's process could not be created or waited for.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(
        "the runtime must be single-threaded to create a container, this process has {threads} threads"
    )]
    NotSingleThreaded { threads: usize },
    #[error("the spec has no process")]
    NoProcess,
    #[error("namespace {typ}: {reason}")]
    UnsupportedNamespace { typ: String, reason: String },
    #[error("block signals: {source}")]
    Signals { source: io::Error },
    #[error("create a pipe: {source}")]
    Pipe { source: io::Error },
    #[error("unshare the pid namespace: {source}")]
    UnsharePid { source: io::Error },
    #[error("fork the container process: {source}")]
    Fork { source: io::Error },
    #[error("release the container process: {source}")]
    Release { source: io::Error },
    #[error("place the container process in its cgroup: {reason}")]
    Place { reason: String },
    #[error("set up the standard streams: {source}")]
    Stdio { source: io::Error },
    #[error("wait for the container process {pid}: {source}")]
    Wait { pid: i32, source: io::Error },
    // --- failures in the container's process, before execve ---
    #[error("the shim went away before the container started")]
    ParentGone,
    #[error("set the parent-death signal: {source}")]
    DeathSignal { source: io::Error },
    #[error("join namespace {path}: {source}")]
    JoinNamespace { path: PathBuf, source: io::Error },
    #[error("unshare namespaces: {source}")]
    Unshare { source: io::Error },
    #[error("root filesystem: {source}")]
    Rootfs { source: RootfsError },
    #[error("set hostname {hostname:?}: {source}")]
    Hostname { hostname: String, source: io::Error },
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: io::Error },
    #[error("working directory {path}: {source}")]
    Chdir { path: PathBuf, source: io::Error },
    #[error("{step}: {source}")]
    Credentials {
        step: &'static str,
        source: io::Error,
    },
    #[error("no_new_privs: {source}")]
    NoNewPrivs { source: io::Error },
    #[error("{source}")]
    Process { source: ProcessError },
    #[error("{source}")]
    Exe { source: ExeError },
    #[error("{source}")]
    Seccomp { source: SeccompError },
    #[error("pass the spec and pipes to the sealed re-execution: {source}")]
    Carry { source: io::Error },
    /// A failure the container's process reported through the pipe.
    #[error("{message}")]
    Child { status: u8, message: String },
}

impl ContainerError {
    /// The exit status the shim reports for this failure: 127 when the process was not found,
    /// 126 when it could not be executed, 125 for any other failure (as `docker run` does).
    pub fn exit_status(&self) -> u8 {
        match self {
            ContainerError::Child { status, .. } => *status,
            ContainerError::Process { source } => source.exit_status(),
            _ => EXIT_SETUP_FAILED,
        }
    }
}

type Result<T, E = ContainerError> = std::result::Result<T, E>;

fn io_err(e: impl Into<io::Error>) -> io::Error {
    e.into()
}

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn status(self) -> u8 {
        match self {
            Exit::Code(c) => (c & 0xff) as u8,
            Exit::Signal(s) => (128 + s).clamp(0, 255) as u8,
        }
    }
}

/// Counts this process's threads: forking is only sound when there is exactly one.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

fn namespace_flag(typ: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match typ {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        other => {
            return Err(ContainerError::UnsupportedNamespace {
                typ: format!("{other:?}").to_lowercase(),
                reason: "not supported yet".into(),
            });
        }
    })
}

/// The container process's standard streams.
#[derive(Debug)]
pub enum Stdio {
    /// The shim's own (the foreground `flotilla shim run`).
    Inherit,
    /// Pipe ends: stdin (none: `/dev/null`), stdout and stderr.
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pseudo-terminal slave (opened on the host's devpts at `path`): stdin, stdout, stderr,
    /// the controlling terminal, and `/dev/console` in the container.
    Terminal { slave: OwnedFd, path: PathBuf },
}

/// Creates the container described by `spec` (bundle `bundle`, state dir `state`), forwards
/// the shim's signals to it and waits for it. Must run in a single-threaded process.
pub fn run(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    join: &[PathBuf],
    place: &mut dyn FnMut(Pid) -> Result<(), String>,
) -> Result<Exit> {
    let blocked =
        process::block_forwarded().map_err(|e| ContainerError::Signals { source: io_err(e) })?;
    let child = spawn(spec, bundle, state, Stdio::Inherit, join, place)?;
    supervise(child, &blocked)
}

/// Creates the container's process with `stdio` as its standard streams, lets `place` put it
/// into its cgroup before it goes on (or the child itself, through the `join` files: see the
/// module docs), and returns its pid once it has executed the container's
/// command (or the failure it reported). Must run in a single-threaded process; the caller
/// reaps the child. Signals the caller blocks stay blocked in the child until `execve`.
pub fn spawn(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    stdio: Stdio,
    join: &[PathBuf],
    place: &mut dyn FnMut(Pid) -> Result<(), String>,
) -> Result<Pid> {
    let threads = thread_count();
    if threads != 1 {
        return Err(ContainerError::NotSingleThreaded { threads });
    }
    if spec.process().is_none() {
        return Err(ContainerError::NoProcess);
    }
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut new_pid = false;
    for ns in &namespaces {
        namespace_flag(ns.typ())?;
        if ns.typ() == LinuxNamespaceType::Pid {
            if ns.path().is_some() {
                return Err(ContainerError::UnsupportedNamespace {
                    typ: "pid".into(),
                    reason: "joining an existing pid namespace is not supported".into(),
                });
            }
            new_pid = true;
        }
        if ns.typ() == LinuxNamespaceType::Mount && ns.path().is_some() {
            return Err(ContainerError::UnsupportedNamespace {
                typ: "mount".into(),
                reason: "joining an existing mount namespace is not supported".into(),
            });
        }
    }

    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| ContainerError::Pipe { source: io_err(e) })
    };
    let (report_read, report_write) = pipe()?;
    let (release_read, release_write) = pipe()?;

    // The container's process must run from a sealed copy of the binary; when this process
    // does not, the copy is made here, before the fork: its pages are charged to this process's
    // cgroup, not to the container's memory limit (a 200 MB debug binary would not fit in a
    // small limit), and the child only executes it.
    let sealed = match super::exe::is_sealed() {
        Ok(true) => None,
        Ok(false) => {
            Some(super::exe::sealed_copy().map_err(|source| ContainerError::Exe { source })?)
        }
        Err(source) => return Err(ContainerError::Exe { source }),
    };
    if new_pid {
        nix::sched::unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| ContainerError::UnsharePid { source: io_err(e) })?;
    }
    let fork = super::fork().map_err(|e| ContainerError::Fork { source: io_err(e) })?;
    let child = match fork {
        ForkResult::Child => {
            drop(report_read);
            drop(release_write);
            child_main(
                spec,
                bundle,
                state,
                stdio,
                join,
                release_read,
                report_write,
                sealed,
            )
        }
        ForkResult::Parent { child } => child,
    };
    drop(sealed);
    drop(stdio);
    drop(report_write);
    drop(release_read);

    let fail = |error: ContainerError| {
        // Dropping the release pipe unblocks the child, which exits (ParentGone).
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        error
    };
    if let Err(reason) = place(child) {
        drop(release_write);
        return Err(fail(ContainerError::Place { reason }));
    }
    if let Err(source) = File::from(release_write).write_all(b"1") {
        return Err(fail(ContainerError::Release { source }));
    }

    let mut report = Vec::new();
    let _ = File::from(report_read).read_to_end(&mut report);
    if let Some((&status, message)) = report.split_first() {
        let _ = nix::sys::wait::waitpid(child, None);
        let message = String::from_utf8_lossy(message).into_owned();
        return Err(ContainerError::Child { status, message });
    }
    Ok(child)
}

/// Forwards signals to `child` and reaps it, until it ends.
fn supervise(child: Pid, signals: &SigSet) -> Result<Exit> {
    let wait_error = |e: nix::Error| ContainerError::Wait {
        pid: child.as_raw(),
        source: io_err(e),
    };
    loop {
        match nix::sys::wait::waitpid(child, Some(WaitPidFlag::WNOHANG)).map_err(wait_error)? {
            WaitStatus::Exited(_, code) => return Ok(Exit::Code(code)),
            WaitStatus::Signaled(_, sig, _) => return Ok(Exit::Signal(sig as i32)),
            _ => {}
        }
        match signals.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = nix::sys::signal::kill(child, sig);
            }
        }
    }
}

// --- the container's process ---------------------------------------------------------------

/// What the forked child did with [`Stdio`] before it may have re-executed: the streams are on
/// fds 0, 1 and 2; what is left is a new session (pipes, terminal) and, for a terminal, making
/// fd 0 the controlling terminal and `console` the container's `/dev/console`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streams {
    Inherit,
    Pipes,
    Terminal { console: PathBuf },
}

impl Streams {
    /// The `--stdio` word of `flotilla shim child` (the console path goes separately).
    pub fn kind(&self) -> &'static str {
        match self {
            Streams::Inherit => "inherit",
            Streams::Pipes => "pipes",
            Streams::Terminal { .. } => "terminal",
        }
    }
}

/// Runs in the forked child: places the standard streams, makes sure the process runs from a
/// sealed copy of the binary (re-executing `sealed`, the copy the shim made before the fork, as
/// `flotilla shim child` when the shim itself does not run from one),
/// then sets up the container and executes its process. Never returns: on failure the error
/// goes to the shim through `report` and the child exits.
#[allow(clippy::too_many_arguments)]
fn child_main(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    stdio: Stdio,
    join: &[PathBuf],
    release: OwnedFd,
    report: OwnedFd,
    sealed: Option<OwnedFd>,
) -> ! {
    let error = match place_streams(stdio) {
        Err(e) => e,
        Ok(streams) => match &sealed {
            None => match setup_and_exec(spec, bundle, state, &streams, join, release) {
                Ok(never) => match never {},
                Err(e) => e,
            },
            Some(copy) => {
                reexec_sealed(spec, bundle, state, &streams, join, &release, &report, copy)
            }
        },
    };
    report_failure(report, &error)
}

/// `flotilla shim child`'s part: the container's process, re-executed from a sealed copy of
/// the binary by [`child_main`], goes on with its setup. Never returns.
pub fn continue_child(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    streams: &Streams,
    join: &[PathBuf],
    release: OwnedFd,
    report: OwnedFd,
) -> ! {
    let error = match setup_and_exec(spec, bundle, state, streams, join, release) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report_failure(report, &error)
}

/// Sends `error` to the shim on `report` (status byte, message) and exits with its status.
pub fn report_failure(report: OwnedFd, error: &ContainerError) -> ! {
    let status = error.exit_status();
    let mut msg = vec![status];
    msg.extend_from_slice(error.to_string().as_bytes());
    let _ = File::from(report).write_all(&msg);
    std::process::exit(i32::from(status))
}

/// Re-executes the child from a sealed memfd copy of the binary as `flotilla shim child`: the
/// container can reach this process (it is PID 1 of the container's pid namespace and the one
/// that executes the container's command, which could name `/proc/self/exe`), so it must not
/// run from the flotilla file, while the long-lived shim, outside the container's pid
/// namespace, may. The spec goes in a memfd; the release and report pipes stay open across the
/// exec. Returns only on failure.
#[allow(clippy::too_many_arguments)]
fn reexec_sealed(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    streams: &Streams,
    join: &[PathBuf],
    release: &OwnedFd,
    report: &OwnedFd,
    copy: &OwnedFd,
) -> ContainerError {
    let carry = |e: io::Error| ContainerError::Carry { source: e };
    let spec_fd = match spec_memfd(spec) {
        Ok(fd) => fd,
        Err(e) => return carry(e),
    };
    for fd in [release, report, &spec_fd] {
        if let Err(e) = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()) {
            return carry(e.into());
        }
    }
    let fd = |f: &OwnedFd| std::os::fd::AsRawFd::as_raw_fd(f).to_string().into();
    let mut args: Vec<std::ffi::OsString> = vec![
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "flotilla".into()),
        "shim".into(),
        "child".into(),
        "--bundle".into(),
        bundle.into(),
        "--state".into(),
        state.into(),
        "--stdio".into(),
        streams.kind().into(),
        "--release-fd".into(),
        fd(release),
        "--report-fd".into(),
        fd(report),
        "--spec-fd".into(),
        fd(&spec_fd),
    ];
    if let Streams::Terminal { console } = streams {
        args.push("--console".into());
        args.push(console.into());
    }
    if !join.is_empty() {
        // One argument, a path per line (cgroup paths are flotilla's: no newline in them).
        let mut files = std::ffi::OsString::new();
        for (i, f) in join.iter().enumerate() {
            if i > 0 {
                files.push("\n");
            }
            files.push(f);
        }
        args.push("--join".into());
        args.push(files);
    }
    let source = super::exe::exec_fd(copy, &args);
    ContainerError::Exe { source }
}

/// The spec as JSON in a memfd (offset 0), for the re-executed child to read.
fn spec_memfd(spec: &Spec) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("flotilla-spec", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = File::from(fd);
    // One write of the whole document: `to_writer` on a bare `File` makes a syscall per token
    // (over a thousand for a default spec).
    let json = serde_json::to_vec(spec).map_err(io::Error::other)?;
    file.write_all(&json)?;
    rustix::fs::seek(&file, rustix::fs::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

enum Never {}

/// Puts `stdio` on fds 0, 1 and 2 (stdin of [`Stdio::Pipes`] without one: `/dev/null`).
fn place_streams(stdio: Stdio) -> Result<Streams> {
    let err = |e: nix::Error| ContainerError::Stdio { source: io_err(e) };
    match stdio {
        Stdio::Inherit => Ok(Streams::Inherit),
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let stdin = match stdin {
                Some(fd) => fd,
                None => OwnedFd::from(
                    File::open("/dev/null").map_err(|source| ContainerError::Stdio { source })?,
                ),
            };
            nix::unistd::dup2_stdin(&stdin).map_err(err)?;
            nix::unistd::dup2_stdout(&stdout).map_err(err)?;
            nix::unistd::dup2_stderr(&stderr).map_err(err)?;
            Ok(Streams::Pipes)
        }
        Stdio::Terminal { slave, path } => {
            nix::unistd::dup2_stdin(&slave).map_err(err)?;
            nix::unistd::dup2_stdout(&slave).map_err(err)?;
            nix::unistd::dup2_stderr(&slave).map_err(err)?;
            Ok(Streams::Terminal { console: path })
        }
    }
}

/// A new session for pipes and terminals; a terminal (fd 0) becomes the controlling one.
/// Returns the console path to bind on `/dev/console`.
fn open_session(streams: &Streams) -> Result<Option<&Path>> {
    let err = |e: nix::Error| ContainerError::Stdio { source: io_err(e) };
    match streams {
        Streams::Inherit => Ok(None),
        Streams::Pipes => {
            nix::unistd::setsid().map_err(err)?;
            Ok(None)
        }
        Streams::Terminal { console } => {
            nix::unistd::setsid().map_err(err)?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())
                .map_err(|e| ContainerError::Stdio { source: io_err(e) })?;
            Ok(Some(console))
        }
    }
}

fn setup_and_exec(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    streams: &Streams,
    join: &[PathBuf],
    release: OwnedFd,
) -> Result<Never> {
    let death = |e: rustix::io::Errno| ContainerError::DeathSignal { source: io_err(e) };
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(death)?;
    // The shim writes one byte when the child may go on; end of file means it died.
    let mut byte = [0u8; 1];
    match File::from(release).read(&mut byte) {
        Ok(1) => {}
        _ => return Err(ContainerError::ParentGone),
    }
    // Into its cgroup before anything else (the cgroup namespace below is rooted there).
    for file in join {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|mut f| f.write_all(b"0"))
            .map_err(|e| ContainerError::Place {
                reason: format!("write 0 to {}: {e}", file.display()),
            })?;
    }
    let proc = spec.process().as_ref().ok_or(ContainerError::NoProcess)?;
    let console = open_session(streams)?;

    // Namespaces: join the ones with a path, create the others (pid: done by the shim).
    let mut flags = CloneFlags::empty();
    let mut new_uts = false;
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let flag = namespace_flag(ns.typ())?;
        match ns.path() {
            Some(path) => {
                let file = File::open(path).map_err(|source| ContainerError::JoinNamespace {
                    path: path.clone(),
                    source,
                })?;
                nix::sched::setns(file.as_fd(), flag).map_err(|e| {
                    ContainerError::JoinNamespace {
                        path: path.clone(),
                        source: io_err(e),
                    }
                })?;
            }
            None if flag == CloneFlags::CLONE_NEWPID => {}
            None => {
                new_uts |= flag == CloneFlags::CLONE_NEWUTS;
                flags |= flag;
            }
        }
    }
    nix::sched::unshare(flags).map_err(|e| ContainerError::Unshare { source: io_err(e) })?;
    super::netlo::after_unshare(flags)?;

    rustix::process::umask(rustix::fs::Mode::empty());
    rootfs::prepare(spec, bundle, state, console)
        .map_err(|source| ContainerError::Rootfs { source })?;
    if let Some(hostname) = spec.hostname()
        && new_uts
    {
        rustix::system::sethostname(hostname.as_bytes()).map_err(|e| ContainerError::Hostname {
            hostname: hostname.clone(),
            source: io_err(e),
        })?;
    }
    rootfs::sysctls(spec).map_err(|(key, source)| ContainerError::Sysctl { key, source })?;
    rootfs::protect(spec).map_err(|source| ContainerError::Rootfs { source })?;

    let ids = process::resolve_user(spec, None).map_err(from_process)?;
    let mut env: Vec<String> = proc.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home));
    }
    process::apply_rlimits(proc.rlimits().as_deref().unwrap_or_default()).map_err(from_process)?;
    let cwd = proc.cwd();
    rustix::process::chdir(cwd).map_err(|e| ContainerError::Chdir {
        path: cwd.clone(),
        source: io_err(e),
    })?;
    // The filter goes on last: after no_new_privs, or (without it) while the process still
    // holds CAP_SYS_ADMIN, before its credentials drop. It refuses none of the calls after it.
    let filter = seccomp::for_spec(spec).map_err(|source| ContainerError::Seccomp { source })?;
    let no_new_privs = proc.no_new_privileges() == Some(true);
    let install = |filter: &Option<Vec<libc::sock_filter>>| match filter {
        Some(f) => seccomp::install(f).map_err(|source| ContainerError::Seccomp { source }),
        None => Ok(()),
    };
    if !no_new_privs {
        install(&filter)?;
    }
    process::apply_credentials(proc.capabilities().as_ref(), &ids, process::Missing::Warn)
        .map_err(from_process)?;
    if no_new_privs {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| ContainerError::NoNewPrivs { source: io_err(e) })?;
        install(&filter)?;
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(
        proc.user().umask().unwrap_or(0o022),
    ));
    super::init::run_if_requested(spec, &env)?;
    Err(from_process(process::execute(
        proc.args().as_deref().unwrap_or_default(),
        &env,
    )))
}

fn from_process(source: ProcessError) -> ContainerError {
    ContainerError::Process { source }
}

/// The host's current hard limits, by Docker's ulimit name, for [`crate::runtime::config::render`]
/// to clamp ulimits to (raising a hard limit needs CAP_SYS_RESOURCE).
pub fn host_hard_limits() -> crate::runtime::config::HostLimits {
    use rustix::process::Resource;
    let resources = [
        ("core", Resource::Core),
        ("cpu", Resource::Cpu),
        ("data", Resource::Data),
        ("fsize", Resource::Fsize),
        ("locks", Resource::Locks),
        ("memlock", Resource::Memlock),
        ("msgqueue", Resource::Msgqueue),
        ("nice", Resource::Nice),
        ("nofile", Resource::Nofile),
        ("nproc", Resource::Nproc),
        ("rss", Resource::Rss),
        ("rtprio", Resource::Rtprio),
        ("rttime", Resource::Rttime),
        ("sigpending", Resource::Sigpending),
        ("stack", Resource::Stack),
    ];
    let mut limits = crate::runtime::config::HostLimits::default();
    for (name, resource) in resources {
        if let Some(max) = rustix::process::getrlimit(resource).maximum {
            limits.hard.insert(name.to_string(), max);
        }
    }
    limits
}
