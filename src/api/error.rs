//! The API's error: an HTTP status with a JSON body `{"code": …, "message": …}` ([`ErrorBody`]),
//! built from the engine's errors at this edge, and the JSON body extractor that turns malformed
//! JSON, unknown fields, wrong types and oversized bodies into such errors.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::types::{ErrorBody, ErrorCode};
use crate::store::StoreError;

/// The largest request body the API reads.
pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            axum::Json(ErrorBody {
                code: self.code,
                message: self.message,
            }),
        )
            .into_response();
        if self.code == ErrorCode::Unauthorized {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameConflict { .. } | StoreError::IdConflict { .. } => {
                ApiError::conflict(e.to_string())
            }
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            e => {
                tracing::error!(error = %e, "state database");
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// How much of an oversized body is read and dropped before answering 413, so that a client
/// still writing it reads the answer instead of a broken pipe. Beyond this the connection is
/// closed without reading.
const DRAIN_LIMIT: usize = 16 << 20;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than the limit of {MAX_BODY} bytes"),
    )
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY {
            buf.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// A JSON request body: at most [`MAX_BODY`] bytes (else 413), no content type required,
/// deserialized with the path of the offending field in the message (else 400).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req).await?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                Err(ApiError::bad_request(if path == "." || path.is_empty() {
                    format!("invalid request body: {inner}")
                } else {
                    format!("invalid request body: {path}: {inner}")
                }))
            }
        }
    }
}

impl From<crate::runtime::lifecycle::LifecycleError> for ApiError {
    fn from(e: crate::runtime::lifecycle::LifecycleError) -> Self {
        use crate::runtime::lifecycle::LifecycleError as L;
        match &e {
            L::NotFound(_) => ApiError::not_found(e.to_string()),
            L::Image { reason, .. } if reason.starts_with("no such image") => {
                ApiError::not_found(e.to_string())
            }
            L::NameConflict { .. } | L::WrongState { .. } => ApiError::conflict(e.to_string()),
            // The container's command cannot be found or executed: the request's fault.
            L::StartFailed {
                status: 126 | 127, ..
            } => ApiError::bad_request(e.to_string()),
            L::InvalidName { .. }
            | L::InvalidSignal { .. }
            | L::Ambiguous { .. }
            | L::Image { .. }
            | L::Config { .. } => ApiError::bad_request(e.to_string()),
            _ => {
                tracing::error!(error = %e, "container operation");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<crate::engine::containers::EngineError> for ApiError {
    fn from(e: crate::engine::containers::EngineError) -> Self {
        match e {
            crate::engine::containers::EngineError::Lifecycle(l) => l.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<crate::image::manage::ManageError> for ApiError {
    fn from(e: crate::image::manage::ManageError) -> Self {
        use crate::image::manage::ManageError as M;
        match &e {
            M::NotFound { .. } => ApiError::not_found(e.to_string()),
            M::InUse { .. } | M::SeveralNames { .. } => ApiError::conflict(e.to_string()),
            M::TagWithDigest { .. } => ApiError::bad_request(e.to_string()),
            _ => {
                tracing::error!(error = %e, "image operation");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<crate::engine::events::FilterError> for ApiError {
    fn from(e: crate::engine::events::FilterError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}
