//! The detached shim's single-threaded event loop. One `poll(2)` waits on everything: a
//! signalfd (SIGCHLD, and the signals it forwards to the container), the container's
//! stdout/stderr pipes or its pseudo-terminal master, the control socket's listener and its
//! clients, and the container's stdin when something is queued for it. Output is cut into lines,
//! appended to the JSON-lines log and copied to attached clients (a client that does not keep up
//! is dropped, never waited for). When PID 1 exits the loop drains the output (bounded), then
//! records the OOM kill from the cgroup, removes the cgroup, writes the final `state.json`,
//! tells waiting and attached clients, and the shim exits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use rustix::event::{PollFd, PollFlags};

use super::{ShimError, StartReport, create_cgroup, join_files, no_placement, send_report};
use crate::runtime::bundle;
use crate::runtime::control::{Reply, Request, SOCKET, with_socket_path};
use crate::runtime::logs::{self, Entry, Splitter, Stream};
use crate::runtime::state::{self, State, Status};
use crate::runtime::sys::cgroup::Cgroup;
use crate::runtime::sys::container::{self, Exit, Stdio};
use crate::runtime::sys::process;
use crate::runtime::time;

/// How long output is still read after PID 1 exited (something outside the container could
/// hold a pipe open).
const DRAIN: Duration = Duration::from_secs(2);
/// An attached client further behind than this is dropped.
const MAX_CLIENT_BACKLOG: usize = 4 << 20;
/// A request line longer than this drops the client.
const MAX_REQUEST: usize = 1 << 20;
/// How much stdin is queued for the container before clients are told to wait.
const MAX_STDIN_BACKLOG: usize = 1 << 20;

struct Output {
    file: Option<File>,
    stream: Stream,
    splitter: Splitter,
    /// A terminal's output sent live to attached clients as it comes (a prompt has no newline):
    /// the start of a UTF-8 character cut by the read, held for the next one.
    held: Vec<u8>,
}

#[derive(Default)]
struct ClientFlags {
    attached: bool,
    stdin: bool,
    waiting: bool,
    closed: bool,
}

struct Client {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    flags: ClientFlags,
}

impl Client {
    fn reply(&mut self, reply: &Reply) {
        if let Ok(mut line) = serde_json::to_vec(reply) {
            line.push(b'\n');
            self.wbuf.extend_from_slice(&line);
        }
        if self.wbuf.len() > MAX_CLIENT_BACKLOG {
            self.flags.closed = true;
        }
    }

    fn flush(&mut self) {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => {
                    self.flags.closed = true;
                    return;
                }
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.flags.closed = true;
                    return;
                }
            }
        }
    }
}

struct Supervisor {
    dir: PathBuf,
    state: State,
    child: Pid,
    exit: Option<Exit>,
    signals: SignalFd,
    listener: UnixListener,
    outputs: Vec<Output>,
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    terminal: bool,
    clients: Vec<Client>,
    log: logs::Writer,
    log_failed: bool,
    cgroup: Option<Cgroup>,
}

fn setup_error(step: &'static str) -> impl Fn(io::Error) -> ShimError {
    move |source| ShimError::Detach { step, source }
}

fn nix_error(step: &'static str) -> impl Fn(nix::Error) -> ShimError {
    move |e| ShimError::Detach {
        step,
        source: e.into(),
    }
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true).map_err(io::Error::from)
}

/// Runs the detached supervisor: creates the container, reports on `report`, supervises until
/// the container exits. Returns the shim's exit status.
pub(super) fn run(spec: &Spec, bundle_dir: &Path, dir: &Path, report: OwnedFd) -> u8 {
    match setup(spec, bundle_dir, dir) {
        Ok(mut sup) => {
            send_report(
                report,
                &StartReport {
                    pid: Some(sup.child.as_raw()),
                    error: None,
                    status: None,
                },
            );
            sup.run();
            0
        }
        Err(e) => {
            let status = e.exit_status();
            let message = e.to_string();
            eprintln!("flotilla shim: {message}");
            let mut st = state::read(dir).unwrap_or_default();
            st.status = Status::Exited;
            st.pid = None;
            st.shim_pid = None;
            st.shim_start_time = None;
            st.exit_code = Some(i32::from(status));
            st.signal = None;
            st.oom_killed = false;
            st.finished_at = Some(time::now());
            st.error = Some(message.clone());
            let _ = state::write(dir, &st);
            send_report(
                report,
                &StartReport {
                    pid: None,
                    error: Some(message),
                    status: Some(status),
                },
            );
            status
        }
    }
}

