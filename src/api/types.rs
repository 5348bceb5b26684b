//! Request and response bodies of the REST API, shared by the server routes and the client.
//! Requests refuse unknown fields (a typo is a 400 naming the field); responses accept them, so
//! an older client can read a newer daemon's answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::engine::events::Event;

/// `GET /v1/version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Version {
    /// The daemon's flotilla version.
    pub version: String,
    /// The API version (`v1`).
    pub api_version: String,
    /// `linux`.
    pub os: String,
    /// The CPU architecture (`x86_64`, `aarch64`, …).
    pub arch: String,
}

impl Version {
    /// This build's version.
    pub fn current() -> Self {
        Version {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: super::API_VERSION.to_string(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

/// Object counts in `GET /v1/info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    pub containers: u64,
    pub networks: u64,
    pub volumes: u64,
    pub projects: u64,
}

/// `GET /v1/info`: the daemon and its host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Info {
    pub version: Version,
    /// The data root (state database, images, containers' state dirs).
    pub data_root: String,
    /// The state database's schema version.
    pub schema_version: u64,
    pub counts: Counts,
    /// `v2` (unified hierarchy) or `v1` (legacy or hybrid).
    pub cgroup_version: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The daemon's process id.
    pub pid: u32,
}

/// `POST /v1/volumes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreate {
    /// The volume's name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`); without one, the new id is the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A volume, as `GET /v1/volumes` and `POST /v1/volumes` return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created: u64,
}

impl From<crate::store::VolumeRecord> for Volume {
    fn from(r: crate::store::VolumeRecord) -> Self {
        Volume {
            id: r.id,
            name: r.name,
            labels: r.labels,
            created: r.created,
        }
    }
}

/// The stable error codes; clients branch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed (bad JSON, unknown field, wrong type, bad name).
    BadRequest,
    /// 401: a TCP request without the right bearer token.
    Unauthorized,
    /// 404: no such object or endpoint.
    NotFound,
    /// 405: the endpoint exists but not with this method.
    MethodNotAllowed,
    /// 409: the name is taken, or the object is in the wrong state.
    Conflict,
    /// 413: the request body is larger than the limit.
    PayloadTooLarge,
    /// 500: the daemon failed; the message says where.
    Internal,
    /// Any code this client does not know yet (a newer daemon).
    #[serde(other)]
    Unknown,
}

/// Every error response: `{"code": "not_found", "message": "volume \"x\" not found"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}
