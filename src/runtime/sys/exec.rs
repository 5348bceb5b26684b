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
//! The steps it shares with the container's process and the init are [`super::process`]'s.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitPidFlag;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Spec;

use super::cgroup::Cgroup;
use super::process::{self, EXIT_CANNOT_EXECUTE, EXIT_SETUP_FAILED, ProcessError};
use super::seccomp::{self, SeccompError};

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
    #[error("working directory {path}: {source}")]
    Chdir { path: PathBuf, source: io::Error },
    #[error("{source}")]
    Process { source: ProcessError },
    #[error("{source}")]
    Seccomp { source: SeccompError },
    /// A failure the child reported through the pipe.
    #[error("{message}")]
    Child { status: u8, message: String },
}

impl JoinError {
    /// 127 not found, 126 not executable or no such working directory, 125 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            JoinError::Child { status, .. } => *status,
            JoinError::Process { source } => source.exit_status(),
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

    let mask = process::block_forwarded().map_err(setup("block signals"))?;
    let signals =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(setup("create the signalfd"))?;

    let terminal = if join.tty {
        Some(Terminal::open(join.pid)?)
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

/// Forwards signals to `child` until it ends; returns its exit status.
fn wait_forwarding(child: Pid, signals: &SignalFd) -> Result<u8> {
    loop {
        match nix::sys::wait::waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = process::status_code(status) {
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
    /// A pseudo-terminal of this process's terminal size: on the devpts of the container of
    /// `pid` (so that `tty` in the container names it, /dev/pts/N), else on the host's.
    fn open(pid: i32) -> Result<Terminal> {
        let size = window_size(io::stdin().as_fd()).unwrap_or(nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        if let Some(t) = Terminal::open_in(pid, &size) {
            return Ok(t);
        }
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

    /// A pseudo-terminal from the container's `/dev/pts/ptmx` (reached through its root from
    /// this process, which still sees the host), the slave opened as the master's peer.
    fn open_in(pid: i32, size: &nix::pty::Winsize) -> Option<Terminal> {
        use rustix::fs::{Mode, OFlags};
        let ptmx = format!("/proc/{pid}/root/dev/pts/ptmx");
        let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
        let master = rustix::fs::open(ptmx.as_str(), flags, Mode::empty()).ok()?;
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads one int from `unlock`, live for the call; the fd is open.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
            return None;
        }
        // SAFETY: TIOCGPTPEER takes the open flags by value and returns a new fd or -1.
        let peer = unsafe {
            libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if peer < 0 {
            return None;
        }
        // SAFETY: `peer` is a fresh fd the kernel just returned, owned by nothing else.
        let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(peer) };
        set_window_size(master.as_fd(), size);
        Some(Terminal {
            master: File::from(master),
            slave,
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
                    exit = process::status_code(status);
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
                Ok(process::status_code(status).unwrap_or(EXIT_SETUP_FAILED))
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

/// The size of the terminal `fd`, `(rows, cols)`; none when it is not a terminal.
pub fn terminal_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    window_size(fd).map(|s| (s.ws_row, s.ws_col))
}

/// Sets the window size of the pseudo-terminal `fd` (master or slave) to `rows` × `cols`; the
/// kernel signals SIGWINCH to the terminal's foreground process group.
pub fn resize_terminal(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ only reads one `struct winsize` from `size`, which is live for the
    // call; the fd is borrowed for its duration.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size as *const _) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `file` (a non-blocking pseudo-terminal master) registered with the current tokio runtime's
/// reactor, for the daemon's exec sessions. Must be called inside a runtime.
pub fn register_async(file: File) -> io::Result<tokio::io::unix::AsyncFd<File>> {
    // SAFETY: the AsyncFd takes ownership of `file`, so its fd stays open and refers to the
    // same open file description until the AsyncFd is dropped (which deregisters it before the
    // File closes it), and `File::as_raw_fd` always returns that one fd.
    unsafe { tokio::io::unix::AsyncFd::register(file) }.map_err(|e| e.into_parts().1)
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
    let proc = join.spec.process().as_ref();
    let from = |source| JoinError::Process { source };
    let ids = process::resolve_user(join.spec, join.user.as_deref()).map_err(from)?;
    let mut env: Vec<String> = proc.and_then(|p| p.env().clone()).unwrap_or_default();
    for entry in &join.env {
        set_env(&mut env, entry);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home));
    }
    if join.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process::apply_rlimits(
        proc.and_then(|p| p.rlimits().as_deref())
            .unwrap_or_default(),
    )
    .map_err(from)?;
    let cwd = join
        .cwd
        .clone()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .or_else(|| proc.map(|p| p.cwd().clone()))
        .unwrap_or_else(|| PathBuf::from("/"));
    rustix::process::chdir(&cwd).map_err(|e| JoinError::Chdir {
        path: cwd.clone(),
        source: e.into(),
    })?;
    // The container's seccomp filter, last (see `container`): after no_new_privs, or before
    // the credentials drop without it.
    let filter = seccomp::for_spec(join.spec).map_err(|source| JoinError::Seccomp { source })?;
    let no_new_privs = proc.and_then(|p| p.no_new_privileges()) == Some(true);
    let install = |filter: &Option<Vec<libc::sock_filter>>| match filter {
        Some(f) => seccomp::install(f).map_err(|source| JoinError::Seccomp { source }),
        None => Ok(()),
    };
    if !no_new_privs {
        install(&filter)?;
    }
    let caps = proc.and_then(|p| p.capabilities().as_ref());
    process::apply_credentials(caps, &ids, process::Missing::Quiet).map_err(from)?;
    if no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(setup_rx("no_new_privs"))?;
        install(&filter)?;
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(
        proc.and_then(|p| p.user().umask()).unwrap_or(0o022),
    ));
    Err(from(process::execute(&join.args, &env)))
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
}
