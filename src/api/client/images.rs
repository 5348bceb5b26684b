//! The client's image calls beyond list/inspect/remove/pull (in the parent): tag, prune,
//! history, pull and push with registry credentials (`X-Registry-Auth`), and the tarball
//! routes, whose bodies stream both ways ([`ByteStream`] for `save`; `load` and `import` send
//! chunks as the caller produces them, so an archive is never held in memory).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::{
    Client, ClientError, JsonStream, Result, TIMEOUT, api_error, error_of, query_escape, read_all,
    with_query,
};
use crate::api::host::Host;
use crate::api::types::{
    Image, ImageHistory, ImageLoaded, ImagePull, ImageRemoved, ImageTag, PullProgress,
    PushProgress, REGISTRY_AUTH_HEADER, RegistryAuth,
};

type StreamedBody = BoxBody<Bytes, std::io::Error>;

/// The chunks of a request body the caller sends (an `Err` aborts the request), for
/// [`Client::load_images`] and [`Client::import_image`].
pub type BodySender = mpsc::Sender<std::result::Result<Bytes, std::io::Error>>;

/// A response body as it arrives (`GET /v1/images/save`).
#[derive(Debug)]
pub struct ByteStream {
    pub(super) body: Incoming,
    pub(super) path: String,
}

impl ByteStream {
    /// The next chunk; `None` at the end. A daemon that cuts the stream short (a failed save)
    /// gives an error, never a silent end.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
                Err(source) => {
                    return Some(Err(ClientError::Body {
                        method: Method::GET,
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
        }
    }
}

fn full(bytes: Bytes) -> StreamedBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

impl Client {
    async fn connect_streamed(&self) -> Result<http1::SendRequest<StreamedBody>> {
        let host = self.host.to_string();
        let connect_err = |source| ClientError::Connect {
            host: host.clone(),
            source,
        };
        let handshake_err = |source| ClientError::Handshake {
            host: host.clone(),
            source,
        };
        let (sender, conn) = match &self.host {
            Host::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?;
                let (sender, conn) = http1::handshake(TokioIo::new(s))
                    .await
                    .map_err(handshake_err)?;
                (sender, tokio::spawn(conn))
            }
            Host::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                let (sender, conn) = http1::handshake(TokioIo::new(s))
                    .await
                    .map_err(handshake_err)?;
                (sender, tokio::spawn(conn))
            }
        };
        drop(conn);
        Ok(sender)
    }