/// The container's standard streams: a pseudo-terminal, or pipes.
fn streams(spec: &Spec) -> Result<(Stdio, Vec<Output>, Option<File>), ShimError> {
    let output = |file: File, stream| Output {
        file: Some(file),
        stream,
        splitter: Splitter::default(),
        held: Vec::new(),
    };
    if bundle::terminal(spec) {
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).map_err(nix_error("open a pseudo-terminal"))?;
        for fd in [&pty.master, &pty.slave] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
                .map_err(|e| setup_error("open a pseudo-terminal")(e.into()))?;
        }
        let path = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
        ))
        .map_err(setup_error("name the pseudo-terminal"))?;
        set_nonblocking(&pty.master).map_err(setup_error("open a pseudo-terminal"))?;
        let master = File::from(pty.master);
        let input = master
            .try_clone()
            .map_err(setup_error("open a pseudo-terminal"))?;
        let stdio = Stdio::Terminal {
            slave: pty.slave,
            path,
        };
        return Ok((stdio, vec![output(master, Stream::Stdout)], Some(input)));
    }
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| setup_error("create the output pipes")(e.into()))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    set_nonblocking(&out_r).map_err(setup_error("create the output pipes"))?;
    set_nonblocking(&err_r).map_err(setup_error("create the output pipes"))?;
    let (stdin, input) = if bundle::open_stdin(spec) {
        let (r, w) = pipe()?;
        set_nonblocking(&w).map_err(setup_error("create the stdin pipe"))?;
        (Some(r), Some(File::from(w)))
    } else {
        (None, None)
    };
    let stdio = Stdio::Pipes {
        stdin,
        stdout: out_w,
        stderr: err_w,
    };
    let outputs = vec![
        output(File::from(out_r), Stream::Stdout),
        output(File::from(err_r), Stream::Stderr),
    ];
    Ok((stdio, outputs, input))
}

