//! The fork server ("zygote") for shim processes: a single-threaded `flotilla shim zygote`
//! that a launcher (the daemon) starts once from its sealed copy of the binary and that then
//! forks, instead of a fresh `execve` of the 40 MB binary (dynamic loader, relocations, Rust
//! init: ~4 ms), a child per `flotilla shim …` command. Every child runs from the same sealed
//! memfd as the zygote ([`super::exe`]): the CVE-2019-5736 guarantee is unchanged.
//!
//! Protocol, over a `SOCK_SEQPACKET` socketpair whose far end the zygote inherits
//! (`flotilla shim --exe-fd N zygote --socket M`):
//! - request (launcher → zygote, one message): the shim's arguments, each ended by a NUL
//!   byte, with four fds by `SCM_RIGHTS`: a reply socket (the far end of a socketpair made for
//!   this request), then what becomes the child's stdin, stdout and stderr.
//! - replies (on that request's own socket, so concurrent requests never share a stream):
//!   `pid N` from the child itself as its first act (so a pid is known even when the zygote
//!   dies right after the fork), then `status W` (the raw wait status) from the zygote when it
//!   has reaped the child. End of stream without `pid` means that nothing ran; without
//!   `status`, that the zygote died while the child ran.
//!
//! The forked child is set up as a fresh `execve` would leave it: the received fds on 0/1/2
//! and no other fd open, no signal blocked, default dispositions (`SIGPIPE` ignored, as the
//! Rust runtime has it); environment and working directory are the zygote's, i.e. the
//! launcher's when it started the zygote. It then runs the shim's dispatch and `_exit`s with
//! its status, never returning into the zygote's loop (none of the zygote's destructors run).
//! The zygote never writes to stdout (a buffered byte would be inherited by every child), ends
//! when the launcher's end of the socket closes, and reaps its children (signalfd, SIGCHLD).

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::Arc;

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::ForkResult;
use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The largest request (the arguments of one shim command).
const MAX_REQUEST: usize = 64 * 1024;
/// Bytes of padding in the zygote's arguments (its last one, spaces): room for a forked
/// child's command line ([`set_cmdline`]).
pub const ARG_SPACE: usize = 1024;
/// Fds per request: reply socket, stdin, stdout, stderr.
const FDS: usize = 4;

/// Why a request through the zygote failed.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    /// Nothing was forked for this request (the zygote is gone or refused it): running the
    /// command another way is safe.
    #[error("the fork server did not run the command: {0}")]
    NotRun(io::Error),
    /// The command's process was forked, but its exit status is unknown (the zygote died
    /// while it ran, or reading its output failed): it must not be run again.
    #[error("the fork server lost the command (pid {pid:?}): {source}")]
    Lost { pid: Option<i32>, source: io::Error },
}

/// The launcher's handle on a running zygote. Dropping it ends the zygote (its socket closes,
/// and it is killed and reaped by pid): no zygote outlives its handle.
#[derive(Debug)]
pub struct Zygote {
    child: Child,
    socket: OwnedFd,
}

