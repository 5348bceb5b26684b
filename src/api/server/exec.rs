//! `POST /v1/containers/{id}/exec` and `POST /v1/containers/{id}/attach`: interactive streams
//! over an upgraded connection (`Connection: Upgrade`, `Upgrade: flotilla-stream`, answered
//! `101 Switching Protocols`), framed as [`crate::api::frame`] says.
//!
//! Exec runs `flotilla shim exec` ([`crate::runtime::exec::command`]: the joining happens in
//! that fresh single-threaded process, never in the daemon) as a child of the daemon with async
//! process I/O: pipes for stdout and stderr (and stdin when asked), or, with `tty`, a
//! pseudo-terminal the daemon opens whose slave is the joiner's stdio (the joiner relays it to
//! the container's own terminal; a resize sets the size here and SIGWINCHes the joiner). The
//! exit code is the last frame. A client that goes away (or a daemon that stops) kills the
//! joiner and everything it started in the container ([`crate::runtime::exec::kill_tree`]);
//! `detach` starts it with empty stdio, answers JSON and only reaps it.
//!
//! Attach bridges the stream to the shim's control socket (`attach`, `stdin`, `close_stdin`,
//! `resize`), after the container's logs when asked; a client that goes away only detaches.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::ServerState;
use crate::api::error::{ApiError, JsonBody};
use crate::api::frame::{self, Frame, PROTOCOL};
use crate::api::types::{ErrorBody, ExecCreate, ExecDetached};
use crate::runtime::control::{self, Reply, Request};
use crate::runtime::exec::{self, ExecError, ExecOptions};
use crate::runtime::lifecycle::LogsOptions;
use crate::runtime::logs::Stream;
use crate::runtime::state::Status;

/// The largest stdin piece sent to a shim in one request.
const STDIN_PIECE: usize = 48 << 10;

/// How long output is still read after the exec'd process ended (a background process it left
/// in the container may hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

/// The connection's pending upgrade, when the server can upgrade it.
pub(super) struct Upgrade(Option<OnUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Upgrade(parts.extensions.remove::<OnUpgrade>()))
    }
}

/// The pending upgrade if the request asks for `Upgrade: flotilla-stream`; else a 400.
fn upgrade_of(headers: &HeaderMap, up: Upgrade, what: &str) -> Result<OnUpgrade, ApiError> {
    let has = |name: header::HeaderName, want: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, PROTOCOL) {
        return Err(ApiError::bad_request(format!(
            "{what} is an interactive stream: send `Connection: Upgrade` and `Upgrade: {PROTOCOL}`"
        )));
    }
    up.0.ok_or_else(|| ApiError::bad_request(format!("{what}: this connection cannot be upgraded")))
}

fn switching() -> Response {
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    res
}

/// The container `id` if it is running: 404 when unknown, 409 when paused or not running.
async fn running(
    state: &ServerState,
    id: &str,
    what: &str,
) -> Result<crate::runtime::lifecycle::Container, ApiError> {
    let c = state.containers.inspect(id).await?;
    match c.state.status {
        Status::Running => Ok(c),
        Status::Paused => Err(ApiError::conflict(format!(
            "container {} is paused: unpause it before {what}",
            c.meta.name
        ))),
        status => Err(ApiError::conflict(format!(
            "container {} is {status}: {what} needs a running container",
            c.meta.name
        ))),
    }
}

fn exec_error(e: ExecError) -> ApiError {
    match e {
        ExecError::NotRunning { .. } => ApiError::conflict(e.to_string()),
        ExecError::NoCommand { .. }
        | ExecError::InvalidEnv { .. }
        | ExecError::RelativeWorkingDir { .. } => ApiError::bad_request(e.to_string()),
        e => {
            tracing::error!(error = %e, "exec");
            ApiError::internal(e.to_string())
        }
    }
}

/// Docker's exit code of a finished process: its status, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 125,
    }
}

