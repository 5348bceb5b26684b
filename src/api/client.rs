//! The typed client of the REST API, over the daemon's unix socket or over TCP with a bearer
//! token. It shares the request/response types with the server ([`super::types`]), turns JSON
//! errors back into [`ClientError::Api`] with their stable code, and reads streaming endpoints
//! line by line ([`JsonStream`]: events, logs, pull progress); exec and attach are upgraded,
//! framed streams ([`Session`], in `client/exec.rs`). One connection per request: the
//! socket is local and the CLI makes few calls. [`connect_or_start`] starts a daemon in the
//! background when none answers on the default socket.

mod containers;
pub mod images;

pub use images::{BodySender, ByteStream};

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
use super::types::{
    Container, ContainerCreate, ContainerExit, ErrorBody, ErrorCode, Event, Image, ImagePull,
    ImageRemoved, Info, LogLine, ProjectDown, ProjectProgress, ProjectRun, ProjectSummary,
    ProjectUp, PullProgress, Version, Volume, VolumeCreate,
};

mod networks;
pub use networks::NetworkFilter;
mod exec;

pub use exec::{AttachOptions, Output, Session, SessionReader, SessionWriter};

/// How long a one-shot request may take before the client gives up on the daemon.
pub const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon answers at {host}: {source}\nstart one with `flotilla daemon`")]
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
    #[error("start a daemon for {host}: {reason}")]
    Autostart { host: String, reason: String },
    #[error("{what} stream with the daemon: {source}")]
    Stream {
        what: String,
        source: std::io::Error,
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

    /// Whether something listens at the daemon's address: a connection opened and dropped,
    /// no request (a [`ClientError::Connect`] when nothing does).
    pub async fn probe(&self) -> Result<()> {
        let connect_err = |source| ClientError::Connect {
            host: self.host.to_string(),
            source,
        };
        match &self.host {
            Host::Unix(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(drop)
                .map_err(connect_err),
            Host::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map(drop)
                .map_err(connect_err),
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
        let mut head = self.request_head(&method, path);
        if body.is_some() {
            head = head.header(header::CONTENT_TYPE, "application/json");
        }
        let res = self
            .dispatch(
                &mut sender,
                head,
                Full::new(body.unwrap_or_default()),
                method,
                path,
            )
            .await?;
        Ok((res.status(), res.into_body()))
    }

    /// The head of a request to this daemon: method, path, `Host`, and the bearer token when
    /// there is one.
    fn request_head(&self, method: &Method, path: &str) -> http::request::Builder {
        let authority = match &self.host {
            Host::Unix(_) => "flotilla",
            Host::Tcp(addr) => addr.as_str(),
        };
        let mut head = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, authority);
        if let Some(token) = &self.token {
            head = head.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        head
    }

    /// Completes `head` with `body` and sends it on `sender`: the response, its body unread.
    async fn dispatch<B>(
        &self,
        sender: &mut http1::SendRequest<B>,
        head: http::request::Builder,
        body: B,
        method: Method,
        path: &str,
    ) -> Result<http::Response<Incoming>>
    where
        B: hyper::body::Body + 'static,
    {
        let req = head.body(body).map_err(|source| ClientError::Request {
            method: method.clone(),
            path: path.to_string(),
            source,
        })?;
        sender
            .send_request(req)
            .await
            .map_err(|source| ClientError::Send {
                method,
                path: path.to_string(),
                host: self.host.to_string(),
                source,
            })
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
            let bytes = read_all(method.clone(), path, body).await?;
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
        self.events_with(&EventsQuery::default()).await
    }

    /// `GET /v1/events` with a replay window and filters.
    pub async fn events_with(&self, q: &EventsQuery) -> Result<EventStream> {
        let mut params = Vec::new();
        if let Some(s) = &q.since {
            params.push(format!("since={}", query_escape(s)));
        }
        if let Some(u) = &q.until {
            params.push(format!("until={}", query_escape(u)));
        }
        if !q.filters.is_empty() {
            let json = serde_json::to_string(&q.filters).unwrap_or_default();
            params.push(format!("filters={}", query_escape(&json)));
        }
        self.stream(Method::GET, &with_query("/v1/events", &params), None)
            .await
    }

    /// Starts a streaming request; the answer is read line by line.
    async fn stream<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<JsonStream<T>> {
        let (status, body) = tokio::time::timeout(TIMEOUT, self.send(method.clone(), path, body))
            .await
            .map_err(|_| ClientError::Timeout {
                method: method.clone(),
                path: path.to_string(),
                host: self.host.to_string(),
            })??;
        if !status.is_success() {
            return Err(error_of(status, body).await);
        }
        Ok(JsonStream {
            body,
            buf: BytesMut::new(),
            method,
            path: path.to_string(),
            _item: std::marker::PhantomData,
        })
    }

    fn encode(method: &Method, path: &str, body: &impl Serialize) -> Result<Bytes> {
        serde_json::to_vec(body)
            .map(Bytes::from)
            .map_err(|source| ClientError::Encode {
                method: method.clone(),
                path: path.to_string(),
                source,
            })
    }

    /// `POST /v1/containers`.
    pub async fn create_container(&self, req: &ContainerCreate) -> Result<Container> {
        self.call(Method::POST, "/v1/containers", Some(req)).await
    }

    /// `GET /v1/containers` (`all`: also stopped ones).
    pub async fn list_containers(&self, all: bool) -> Result<Vec<Container>> {
        let path = if all {
            "/v1/containers?all=true"
        } else {
            "/v1/containers"
        };
        self.call(Method::GET, path, None::<&()>).await
    }

    /// `GET /v1/containers?all=…&label=…`: only containers carrying `label` (`key` or
    /// `key=value`).
    pub async fn list_containers_with(&self, all: bool, label: &str) -> Result<Vec<Container>> {
        let path = format!("/v1/containers?all={all}&label={}", query_escape(label));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/containers/{id}`.
    pub async fn inspect_container(&self, id: &str) -> Result<Container> {
        let path = format!("/v1/containers/{}", query_escape(id));
        self.call(Method::GET, &path, None::<&()>).await
    }

    async fn container_action(
        &self,
        id: &str,
        action: &str,
        params: &[String],
    ) -> Result<Container> {
        let path = with_query(
            &format!("/v1/containers/{}/{action}", query_escape(id)),
            params,
        );
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `POST /v1/containers/{id}/start`.
    pub async fn start_container(&self, id: &str) -> Result<Container> {
        self.container_action(id, "start", &[]).await
    }

    /// `POST /v1/containers/{id}/stop` (`timeout` in seconds).
    pub async fn stop_container(&self, id: &str, timeout: Option<u64>) -> Result<Container> {
        let params: Vec<String> = timeout
            .map(|t| format!("timeout={t}"))
            .into_iter()
            .collect();
        self.container_action(id, "stop", &params).await
    }

    /// `POST /v1/containers/{id}/kill` (default `SIGKILL`).
    pub async fn kill_container(&self, id: &str, signal: Option<&str>) -> Result<Container> {
        let params: Vec<String> = signal
            .map(|s| format!("signal={}", query_escape(s)))
            .into_iter()
            .collect();
        self.container_action(id, "kill", &params).await
    }

    /// `POST /v1/containers/{id}/pause`.
    pub async fn pause_container(&self, id: &str) -> Result<Container> {
        self.container_action(id, "pause", &[]).await
    }

    /// `POST /v1/containers/{id}/unpause`.
    pub async fn unpause_container(&self, id: &str) -> Result<Container> {
        self.container_action(id, "unpause", &[]).await
    }

    /// `POST /v1/containers/{id}/wait`: blocks until the container has exited (no timeout).
    pub async fn wait_container(&self, id: &str) -> Result<ContainerExit> {
        let path = format!("/v1/containers/{}/wait", query_escape(id));
        self.untimed(Method::POST, &path, None).await
    }

    /// A one-shot request without [`TIMEOUT`], for those that last as long as they must.
    async fn untimed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T> {
        let path = path.to_string();
        let (status, body) = self.send(method.clone(), &path, body).await?;
        let bytes = read_all(method.clone(), &path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method: method.clone(),
            path,
            source,
        })
    }

    /// `DELETE /v1/containers/{id}`.
    pub async fn remove_container(&self, id: &str, force: bool) -> Result<()> {
        self.remove_container_with(id, force, false).await
    }

    /// `DELETE /v1/containers/{id}?force=…&v=…`: with `volumes`, its anonymous volumes too.
    pub async fn remove_container_with(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let path = format!(
            "/v1/containers/{}?force={force}&v={volumes}",
            query_escape(id)
        );
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `GET /v1/containers/{id}/logs`.
    pub async fn container_logs(&self, id: &str, q: &LogsQuery) -> Result<JsonStream<LogLine>> {
        let mut params = Vec::new();
        if q.follow {
            params.push("follow=true".to_string());
        }
        if let Some(t) = q.tail {
            params.push(format!("tail={t}"));
        }
        if let Some(s) = &q.since {
            params.push(format!("since={}", query_escape(s)));
        }
        let path = with_query(
            &format!("/v1/containers/{}/logs", query_escape(id)),
            &params,
        );
        self.stream(Method::GET, &path, None).await
    }

    /// `GET /v1/images`.
    pub async fn list_images(&self) -> Result<Vec<Image>> {
        self.call(Method::GET, "/v1/images", None::<&()>).await
    }

    /// `GET /v1/images/{name}`.
    pub async fn inspect_image(&self, name: &str) -> Result<Image> {
        let path = format!("/v1/images/{}", query_escape(name));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/images/{name}`.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<ImageRemoved> {
        let path = format!(
            "/v1/images/{}{}",
            query_escape(name),
            if force { "?force=true" } else { "" }
        );
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /v1/images/pull`: the progress stream; its last line is `done` or `error`.
    pub async fn pull_image(&self, req: &ImagePull) -> Result<JsonStream<PullProgress>> {
        let path = "/v1/images/pull";
        let body = Self::encode(&Method::POST, path, req)?;
        self.stream(Method::POST, path, Some(body)).await
    }

    /// `POST /v1/projects/{name}/up`: the progress stream; its last line is `done`.
    pub async fn project_up(
        &self,
        name: &str,
        req: &ProjectUp,
    ) -> Result<JsonStream<ProjectProgress>> {
        let path = format!("/v1/projects/{}/up", query_escape(name));
        let body = Self::encode(&Method::POST, &path, req)?;
        self.stream(Method::POST, &path, Some(body)).await
    }

    /// `POST /v1/projects/{name}/down`: the progress stream; its last line is `done`.
    pub async fn project_down(
        &self,
        name: &str,
        req: &ProjectDown,
    ) -> Result<JsonStream<ProjectProgress>> {
        let path = format!("/v1/projects/{}/down", query_escape(name));
        let body = Self::encode(&Method::POST, &path, req)?;
        self.stream(Method::POST, &path, Some(body)).await
    }

    /// `POST /v1/projects/{name}/run`: the one-off container, created and started (no
    /// timeout: the dependencies may take their time to come up).
    pub async fn project_run(&self, name: &str, req: &ProjectRun) -> Result<Container> {
        let path = format!("/v1/projects/{}/run", query_escape(name));
        let body = Self::encode(&Method::POST, &path, req)?;
        self.untimed(Method::POST, &path, Some(body)).await
    }

    /// `GET /v1/projects`.
    pub async fn list_projects(&self) -> Result<Vec<ProjectSummary>> {
        self.call(Method::GET, "/v1/projects", None::<&()>).await
    }
}

/// The query of [`Client::events_with`].
#[derive(Debug, Clone, Default)]
pub struct EventsQuery {
    /// RFC 3339 or Unix seconds.
    pub since: Option<String>,
    pub until: Option<String>,
    pub filters: crate::engine::events::EventFilter,
}

/// The query of [`Client::container_logs`].
#[derive(Debug, Clone, Default)]
pub struct LogsQuery {
    pub follow: bool,
    pub tail: Option<usize>,
    /// RFC 3339 or Unix seconds.
    pub since: Option<String>,
}

fn with_query(path: &str, params: &[String]) -> String {
    if params.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", params.join("&"))
    }
}

/// Newline-delimited JSON items as they arrive.
#[derive(Debug)]
pub struct JsonStream<T> {
    body: Incoming,
    buf: BytesMut,
    method: Method,
    path: String,
    _item: std::marker::PhantomData<fn() -> T>,
}

/// The events stream.
pub type EventStream = JsonStream<Event>;

impl<T: DeserializeOwned> JsonStream<T> {
    /// The next item; `None` when the daemon ends the stream.
    pub async fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(i + 1);
                let line = &line[..i];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(
                    serde_json::from_slice(line).map_err(|source| ClientError::Decode {
                        method: self.method.clone(),
                        path: self.path.clone(),
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
                        method: self.method.clone(),
                        path: self.path.clone(),
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

/// The whole body of an answer to `method path`.
async fn read_all(method: Method, path: &str, body: Incoming) -> Result<Bytes> {
    Ok(body
        .collect()
        .await
        .map_err(|source| ClientError::Body {
            method,
            path: path.to_string(),
            source,
        })?
        .to_bytes())
}

/// The error an answer with the error `status` carries (its body read as far as it goes).
async fn error_of(status: StatusCode, body: Incoming) -> ClientError {
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    api_error(status, &bytes)
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

/// How [`connect_or_start`] starts a daemon.
#[derive(Debug, Clone)]
pub struct Autostart {
    /// `--data-root` of the new daemon; its log is `<data_root>/daemon.log`.
    pub data_root: std::path::PathBuf,
    /// `--config` of the new daemon.
    pub config: Option<std::path::PathBuf>,
    /// The flotilla executable (default: this one).
    pub exe: Option<std::path::PathBuf>,
    /// How long to wait for its socket.
    pub wait: Duration,
}

impl Autostart {
    pub fn new(data_root: &std::path::Path, config: Option<&std::path::Path>) -> Self {
        Autostart {
            data_root: data_root.to_path_buf(),
            config: config.map(std::path::Path::to_path_buf),
            exe: None,
            wait: Duration::from_secs(15),
        }
    }
}

/// The log file of an autostarted daemon.
pub const AUTOSTART_LOG: &str = "daemon.log";

/// `client` if its daemon answers; else, with `autostart` (the CLI passes it only for the
/// default socket, never for an explicit `--host`/`FLOTILLA_HOST`) and a unix socket, starts
/// `flotilla daemon` detached (own session, stdio to `<data root>/daemon.log`), says so in one
/// line on stderr and waits (bounded) until it answers.
pub async fn connect_or_start(client: Client, autostart: Option<&Autostart>) -> Result<Client> {
    let err = match client.probe().await {
        Ok(()) => return Ok(client),
        Err(e) => e,
    };
    let (Some(start), Host::Unix(socket)) = (autostart, client.host()) else {
        return Err(err);
    };
    if !err.is_not_running() {
        return Err(err);
    }
    let fail = |reason: String| ClientError::Autostart {
        host: client.host().to_string(),
        reason,
    };
    let exe = match &start.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().map_err(|e| fail(format!("find the executable: {e}")))?,
    };
    std::fs::create_dir_all(&start.data_root)
        .map_err(|e| fail(format!("create {}: {e}", start.data_root.display())))?;
    let log_path = start.data_root.join(AUTOSTART_LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| fail(format!("open {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| fail(format!("open {}: {e}", log_path.display())))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("daemon")
        .arg("--data-root")
        .arg(&start.data_root)
        .arg("--host")
        .arg(format!("unix://{}", socket.display()));
    if let Some(c) = &start.config {
        cmd.arg("--config").arg(c);
    }
    cmd.env(crate::engine::daemon::SETSID_ENV, "1")
        .env_remove("FLOTILLA_HOST")
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("run {} daemon: {e}", exe.display())))?;
    eprintln!(
        "started flotilla daemon (pid {}, log {})",
        child.id(),
        log_path.display()
    );
    let deadline = tokio::time::Instant::now() + start.wait;
    loop {
        if client.version().await.is_ok() {
            return Ok(client);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another CLI's daemon may have won the race for the socket.
            if client.version().await.is_ok() {
                return Ok(client);
            }
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(fail(format!(
                "the daemon exited ({status}): {}",
                tail.join("\n")
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(fail(format!(
                "the daemon did not answer within {}s (log {})",
                start.wait.as_secs(),
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
