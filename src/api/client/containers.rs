//! Typed client methods of the container operations beyond the lifecycle: restart, top,
//! stats (one sample or a stream), archive (cp out and in as tar bodies) and commit.

use bytes::Bytes;
use http::{Method, StatusCode, header};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::{
    ByteStream, Client, ClientError, JsonStream, Result, api_error, error_of, query_escape,
    read_all, with_query,
};
use crate::api::host::Host;
use crate::api::types::{CommitResult, Container, ContainerCommit, ContainerStats, ContainerTop};

/// A connection the upload runs over (unix socket or TCP).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

fn container_path(id: &str, what: &str) -> String {
    format!("/v1/containers/{}/{what}", query_escape(id))
}

impl Client {
    /// `POST /v1/containers/{id}/restart` (`timeout` in seconds before SIGKILL).
    pub async fn restart_container(&self, id: &str, timeout: Option<u64>) -> Result<Container> {
        let params: Vec<String> = timeout
            .map(|t| format!("timeout={t}"))
            .into_iter()
            .collect();
        let path = with_query(&container_path(id, "restart"), &params);
        let body = None::<Bytes>;
        self.untimed(Method::POST, &path, body).await
    }

    /// `GET /v1/containers/{id}/top`.
    pub async fn top_container(&self, id: &str) -> Result<ContainerTop> {
        self.call(Method::GET, &container_path(id, "top"), None::<&()>)
            .await
    }

    /// `GET /v1/containers/{id}/stats`: one sample.
    pub async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        self.call(Method::GET, &container_path(id, "stats"), None::<&()>)
            .await
    }

    /// `GET /v1/containers/{id}/stats?stream=true`: a sample every second until the container
    /// stops.
    pub async fn container_stats_stream(&self, id: &str) -> Result<JsonStream<ContainerStats>> {
        let path = format!("{}?stream=true", container_path(id, "stats"));
        self.stream(Method::GET, &path, None).await
    }

    /// `GET /v1/containers/{id}/archive?path=…`: the tar of `path`, read as it arrives.
    pub async fn archive_get_stream(&self, id: &str, path: &str) -> Result<ByteStream> {
        let p = format!(
            "{}?path={}",
            container_path(id, "archive"),
            query_escape(path)
        );
        let (status, body) = self.send(Method::GET, &p, None).await?;
        if !status.is_success() {
            return Err(error_of(status, body).await);
        }
        Ok(ByteStream { body, path: p })
    }

    /// `GET /v1/containers/{id}/archive?path=…`: the tar of `path` (whole, in memory).
    pub async fn archive_get(&self, id: &str, path: &str) -> Result<Bytes> {
        let p = format!(
            "{}?path={}",
            container_path(id, "archive"),
            query_escape(path)
        );
        let (status, body) = self.send(Method::GET, &p, None).await?;
        let bytes = read_all(Method::GET, &p, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(bytes)
    }

    /// `PUT /v1/containers/{id}/archive?path=…`: copies the tar's top-level entries to `path`
    /// with cp's rules.
    pub async fn archive_put(&self, id: &str, path: &str, tar: Bytes) -> Result<()> {
        let p = format!(
            "{}?path={}",
            container_path(id, "archive"),
            query_escape(path)
        );
        let (status, body) = self.send(Method::PUT, &p, Some(tar)).await?;
        let bytes = read_all(Method::PUT, &p, body).await?;
        if status != StatusCode::NO_CONTENT && !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(())
    }

    /// `PUT /v1/containers/{id}/archive?path=…` with the tar streamed from `chunks` as they
    /// come (an error chunk aborts the upload: the daemon then makes nothing).
    pub async fn archive_put_stream(
        &self,
        id: &str,
        path: &str,
        chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    ) -> Result<()> {
        use http_body_util::StreamBody;
        let p = format!(
            "{}?path={}",
            container_path(id, "archive"),
            query_escape(path)
        );
        let host = self.host.to_string();
        let connect_err = |source| ClientError::Connect {
            host: host.clone(),
            source,
        };
        let mut chunks = chunks;
        let frames = futures_util::TryStreamExt::map_ok(
            futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx)),
            hyper::body::Frame::data,
        );
        let body = StreamBody::new(frames);
        let io: Box<dyn Io> = match &self.host {
            Host::Unix(socket) => Box::new(
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(connect_err)?,
            ),
            Host::Tcp(addr) => Box::new(
                tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(connect_err)?,
            ),
        };
        let (mut sender, conn) =
            http1::handshake(TokioIo::new(io))
                .await
                .map_err(|source| ClientError::Handshake {
                    host: host.clone(),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "api upload connection");
            }
        });
        let head = self
            .request_head(&Method::PUT, &p)
            .header(header::CONTENT_TYPE, "application/x-tar");
        let res = self
            .dispatch(&mut sender, head, body, Method::PUT, &p)
            .await?;
        let status = res.status();
        let bytes = read_all(Method::PUT, &p, res.into_body()).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(())
    }

    /// `POST /v1/containers/{id}/commit`.
    pub async fn commit_container(&self, id: &str, req: &ContainerCommit) -> Result<CommitResult> {
        let path = container_path(id, "commit");
        let body = Self::encode(&Method::POST, &path, req)?;
        self.untimed(Method::POST, &path, Some(body)).await
    }
}