fn setup(spec: &Spec, bundle_dir: &Path, dir: &Path) -> Result<Supervisor, ShimError> {
    let mask = process::block_forwarded().map_err(nix_error("block signals"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(nix_error("create the signalfd"))?;

    let log_config = bundle::log_config(spec);
    let log = logs::Writer::open(dir, log_config.max_size, log_config.max_files)
        .map_err(setup_error("open the container log"))?;

    let _ = std::fs::remove_file(dir.join(SOCKET));
    let listener = with_socket_path(dir, SOCKET, |p| UnixListener::bind(p))
        .map_err(setup_error("listen on the control socket"))?;
    listener
        .set_nonblocking(true)
        .map_err(setup_error("listen on the control socket"))?;

    let (stdio, outputs, stdin) = streams(spec)?;
    let cgroup = create_cgroup(spec)?;
    let join = join_files(&cgroup);
    let child = match container::spawn(spec, bundle_dir, dir, stdio, &join, &mut no_placement) {
        Ok(child) => child,
        Err(source) => {
            if let Some(cg) = &cgroup {
                let _ = cg.destroy(true);
            }
            let _ = std::fs::remove_file(dir.join(SOCKET));
            return Err(ShimError::Container { source });
        }
    };
    let me = std::process::id() as i32;
    let state = State {
        status: Status::Running,
        pid: Some(child.as_raw()),
        shim_pid: Some(me),
        shim_start_time: state::process_start_time(me),
        started_at: Some(time::now()),
        ..Default::default()
    };
    let sup = Supervisor {
        dir: dir.to_path_buf(),
        state,
        child,
        exit: None,
        signals,
        listener,
        outputs,
        stdin,
        stdin_buf: Vec::new(),
        stdin_close: false,
        terminal: bundle::terminal(spec),
        clients: Vec::new(),
        log,
        log_failed: false,
        cgroup,
    };
    // Not synced: a crash leaves no process running whatever this file says.
    if let Err(e) = state::write_volatile(dir, &sup.state) {
        // Without a state file nobody can find the container: take it down.
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        if let Some(cg) = &sup.cgroup {
            let _ = cg.destroy(true);
        }
        let _ = std::fs::remove_file(dir.join(SOCKET));
        return Err(setup_error("write the state")(io::Error::other(
            e.to_string(),
        )));
    }
    Ok(sup)
}

/// What one entry of the poll set stands for.
#[derive(Clone, Copy)]
enum Source {
    Signals,
    Listener,
    Output(usize),
    Stdin,
    Client(usize),
}

impl Supervisor {
    fn run(&mut self) {
        let mut drain_until: Option<Instant> = None;
        loop {
            if self.exit.is_some() {
                let deadline = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
                if self.outputs.iter().all(|o| o.file.is_none()) || Instant::now() >= deadline {
                    break;
                }
            }
            let ready = match self.poll(drain_until) {
                Ok(ready) => ready,
                Err(e) => {
                    eprintln!("flotilla shim: poll: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            for (source, flags) in ready {
                match source {
                    Source::Signals => self.on_signals(),
                    Source::Listener => self.on_accept(),
                    Source::Output(i) => self.on_output(i),
                    Source::Stdin => self.on_stdin_writable(flags),
                    Source::Client(i) => self.on_client(i, flags),
                }
            }
            self.clients.retain(|c| !c.flags.closed);
        }
        self.finish();
    }

    /// Polls everything once; returns the ready sources.
    fn poll(&self, deadline: Option<Instant>) -> io::Result<Vec<(Source, PollFlags)>> {
        let mut sources = vec![Source::Signals, Source::Listener];
        let mut fds = vec![
            PollFd::new(&self.signals, PollFlags::IN),
            PollFd::new(&self.listener, PollFlags::IN),
        ];
        for (i, o) in self.outputs.iter().enumerate() {
            if let Some(f) = &o.file {
                sources.push(Source::Output(i));
                fds.push(PollFd::new(f, PollFlags::IN));
            }
        }
        if let Some(stdin) = &self.stdin
            && (!self.stdin_buf.is_empty() || self.stdin_close)
        {
            sources.push(Source::Stdin);
            fds.push(PollFd::new(stdin, PollFlags::OUT));
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::IN;
            if !c.wbuf.is_empty() {
                flags |= PollFlags::OUT;
            }
            sources.push(Source::Client(i));
            fds.push(PollFd::new(&c.stream, flags));
        }
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        Ok(sources
            .into_iter()
            .zip(fds.iter().map(|f| f.revents()))
            .filter(|(_, r)| !r.is_empty())
            .collect())
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                self.reap();
            } else if self.exit.is_none() {
                let _ = nix::sys::signal::kill(self.child, sig);
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match nix::sys::wait::waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.child => {
                    self.exit = Some(Exit::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.child => {
                    self.exit = Some(Exit::Signal(sig as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn on_accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            stream,
                            rbuf: Vec::new(),
                            wbuf: Vec::new(),
                            flags: ClientFlags::default(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn on_output(&mut self, i: usize) {
        let mut buf = [0u8; 64 << 10];
        let Some(file) = self.outputs[i].file.as_mut() else {
            return;
        };
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            // EIO: the pseudo-terminal's last slave was closed.
            Err(_) => 0,
        };
        if n == 0 {
            self.close_output(i);
            return;
        }
        let lines = self.outputs[i].splitter.push(&buf[..n]);
        let stream = self.outputs[i].stream;
        if !self.terminal {
            for line in lines {
                self.emit(stream, line);
            }
            return;
        }
        // A terminal: whole lines to the log, every read at once to attached clients, under
        // one time (a client that replays the log first skips what it has seen by time).
        let now = time::now();
        for line in lines {
            self.log_entry(&Entry {
                time: now.clone(),
                stream,
                log: line,
            });
        }
        let mut chunk = std::mem::take(&mut self.outputs[i].held);
        chunk.extend_from_slice(&buf[..n]);
        let cut = match std::str::from_utf8(&chunk) {
            Ok(_) => chunk.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => chunk.len(),
        };
        self.outputs[i].held = chunk.split_off(cut);
        if !chunk.is_empty() {
            self.send_attached(now, stream, String::from_utf8_lossy(&chunk).into_owned());
        }
    }

    /// What a terminal printed of its current line before a client attached.
    fn partial_line(&self) -> Option<Reply> {
        let out = self.outputs.first()?;
        let partial = out.splitter.partial();
        let partial = &partial[..partial.len().saturating_sub(out.held.len())];
        (!partial.is_empty()).then(|| Reply::Output {
            entry: Entry {
                time: time::now(),
                stream: out.stream,
                log: String::from_utf8_lossy(partial).into_owned(),
            },
        })
    }

    fn log_entry(&mut self, entry: &Entry) {
        if let Err(e) = self.log.write(entry) {
            if !self.log_failed {
                eprintln!("flotilla shim: write the container log: {e}");
            }
            self.log_failed = true;
        }
    }

    fn send_attached(&mut self, time: String, stream: Stream, log: String) {
        let reply = Reply::Output {
            entry: Entry { time, stream, log },
        };
        for c in self.clients.iter_mut().filter(|c| c.flags.attached) {
            c.reply(&reply);
            c.flush();
        }
    }

    fn close_output(&mut self, i: usize) {
        self.outputs[i].file = None;
        let stream = self.outputs[i].stream;
        let rest = self.outputs[i].splitter.finish();
        if !self.terminal {
            if let Some(rest) = rest {
                self.emit(stream, rest);
            }
            return;
        }
        // Attached clients had the terminal's output as it came (but a cut character).
        if let Some(rest) = rest {
            self.log_entry(&Entry {
                time: time::now(),
                stream,
                log: rest,
            });
        }
        let held = std::mem::take(&mut self.outputs[i].held);
        if !held.is_empty() {
            self.send_attached(
                time::now(),
                stream,
                String::from_utf8_lossy(&held).into_owned(),
            );
        }
    }

    /// One line of output: to the log and to attached clients.
    fn emit(&mut self, stream: Stream, log: String) {
        let entry = Entry {
            time: time::now(),
            stream,
            log,
        };
        if let Err(e) = self.log.write(&entry) {
            if !self.log_failed {
                eprintln!("flotilla shim: write the container log: {e}");
            }
            self.log_failed = true;
        }
        let reply = Reply::Output { entry };
        for c in self.clients.iter_mut().filter(|c| c.flags.attached) {
            c.reply(&reply);
            c.flush();
        }
    }

    fn on_stdin_writable(&mut self, flags: PollFlags) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        if flags.intersects(PollFlags::ERR | PollFlags::HUP) {
            self.stdin = None;
            self.stdin_buf.clear();
            return;
        }
        while !self.stdin_buf.is_empty() {
            match stdin.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stdin = None;
                    self.stdin_buf.clear();
                    return;
                }
            }
        }
        if self.stdin_close && !self.terminal {
            self.stdin = None;
        }
        self.stdin_close = false;
    }

    fn on_client(&mut self, i: usize, flags: PollFlags) {
        if flags.contains(PollFlags::OUT) {
            self.clients[i].flush();
        }
        if !flags.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            return;
        }
        let mut buf = [0u8; 16 << 10];
        loop {
            let c = &mut self.clients[i];
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.flags.closed = true;
                    break;
                }
                Ok(n) => c.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.flags.closed = true;
                    break;
                }
            }
            if c.rbuf.len() > MAX_REQUEST {
                c.flags.closed = true;
                break;
            }
        }
        while let Some(end) = self.clients[i].rbuf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.clients[i].rbuf.drain(..=end).collect();
            let reply = match serde_json::from_slice::<Request>(&line) {
                Ok(request) => self.handle(i, request),
                Err(e) => Some(Reply::Error {
                    message: format!("bad request: {e}"),
                }),
            };
            if let Some(reply) = reply {
                self.clients[i].reply(&reply);
            }
        }
        self.clients[i].flush();
    }

    fn handle(&mut self, client: usize, request: Request) -> Option<Reply> {
        let error = |message: String| Some(Reply::Error { message });
        match request {
            Request::Status => Some(Reply::Ok {
                state: Some(self.state.clone()),
            }),
            Request::Signal { signal } => {
                if self.exit.is_some() {
                    return error("the container is not running".into());
                }
                let Ok(sig) = Signal::try_from(signal) else {
                    return error(format!("invalid signal {signal}"));
                };
                match nix::sys::signal::kill(self.child, sig) {
                    Ok(()) => Some(Reply::Ok { state: None }),
                    Err(e) => error(format!("send signal {signal}: {e}")),
                }
            }
            Request::Pause | Request::Resume => {
                let pause = matches!(request, Request::Pause);
                if self.exit.is_some() {
                    return error("the container is not running".into());
                }
                let Some(cg) = &self.cgroup else {
                    return error("the container has no cgroup to freeze".into());
                };
                let (from, to) = if pause {
                    (Status::Running, Status::Paused)
                } else {
                    (Status::Paused, Status::Running)
                };
                if self.state.status != from {
                    return error(format!("the container is {}", self.state.status));
                }
                let result = if pause { cg.freeze() } else { cg.thaw() };
                if let Err(e) = result {
                    return error(e.to_string());
                }
                self.state.status = to;
                if let Err(e) = state::write_volatile(&self.dir, &self.state) {
                    return error(e.to_string());
                }
                Some(Reply::Ok {
                    state: Some(self.state.clone()),
                })
            }
            Request::Wait => {
                self.clients[client].flags.waiting = true;
                None
            }
            Request::Attach { stdin } => {
                let partial = if self.terminal {
                    self.partial_line()
                } else {
                    None
                };
                let has_stdin = self.stdin.is_some();
                let c = &mut self.clients[client];
                c.flags.attached = true;
                c.flags.stdin = stdin && has_stdin;
                if let Some(p) = partial {
                    c.reply(&Reply::Ok { state: None });
                    return Some(p);
                }
                Some(Reply::Ok { state: None })
            }
            Request::Stdin { data, b64 } => {
                if !self.clients[client].flags.stdin || self.stdin.is_none() {
                    return error("stdin is not open".into());
                }
                let bytes = match b64 {
                    Some(b) => {
                        use base64::Engine as _;
                        match base64::engine::general_purpose::STANDARD.decode(b) {
                            Ok(bytes) => bytes,
                            Err(e) => return error(format!("stdin: bad base64: {e}")),
                        }
                    }
                    None => data.into_bytes(),
                };
                if self.stdin_buf.len() + bytes.len() > MAX_STDIN_BACKLOG {
                    return error("stdin backlog full, retry later".into());
                }
                self.stdin_buf.extend_from_slice(&bytes);
                None
            }
            Request::CloseStdin => {
                if self.clients[client].flags.stdin {
                    self.stdin_close = true;
                }
                None
            }
            Request::Resize { rows, cols } => {
                // The terminal's input side is a clone of its master.
                match (&self.stdin, self.terminal) {
                    (Some(master), true) => {
                        let fd = std::os::fd::AsFd::as_fd(master);
                        match crate::runtime::sys::exec::resize_terminal(fd, rows, cols) {
                            Ok(()) => None,
                            Err(e) => error(format!("resize the terminal: {e}")),
                        }
                    }
                    _ => error("the container has no terminal".into()),
                }
            }
        }
    }

    /// After PID 1 exited and the output drained: OOM record, cgroup removal, final state,
    /// clients told, socket removed.
    fn finish(&mut self) {
        for i in 0..self.outputs.len() {
            if self.outputs[i].file.is_some() {
                self.close_output(i);
            }
        }
        let exit = self.exit.unwrap_or(Exit::Signal(9));
        let oom = self
            .cgroup
            .as_ref()
            .is_some_and(|cg| cg.oom_killed().unwrap_or(false));
        self.state.status = Status::Exited;
        self.state.finished_at = Some(time::now());
        self.state.exit_code = Some(i32::from(exit.status()));
        self.state.signal = match exit {
            Exit::Signal(s) => Some(s),
            Exit::Code(_) => None,
        };
        self.state.oom_killed = oom;
        // The last write into the state dir: once the exit is in state.json, a removal may
        // take the dir away (it does not wait for this process to end). Synced below, after
        // the exit is reported.
        if let Err(e) = state::write_volatile(&self.dir, &self.state) {
            eprintln!("flotilla shim: {e}");
        }
        let _ = std::fs::remove_file(self.dir.join(SOCKET));
        let reply = Reply::Exit {
            state: self.state.clone(),
        };
        for c in &mut self.clients {
            if c.flags.closed {
                continue;
            }
            if c.flags.attached || c.flags.waiting {
                c.reply(&reply);
            }
            let _ = c.stream.set_nonblocking(false);
            let _ = c.stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = c.stream.write_all(&c.wbuf);
        }
        // Nothing more to say: every client, and a connection not accepted yet (a watcher
        // whose `wait` came too late to be read), sees the end now and reads the exit from
        // state.json, instead of when this process ends after the slow part below.
        self.on_accept();
        self.clients.clear();
        // After the exit is reported: the cgroup's removal and the disk (readers see the log
        // and the state from the page cache already; a waiter need not wait for either).
        if let Some(cg) = &self.cgroup
            && let Err(e) = cg.destroy(true)
        {
            eprintln!("flotilla shim: remove the cgroup {}: {e}", cg.path());
        }
        state::sync(&self.dir);
        let _ = self.log.sync();
    }
}
