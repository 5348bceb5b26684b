//! `POST /v1/projects/{name}/sync`, watch's door into running containers: its request and
//! answer (shared by the server route in `server/project_sync.rs` and the client method here). Kept
//! apart from [`super::types`] so the watch feature touches the shared files only to register
//! itself.

use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::client::{Client, ClientError};
use super::types::ErrorBody;

/// Largest sync request body the daemon reads (files travel base64-encoded in it).
pub const MAX_SYNC_BODY: usize = 64 << 20;

/// Files copied into (or deleted from) every running replica of a service, then optionally a
/// restart of those containers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSync {
    /// The service whose running containers receive the files.
    pub service: String,
    /// The changes, applied in order.
    #[serde(default)]
    pub files: Vec<SyncFile>,
    /// Restart the containers after the copy (`sync+restart`, `restart`).
    #[serde(default)]
    pub restart: bool,
    /// Seconds a restart waits for each container to stop before killing it (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// One file: its absolute path in the container and its new content, or its deletion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncFile {
    /// Absolute path in the container.
    pub path: String,
    /// The content, base64; absent: the path was deleted (a directory with its tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Permission bits of the file (default 0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl SyncFile {
    /// A file with this content.
    pub fn write(path: &str, content: &[u8], mode: u32) -> Self {
        SyncFile {
            path: path.to_string(),
            content: Some(base64::engine::general_purpose::STANDARD.encode(content)),
            mode: Some(mode),
        }
    }

    /// A deletion.
    pub fn delete(path: &str) -> Self {
        SyncFile {
            path: path.to_string(),
            content: None,
            mode: None,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectSynced {
    /// The containers that received the files (names).
    pub containers: Vec<String>,
    /// Whether they were restarted.
    pub restarted: bool,
}

impl Client {
    /// `POST /v1/projects/{name}/sync`.
    pub async fn project_sync(
        &self,
        name: &str,
        req: &ProjectSync,
    ) -> Result<ProjectSynced, String> {
        let path = format!("/v1/projects/{name}/sync");
        let body = serde_json::to_vec(req).map_err(|e| format!("encode the sync: {e}"))?;
        let (status, bytes) = self
            .raw(Method::POST, &path, Some(Bytes::from(body)))
            .await
            .map_err(|e: ClientError| e.to_string())?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => e.message,
                Err(_) => format!("{status}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("decode the answer of the sync: {e}"))
    }
}
