//! The shim's control socket, `<state dir>/shim.sock`: a unix stream socket speaking
//! line-delimited JSON. A client sends one [`Request`] per line; the shim answers with
//! [`Reply`] lines:
//!
//! - `{"cmd":"status"}` → `{"type":"ok","state":{…}}`
//! - `{"cmd":"signal","signal":15}` → `{"type":"ok"}`
//! - `{"cmd":"pause"}` / `{"cmd":"resume"}` → `{"type":"ok","state":{…}}`
//! - `{"cmd":"wait"}` → nothing until the container has exited, then `{"type":"exit","state":…}`
//! - `{"cmd":"attach","stdin":true}` → `{"type":"ok"}`, then `{"type":"output",…}` lines as
//!   the container writes, and `{"type":"exit",…}` at the end; meanwhile the client may send
//!   `{"cmd":"stdin","data":"…"}` (or `"b64":"…"` for any bytes), `{"cmd":"close_stdin"}` and, for a container with a
//!   pseudo-terminal, `{"cmd":"resize","rows":R,"cols":C}`.
//!
//! Errors are `{"type":"error","message":"…"}`. This module holds the shapes and the blocking
//! client the lifecycle uses; the shim's side is in [`crate::runtime::shim`].

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::logs::Entry;
use crate::runtime::state::State;

/// The socket's name in the state dir.
pub const SOCKET: &str = "shim.sock";

/// A request to the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Signal {
        signal: i32,
    },
    Pause,
    Resume,
    Wait,
    Attach {
        #[serde(default)]
        stdin: bool,
    },
    Stdin {
        #[serde(default)]
        data: String,
        /// The bytes in base64 instead of `data` (input that is not UTF-8).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        b64: Option<String>,
    },
    CloseStdin,
    /// The pseudo-terminal's new size (containers with a tty).
    Resize {
        rows: u16,
        cols: u16,
    },
}

/// A line from the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<State>,
    },
    Error {
        message: String,
    },
    Output {
        #[serde(flatten)]
        entry: Entry,
    },
    Exit {
        state: State,
    },
}

/// Runs `f` with a path to `dir/name` short enough for a socket address (108 bytes): the path
/// itself, or `/proc/self/fd/<n>/name` through an open fd of `dir`.
pub fn with_socket_path<T>(
    dir: &Path,
    name: &str,
    f: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<T> {
    let full = dir.join(name);
    if full.as_os_str().len() < 100 {
        return f(&full);
    }
    let d = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()));
    let result = f(&short);
    drop(d);
    result
}

/// A connection to a shim.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the shim of the state dir `dir`.
    pub fn connect(dir: &Path) -> io::Result<Client> {
        let stream = with_socket_path(dir, SOCKET, |p| UnixStream::connect(p))?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Limits how long [`Client::read_reply`] waits (none: forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.writer.set_read_timeout(timeout)
    }

    /// Sends one request.
    pub fn send(&mut self, request: &Request) -> io::Result<()> {
        let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line)
    }

    /// The next reply; none when the shim closed the connection.
    pub fn read_reply(&mut self) -> io::Result<Option<Reply>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The connection, and what was read from it but not yet returned as a reply.
    pub fn into_parts(self) -> (UnixStream, Vec<u8>) {
        let buffered = self.reader.buffer().to_vec();
        (self.writer, buffered)
    }

    /// Sends `request` and returns the first reply.
    pub fn call(&mut self, request: &Request) -> io::Result<Reply> {
        self.send(request)?;
        self.read_reply()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the shim closed the connection",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::logs::Stream;

    #[test]
    fn wire_shapes() {
        let r: Request = serde_json::from_str(r#"{"cmd":"signal","signal":15}"#).unwrap();
        assert_eq!(r, Request::Signal { signal: 15 });
        let r: Request = serde_json::from_str(r#"{"cmd":"attach"}"#).unwrap();
        assert_eq!(r, Request::Attach { stdin: false });
        let out = Reply::Output {
            entry: Entry {
                time: "t".into(),
                stream: Stream::Stderr,
                log: "x\n".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"type":"output","time":"t","stream":"stderr","log":"x\n"}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::Ok { state: None }).unwrap(),
            r#"{"type":"ok"}"#
        );
    }

    #[test]
    fn long_socket_paths_go_through_proc() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(100));
        std::fs::create_dir(&deep).unwrap();
        let listener =
            with_socket_path(&deep, SOCKET, |p| std::os::unix::net::UnixListener::bind(p)).unwrap();
        assert!(deep.join(SOCKET).exists());
        let client = Client::connect(&deep);
        assert!(client.is_ok());
        drop(listener);
    }
}
