//! Request and response bodies of the REST API, shared by the server routes and the client.
//! Requests refuse unknown fields (a typo is a 400 naming the field); responses accept them, so
//! an older client can read a newer daemon's answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::engine::events::Event;

mod build;
mod networks;
pub use build::*;
pub use networks::*;

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
    /// Running or paused containers.
    #[serde(default)]
    pub running: u64,
    #[serde(default)]
    pub images: u64,
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
    /// The cgroup prefix of this daemon's containers (`flotilla-<prefix>/<id>`).
    #[serde(default)]
    pub cgroup_prefix: String,
    /// Containers whose exit the daemon is watching.
    #[serde(default)]
    pub watching: u64,
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
    /// Only `local` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The `local` driver's options: none, or `type=none`, `o=bind`, `device=<dir>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
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
    /// `local`.
    #[serde(default)]
    pub driver: String,
    /// The host directory mounted into containers.
    #[serde(default)]
    pub mountpoint: String,
    /// The driver options given at creation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl From<crate::volume::Volume> for Volume {
    fn from(v: crate::volume::Volume) -> Self {
        Volume {
            id: v.id,
            name: v.name,
            labels: v.labels,
            created: v.created,
            driver: v.driver,
            mountpoint: v.mountpoint.display().to_string(),
            options: v.options,
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

/// `POST /v1/containers`: a container from an image in the daemon's store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerCreate {
    /// Unique among containers (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`); default: the id's first 12
    /// digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An image reference in the daemon's store (pull it first).
    pub image: String,
    /// Replaces the image's `Cmd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's `Entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, over the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub tty: bool,
    /// Keep stdin open (`-i`).
    #[serde(default)]
    pub open_stdin: bool,
    /// Run the built-in init as PID 1.
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Default: the image's, else `SIGTERM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Docker's restart policy: `no` (default), `always`, `on-failure[:max]`,
    /// `unless-stopped`; enforced by the daemon on every exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Maximum number of tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// CPUs (`1.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Capabilities added to Docker's default set (`NET_ADMIN`, `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Host directories bind-mounted into the container (the source must exist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<Bind>,
    /// tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<Tmpfs>,
    /// `none` (default: a new namespace with only `lo`), `host`, `bridge` (the daemon's
    /// default bridge network, made on first use like Docker's `docker0`), or the name of a
    /// network made by `network create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// More DNS names of the container on its bridge network (besides its name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_aliases: Vec<String>,
    /// Named volumes to mount (made on first use, filled from the image like Docker's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Ports published on the host (needs a bridge network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishPort>,
    /// Name servers of the container's `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Remove the container once it has exited (`run --rm`), done by the daemon.
    #[serde(default)]
    pub auto_remove: bool,
}

/// A named volume mount of [`ContainerCreate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// An absolute path in the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A published port of [`ContainerCreate`] (`-p [IP:][HOST:]CONTAINER[/PROTO]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishPort {
    /// The container port.
    pub target: u32,
    /// The host port or range (`8080`, `9000-9010`); absent: one the kernel picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// The host address to bind (default: every address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `tcp` (default) or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A bind mount of [`ContainerCreate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// An absolute host path that exists.
    pub source: String,
    /// An absolute path in the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A tmpfs mount of [`ContainerCreate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    /// An absolute path in the container.
    pub target: String,
    /// Size in bytes (default: the kernel's, half of RAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Mode of its root (default 1777).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A container's status, Docker's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Exited,
    /// Its shim is gone while it was running (seen only until the daemon settles it).
    Dead,
    /// A status this client does not know yet (a newer daemon).
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Exited => "exited",
            ContainerStatus::Dead => "dead",
            ContainerStatus::Unknown => "unknown",
        })
    }
}