/// Runs a command in a running container: with `detach`, a JSON answer once it started;
/// otherwise `101 Switching Protocols` and a framed stream (stdin, resize and close-stdin
/// frames in; stdout, stderr and finally exit frames out).
#[utoipa::path(post, path = "/v1/containers/{id}/exec", tag = "containers",
    request_body = ExecCreate,
    params(("id" = String, Path, description = "container name, id or id prefix")),
    responses(
        (status = 101, description = "switched to the framed stream (`Upgrade: flotilla-stream`, \
            see api::frame): stdout/stderr frames, then the exit code (126 cannot execute, \
            127 not found)"),
        (status = 200, description = "detached: the command started", body = ExecDetached),
        (status = 400, description = "bad request, or no `Upgrade: flotilla-stream`",
            body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not running, or paused", body = ErrorBody),
        (status = 500, body = ErrorBody)))]
pub(super) async fn exec(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    up: Upgrade,
    JsonBody(req): JsonBody<ExecCreate>,
) -> Result<Response, ApiError> {
    if req.cmd.first().is_none_or(String::is_empty) {
        return Err(ApiError::bad_request("exec: cmd: no command"));
    }
    let c = running(&state, &id, "exec").await?;
    let on_upgrade = if req.detach {
        None
    } else {
        Some(upgrade_of(&headers, up, "exec")?)
    };
    let dir = state.containers.dir(&c.meta.id);
    let options = ExecOptions {
        args: req.cmd.clone(),
        env: req.env.clone(),
        user: req.user.clone(),
        working_dir: req.working_dir.clone(),
        tty: req.tty && !req.detach,
        exe: None,
    };
    let cmd = tokio::task::spawn_blocking(move || exec::command(&dir, &options))
        .await
        .map_err(|e| ApiError::internal(format!("exec task: {e}")))?
        .map_err(exec_error)?;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let spawn_err = |e: std::io::Error| {
        tracing::error!(id = c.meta.id, error = %e, "exec: spawn");
        ApiError::internal(format!("container {}: exec: {e}", c.meta.name))
    };
    let Some(on_upgrade) = on_upgrade else {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        return Ok((StatusCode::OK, axum::Json(ExecDetached { pid })).into_response());
    };
    let io = if req.tty {
        let size = req.console_size.unwrap_or([24, 80]);
        let (master, slave) = open_terminal(size).map_err(|e| {
            ApiError::internal(format!(
                "container {}: exec: open a terminal: {e}",
                c.meta.name
            ))
        })?;
        let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
        cmd.stdin(dup(&slave).map_err(spawn_err)?)
            .stdout(dup(&slave).map_err(spawn_err)?)
            .stderr(Stdio::from(slave));
        Some(master)
    } else {
        cmd.stdin(if req.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        None
    };
    // The command's own slave copies close with `cmd` below.
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(cmd);
    let io = match io {
        Some(master) => {
            let master = match set_nonblocking(master)
                .and_then(|m| crate::runtime::sys::exec::register_async(File::from(m)))
            {
                Ok(m) => m,
                Err(e) => {
                    if let Some(pid) = child.id() {
                        exec::kill_tree(pid);
                    }
                    let _ = child.wait().await;
                    return Err(spawn_err(e));
                }
            };
            SessionIo::Tty(Arc::new(master))
        }
        None => SessionIo::Pipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        },
    };
    let shutdown = state.shutdown.clone();
    let name = c.meta.name.clone();
    tokio::spawn(async move {
        let Some(pid) = child.id() else { return };
        match on_upgrade.await {
            Ok(upgraded) => session(upgraded, child, pid, io, shutdown).await,
            Err(e) => {
                tracing::warn!(container = name, error = %e, "exec: upgrade failed");
                exec::kill_tree(pid);
                let _ = child.wait().await;
            }
        }
    });
    Ok(switching())
}

