//! `flotilla shim exec`'s system part: a new process inside a running container. Runs in the
//! freshly executed, single-threaded `shim exec` (sealed memfd copy of the binary).
//!
//! The parent opens the container PID 1's namespace files (`/proc/<pid>/ns/…`) while it still
//! sees the host, joins the pid namespace (which only affects its children) and forks, so the
//! child is a member of the container's pid namespace. The parent moves the child into the
//! container's cgroup, then releases it. The child joins the ipc, uts, net and cgroup
//! namespaces and the mount namespace last (after it, host paths are gone), resolves the user
//! through the container's `/etc/passwd` and `/etc/group`, applies the container's rlimits,
//! capability sets and `no_new_privs`, changes to the working directory and executes the
//! command (127 not found, 126 not executable, like Docker). A failure before `execve` reaches
//! the parent on a close-on-exec pipe (one status byte and a message). The parent forwards
//! signals, relays a pseudo-terminal when asked, and returns the command's exit status.
//!
//! The helpers shared with the built-in init ([`find_executable`], [`execute`]) live here too.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{PosixRlimitType, Spec};
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::cgroup::Cgroup;
use super::container::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED};
use crate::runtime::config::{ALL_CAPABILITIES, ANNOTATION_USER, DEFAULT_PATH};
use crate::runtime::user::{self, UserError};

/// The signals forwarded to the executed process (Docker's, as the shim's).
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The namespaces the child joins, in order (pid: the parent, before the fork).
const CHILD_NAMESPACES: [(&str, CloneFlags); 5] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Why the process could not be created in the container, or waited for.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the runtime must be single-threaded to join a container, this process has {threads}")]
    NotSingleThreaded { threads: usize },
    #[error("the container's process {pid} is gone")]
    Gone { pid: i32 },
    #[error("open the namespace {path}: {source}")]
    OpenNamespace { path: PathBuf, source: io::Error },
    #[error("join the {ns} namespace: {source}")]
    JoinNamespace { ns: &'static str, source: io::Error },
    #[error("{step}: {source}")]
    Setup {
        step: &'static str,
        source: io::Error,
    },
    #[error("place the process in the container's cgroup: {reason}")]
    Place { reason: String },
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
    #[error("exec: {message}")]
    Exec { status: u8, message: String },
    /// A failure the child reported through the pipe.
    #[error("{message}")]
    Child { status: u8, message: String },
}

impl JoinError {
    /// 127 not found, 126 not executable or no such working directory, 125 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            JoinError::Exec { status, .. } | JoinError::Child { status, .. } => *status,
            JoinError::Chdir { .. } => EXIT_CANNOT_EXECUTE,
            _ => EXIT_SETUP_FAILED,
        }
    }
}

type Result<T, E = JoinError> = std::result::Result<T, E>;

fn setup(step: &'static str) -> impl Fn(nix::Error) -> JoinError {
    move |e| JoinError::Setup {
        step,
        source: e.into(),
    }
}

fn setup_rx(step: &'static str) -> impl Fn(rustix::io::Errno) -> JoinError {
    move |e| JoinError::Setup {
        step,
        source: e.into(),
    }
}

/// What to run in the container.
#[derive(Debug, Clone)]
pub struct Join<'a> {
    /// The container's PID 1 as the host sees it.
    pub pid: i32,
    /// The container's runtime spec (capabilities, environment, rlimits, user, cwd).
    pub spec: &'a Spec,
    pub cgroup: Option<&'a Cgroup>,
    pub args: Vec<String>,
    /// `KEY=VALUE` entries over the container's environment.
    pub env: Vec<String>,
    /// Overrides the container's user (`name`, `uid`, `name:group`, `uid:gid`).
    pub user: Option<String>,
    /// Overrides the container's working directory.
    pub cwd: Option<String>,
    /// Run on a new pseudo-terminal relayed to this process's standard streams.
    pub tty: bool,
}

