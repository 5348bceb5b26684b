//! Creating the container's process from an OCI runtime spec, in the (single-threaded) shim:
//! the shim unshares a new PID namespace for its children and forks, so the child is PID 1 of
//! it; the child joins or creates the other namespaces, builds the root filesystem
//! ([`super::rootfs`]), sets hostname, sysctls, rlimits, user, groups, capabilities and
//! `no_new_privs`, and executes the process. The shim forwards signals to it and waits.
//!
//! Child and shim talk over two close-on-exec pipes: the shim releases the child when it may go
//! on (after it placed it in its cgroup), and the child reports a failure before `execve` as one
//! status byte and a message; a successful `execve` closes the pipe with nothing written.
//!
//! [`spawn`] creates the process and returns once it has executed (the detached shim then
//! supervises it in its own event loop); [`run`] is spawn plus a foreground wait. The
//! container's standard streams are the shim's ([`Stdio::Inherit`]), pipes the shim holds
//! ([`Stdio::Pipes`]), or a pseudo-terminal slave ([`Stdio::Terminal`]), which also becomes the
//! controlling terminal of the process and `/dev/console`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::rootfs::{self, RootfsError};
use crate::runtime::config::{ALL_CAPABILITIES, ANNOTATION_USER, DEFAULT_PATH};
use crate::runtime::user::{self, UserError};

/// Exit status of a process that could not be found (Docker's).
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit status of a process that was found but could not be executed (Docker's).
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status when the container could not be created.
pub const EXIT_SETUP_FAILED: u8 = 125;

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
    #[error("{source}")]
    User { source: UserError },
    #[error("read {path}: {source}")]
    ReadUserDb { path: PathBuf, source: io::Error },
    #[error("rlimit {typ}: {source}")]
    Rlimit { typ: String, source: io::Error },
    #[error("working directory {path}: {source}")]
    Chdir { path: PathBuf, source: io::Error },
    #[error("capability {name}: {reason}")]
    Capability { name: String, reason: String },
    #[error("{step}: {source}")]
    Credentials {
        step: &'static str,
        source: io::Error,
    },
    #[error("no_new_privs: {source}")]
    NoNewPrivs { source: io::Error },
    #[error("exec: {message}")]
    Exec { status: u8, message: String },
    /// A failure the container's process reported through the pipe.
    #[error("{message}")]
    Child { status: u8, message: String },
}

impl ContainerError {
    /// The exit status the shim reports for this failure: 127 when the process was not found,
    /// 126 when it could not be executed, 125 for any other failure (as `docker run` does).
    pub fn exit_status(&self) -> u8 {
        match self {
            ContainerError::Exec { status, .. } | ContainerError::Child { status, .. } => *status,
            _ => EXIT_SETUP_FAILED,
        }
    }
}

type Result<T, E = ContainerError> = std::result::Result<T, E>;

fn io_err(e: impl Into<io::Error>) -> io::Error {
    e.into()
}

/// The signals the shim forwards to the container's process.
const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

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
    place: &mut dyn FnMut(Pid) -> Result<(), String>,
) -> Result<Exit> {
    let mut blocked = SigSet::empty();
    for s in FORWARDED {
        blocked.add(s);
    }
    blocked.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
        .map_err(|e| ContainerError::Signals { source: io_err(e) })?;
    let child = spawn(spec, bundle, state, Stdio::Inherit, place)?;
    supervise(child, &blocked)
}

/// Creates the container's process with `stdio` as its standard streams, lets `place` put it
/// into its cgroup before it goes on, and returns its pid once it has executed the container's
/// command (or the failure it reported). Must run in a single-threaded process; the caller
/// reaps the child. Signals the caller blocks stay blocked in the child until `execve`.
pub fn spawn(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    stdio: Stdio,
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

    if new_pid {
        nix::sched::unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| ContainerError::UnsharePid { source: io_err(e) })?;
    }
    let fork = super::fork().map_err(|e| ContainerError::Fork { source: io_err(e) })?;
    let child = match fork {
        ForkResult::Child => {
            drop(report_read);
            drop(release_write);
            child_main(spec, bundle, state, stdio, release_read, report_write)
        }
        ForkResult::Parent { child } => child,
    };
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

/// Runs in the forked child: sets up the container and executes its process. Never returns:
/// on failure the error goes to the shim through `report` and the child exits.
fn child_main(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    stdio: Stdio,
    release: OwnedFd,
    report: OwnedFd,
) -> ! {
    let error = match setup_and_exec(spec, bundle, state, stdio, release) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let status = error.exit_status();
    let mut msg = vec![status];
    msg.extend_from_slice(error.to_string().as_bytes());
    let _ = File::from(report).write_all(&msg);
    std::process::exit(i32::from(status))
}

enum Never {}