impl Zygote {
    /// Starts `flotilla shim zygote` from `copy`, the sealed copy of the binary at `exe`
    /// ([`super::exe::sealed_command`]), in a process group of its own (a terminal's Ctrl-C
    /// aimed at the launcher does not reach it) with stdin and stdout on `/dev/null`; its
    /// stderr (only its own diagnostics) is the launcher's.
    pub fn start(exe: &Path, copy: &Arc<OwnedFd>) -> io::Result<Zygote> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let mut cmd = super::exe::sealed_command(exe, copy);
        cmd.arg("zygote")
            .arg("--socket")
            .arg(theirs.as_raw_fd().to_string())
            .arg(" ".repeat(ARG_SPACE))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        let raw = theirs.as_raw_fd();
        // SAFETY: the closure runs in the forked child before `execve`, where only
        // async-signal-safe calls are allowed: one `fcntl(F_SETFD, 0)` on `raw`, which
        // `theirs` keeps open in the parent until `spawn` returns (so the number is open in
        // the child); it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok(Zygote {
            child,
            socket: ours,
        })
    }

    /// The zygote's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `flotilla shim ARGS` as a child of the zygote with `input` on its stdin; its
    /// output and exit status, as [`std::process::Command::output`] gives them.
    pub fn output(&self, args: &[OsString], input: &[u8]) -> Result<Output, ZygoteError> {
        let not_run = ZygoteError::NotRun;
        let (reply, reply_theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| not_run(e.into()))?;
        let (stdin_theirs, stdin_ours) = if input.is_empty() {
            let null = std::fs::File::open("/dev/null").map_err(not_run)?;
            (OwnedFd::from(null), None)
        } else {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| not_run(e.into()))?;
            rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| not_run(e.into()))?;
            (r, Some(w))
        };
        let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| not_run(e.into()))?;
        let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| not_run(e.into()))?;

        let mut message = Vec::new();
        for a in args {
            if a.as_bytes().contains(&0) {
                return Err(not_run(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("argument with a NUL byte: {a:?}"),
                )));
            }
            message.extend_from_slice(a.as_bytes());
            message.push(0);
        }
        if message.len() > MAX_REQUEST {
            return Err(not_run(io::Error::new(
                io::ErrorKind::InvalidInput,
                "arguments too long for the fork server",
            )));
        }
        let fds = [
            reply_theirs.as_fd(),
            stdin_theirs.as_fd(),
            out_w.as_fd(),
            err_w.as_fd(),
        ];
        send_with_fds(&self.socket, &message, &fds).map_err(not_run)?;
        drop((reply_theirs, stdin_theirs, out_w, err_w));
        collect(reply, stdin_ours, input, out_r, err_r)
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // The zygote ends by itself when the socket closes; killing it (by the pid of an
        // unreaped child, so never another process) makes that immediate.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_with_fds(socket: &OwnedFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != data.len() {
        return Err(io::Error::other("short send to the fork server"));
    }
    Ok(())
}

/// What the launcher learnt on a request's reply socket.
#[derive(Default)]
struct Replies {
    pid: Option<i32>,
    status: Option<i32>,
    closed: bool,
}

impl Replies {
    fn read(&mut self, socket: &OwnedFd) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = match rustix::io::read(socket, &mut buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            self.closed = true;
            return Ok(());
        }
        let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
        let number = |prefix: &str| text.strip_prefix(prefix).and_then(|v| v.parse().ok());
        if let Some(pid) = number("pid ") {
            self.pid = Some(pid);
        } else if let Some(status) = number("status ") {
            self.status = Some(status);
        }
        Ok(())
    }
}

/// Pumps `input` into the child's stdin, reads its stdout and stderr to their end and the
/// replies until the exit status (or the end of the reply stream).
fn collect(
    reply: OwnedFd,
    mut stdin: Option<OwnedFd>,
    input: &[u8],
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> Result<Output, ZygoteError> {
    let mut replies = Replies::default();
    let mut written = 0;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut streams = [Some(stdout), Some(stderr)];
    let lost = |replies: &Replies, source: io::Error| {
        if replies.pid.is_some() {
            ZygoteError::Lost {
                pid: replies.pid,
                source,
            }
        } else {
            ZygoteError::NotRun(source)
        }
    };
    loop {
        let reply_done = replies.status.is_some() || replies.closed;
        if reply_done && streams.iter().all(Option::is_none) {
            break;
        }
        // Slots: 0 reply, 1 stdin, 2 stdout, 3 stderr; absent ones are not polled.
        let mut which: Vec<usize> = Vec::with_capacity(4);
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
        if !reply_done {
            which.push(0);
            fds.push(PollFd::new(&reply, PollFlags::IN));
        }
        if let Some(w) = &stdin {
            which.push(1);
            fds.push(PollFd::new(w, PollFlags::OUT));
        }
        for (i, s) in streams.iter().enumerate() {
            if let Some(s) = s {
                which.push(2 + i);
                fds.push(PollFd::new(s, PollFlags::IN));
            }
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(lost(&replies, e.into())),
        }
        let ready: Vec<usize> = which
            .iter()
            .zip(&fds)
            .filter(|(_, p)| !p.revents().is_empty())
            .map(|(slot, _)| *slot)
            .collect();
        drop(fds);
        for slot in ready {
            match slot {
                0 => replies.read(&reply).map_err(|e| lost(&replies, e))?,
                1 => {
                    let Some(w) = &stdin else { continue };
                    match rustix::io::write(w, &input[written..]) {
                        Ok(n) => written += n,
                        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                        // The child closed its stdin (EPIPE): it reads no more.
                        Err(_) => written = input.len(),
                    }
                    if written >= input.len() {
                        stdin = None;
                    }
                }
                _ => {
                    let i = slot - 2;
                    let Some(s) = &streams[i] else { continue };
                    let mut buf = [0u8; 8192];
                    match rustix::io::read(s, &mut buf) {
                        Ok(0) => streams[i] = None,
                        Ok(n) => {
                            let sink = if i == 0 { &mut out } else { &mut err };
                            sink.extend_from_slice(&buf[..n]);
                        }
                        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(lost(&replies, e.into())),
                    }
                }
            }
        }
    }
    match (replies.pid, replies.status) {
        (Some(_), Some(status)) => Ok(Output {
            status: ExitStatus::from_raw(status),
            stdout: out,
            stderr: err,
        }),
        (None, _) => Err(ZygoteError::NotRun(io::Error::other(
            "the fork server went away before forking",
        ))),
        (pid, None) => Err(ZygoteError::Lost {
            pid,
            source: io::Error::other("the fork server went away while the command ran"),
        }),
    }
}

/// The zygote's loop (`flotilla shim zygote --socket N`): serves requests on the inherited
/// socket `raw` until the launcher closes it, each in a forked child that runs `dispatch`
/// (the shim's own, with the request's arguments) and exits with its status. Returns the
/// zygote's exit status.
pub fn serve(raw: i32, dispatch: fn(&[OsString]) -> u8) -> u8 {
    match try_serve(raw, dispatch) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("flotilla shim zygote: {e}");
            1
        }
    }
}