/// Runs `join` in the container and returns its exit status (128 + signal when killed).
/// Must run in a single-threaded process.
pub fn run(join: &Join<'_>) -> Result<u8> {
    let threads = super::container::thread_count();
    if threads != 1 {
        return Err(JoinError::NotSingleThreaded { threads });
    }
    // All namespace files first, while /proc is the host's and the pid is checked.
    let open = |name: &str| {
        let path = PathBuf::from(format!("/proc/{}/ns/{name}", join.pid));
        File::open(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                JoinError::Gone { pid: join.pid }
            } else {
                JoinError::OpenNamespace { path, source }
            }
        })
    };
    let pid_ns = open("pid")?;
    let namespaces = CHILD_NAMESPACES
        .iter()
        .map(|(name, flag)| Ok((*name, *flag, open(name)?)))
        .collect::<Result<Vec<_>>>()?;

    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(setup("block signals"))?;
    let signals =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(setup("create the signalfd"))?;

    let terminal = if join.tty {
        Some(Terminal::open()?)
    } else {
        None
    };

    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(setup_rx("create a pipe"))
    };
    let (report_read, report_write) = pipe()?;
    let (release_read, release_write) = pipe()?;

    nix::sched::setns(pid_ns.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|e| {
        JoinError::JoinNamespace {
            ns: "pid",
            source: e.into(),
        }
    })?;
    let child = match super::fork().map_err(setup("fork"))? {
        ForkResult::Child => {
            drop(report_read);
            drop(release_write);
            let slave = terminal.as_ref().map(|t| &t.slave);
            child_main(join, &namespaces, slave, release_read, report_write)
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_write);
    drop(release_read);
    let fail = |error: JoinError| {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        error
    };
    if let Some(cg) = join.cgroup
        && let Err(e) = cg.add_pid(child.as_raw())
    {
        drop(release_write);
        return Err(fail(JoinError::Place {
            reason: e.to_string(),
        }));
    }
    if let Err(source) = File::from(release_write).write_all(b"1") {
        return Err(fail(JoinError::Setup {
            step: "release the process",
            source,
        }));
    }
    let mut report = Vec::new();
    let _ = File::from(report_read).read_to_end(&mut report);
    if let Some((&status, message)) = report.split_first() {
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(JoinError::Child {
            status,
            message: String::from_utf8_lossy(message).into_owned(),
        });
    }
    match terminal {
        Some(mut t) => {
            let raw = RawMode::enter();
            let status = t.relay(child, &signals);
            drop(raw);
            status
        }
        None => wait_forwarding(child, &signals),
    }
}

/// The shell's convention for a wait status, if the process ended.
fn exit_status(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some((code & 0xff) as u8),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32).clamp(0, 255) as u8),
        _ => None,
    }
}

/// Forwards signals to `child` until it ends; returns its exit status.
fn wait_forwarding(child: Pid, signals: &SignalFd) -> Result<u8> {
    loop {
        match nix::sys::wait::waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = exit_status(status) {
                    return Ok(code);
                }
            }
            Err(e) => return Err(setup("wait for the process")(e)),
        }
        if let Ok(Some(info)) = signals.read_signal() {
            forward(child, info.ssi_signo as i32);
        }
    }
}

fn forward(child: Pid, signo: i32) {
    if let Ok(sig) = Signal::try_from(signo)
        && sig != Signal::SIGCHLD
    {
        let _ = nix::sys::signal::kill(child, sig);
    }
}

// --- the pseudo-terminal -------------------------------------------------------------------

struct Terminal {
    master: File,
    slave: OwnedFd,
}

impl Terminal {
    fn open() -> Result<Terminal> {
        let size = window_size(io::stdin().as_fd()).unwrap_or(nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(&size, None).map_err(setup("open a pseudo-terminal"))?;
        for fd in [&pty.master, &pty.slave] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
                .map_err(setup_rx("open a pseudo-terminal"))?;
        }
        Ok(Terminal {
            master: File::from(pty.master),
            slave: pty.slave,
        })
    }