    /// One request with extra headers and any body; the status and the unread response body.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, String)],
        body: StreamedBody,
    ) -> Result<(StatusCode, Incoming)> {
        let mut sender = self.connect_streamed().await?;
        let mut head = self.request_head(&method, path);
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                head = head.header(name, v);
            }
        }
        let res = self.dispatch(&mut sender, head, body, method, path).await?;
        Ok((res.status(), res.into_body()))
    }

    /// A streaming response (bounded wait for its head) whose error statuses become
    /// [`ClientError::Api`].
    async fn open(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, String)],
        body: StreamedBody,
    ) -> Result<Incoming> {
        let (status, body) =
            tokio::time::timeout(TIMEOUT, self.send_with(method.clone(), path, headers, body))
                .await
                .map_err(|_| ClientError::Timeout {
                    method: method.clone(),
                    path: path.to_string(),
                    host: self.host.to_string(),
                })??;
        if !status.is_success() {
            return Err(error_of(status, body).await);
        }
        Ok(body)
    }

    /// A JSON answer of type `T` (no timeout: uploads last as long as they must).
    async fn json_answer<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, String)],
        body: StreamedBody,
    ) -> Result<T> {
        let (status, body) = self.send_with(method.clone(), path, headers, body).await?;
        let bytes = read_all(method.clone(), path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            path: path.to_string(),
            source,
        })
    }

    fn json_stream<T>(body: Incoming, method: Method, path: &str) -> JsonStream<T> {
        JsonStream {
            body,
            buf: bytes::BytesMut::new(),
            method,
            path: path.to_string(),
            _item: std::marker::PhantomData,
        }
    }

    /// `POST /v1/images/{name}/tag`: the image under its new name.
    pub async fn tag_image(&self, name: &str, target: &str) -> Result<Image> {
        let path = format!("/v1/images/{}/tag", query_escape(name));
        let req = ImageTag {
            target: target.to_string(),
        };
        self.call(Method::POST, &path, Some(&req)).await
    }

    /// `POST /v1/images/prune?all=…`: dangling images, or with `all` every unused one.
    pub async fn prune_images(&self, all: bool) -> Result<ImageRemoved> {
        let path = format!("/v1/images/prune?all={all}");
        let (status, body) = self
            .send_with(Method::POST, &path, &[], full(Bytes::new()))
            .await?;
        let bytes = read_all(Method::POST, &path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method: Method::POST,
            path,
            source,
        })
    }

    /// `GET /v1/images/{name}/history`: newest step first.
    pub async fn image_history(&self, name: &str) -> Result<Vec<ImageHistory>> {
        let path = format!("/v1/images/{}/history", query_escape(name));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/images/pull` with the client's registry credentials; dropping the stream
    /// cancels the pull.
    pub async fn pull_image_with(
        &self,
        req: &ImagePull,
        auth: Option<&RegistryAuth>,
    ) -> Result<JsonStream<PullProgress>> {
        let path = "/v1/images/pull";
        let body = Self::encode(&Method::POST, path, req)?;
        let mut headers = vec![(header::CONTENT_TYPE, "application/json".to_string())];
        if let Some(auth) = auth {
            headers.push((HeaderName::from_static(REGISTRY_AUTH_HEADER), auth.encode()));
        }
        let body = self.open(Method::POST, path, &headers, full(body)).await?;
        Ok(Self::json_stream(body, Method::POST, path))
    }

    /// `POST /v1/images/{name}/push`: the progress stream, its last line `done` or `error`;
    /// dropping the stream cancels the push.
    pub async fn push_image(
        &self,
        name: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<JsonStream<PushProgress>> {
        let path = format!("/v1/images/{}/push", query_escape(name));
        let headers: Vec<(HeaderName, String)> = auth
            .map(|a| (HeaderName::from_static(REGISTRY_AUTH_HEADER), a.encode()))
            .into_iter()
            .collect();
        let body = self
            .open(Method::POST, &path, &headers, full(Bytes::new()))
            .await?;
        Ok(Self::json_stream(body, Method::POST, &path))
    }

    /// `GET /v1/images/save?names=…`: the tar archive as it is written.
    pub async fn save_images(&self, names: &[String]) -> Result<ByteStream> {
        let params: Vec<String> = names
            .iter()
            .map(|n| format!("names={}", query_escape(n)))
            .collect();
        let path = with_query("/v1/images/save", &params);
        let body = self
            .open(Method::GET, &path, &[], full(Bytes::new()))
            .await?;
        Ok(ByteStream { body, path })
    }

    /// `POST /v1/images/load`: sends what arrives on the returned sender's channel as the
    /// archive (the caller fills it, from another task or thread, and drops it at the end).
    pub fn load_images(
        &self,
    ) -> (
        BodySender,
        impl std::future::Future<Output = Result<Vec<ImageLoaded>>> + '_,
    ) {
        let (tx, body) = streamed_body();
        let answer = async move {
            let headers = [(header::CONTENT_TYPE, "application/x-tar".to_string())];
            self.json_answer(Method::POST, "/v1/images/load", &headers, body)
                .await
        };
        (tx, answer)
    }

    /// `POST /v1/images/import?reference=…&change=…`: like [`Client::load_images`], the
    /// rootfs tarball is what the caller sends on the returned sender.
    pub fn import_image<'a>(
        &'a self,
        reference: &str,
        changes: &[String],
    ) -> (
        BodySender,
        impl std::future::Future<Output = Result<Image>> + 'a,
    ) {
        let mut params = vec![format!("reference={}", query_escape(reference))];
        params.extend(
            changes
                .iter()
                .map(|c| format!("change={}", query_escape(c))),
        );
        let path = with_query("/v1/images/import", &params);
        let (tx, body) = streamed_body();
        let answer = async move {
            let headers = [(header::CONTENT_TYPE, "application/x-tar".to_string())];
            self.json_answer(Method::POST, &path, &headers, body).await
        };
        (tx, answer)
    }
}

impl Client {
    /// `POST /v1/build?options=…`: the context tar is what the caller sends on the returned
    /// sender (dropped at the end); the future gives the progress stream once the daemon
    /// answers (it answers at once and builds while the context arrives).
    pub fn build_image<'a>(
        &'a self,
        options: &crate::api::types::BuildOptions,
    ) -> Result<(
        BodySender,
        impl std::future::Future<Output = Result<JsonStream<crate::api::types::BuildProgress>>> + 'a,
    )> {
        let json = serde_json::to_string(options).map_err(|source| ClientError::Encode {
            method: Method::POST,
            path: "/v1/build".to_string(),
            source,
        })?;
        let path = with_query("/v1/build", &[format!("options={}", query_escape(&json))]);
        let (tx, body) = streamed_body();
        let answer = async move {
            let headers = [(header::CONTENT_TYPE, "application/x-tar".to_string())];
            let body = self.open(Method::POST, &path, &headers, body).await?;
            Ok(Self::json_stream(body, Method::POST, &path))
        };
        Ok((tx, answer))
    }

    /// `POST /v1/build/prune`.
    pub async fn prune_build(&self) -> Result<crate::api::types::BuildPruned> {
        self.call(Method::POST, "/v1/build/prune", None::<&()>)
            .await
    }
}

/// A request body fed by a channel: chunked transfer, ended when every sender is dropped.
fn streamed_body() -> (BodySender, StreamedBody) {
    let (tx, mut rx) = mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(8);
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    });
    (tx, StreamBody::new(stream).boxed())
}
