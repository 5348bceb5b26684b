//! `container exec`, `container attach` and Compose's `exec SERVICE` through the daemon's
//! upgraded streams ([`crate::api::client::Session`]): the local terminal in raw mode with `-t`
//! (restored on every way out), standard input pumped from a thread (its end sent as
//! close-stdin), SIGWINCH → resize, stdout and stderr written apart, and the exit code the
//! daemon sends last propagated like Docker's (126/127 when the command cannot be executed or
//! found, 128 + signal). `attach` also proxies SIGINT/SIGTERM/SIGHUP to the container (Docker's
//! sig-proxy) and, for a container that exits before it attaches, prints its logs and code.
//!
//! The entry points take a connected [`Client`] so every container command can share them.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::ExecArgs;
use crate::api::client::{AttachOptions, Client, ClientError, LogsQuery, Session, block_on};
use crate::api::frame::Frame;
use crate::api::types::{ErrorCode, ExecCreate};

/// The local terminal in raw mode until dropped (only when standard input is a terminal).
struct RawTerminal {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawTerminal {
    fn enter(tty: bool) -> RawTerminal {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        if !tty || !stdin.is_terminal() {
            return RawTerminal { saved: None };
        }
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawTerminal { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        RawTerminal { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// The size of the terminal on standard output (else standard input), `[rows, cols]`.
fn terminal_size() -> Option<[u16; 2]> {
    let (out, inp) = (std::io::stdout(), std::io::stdin());
    crate::runtime::sys::exec::terminal_size(out.as_fd())
        .or_else(|| crate::runtime::sys::exec::terminal_size(inp.as_fd()))
        .map(|(r, c)| [r, c])
}

/// Standard input read on its own thread (a blocked read must not hold the runtime at exit);
/// none at its end.
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    rx
}

fn write_out(data: &[u8], err: bool) {
    // A closed output is not an error: the command goes on.
    let _ = if err {
        let mut e = std::io::stderr().lock();
        e.write_all(data).and_then(|_| e.flush())
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data).and_then(|_| o.flush())
    };
}

/// How a pumped session ended.
enum Ended {
    Exit(i32),
    /// A signal this command got while proxying was off: 128 + signal.
    Signal(i32),
}

/// Pumps `session` until its exit frame: stdin (when `stdin`), resizes (with `tty`), output.
/// With `proxy`, SIGINT/SIGTERM/SIGHUP go to the container `proxy` names instead of ending
/// this command.
async fn pump(
    client: &Client,
    session: Session,
    stdin: bool,
    tty: bool,
    proxy: Option<&str>,
) -> Result<Ended, String> {
    let (mut reader, mut writer) = session.split();
    let mut input = stdin.then(stdin_chunks);
    let sig = |kind| signal(kind).map_err(|e| format!("listen for signals: {e}"));
    let mut winch = sig(SignalKind::window_change())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut hup = sig(SignalKind::hangup())?;
    let forward = async |name: &str, number: i32| -> Option<Ended> {
        match proxy {
            Some(id) => {
                let _ = client.kill_container(id, Some(name)).await;
                None
            }
            None => Some(Ended::Signal(number)),
        }
    };
    loop {
        tokio::select! {
            f = reader.next() => match f.map_err(|e| e.to_string())? {
                Some(Frame::Stdout(b)) => write_out(&b, false),
                Some(Frame::Stderr(b)) => write_out(&b, true),
                Some(Frame::Error(m)) => eprintln!("error: {m}"),
                Some(Frame::Exit(code)) => return Ok(Ended::Exit(code)),
                Some(_) => {}
                None => return Err("the daemon ended the stream before the exit code".into()),
            },
            chunk = async { input.as_mut()?.recv().await.or(Some(Vec::new())) }, if input.is_some() => {
                match chunk {
                    Some(data) if !data.is_empty() => {
                        writer.stdin(&data).await.map_err(|e| e.to_string())?;
                    }
                    _ => {
                        input = None;
                        writer.close_stdin().await.map_err(|e| e.to_string())?;
                    }
                }
            }
            _ = winch.recv(), if tty => {
                if let Some([rows, cols]) = terminal_size() {
                    let _ = writer.resize(rows, cols).await;
                }
            }
            _ = int.recv() => if let Some(e) = forward("SIGINT", 2).await { return Ok(e) },
            _ = term.recv() => if let Some(e) = forward("SIGTERM", 15).await { return Ok(e) },
            _ = hup.recv() => if let Some(e) = forward("SIGHUP", 1).await { return Ok(e) },
        }
    }
}

fn exit_byte(e: Ended) -> u8 {
    match e {
        Ended::Exit(code) => (code & 0xff) as u8,
        Ended::Signal(sig) => (128 + sig) as u8,
    }
}

/// A daemon's error before the stream: its message, prefixed like Docker's.
fn api_message(e: &ClientError) -> String {
    match e {
        ClientError::Api { message, .. } => format!("error: {message}"),
        e => format!("error: {e}"),
    }
}

/// Runs `args.command` in `container` through the daemon: its exit code (0 at once with `-d`).
/// Errors are one line (the caller exits 1 with it).
pub(in crate::cli) fn exec(
    client: &Client,
    container: &str,
    args: &ExecArgs,
) -> Result<u8, String> {
    let tty = args.tty && !args.detach;
    if tty && args.interactive && !std::io::stdin().is_terminal() {
        return Err("error: the input device is not a TTY".into());
    }
    let req = ExecCreate {
        cmd: args.command.clone(),
        env: args
            .env
            .iter()
            .filter_map(|e| super::env_entry(e))
            .collect(),
        user: args.user.clone(),
        working_dir: args.workdir.clone(),
        tty,
        stdin: args.interactive && !args.detach,
        detach: args.detach,
        console_size: if tty { terminal_size() } else { None },
    };
    block_on(async {
        if args.detach {
            return client
                .exec_detached(container, &req)
                .await
                .map(|_| 0)
                .map_err(|e| api_message(&e));
        }
        let session = client
            .exec(container, &req)
            .await
            .map_err(|e| api_message(&e))?;
        let raw = RawTerminal::enter(tty);
        let ended = pump(client, session, req.stdin, tty, None).await;
        drop(raw);
        ended.map(exit_byte).map_err(|e| format!("error: {e}"))
    })
    .map_err(|e| format!("error: start a runtime: {e}"))?
}

/// Attaches this terminal to the running container `id`: its output, with `stdin` this input,
/// with `tty` raw mode and resizes, signals proxied; returns its exit code once it exits. With
/// `logs`, what it wrote so far comes first (for a container just started by `run`/`start -a`:
/// nothing is missed, and one that already exited gets its logs and code instead).
pub(in crate::cli) fn attach(
    client: &Client,
    id: &str,
    stdin: bool,
    tty: bool,
    logs: bool,
) -> Result<i32, String> {
    block_on(async {
        let options = AttachOptions {
            stdin,
            logs,
            ..AttachOptions::default()
        };
        let session = match client.attach(id, &options).await {
            Ok(s) => s,
            Err(e) if logs && e.code() == Some(ErrorCode::Conflict) => {
                return exited(client, id).await;
            }
            Err(e) => return Err(api_message(&e)),
        };
        if tty && let Some([rows, cols]) = terminal_size() {
            let (r, mut w) = session.split();
            let _ = w.resize(rows, cols).await;
            return attached(client, id, Session::join(r, w), stdin, tty).await;
        }
        attached(client, id, session, stdin, tty).await
    })
    .map_err(|e| format!("error: start a runtime: {e}"))?
}

async fn attached(
    client: &Client,
    id: &str,
    session: Session,
    stdin: bool,
    tty: bool,
) -> Result<i32, String> {
    let raw = RawTerminal::enter(tty);
    let ended = pump(client, session, stdin, tty, Some(id)).await;
    drop(raw);
    match ended.map_err(|e| format!("error: {e}"))? {
        Ended::Exit(code) => Ok(code),
        Ended::Signal(sig) => Ok(128 + sig),
    }
}

/// A container that exited before the attach: its logs, then its exit code.
async fn exited(client: &Client, id: &str) -> Result<i32, String> {
    let exit = client
        .wait_container(id)
        .await
        .map_err(|e| api_message(&e))?;
    let mut lines = client
        .container_logs(id, &LogsQuery::default())
        .await
        .map_err(|e| api_message(&e))?;
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| api_message(&e))?;
        write_out(line.log.as_bytes(), line.stream == "stderr");
    }
    Ok(exit.exit_code)
}

/// `flotilla container attach CONTAINER`.
pub(in crate::cli) fn attach_command(client: &Client, args: &AttachArgs) -> Result<u8, String> {
    let c = block_on(client.inspect_container(&args.container))
        .map_err(|e| format!("error: start a runtime: {e}"))?
        .map_err(|e| api_message(&e))?;
    let stdin = !args.no_stdin && c.open_stdin;
    attach(client, &c.id, stdin, c.tty, false).map(|code| (code & 0xff) as u8)
}

/// `flotilla container attach`.
#[derive(clap::Args, Debug, Clone)]
pub struct AttachArgs {
    /// Do not attach standard input
    #[arg(long)]
    pub no_stdin: bool,
    /// The container
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}
