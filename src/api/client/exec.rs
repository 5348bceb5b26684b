//! The client side of the interactive streams: `POST /v1/containers/{id}/exec` and
//! `POST /v1/containers/{id}/attach` sent with `Upgrade: flotilla-stream` over the unix socket
//! or TCP (with the token), the `101` answer turned into a [`Session`] of frames
//! ([`crate::api::frame`]): a [`SessionReader`] of output frames ending with the exit code and a
//! [`SessionWriter`] for stdin, close-stdin and resizes, which the CLI pumps.

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{Client, ClientError, Result, TIMEOUT, api_error, query_escape, with_query};
use crate::api::frame::{self, Frame, PROTOCOL};
use crate::api::host::Host;
use crate::api::types::{ExecCreate, ExecDetached};

type Io = TokioIo<Upgraded>;

/// What to attach to (`POST /v1/containers/{id}/attach`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The output logged so far first.
    pub logs: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            logs: false,
        }
    }
}

/// An open exec or attach stream.
#[derive(Debug)]
pub struct Session {
    reader: SessionReader,
    writer: SessionWriter,
}

/// The daemon's side of a session: output frames, then the exit code.
#[derive(Debug)]
pub struct SessionReader {
    rd: ReadHalf<Io>,
    buf: BytesMut,
    what: String,
}

/// The client's side of a session: stdin, its end, terminal sizes.
#[derive(Debug)]
pub struct SessionWriter {
    wr: WriteHalf<Io>,
    what: String,
}

/// Everything a session printed, and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// None when the stream ended without an exit frame.
    pub exit_code: Option<i32>,
    /// Error frames from the daemon.
    pub errors: Vec<String>,
}

impl Session {
    pub fn split(self) -> (SessionReader, SessionWriter) {
        (self.reader, self.writer)
    }

    /// The session of a reader and writer [`Session::split`] gave.
    pub fn join(reader: SessionReader, writer: SessionWriter) -> Session {
        Session { reader, writer }
    }

    pub fn reader(&mut self) -> &mut SessionReader {
        &mut self.reader
    }

    pub fn writer(&mut self) -> &mut SessionWriter {
        &mut self.writer
    }

    /// Reads the whole stream (after the caller wrote what it wanted to): output and exit.
    pub async fn output(self) -> Result<Output> {
        let (mut reader, _writer) = self.split();
        let mut out = Output::default();
        while let Some(f) = reader.next().await? {
            match f {
                Frame::Stdout(b) => out.stdout.extend_from_slice(&b),
                Frame::Stderr(b) => out.stderr.extend_from_slice(&b),
                Frame::Error(m) => out.errors.push(m),
                Frame::Exit(code) => {
                    out.exit_code = Some(code);
                    break;
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl SessionReader {
    /// The next frame; none when the daemon closed the stream.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        frame::read(&mut self.rd, &mut self.buf)
            .await
            .map_err(|source| ClientError::Stream {
                what: self.what.clone(),
                source,
            })
    }
}

impl SessionWriter {
    async fn send(&mut self, f: &Frame) -> Result<()> {
        frame::write(&mut self.wr, f)
            .await
            .map_err(|source| ClientError::Stream {
                what: self.what.clone(),
                source,
            })
    }

    /// Bytes for the process's standard input.
    pub async fn stdin(&mut self, data: &[u8]) -> Result<()> {
        frame::write_data(&mut self.wr, data, Frame::Stdin)
            .await
            .map_err(|source| ClientError::Stream {
                what: self.what.clone(),
                source,
            })
    }

    /// The end of the standard input (the stream stays open for the output).
    pub async fn close_stdin(&mut self) -> Result<()> {
        self.send(&Frame::CloseStdin).await
    }

    /// The terminal's new size.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.send(&Frame::Resize { rows, cols }).await
    }

    /// Closes the connection's sending side: the daemon takes it as the client leaving.
    pub async fn shutdown(&mut self) {
        let _ = self.wr.shutdown().await;
    }
}

impl Client {
    /// `POST /v1/containers/{id}/exec` without `detach`: the command's stream.
    pub async fn exec(&self, id: &str, req: &ExecCreate) -> Result<Session> {
        let path = format!("/v1/containers/{}/exec", query_escape(id));
        let body = Client::encode(&Method::POST, &path, req)?;
        self.upgrade(&path, Some(body)).await
    }

    /// `POST /v1/containers/{id}/exec` with `detach`: started in the background.
    pub async fn exec_detached(&self, id: &str, req: &ExecCreate) -> Result<ExecDetached> {
        let path = format!("/v1/containers/{}/exec", query_escape(id));
        let req = ExecCreate {
            detach: true,
            ..req.clone()
        };
        self.call(Method::POST, &path, Some(&req)).await
    }

    /// `POST /v1/containers/{id}/attach`: the container's streams until it exits.
    pub async fn attach(&self, id: &str, options: &AttachOptions) -> Result<Session> {
        let params = [
            format!("stdin={}", options.stdin),
            format!("stdout={}", options.stdout),
            format!("stderr={}", options.stderr),
            format!("logs={}", options.logs),
        ];
        let path = with_query(
            &format!("/v1/containers/{}/attach", query_escape(id)),
            &params,
        );
        self.upgrade(&path, None).await
    }

    /// Sends `POST path` asking for the stream protocol and returns the upgraded connection.
    async fn upgrade(&self, path: &str, body: Option<Bytes>) -> Result<Session> {
        let work = async {
            let host = self.host.to_string();
            let connect_err = |source| ClientError::Connect {
                host: host.clone(),
                source,
            };
            match &self.host {
                Host::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .map_err(connect_err)?;
                    self.upgrade_on(s, path, body).await
                }
                Host::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr.as_str())
                        .await
                        .map_err(connect_err)?;
                    let _ = s.set_nodelay(true);
                    self.upgrade_on(s, path, body).await
                }
            }
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| ClientError::Timeout {
                method: Method::POST,
                path: path.to_string(),
                host: self.host.to_string(),
            })?
    }

    async fn upgrade_on<S>(&self, stream: S, path: &str, body: Option<Bytes>) -> Result<Session>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let host = self.host.to_string();
        let (mut sender, conn) =
            http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|source| ClientError::Handshake {
                    host: host.clone(),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "api stream connection");
            }
        });
        let mut head = self
            .request_head(&Method::POST, path)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, PROTOCOL);
        if body.is_some() {
            head = head.header(header::CONTENT_TYPE, "application/json");
        }
        let mut res = self
            .dispatch(
                &mut sender,
                head,
                Full::new(body.unwrap_or_default()),
                Method::POST,
                path,
            )
            .await?;
        let status = res.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let bytes = res
                .body_mut()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                return Err(ClientError::Api {
                    status: status.as_u16(),
                    code: crate::api::types::ErrorCode::Unknown,
                    message: format!("the daemon did not switch POST {path} to a stream"),
                });
            }
            return Err(api_error(status, &bytes));
        }
        let what = format!("POST {path}");
        let upgraded = hyper::upgrade::on(res)
            .await
            .map_err(|source| ClientError::Send {
                method: Method::POST,
                path: path.to_string(),
                host,
                source,
            })?;
        let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
        Ok(Session {
            reader: SessionReader {
                rd,
                buf: BytesMut::new(),
                what: what.clone(),
            },
            writer: SessionWriter { wr, what },
        })
    }
}