/// A container's runtime state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerState {
    pub status: ContainerStatus,
    /// PID 1 of the container as the host sees it, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The exit status, or 128 + the signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `starting`, `healthy` or `unhealthy` when it has a healthcheck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// A container, as list, inspect and the lifecycle endpoints return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Container {
    /// 64 hexadecimal digits.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's id (config digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The process's arguments.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    pub stop_signal: String,
    pub stop_timeout_ms: u64,
    pub state: ContainerState,
    /// The published ports as bound (while the container runs).
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Docker's inspect document of the container (`Config`, `HostConfig`, `Mounts`, …), from
    /// its runtime spec; only `GET /v1/containers/{id}` fills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// A published port as bound: Docker's `80/tcp -> 0.0.0.0:8080`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Port {
    /// The host address it is bound on (`0.0.0.0`, `127.0.0.1`, `::`).
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl From<crate::network::proxy::PortBinding> for Port {
    fn from(b: crate::network::proxy::PortBinding) -> Self {
        Port {
            host_ip: b.host_ip.to_string(),
            host_port: b.host_port,
            container_port: b.container_port,
            protocol: b.protocol.to_string(),
        }
    }
}

impl From<crate::runtime::lifecycle::Container> for Container {
    fn from(c: crate::runtime::lifecycle::Container) -> Self {
        use crate::runtime::state::Status;
        let m = c.meta;
        let s = c.state;
        Container {
            id: m.id,
            name: m.name,
            image: m.image,
            image_id: m.image_id,
            created: m.created,
            command: m.command,
            labels: m.labels,
            tty: m.tty,
            open_stdin: m.open_stdin,
            stop_signal: m.stop_signal,
            stop_timeout_ms: m.stop_timeout_ms,
            state: ContainerState {
                status: match s.status {
                    Status::Created => ContainerStatus::Created,
                    Status::Running => ContainerStatus::Running,
                    Status::Paused => ContainerStatus::Paused,
                    Status::Exited => ContainerStatus::Exited,
                    Status::Dead => ContainerStatus::Dead,
                },
                pid: s
                    .pid
                    .filter(|_| matches!(s.status, Status::Running | Status::Paused)),
                started_at: s.started_at,
                finished_at: s.finished_at,
                exit_code: s.exit_code,
                signal: s.signal,
                oom_killed: s.oom_killed,
                error: s.error,
                health: None,
            },
            ports: Vec::new(),
            details: None,
        }
    }
}

/// `GET /v1/containers/{id}/top`: the container's processes, Docker's shape (`ps -ef`
/// columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerTop {
    /// `UID`, `PID`, `PPID`, `C`, `STIME`, `TTY`, `TIME`, `CMD`.
    pub titles: Vec<String>,
    /// One row per process, as the host sees it, in the order of `titles`.
    pub processes: Vec<Vec<String>>,
}

/// One sample of `GET /v1/containers/{id}/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContainerStats {
    pub id: String,
    pub name: String,
    /// When the sample was taken, RFC 3339.
    pub read: String,
    /// Total CPU time used by the container, nanoseconds.
    pub cpu_usage_ns: u64,
    /// CPU use since the previous sample (100 = one whole CPU).
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_usage: u64,
    /// The container's memory limit, or the host's memory without one.
    pub memory_limit: u64,
    /// Processes and threads in the container.
    pub pids: u64,
}

/// `POST /v1/containers/{id}/commit`: a new image from the container's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerCommit {
    /// The new image's reference (`repo[:tag]`).
    pub reference: String,
    /// Dockerfile instructions applied to the config (`CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`,
    /// `LABEL`, `STOPSIGNAL`, `USER`, `WORKDIR`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Pause a running container meanwhile (default true, as Docker).
    #[serde(default = "yes")]
    pub pause: bool,
}

fn yes() -> bool {
    true
}

/// What `POST /v1/containers/{id}/commit` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitResult {
    /// The new image's id (its config digest, `sha256:…`).
    pub id: String,
    /// Its full reference.
    pub name: String,
}

/// `POST /v1/containers/{id}/wait`: how the container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerExit {
    pub exit_code: i32,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/containers/{id}/exec`: a command in a running container. Without `detach` the
/// answer is `101 Switching Protocols` to a framed stream ([`crate::api::frame`]) ending with
/// the command's exit code (126 cannot be executed, 127 not found, 128 + signal when killed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecCreate {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries over the container's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Absolute working directory in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// A pseudo-terminal: its output arrives as stdout frames.
    #[serde(default)]
    pub tty: bool,
    /// Pass stdin frames to the command (else its stdin is empty).
    #[serde(default)]
    pub stdin: bool,
    /// Start the command in the background: a JSON answer ([`ExecDetached`]), no stream.
    #[serde(default)]
    pub detach: bool,
    /// The terminal's initial size, `[rows, columns]` (with `tty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u16; 2]>,
}