/// A pseudo-terminal of `[rows, cols]`, raw: master and slave, both opened close-on-exec (the
/// daemon's other threads spawn processes that must not inherit them).
fn open_terminal(size: [u16; 2]) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    use nix::sys::termios;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC;
    let slave = rustix::fs::open(name.as_str(), flags, rustix::fs::Mode::empty())?;
    let master = OwnedFd::from(master);
    crate::runtime::sys::exec::resize_terminal(master.as_fd(), size[0].max(1), size[1].max(1))?;
    // Raw from the start: input written before the joiner takes the terminal is not echoed
    // (the container's own terminal echoes).
    let mut t = termios::tcgetattr(&slave)?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(&slave, termios::SetArg::TCSANOW, &t)?;
    Ok((master, slave))
}

fn set_nonblocking(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(fd)
}

/// The exec'd process's side of a session.
enum SessionIo {
    Pipes {
        stdin: Option<tokio::process::ChildStdin>,
        stdout: Option<tokio::process::ChildStdout>,
        stderr: Option<tokio::process::ChildStderr>,
    },
    Tty(Arc<AsyncFd<File>>),
}

async fn read_master(master: &AsyncFd<File>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = master.readable().await?;
        match guard.try_io(|f| f.get_ref().read(buf)) {
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write_master(master: &AsyncFd<File>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = master.writable().await?;
        match guard.try_io(|f| f.get_ref().write(data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Sends what `read` yields as frames made by `make`, until it ends or the receiver is gone.
fn pump<R>(
    mut r: R,
    tx: mpsc::Sender<Frame>,
    make: fn(Bytes) -> Frame,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send(make(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
}

/// Stdin, close-stdin and resize frames from the client to the process, until the client's
/// side of the connection ends (then the client is gone).
async fn from_client<R>(mut rd: R, io: ClientSide, pid: u32)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut buf = BytesMut::new();
    let (mut stdin, master) = match io {
        ClientSide::Pipes(stdin) => (stdin, None),
        ClientSide::Tty(master) => (None, Some(master)),
    };
    loop {
        let f = match frame::read(&mut rd, &mut buf).await {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        match f {
            Frame::Stdin(data) => {
                if let Some(master) = &master {
                    let _ = write_master(master, &data).await;
                } else if let Some(s) = stdin.as_mut()
                    && s.write_all(&data).await.is_err()
                {
                    stdin = None;
                }
            }
            Frame::CloseStdin => stdin = None,
            Frame::Resize { rows, cols } => {
                if let Some(master) = &master
                    && crate::runtime::sys::exec::resize_terminal(
                        master.get_ref().as_fd(),
                        rows.max(1),
                        cols.max(1),
                    )
                    .is_ok()
                    && let Some(p) = rustix::process::Pid::from_raw(pid as i32)
                {
                    // The joiner is not the terminal's session leader: told directly.
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::WINCH);
                }
            }
            _ => {}
        }
    }
}

enum ClientSide {
    Pipes(Option<tokio::process::ChildStdin>),
    Tty(Arc<AsyncFd<File>>),
}

/// Returns once the daemon stops.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn session(
    upgraded: Upgraded,
    mut child: tokio::process::Child,
    pid: u32,
    io: SessionIo,
    mut shutdown: watch::Receiver<bool>,
) {
    let (rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
    let (tx, mut rx) = mpsc::channel::<Frame>(16);
    let mut pumps = Vec::new();
    let client_side = match io {
        SessionIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            if let Some(o) = stdout {
                pumps.push(pump(o, tx.clone(), Frame::Stdout));
            }
            if let Some(e) = stderr {
                pumps.push(pump(e, tx.clone(), Frame::Stderr));
            }
            ClientSide::Pipes(stdin)
        }
        SessionIo::Tty(master) => {
            let m = master.clone();
            let tx = tx.clone();
            pumps.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    match read_master(&m, &mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let f = Frame::Stdout(Bytes::copy_from_slice(&buf[..n]));
                            if tx.send(f).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
            ClientSide::Tty(master)
        }
    };
    drop(tx);
    let mut reader = tokio::spawn(from_client(rd, client_side, pid));
    let mut outputs_open = true;
    let gone = loop {
        tokio::select! {
            _ = &mut reader => break true,
            _ = stopped(&mut shutdown) => break true,
            f = rx.recv(), if outputs_open => match f {
                Some(f) => if frame::write(&mut wr, &f).await.is_err() { break true },
                None => outputs_open = false,
            },
            status = child.wait() => {
                let code = status.map(exit_code).unwrap_or(125);
                // What is still buffered reaches the client, boundedly.
                let deadline = tokio::time::Instant::now() + DRAIN;
                let mut ok = true;
                while outputs_open && ok {
                    tokio::select! {
                        f = rx.recv() => match f {
                            Some(f) => ok = frame::write(&mut wr, &f).await.is_ok(),
                            None => outputs_open = false,
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
                if ok {
                    let _ = frame::write(&mut wr, &Frame::Exit(code)).await;
                    let _ = wr.shutdown().await;
                }
                break false;
            }
        }
    };
    if gone {
        tracing::info!(
            pid,
            "exec: the client went away, killing the exec'd process"
        );
        exec::kill_tree(pid);
        let _ = child.wait().await;
    }
    reader.abort();
    for p in pumps {
        p.abort();
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct AttachQuery {
    /// Send stdin frames to the container's standard input (it must have been created with
    /// `open_stdin` or `tty`).
    #[serde(default)]
    stdin: bool,
    /// Receive the container's standard output (default true).
    #[serde(default = "yes")]
    stdout: bool,
    /// Receive the container's standard error (default true).
    #[serde(default = "yes")]
    stderr: bool,
    /// First the container's logged output so far, then live output.
    #[serde(default)]
    logs: bool,
}

fn yes() -> bool {
    true
}

/// Attaches to a running container's standard streams: `101 Switching Protocols`, then output
/// as stdout/stderr frames (with `logs`, what it wrote so far first), stdin/close-stdin/resize
/// frames to it, and its exit code as the last frame once it exits. A client that goes away
/// detaches; the container runs on.
#[utoipa::path(post, path = "/v1/containers/{id}/attach", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), AttachQuery),
    responses(
        (status = 101, description = "switched to the framed stream (`Upgrade: flotilla-stream`, \
            see api::frame); the exit frame comes when the container exits"),
        (status = 400, description = "bad query, or no `Upgrade: flotilla-stream`",
            body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not running, or paused", body = ErrorBody)))]
pub(super) async fn attach(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<AttachQuery>, QueryRejection>,
    headers: HeaderMap,
    up: Upgrade,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let c = running(&state, &id, "attach").await?;
    let on_upgrade = upgrade_of(&headers, up, "attach")?;
    let dir = state.containers.dir(&c.meta.id);
    let name = c.meta.name.clone();
    let stdin = q.stdin;
    // Attached before the logs are read: nothing falls between the two (de-duplicated by time).
    let connected = tokio::task::spawn_blocking(move || {
        let mut client = control::Client::connect(&dir)?;
        client.set_timeout(Some(Duration::from_secs(10)))?;
        let reply = client.call(&Request::Attach { stdin })?;
        client.set_timeout(None)?;
        Ok::<_, std::io::Error>((client, reply))
    })
    .await
    .map_err(|e| ApiError::internal(format!("attach task: {e}")))?;
    let client = match connected {
        Ok((client, Reply::Ok { .. })) => client,
        Ok((_, Reply::Error { message })) => {
            return Err(ApiError::conflict(format!(
                "container {name}: attach: {message}"
            )));
        }
        Ok(_) | Err(_) => {
            return Err(ApiError::conflict(format!(
                "container {name} is not running: attach needs a running container"
            )));
        }
    };
    let (stream, buffered) = client.into_parts();
    let stream = Ok(stream)
        .and_then(|s: std::os::unix::net::UnixStream| {
            s.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(s)
        })
        .map_err(|e| ApiError::internal(format!("container {name}: attach: {e}")))?;
    let id = c.meta.id.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => attach_session(upgraded, stream, buffered, state, id, q).await,
            Err(e) => tracing::warn!(container = name, error = %e, "attach: upgrade failed"),
        }
    });
    Ok(switching())
}

async fn send_shim<W: AsyncWrite + Unpin>(w: &mut W, request: &Request) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

async fn attach_session(
    upgraded: Upgraded,
    shim: tokio::net::UnixStream,
    buffered: Vec<u8>,
    state: ServerState,
    id: String,
    q: AttachQuery,
) {
    let (rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
    let (shim_rd, mut shim_wr) = shim.into_split();
    let mut shim_lines =
        BufReader::new(AsyncReadExt::chain(std::io::Cursor::new(buffered), shim_rd)).lines();
    let wanted = |s: Stream| match s {
        Stream::Stdout => q.stdout,
        Stream::Stderr => q.stderr,
    };
    let to_frame = |s: Stream, log: String| match s {
        Stream::Stdout => Frame::Stdout(Bytes::from(log)),
        Stream::Stderr => Frame::Stderr(Bytes::from(log)),
    };
    let mut last = String::new();
    if q.logs {
        let rt = state.containers.runtime().clone();
        let lid = id.clone();
        let entries = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            let _ = rt.logs(&lid, &LogsOptions::default(), &mut |e| {
                all.push(e.clone());
                true
            });
            all
        })
        .await
        .unwrap_or_default();
        for e in entries {
            last.clone_from(&e.time);
            if wanted(e.stream)
                && frame::write(&mut wr, &to_frame(e.stream, e.log))
                    .await
                    .is_err()
            {
                return;
            }
        }
    }
    // Client frames go to the shim from their own task; its end means the client is gone.
    let mut reader = tokio::spawn(async move {
        let mut rd = rd;
        let mut buf = BytesMut::new();
        loop {
            let requests = match frame::read(&mut rd, &mut buf).await {
                // Any bytes, in pieces well under the shim's request line limit.
                Ok(Some(Frame::Stdin(data))) if q.stdin => data
                    .chunks(STDIN_PIECE)
                    .map(|piece| {
                        use base64::Engine as _;
                        Request::Stdin {
                            data: String::new(),
                            b64: Some(base64::engine::general_purpose::STANDARD.encode(piece)),
                        }
                    })
                    .collect(),
                Ok(Some(Frame::CloseStdin)) if q.stdin => vec![Request::CloseStdin],
                Ok(Some(Frame::Resize { rows, cols })) => vec![Request::Resize { rows, cols }],
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            };
            for request in &requests {
                if send_shim(&mut shim_wr, request).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut shutdown = state.shutdown.clone();
    let code = loop {
        let line = tokio::select! {
            _ = &mut reader => return,
            _ = stopped(&mut shutdown) => return,
            line = shim_lines.next_line() => line,
        };
        let reply = line.map(|l| l.map(|l| serde_json::from_str::<Reply>(&l)));
        match reply {
            Ok(Some(Ok(Reply::Output { entry }))) => {
                if entry.time <= last {
                    continue;
                }
                last.clone_from(&entry.time);
                if wanted(entry.stream)
                    && frame::write(&mut wr, &to_frame(entry.stream, entry.log))
                        .await
                        .is_err()
                {
                    reader.abort();
                    return;
                }
            }
            Ok(Some(Ok(Reply::Exit { state }))) => break state.exit_code.unwrap_or(-1),
            Ok(Some(Ok(Reply::Error { message }))) => {
                tracing::warn!(id, message, "attach: the shim refused a request");
            }
            Ok(Some(_)) => {}
            // The shim went away: the exit is recorded in the state dir.
            Ok(None) | Err(_) => {
                break match state.containers.wait(&id).await {
                    Ok(st) => st.exit_code.unwrap_or(-1),
                    Err(_) => -1,
                };
            }
        }
    };
    reader.abort();
    let _ = frame::write(&mut wr, &Frame::Exit(code)).await;
    let _ = wr.shutdown().await;
}