fn try_serve(raw: i32, dispatch: fn(&[OsString]) -> u8) -> io::Result<()> {
    let socket = super::exe::inherited_fd(raw)?;
    // The padding argument need not show: the command line without it, NULs after.
    let own: Vec<Vec<u8>> = std::env::args_os()
        .map(|a| a.into_vec())
        .filter(|a| !a.is_empty() && !a.iter().all(|b| *b == b' '))
        .collect();
    let area = super::process::arg_area();
    super::process::overwrite_cmdline(area, &own.join(&0u8), 1);
    let threads = super::container::thread_count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "the fork server must be single-threaded (it has {threads} threads)"
        )));
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    // Children by pid → their reply socket (for the exit status).
    let mut children: std::collections::HashMap<i32, OwnedFd> = std::collections::HashMap::new();
    loop {
        let mut fds = [
            PollFd::new(&socket, PollFlags::IN),
            PollFd::new(&signals, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let (request_ready, child_exited) =
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if child_exited {
            while let Ok(Some(_)) = signals.read_signal() {}
            reap(&mut children);
        }
        if request_ready {
            match receive(&socket)? {
                Received::Closed => return Ok(()),
                Received::Nothing => {}
                Received::Bad(reason) => eprintln!("flotilla shim zygote: {reason}"),
                Received::Request { args, fds } => {
                    if let Some((pid, reply)) = fork_child(args, fds, dispatch, area) {
                        children.insert(pid, reply);
                    }
                }
            }
        }
    }
}

/// Reaps every exited child and sends its status on its reply socket.
fn reap(children: &mut std::collections::HashMap<i32, OwnedFd>) {
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                let Some(pid) = status.pid() else { return };
                let raw = match status {
                    WaitStatus::Exited(_, code) => (code & 0xff) << 8,
                    WaitStatus::Signaled(_, sig, core) => {
                        (sig as i32) | if core { 0x80 } else { 0 }
                    }
                    _ => continue,
                };
                if let Some(reply) = children.remove(&pid.as_raw()) {
                    let _ = rustix::net::send(
                        &reply,
                        format!("status {raw}").as_bytes(),
                        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                    );
                }
            }
        }
    }
}

enum Received {
    Closed,
    Nothing,
    Bad(String),
    Request {
        args: Vec<OsString>,
        fds: Vec<OwnedFd>,
    },
}

fn receive(socket: &OwnedFd) -> io::Result<Received> {
    let mut data = vec![0u8; MAX_REQUEST];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut data)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Ok(msg) => break msg,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Ok(Received::Nothing),
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    if msg
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Ok(Received::Bad("truncated request".into()));
    }
    if fds.len() != FDS {
        return Ok(Received::Bad(format!(
            "request with {} fds, not {FDS}",
            fds.len()
        )));
    }
    let args = data[..msg.bytes].split(|b| *b == 0).collect::<Vec<_>>();
    // Each argument ends with a NUL: the last piece is empty.
    let args = match args.split_last() {
        Some((&[], rest)) => rest
            .iter()
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect(),
        _ => return Ok(Received::Bad("request not NUL-terminated".into())),
    };
    Ok(Received::Request { args, fds })
}