/// Makes `stdio` the process's standard streams (and, for a terminal, its controlling
/// terminal in a new session). Returns the console path to bind on `/dev/console`.
fn standard_streams(stdio: Stdio) -> Result<Option<PathBuf>> {
    let err = |e: nix::Error| ContainerError::Stdio { source: io_err(e) };
    match stdio {
        Stdio::Inherit => Ok(None),
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            nix::unistd::setsid().map_err(err)?;
            let stdin = match stdin {
                Some(fd) => fd,
                None => OwnedFd::from(
                    File::open("/dev/null").map_err(|source| ContainerError::Stdio { source })?,
                ),
            };
            nix::unistd::dup2_stdin(&stdin).map_err(err)?;
            nix::unistd::dup2_stdout(&stdout).map_err(err)?;
            nix::unistd::dup2_stderr(&stderr).map_err(err)?;
            Ok(None)
        }
        Stdio::Terminal { slave, path } => {
            nix::unistd::setsid().map_err(err)?;
            rustix::process::ioctl_tiocsctty(&slave)
                .map_err(|e| ContainerError::Stdio { source: io_err(e) })?;
            nix::unistd::dup2_stdin(&slave).map_err(err)?;
            nix::unistd::dup2_stdout(&slave).map_err(err)?;
            nix::unistd::dup2_stderr(&slave).map_err(err)?;
            Ok(Some(path))
        }
    }
}

fn setup_and_exec(
    spec: &Spec,
    bundle: &Path,
    state: &Path,
    stdio: Stdio,
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
    let process = spec.process().as_ref().ok_or(ContainerError::NoProcess)?;
    let console = standard_streams(stdio)?;

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
    rootfs::prepare(spec, bundle, state, console.as_deref())
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

    let ids = resolve_user(spec)?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home));
    }
    for r in process.rlimits().as_deref().unwrap_or_default() {
        set_rlimit(r.typ(), r.soft(), r.hard())?;
    }
    let cwd = process.cwd();
    rustix::process::chdir(cwd).map_err(|e| ContainerError::Chdir {
        path: cwd.clone(),
        source: io_err(e),
    })?;
    credentials(spec, &ids)?;
    if process.no_new_privileges() == Some(true) {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| ContainerError::NoNewPrivs { source: io_err(e) })?;
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(
        process.user().umask().unwrap_or(0o022),
    ));
    super::init::run_if_requested(spec, &env)?;
    exec(process.args().as_deref().unwrap_or_default(), &env)
}

struct Ids {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: String,
}

/// The user: resolved through the container's `/etc/passwd` and `/etc/group` when the spec
/// carries flotilla's user annotation, else the spec's numeric ids.
fn resolve_user(spec: &Spec) -> Result<Ids> {
    let process = spec.process().as_ref().ok_or(ContainerError::NoProcess)?;
    let u = process.user();
    let mut extra: Vec<u32> = u.additional_gids().clone().unwrap_or_default();
    let read = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ContainerError::ReadUserDb {
            path: path.into(),
            source,
        }),
    };
    let annotation = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_USER).cloned());
    let text = annotation.unwrap_or_else(|| format!("{}:{}", u.uid(), u.gid()));
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    let r =
        user::resolve(&text, &passwd, &group).map_err(|source| ContainerError::User { source })?;
    for g in r.additional_gids {
        if !extra.contains(&g) {
            extra.push(g);
        }
    }
    Ok(Ids {
        uid: r.uid,
        gid: r.gid,
        groups: extra,
        home: r.home,
    })
}

fn set_rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> Result<()> {
    use rustix::process::Resource;
    let resource = match typ {
        PosixRlimitType::RlimitCpu => Resource::Cpu,
        PosixRlimitType::RlimitFsize => Resource::Fsize,
        PosixRlimitType::RlimitData => Resource::Data,
        PosixRlimitType::RlimitStack => Resource::Stack,
        PosixRlimitType::RlimitCore => Resource::Core,
        PosixRlimitType::RlimitRss => Resource::Rss,
        PosixRlimitType::RlimitNproc => Resource::Nproc,
        PosixRlimitType::RlimitNofile => Resource::Nofile,
        PosixRlimitType::RlimitMemlock => Resource::Memlock,
        PosixRlimitType::RlimitAs => Resource::As,
        PosixRlimitType::RlimitLocks => Resource::Locks,
        PosixRlimitType::RlimitSigpending => Resource::Sigpending,
        PosixRlimitType::RlimitMsgqueue => Resource::Msgqueue,
        PosixRlimitType::RlimitNice => Resource::Nice,
        PosixRlimitType::RlimitRtprio => Resource::Rtprio,
        PosixRlimitType::RlimitRttime => Resource::Rttime,
    };
    let limit = |v: u64| if v == u64::MAX { None } else { Some(v) };
    rustix::process::setrlimit(
        resource,
        rustix::process::Rlimit {
            current: limit(soft),
            maximum: limit(hard),
        },
    )
    .map_err(|e| ContainerError::Rlimit {
        typ: typ.to_string(),
        source: io_err(e),
    })
}

/// A capability set of the spec as kernel bits (bit n = capability n, the order of
/// [`ALL_CAPABILITIES`]).
fn cap_bits(set: Option<&oci_spec::runtime::Capabilities>) -> Result<u64> {
    let mut bits = 0u64;
    for cap in set.into_iter().flatten() {
        let name = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let index = ALL_CAPABILITIES
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| ContainerError::Capability {
                name: name.clone(),
                reason: "unknown to this runtime".into(),
            })?;
        bits |= 1 << index;
    }
    Ok(bits)
}