/// The answer to a detached exec: the command was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecDetached {
    /// The host pid of the process that joined the container.
    pub pid: u32,
}

/// One line of `GET /v1/containers/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, with its newline (none for a cut or final partial line).
    pub log: String,
}

/// An image in the daemon's store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// The image id: its config digest (`sha256:…`).
    pub id: String,
    /// The full reference it is known by.
    pub name: String,
    pub manifest_digest: String,
    /// `os/architecture[/variant]`.
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Unpacked size in bytes.
    pub size: u64,
    pub layers: usize,
    /// The image's config (`Env`, `Cmd`, `Entrypoint`, …), in `inspect` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// The uncompressed layer digests, bottom first, in `inspect` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff_ids: Vec<String>,
    /// The manifest's media type, in `inspect` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_media_type: Option<String>,
    /// The manifest's size in bytes, in `inspect` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_size: Option<u64>,
}

/// `POST /v1/images/{name}/tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageTag {
    /// The new name (`name[:tag]`, `host:5000/app:1`).
    pub target: String,
}

/// One line of the push progress stream. The last line is `done` (with what was pushed) or
/// `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PushProgress {
    /// `pushing`, `done`, `error`.
    pub status: String,
    /// The repository for `pushing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The error's message for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error's code for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// What was pushed, for `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<ImagePushed>,
}

impl PushProgress {
    pub fn status(status: &str) -> Self {
        PushProgress {
            status: status.to_string(),
            id: None,
            message: None,
            code: None,
            pushed: None,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImagePushed {
    pub manifest_digest: String,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    pub pushed_blobs: usize,
    pub pushed_bytes: u64,
    /// Blobs the registry already had.
    pub skipped_blobs: usize,
}

/// One entry of `GET /v1/images/{name}/history`, newest first (Docker's order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageHistory {
    /// The image id on the newest entry, else none (Docker's `<missing>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made this step.
    pub created_by: String,
    /// The unpacked size of the layer this step made (0 for an empty layer).
    pub size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// One image `POST /v1/images/load` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageLoaded {
    /// The name it was recorded under; none for an image unnamed in the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its id (config digest).
    pub id: String,
}

/// `POST /v1/images/pull`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePull {
    /// `busybox`, `registry:5000/app:1`, `name@sha256:…`.
    pub reference: String,
    /// `os/arch[/variant]`; default `linux/amd64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// One line of the pull progress stream. The last line is `done` (with the image) or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PullProgress {
    /// `resolved`, `exists`, `downloading`, `downloaded`, `unpacking`, `unpacked`, `done`,
    /// `error`.
    pub status: String,
    /// The blob (layer) digest, or the manifest digest for `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The error's message for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error's code for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// The pulled image for `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
}

impl PullProgress {
    pub fn status(status: &str) -> Self {
        PullProgress {
            status: status.to_string(),
            id: None,
            current: None,
            total: None,
            message: None,
            code: None,
            image: None,
        }
    }
}

/// `DELETE /v1/images/{name}`: what was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRemoved {
    /// Names whose records were removed.
    pub untagged: Vec<String>,
    /// Image ids whose content is gone.
    pub deleted: Vec<String>,
    /// Bytes reclaimed.
    pub reclaimed: u64,
}

/// `POST /v1/projects/{name}/up`: converge the project to `project`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUp {
    /// The project as the client loaded it (`flotilla config --format json`: the canonical
    /// model, paths absolute).
    #[schema(value_type = Object)]
    pub project: serde_json::Value,
    /// The stack files (absolute), recorded on the containers.
    #[serde(default)]
    pub config_files: Vec<String>,
    /// The project directory, recorded on the containers.
    #[serde(default)]
    pub working_dir: String,
    /// Only these services (and their dependencies unless `no_deps`); empty: all.
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub no_deps: bool,
    #[serde(default)]
    pub force_recreate: bool,
    #[serde(default)]
    pub no_recreate: bool,
    /// `service → replicas` (`--scale`).
    #[serde(default)]
    pub scale: BTreeMap<String, u32>,
    #[serde(default)]
    pub remove_orphans: bool,
    /// `always`, `missing`, `never` or `build`: overrides every service's `pull_policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<String>,
    /// Never build: an image that would need a build is an error (`up --no-build`).
    #[serde(default)]
    pub no_build: bool,
    /// Create, do not start.
    #[serde(default)]
    pub no_start: bool,
    /// Only plan: the stream says what would be done.
    #[serde(default)]
    pub dry_run: bool,
    /// Wait until the started containers run (and are healthy, when they have a check).
    #[serde(default)]
    pub wait: bool,
    /// Seconds `wait` waits at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<u64>,
}

