//! The typed client of the REST API, over the daemon's unix socket or over TCP with a bearer
//! token. It shares the request/response types with the server ([`super::types`]), turns JSON
//! errors back into [`ClientError::Api`] with their stable code, and reads streaming endpoints
//! line by line ([`EventStream`]). One connection per request: the socket is local and the CLI
//! makes few calls.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use super::host::Host;
use super::types::{ErrorBody, ErrorCode, Event, Info, Version, Volume, VolumeCreate};

/// How long a one-shot request may take before the client gives up on the daemon.
pub const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to the daemon at {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("open an HTTP connection to the daemon at {host}: {source}")]
    Handshake { host: String, source: hyper::Error },
    #[error("build the request {method} {path}: {source}")]
    Request {
        method: Method,
        path: String,
        source: http::Error,
    },
    #[error("encode the request body of {method} {path}: {source}")]
    Encode {
        method: Method,
        path: String,
        source: serde_json::Error,
    },
    #[error("send {method} {path} to the daemon at {host}: {source}")]
    Send {
        method: Method,
        path: String,
        host: String,
        source: hyper::Error,
    },
    #[error("read the daemon's answer to {method} {path}: {source}")]
    Body {
        method: Method,
        path: String,
        source: hyper::Error,
    },
    #[error("decode the daemon's answer to {method} {path}: {source}")]
    Decode {
        method: Method,
        path: String,
        source: serde_json::Error,
    },
    #[error("the daemon at {host} did not answer {method} {path} within {}s", TIMEOUT.as_secs())]
    Timeout {
        method: Method,
        path: String,
        host: String,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },
}

impl ClientError {
    /// Nothing listens at the address (no socket, or a stale one, or a refused port).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }

    /// The stable error code, when the daemon answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    host: Host,
    token: Option<String>,
}

impl Client {
    /// A client of the daemon at `host`; `token` is sent as a bearer token (needed on TCP).
    pub fn new(host: Host, token: Option<String>) -> Self {
        Client { host, token }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>> {
        let host = self.host.to_string();
        let connect_err = |source| ClientError::Connect {
            host: host.clone(),
            source,
        };
        match &self.host {
            Host::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?;
                handshake(s, &host).await
            }
            Host::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                handshake(s, &host).await
            }
        }
    }

    /// Sends one request; returns the status and the response body, unread.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Incoming)> {
        let mut sender = self.connect().await?;
        let authority = match &self.host {
            Host::Unix(_) => "flotilla",
            Host::Tcp(addr) => addr.as_str(),
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, authority);
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|source| ClientError::Request {
                method: method.clone(),
                path: path.to_string(),
                source,
            })?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|source| ClientError::Send {
                method,
                path: path.to_string(),
                host: self.host.to_string(),
                source,
            })?;
        Ok((res.status(), res.into_body()))
    }

    /// One request with an optional body; the status and the whole response body. Error
    /// statuses are returned, not turned into errors (tests of bad input use this).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes)> {
        let m = method.clone();
        let work = async {
            let (status, body) = self.send(method.clone(), path, body).await?;
            let bytes = body
                .collect()
                .await
                .map_err(|source| ClientError::Body {
                    method: method.clone(),
                    path: path.to_string(),
                    source,
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| ClientError::Timeout {
                method: m,
                path: path.to_string(),
                host: self.host.to_string(),
            })?
    }

    /// A request whose success body is JSON of type `T`; an error status becomes
    /// [`ClientError::Api`].
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let body = match body {
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|source| {
                ClientError::Encode {
                    method: method.clone(),
                    path: path.to_string(),
                    source,
                }
            })?)),
            None => None,
        };
        let (status, bytes) = self.raw(method.clone(), path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            path: path.to_string(),
            source,
        })
    }

    /// `GET /v1/version`.
    pub async fn version(&self) -> Result<Version> {
        self.call(Method::GET, "/v1/version", None::<&()>).await
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info> {
        self.call(Method::GET, "/v1/info", None::<&()>).await
    }

    /// `POST /v1/volumes`.
    pub async fn create_volume(&self, req: &VolumeCreate) -> Result<Volume> {
        self.call(Method::POST, "/v1/volumes", Some(req)).await
    }

    /// `GET /v1/volumes`, optionally only those with a label (`key` or `key=value`).
    pub async fn list_volumes(&self, label: Option<&str>) -> Result<Vec<Volume>> {
        let path = match label {
            Some(l) => format!("/v1/volumes?label={}", query_escape(l)),
            None => "/v1/volumes".to_string(),
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/volumes/{name}`.
    pub async fn inspect_volume(&self, name: &str) -> Result<Volume> {
        let path = format!("/v1/volumes/{}", query_escape(name));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/volumes/{name}`.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let path = format!("/v1/volumes/{}", query_escape(name));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `GET /v1/events`: the stream of events from now on.
    pub async fn events(&self) -> Result<EventStream> {
        let path = "/v1/events";
        let (status, body) = self.send(Method::GET, path, None).await?;
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(api_error(status, &bytes));
        }
        Ok(EventStream {
            body,
            buf: BytesMut::new(),
        })
    }
}

/// Newline-delimited JSON events as they arrive.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
}

impl EventStream {
    /// The next event; `None` when the daemon ends the stream.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(i + 1);
                let line = &line[..i];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(
                    serde_json::from_slice(line).map_err(|source| ClientError::Decode {
                        method: Method::GET,
                        path: "/v1/events".into(),
                        source,
                    }),
                );
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Err(source) => {
                    return Some(Err(ClientError::Body {
                        method: Method::GET,
                        path: "/v1/events".into(),
                        source,
                    }));
                }
            }
        }
    }
}

async fn handshake<S>(stream: S, host: &str) -> Result<http1::SendRequest<Full<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ClientError::Handshake {
            host: host.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "api connection");
        }
    });
    Ok(sender)
}

fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) => ClientError::Api {
            status: status.as_u16(),
            code: b.code,
            message: b.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: ErrorCode::Unknown,
            message: format!(
                "the daemon answered {status}: {}",
                String::from_utf8_lossy(bytes).trim()
            ),
        },
    }
}

/// Percent-encodes what is not unreserved in a URL path segment or query value.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `f` on a small single-threaded runtime: the CLI's way to call the async client.
pub fn block_on<F: std::future::Future>(f: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(query_escape("a=b c/d"), "a%3Db%20c%2Fd");
        assert_eq!(query_escape("data_1.x-y"), "data_1.x-y");
    }

    #[test]
    fn error_bodies_keep_their_code() {
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"code":"not_found","message":"volume \"x\" not found"}"#,
        );
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        assert_eq!(e.to_string(), "volume \"x\" not found");
        let e = api_error(StatusCode::BAD_GATEWAY, b"oops");
        assert_eq!(e.code(), Some(ErrorCode::Unknown));
        let e = api_error(
            StatusCode::IM_A_TEAPOT,
            br#"{"code":"brand_new","message":"m"}"#,
        );
        assert_eq!(e.code(), Some(ErrorCode::Unknown));
    }
}