    /// Copies stdin to the terminal and the terminal to stdout, forwards signals (and window
    /// size changes), until the child has ended and its output is drained.
    fn relay(&mut self, child: Pid, signals: &SignalFd) -> Result<u8> {
        use rustix::event::{PollFd, PollFlags};
        let stdin = io::stdin();
        let mut stdout = io::stdout();
        let mut stdin_open = true;
        let mut master_open = true;
        let mut exit = None;
        let mut buf = [0u8; 8192];
        loop {
            if exit.is_some() && !master_open {
                break;
            }
            let mut fds = vec![
                PollFd::new(signals, PollFlags::IN),
                PollFd::new(&self.master, PollFlags::IN),
            ];
            if stdin_open {
                fds.push(PollFd::new(&stdin, PollFlags::IN));
            }
            // Once the child is gone, only drain what is buffered.
            let timeout = exit.map(|_| rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            });
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(setup_rx("poll the terminal")(e)),
            }
            let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
            drop(fds);
            if ready[0] {
                if let Ok(Some(info)) = signals.read_signal() {
                    let signo = info.ssi_signo as i32;
                    if signo == Signal::SIGWINCH as i32
                        && let Some(size) = window_size(stdin.as_fd())
                    {
                        set_window_size(self.master.as_fd(), &size);
                    }
                    forward(child, signo);
                }
                if exit.is_none()
                    && let Ok(status) = nix::sys::wait::waitpid(child, Some(WaitPidFlag::WNOHANG))
                {
                    exit = exit_status(status);
                }
            }
            if ready[1] {
                match self.master.read(&mut buf) {
                    Ok(0) | Err(_) => master_open = false,
                    Ok(n) => {
                        let _ = stdout.write_all(&buf[..n]);
                        let _ = stdout.flush();
                    }
                }
            }
            if ready.get(2) == Some(&true) {
                match stdin.lock().read(&mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        let _ = self.master.write_all(&buf[..n]);
                    }
                }
            }
        }
        match exit {
            Some(code) => Ok(code),
            None => {
                let status =
                    nix::sys::wait::waitpid(child, None).map_err(setup("wait for the process"))?;
                Ok(exit_status(status).unwrap_or(EXIT_SETUP_FAILED))
            }
        }
    }
}