/// `POST /v1/projects/{name}/down`: stop and remove the project's containers and networks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectDown {
    /// The project as loaded, when the client has its stack file (external networks and
    /// volumes known as such); none: everything labelled with the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub project: Option<serde_json::Value>,
    /// Also remove the named volumes (`-v`).
    #[serde(default)]
    pub volumes: bool,
    #[serde(default)]
    pub remove_orphans: bool,
    /// Seconds between the stop signal and SIGKILL (default: each container's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/projects/{name}/run`: a one-off container of a service (Compose's `run`),
/// created and started; its dependencies are brought up first unless `no_deps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRun {
    /// The project as the client loaded it (like [`ProjectUp::project`]).
    #[schema(value_type = Object)]
    pub project: serde_json::Value,
    /// The stack files (absolute), recorded on the containers.
    #[serde(default)]
    pub config_files: Vec<String>,
    /// The project directory, recorded on the containers.
    #[serde(default)]
    pub working_dir: String,
    /// The service to run.
    pub service: String,
    /// The command, instead of the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The entrypoint, instead of the service's (empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` environment variables over the service's.
    #[serde(default)]
    pub env: Vec<String>,
    /// The container's name; default `<project>-<service>-run-<12 hex digits>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Do not start the service's dependencies.
    #[serde(default)]
    pub no_deps: bool,
    /// Publish the service's ports (none by default).
    #[serde(default)]
    pub service_ports: bool,
    /// The user, instead of the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The working directory inside the container, instead of the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir_override: Option<String>,
}

/// One line of the `up` / `down` stream: an object changed state, or the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProjectProgress {
    /// `network`, `volume`, `image`, `container`, `plan` (a `dry_run` line), `warning`,
    /// `done` (the last line).
    pub kind: String,
    /// The object's name (empty for `plan`, `warning`, `done`).
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Compose's words: `Creating`, `Created`, `Starting`, `Started`, `Waiting`, `Healthy`,
    /// `Recreate`, `Recreated`, `Stopping`, `Stopped`, `Removing`, `Removed`, `Pulling`,
    /// `Pulled`, `Running`, `Error`; for `done`: `ok` or `failed`.
    #[serde(default)]
    pub status: String,
    /// Why (a recreate's reasons, an error's message, a plan line, a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Milliseconds since the operation began.
    #[serde(default)]
    pub elapsed_ms: u64,
}

/// `GET /v1/projects`: a project known by its containers' labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProjectSummary {
    pub name: String,
    /// Compose's `running(2), exited(1)`.
    pub status: String,
    /// The stack files of its newest container, comma-separated.
    pub config_files: String,
}

/// The header that carries registry credentials to `POST /v1/images/pull` and
/// `POST /v1/images/{name}/push`, as Docker's API does.
///
/// Decision: credentials are the client's, like Docker's. `login`/`logout` write the client
/// user's Docker config (`$DOCKER_CONFIG/config.json`, credential helpers included); the CLI
/// resolves the credentials for the image's registry there and sends them in this header
/// (base64url of `{"username","password"}`). Without the header the daemon falls back to its
/// own Docker config (root's, on the same host), which is also what the reconciler's pulls use.
pub const REGISTRY_AUTH_HEADER: &str = "x-registry-auth";

/// The content of [`REGISTRY_AUTH_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl RegistryAuth {
    /// The header value: base64url (no padding) of the JSON object.
    pub fn encode(&self) -> String {
        use base64::Engine as _;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a header value (base64url or standard base64, padded or not).
    pub fn decode(value: &str) -> Result<RegistryAuth, String> {
        use base64::Engine as _;
        let value = value.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
            .map_err(|e| format!("{REGISTRY_AUTH_HEADER}: not base64: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            format!("{REGISTRY_AUTH_HEADER}: expected {{\"username\",\"password\"}}: {e}")
        })
    }
}