/// Bounding set, groups, gid, uid, then effective/permitted/inheritable and ambient sets.
/// Capabilities the runtime itself does not hold cannot be granted: they are left out, with a
/// warning on stderr.
fn credentials(spec: &Spec, ids: &Ids) -> Result<()> {
    let process = spec.process().as_ref().ok_or(ContainerError::NoProcess)?;
    let caps = process.capabilities().as_ref();
    let cred = |step: &'static str| {
        move |e: rustix::io::Errno| ContainerError::Credentials {
            step,
            source: io_err(e),
        }
    };
    let held = rustix::thread::capabilities(None).map_err(cred("read capabilities"))?;
    let held = held.permitted.bits();
    let want = |set| -> Result<u64> {
        let bits = cap_bits(set)?;
        let missing = bits & !held;
        if missing != 0 {
            let names: Vec<&str> = (0..ALL_CAPABILITIES.len())
                .filter(|i| missing & (1 << i) != 0)
                .map(|i| ALL_CAPABILITIES[i])
                .collect();
            eprintln!(
                "flotilla: warning: capabilities {} are not held by the runtime; not granted",
                names.join(", ")
            );
        }
        Ok(bits & held)
    };
    let bounding = want(caps.and_then(|c| c.bounding().as_ref()))?;
    let effective = want(caps.and_then(|c| c.effective().as_ref()))?;
    let permitted = want(caps.and_then(|c| c.permitted().as_ref()))?;
    let inheritable = want(caps.and_then(|c| c.inheritable().as_ref()))?;
    let ambient = want(caps.and_then(|c| c.ambient().as_ref()))?;

    for bit in 0..64u32 {
        if bounding & (1 << bit) != 0 {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << bit,
        )) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(cred("drop from the bounding set")(e)),
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(cred("keep capabilities"))?;
    let groups: Vec<rustix::process::Gid> = ids
        .groups
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    rustix::thread::set_thread_groups(&groups).map_err(cred("setgroups"))?;
    let gid = rustix::process::Gid::from_raw(ids.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(cred("setgid"))?;
    let uid = rustix::process::Uid::from_raw(ids.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(cred("setuid"))?;
    rustix::thread::set_keep_capabilities(false).map_err(cred("keep capabilities"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(effective),
            permitted: CapabilitySet::from_bits_retain(permitted),
            inheritable: CapabilitySet::from_bits_retain(inheritable | ambient),
        },
    )
    .map_err(cred("set capabilities"))?;
    for bit in 0..64u32 {
        if ambient & (1 << bit) != 0 {
            rustix::thread::configure_capability_in_ambient_set(
                CapabilitySet::from_bits_retain(1 << bit),
                true,
            )
            .map_err(cred("raise an ambient capability"))?;
        }
    }
    // A change of credentials clears the parent-death signal: set it again.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(cred("set the parent-death signal"))?;
    Ok(())
}

/// Finds `name` like execvp does, through `PATH` of the process's environment.
fn find_executable(name: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = |message: String| ContainerError::Exec {
        status: EXIT_NOT_FOUND,
        message,
    };
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) => Err(not_found(format!("{name:?}: stat {name}: {}", lower(&e)))),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(not_found(format!(
        "{name:?}: executable file not found in $PATH"
    )))
}

/// An OS error's message, lower-case and without the "(os error N)" suffix.
fn lower(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn exec(args: &[String], env: &[String]) -> Result<Never> {
    let exec_error = |status, message| ContainerError::Exec { status, message };
    let Some(name) = args.first() else {
        return Err(exec_error(EXIT_NOT_FOUND, "no command".into()));
    };
    let path = find_executable(name, env)?;
    let cstr = |s: &[u8]| {
        CString::new(s).map_err(|_| {
            exec_error(
                EXIT_CANNOT_EXECUTE,
                format!("{name:?}: NUL byte in an argument or the environment"),
            )
        })
    };
    let path_c = cstr(path.as_os_str().as_bytes())?;
    let argv: Vec<CString> = args
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<_>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|e| cstr(e.as_bytes()))
        .collect::<Result<_>>()?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| exec_error(EXIT_SETUP_FAILED, format!("unblock signals: {e}")))?;
    // The Rust runtime ignores SIGPIPE, and ignored signals survive execve: give the
    // container's process the default disposition, as any other runtime does.
    // SAFETY: SIG_DFL installs no handler, so no Rust code can run in signal context; this
    // process is the single-threaded child that is about to execute.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    super::close_range_cloexec(3);
    let err = nix::unistd::execve(&path_c, &argv, &envp)
        .map(|never| match never {})
        .unwrap_or_else(|e| e);
    let status = if err == nix::Error::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    };
    Err(exec_error(
        status,
        format!(
            "{name:?}: {}",
            lower(&io::Error::from_raw_os_error(err as i32))
        ),
    ))
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