fn window_size(fd: BorrowedFd<'_>) -> Option<nix::pty::Winsize> {
    let mut size = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` into `size`, which is live and of that
    // type; the fd is borrowed for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (r == 0 && size.ws_row > 0).then_some(size)
}

fn set_window_size(fd: BorrowedFd<'_>, size: &nix::pty::Winsize) {
    // SAFETY: TIOCSWINSZ only reads one `struct winsize` from `size`.
    let _ = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size as *const _) };
}

/// This process's terminal in raw mode while it relays a pseudo-terminal; restored on drop.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = io::stdin();
        let Ok(saved) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

// --- the child -----------------------------------------------------------------------------

enum Never {}

fn child_main(
    join: &Join<'_>,
    namespaces: &[(&'static str, CloneFlags, File)],
    slave: Option<&OwnedFd>,
    release: OwnedFd,
    report: OwnedFd,
) -> ! {
    let error = match child_setup(join, namespaces, slave, release) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let status = error.exit_status();
    let mut msg = vec![status];
    msg.extend_from_slice(error.to_string().as_bytes());
    let _ = File::from(report).write_all(&msg);
    std::process::exit(i32::from(status))
}

fn child_setup(
    join: &Join<'_>,
    namespaces: &[(&'static str, CloneFlags, File)],
    slave: Option<&OwnedFd>,
    release: OwnedFd,
) -> Result<Never> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(setup_rx("set the parent-death signal"))?;
    // Nothing in the container may ptrace or read the memory of this still-privileged process.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(setup_rx("make the process non-dumpable"))?;
    let mut byte = [0u8; 1];
    match File::from(release).read(&mut byte) {
        Ok(1) => {}
        _ => {
            return Err(JoinError::Setup {
                step: "wait for the release",
                source: io::Error::from(io::ErrorKind::BrokenPipe),
            });
        }
    }
    if let Some(slave) = slave {
        nix::unistd::setsid().map_err(setup("setsid"))?;
        rustix::process::ioctl_tiocsctty(slave)
            .map_err(setup_rx("set the controlling terminal"))?;
        nix::unistd::dup2_stdin(slave).map_err(setup("dup the terminal"))?;
        nix::unistd::dup2_stdout(slave).map_err(setup("dup the terminal"))?;
        nix::unistd::dup2_stderr(slave).map_err(setup("dup the terminal"))?;
    }
    for (ns, flag, file) in namespaces {
        nix::sched::setns(file.as_fd(), *flag).map_err(|e| JoinError::JoinNamespace {
            ns,
            source: e.into(),
        })?;
    }
    let process = join.spec.process().as_ref();
    let ids = resolve_user(join)?;
    let mut env: Vec<String> = process.and_then(|p| p.env().clone()).unwrap_or_default();
    for entry in &join.env {
        set_env(&mut env, entry);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home));
    }
    if join.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    for r in process
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default()
    {
        set_rlimit(r.typ(), r.soft(), r.hard())?;
    }
    let cwd = join
        .cwd
        .clone()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .or_else(|| process.map(|p| p.cwd().clone()))
        .unwrap_or_else(|| PathBuf::from("/"));
    rustix::process::chdir(&cwd).map_err(|e| JoinError::Chdir {
        path: cwd.clone(),
        source: e.into(),
    })?;
    credentials(join.spec, &ids)?;
    if process.and_then(|p| p.no_new_privileges()) == Some(true) {
        rustix::thread::set_no_new_privs(true).map_err(setup_rx("no_new_privs"))?;
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(
        process.and_then(|p| p.user().umask()).unwrap_or(0o022),
    ));
    let (status, message) = execute(&join.args, &env);
    Err(JoinError::Exec { status, message })
}

/// Sets `KEY=VALUE` in `env`, replacing an entry with the same key (a bare `KEY` is ignored).
fn set_env(env: &mut Vec<String>, entry: &str) {
    let Some((key, _)) = entry.split_once('=') else {
        return;
    };
    let prefix = format!("{key}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = entry.to_string(),
        None => env.push(entry.to_string()),
    }
}

struct Ids {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: String,
}

/// The user of the exec (`-u`), else the container's: through the container's own passwd and
/// group files (the child is in its mount namespace).
fn resolve_user(join: &Join<'_>) -> Result<Ids> {
    let u = join.spec.process().as_ref().map(|p| p.user().clone());
    let read = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(JoinError::ReadUserDb {
            path: path.into(),
            source,
        }),
    };
    let text = match &join.user {
        Some(user) => user.clone(),
        None => join
            .spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_USER).cloned())
            .unwrap_or_else(|| {
                u.as_ref()
                    .map(|u| format!("{}:{}", u.uid(), u.gid()))
                    .unwrap_or_default()
            }),
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    let r = user::resolve(&text, &passwd, &group).map_err(|source| JoinError::User { source })?;
    let mut groups: Vec<u32> = if join.user.is_none() {
        u.and_then(|u| u.additional_gids().clone())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for g in r.additional_gids {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Ids {
        uid: r.uid,
        gid: r.gid,
        groups,
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
    .map_err(|e| JoinError::Rlimit {
        typ: typ.to_string(),
        source: e.into(),
    })
}

/// A capability set of the spec as kernel bits (bit n: capability n of [`ALL_CAPABILITIES`]).
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
            .ok_or_else(|| JoinError::Capability {
                name: name.clone(),
                reason: "unknown to this runtime".into(),
            })?;
        bits |= 1 << index;
    }
    Ok(bits)
}

/// The container process's credentials: bounding set, groups, gid, uid, then the effective,
/// permitted, inheritable and ambient sets of the spec (those the runtime holds).
fn credentials(spec: &Spec, ids: &Ids) -> Result<()> {
    let caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref());
    let held = rustix::thread::capabilities(None)
        .map_err(setup_rx("read capabilities"))?
        .permitted
        .bits();
    let want = |set| -> Result<u64> { Ok(cap_bits(set)? & held) };
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
            Err(e) => return Err(setup_rx("drop from the bounding set")(e)),
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(setup_rx("keep capabilities"))?;
    let groups: Vec<rustix::process::Gid> = ids
        .groups
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    rustix::thread::set_thread_groups(&groups).map_err(setup_rx("setgroups"))?;
    let gid = rustix::process::Gid::from_raw(ids.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(setup_rx("setgid"))?;
    let uid = rustix::process::Uid::from_raw(ids.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(setup_rx("setuid"))?;
    rustix::thread::set_keep_capabilities(false).map_err(setup_rx("keep capabilities"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(effective),
            permitted: CapabilitySet::from_bits_retain(permitted),
            inheritable: CapabilitySet::from_bits_retain(inheritable | ambient),
        },
    )
    .map_err(setup_rx("set capabilities"))?;
    for bit in 0..64u32 {
        if ambient & (1 << bit) != 0 {
            rustix::thread::configure_capability_in_ambient_set(
                CapabilitySet::from_bits_retain(1 << bit),
                true,
            )
            .map_err(setup_rx("raise an ambient capability"))?;
        }
    }
    // A change of credentials clears the parent-death signal and the dumpable flag's effect
    // is kept; set the former again.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(setup_rx("set the parent-death signal"))?;
    Ok(())
}

// --- finding and executing a program (shared with the init) --------------------------------

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

/// Finds `name` as execvp does, through `PATH` of `env` (Docker's default without one).
/// Failure: the exit status (127) and Docker's message.
pub fn find_executable(name: &str, env: &[String]) -> Result<PathBuf, (u8, String)> {
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) => Err((
                EXIT_NOT_FOUND,
                format!("{name:?}: stat {name}: {}", lower(&e)),
            )),
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
    Err((
        EXIT_NOT_FOUND,
        format!("{name:?}: executable file not found in $PATH"),
    ))
}

/// Gives the signal state a freshly executed program expects: nothing blocked, `SIGPIPE` (which
/// the Rust runtime ignores, and ignored signals survive `execve`) back to its default.
pub fn reset_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: SIG_DFL installs no handler, so no Rust code can run in signal context; callers
    // are single-threaded processes about to execute a program.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
}

fn cstrings(items: &[String]) -> Option<Vec<CString>> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).ok())
        .collect()
}

/// Executes `args` (looked up through `env`'s `PATH`) with environment `env`, only standard
/// streams inherited and signals reset. Returns only on failure: the exit status (127 not
/// found, 126 not executable) and the message.
pub fn execute(args: &[String], env: &[String]) -> (u8, String) {
    let Some(name) = args.first() else {
        return (EXIT_NOT_FOUND, "no command".into());
    };
    let path = match find_executable(name, env) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let nul = || {
        (
            EXIT_CANNOT_EXECUTE,
            format!("{name:?}: NUL byte in an argument or the environment"),
        )
    };
    let Ok(path_c) = CString::new(path.as_os_str().as_bytes()) else {
        return nul();
    };
    let (Some(argv), Some(envp)) = (cstrings(args), cstrings(env)) else {
        return nul();
    };
    reset_signals();
    super::close_range_cloexec(3);
    let err = nix::unistd::execve(&path_c, &argv, &envp)
        .map(|never| match never {})
        .unwrap_or_else(|e| e);
    let status = if err == nix::Error::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    };
    (
        status,
        format!(
            "{name:?}: {}",
            lower(&io::Error::from_raw_os_error(err as i32))
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_by_key() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        set_env(&mut env, "A=2");
        set_env(&mut env, "B=x=y");
        set_env(&mut env, "NOVALUE");
        assert_eq!(env, ["PATH=/bin", "A=2", "B=x=y"]);
    }

    #[test]
    fn executables_are_found_through_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env).is_ok());
        let (status, message) = find_executable("no-such-command-here", &env).unwrap_err();
        assert_eq!(status, 127);
        assert_eq!(
            message,
            "\"no-such-command-here\": executable file not found in $PATH"
        );
        assert_eq!(find_executable("/no/such", &env).unwrap_err().0, 127);
    }
}