/// Forks the child for one request; the parent gets its pid and reply socket (none when the
/// fork failed: the reply socket closes, and the launcher sees that nothing ran).
fn fork_child(
    args: Vec<OsString>,
    fds: Vec<OwnedFd>,
    dispatch: fn(&[OsString]) -> u8,
    area: Option<(usize, usize)>,
) -> Option<(i32, OwnedFd)> {
    let Ok([reply, stdin, stdout, stderr]) = <[OwnedFd; FDS]>::try_from(fds) else {
        return None;
    };
    match super::fork() {
        Ok(ForkResult::Child) => child(reply, [stdin, stdout, stderr], &args, dispatch, area),
        Ok(ForkResult::Parent { child }) => Some((child.as_raw(), reply)),
        Err(e) => {
            eprintln!("flotilla shim zygote: fork: {e}");
            None
        }
    }
}

/// In the forked child: report the pid, set the process up as a fresh `execve` would, run
/// the command, exit. Never returns.
fn child(
    reply: OwnedFd,
    stdio: [OwnedFd; 3],
    args: &[OsString],
    dispatch: fn(&[OsString]) -> u8,
    area: Option<(usize, usize)>,
) -> ! {
    let _ = rustix::net::send(
        &reply,
        format!("pid {}", std::process::id()).as_bytes(),
        SendFlags::NOSIGNAL,
    );
    let [stdin, stdout, stderr] = stdio;
    let ok = nix::unistd::dup2_stdin(&stdin).is_ok()
        && nix::unistd::dup2_stdout(&stdout).is_ok()
        && nix::unistd::dup2_stderr(&stderr).is_ok();
    if !ok {
        exit_now(125);
    }
    // Every other fd goes: the zygote's socket and signalfd, the reply sockets of its other
    // children, these fds' originals. Their owners are forgotten first (and the zygote's own,
    // up the stack, are never dropped here: this function does not return), so nothing closes
    // a number twice.
    std::mem::forget((reply, stdin, stdout, stderr));
    close_from(3);
    reset_signals();
    set_cmdline(area, args);
    let status =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(args))).unwrap_or(101);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    exit_now(i32::from(status))
}

/// `_exit(2)`: no atexit handlers, no destructors (the zygote's objects in this forked copy
/// must not run theirs).
fn exit_now(status: i32) -> ! {
    // SAFETY: `_exit` ends the process at once; it touches no Rust state.
    unsafe { libc::_exit(status) }
}

/// Makes `/proc/<pid>/cmdline` read `<argv0> shim ARGS…`, what an executed `flotilla shim
/// ARGS…` shows (and what `ps` and leftover checks look for: the supervisor names its
/// container's state dir), instead of the zygote's own arguments: written over the argument
/// area, which the zygote's padding argument ([`Zygote::start`]) makes [`ARG_SPACE`] bytes
/// longer (cut to fit beyond that).
fn set_cmdline(area: Option<(usize, usize)>, args: &[OsString]) {
    let mut text: Vec<u8> = std::env::args_os()
        .next()
        .map(|a| a.into_vec())
        .unwrap_or_else(|| b"flotilla".to_vec());
    text.push(0);
    text.extend_from_slice(b"shim");
    for a in args {
        text.push(0);
        text.extend_from_slice(a.as_bytes());
    }
    if area.is_some() {
        super::process::overwrite_cmdline(area, &text, 1);
    }
}

/// Closes every fd from `first` on.
fn close_from(first: i32) {
    // SAFETY: close_range closes fd numbers only; the caller (the freshly forked child) has
    // forgotten every owner of those fds in its frames and never returns to the zygote's
    // frames that own the others, so no Rust object uses or closes them afterwards.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
}

/// The signal state of a freshly executed Rust program: nothing blocked, every disposition
/// the default except `SIGPIPE`, which the Rust runtime ignores.
fn reset_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        let handler = if signal == Signal::SIGPIPE {
            SigHandler::SigIgn
        } else {
            SigHandler::SigDfl
        };
        // SAFETY: SIG_DFL and SIG_IGN install no handler, so no Rust code can run in signal
        // context; the process (a freshly forked child of the single-threaded zygote) has one
        // thread.
        let _ = unsafe { nix::sys::signal::signal(signal, handler) };
    }
}
