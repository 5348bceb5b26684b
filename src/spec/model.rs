//! The typed stack model the planner and engine work from: what [`super::load::load`] resolved,
//! read from the canonical JSON (so it has exactly one form per field: ports and volumes in long
//! syntax, durations and byte sizes as numbers, paths absolute). Fields the engine does not act on
//! yet stay available, untyped, in each struct's `extra` map.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

type Extra = IndexMap<String, J>;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Project {
    pub name: String,
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    #[serde(default)]
    pub networks: IndexMap<String, Network>,
    #[serde(default)]
    pub volumes: IndexMap<String, Volume>,
    #[serde(default)]
    pub secrets: IndexMap<String, FileObject>,
    #[serde(default)]
    pub configs: IndexMap<String, FileObject>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(default)]
    pub labels: IndexMap<String, Option<String>>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<Mount>,
    #[serde(default)]
    pub volumes_from: Vec<String>,
    #[serde(default)]
    pub depends_on: IndexMap<String, Dependency>,
    /// Attached networks; `None` values mean "no per-network options".
    #[serde(default)]
    pub networks: IndexMap<String, Option<NetworkAttachment>>,
    pub network_mode: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub deploy: Option<Deploy>,
    pub scale: Option<u32>,
    pub restart: Option<String>,
    pub container_name: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub init: Option<bool>,
    pub read_only: Option<bool>,
    pub tty: Option<bool>,
    pub stdin_open: Option<bool>,
    pub privileged: Option<bool>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub tmpfs: Vec<String>,
    #[serde(default)]
    pub ulimits: IndexMap<String, Ulimit>,
    #[serde(default)]
    pub sysctls: IndexMap<String, Option<String>>,
    pub stop_signal: Option<String>,
    /// A Go-style duration string (`1m30s`).
    pub stop_grace_period: Option<String>,
    pub mem_limit: Option<u64>,
    pub mem_reservation: Option<u64>,
    pub memswap_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<i64>,
    pub cpuset: Option<String>,
    pub pids_limit: Option<i64>,
    pub shm_size: Option<u64>,
    pub pull_policy: Option<String>,
    pub platform: Option<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<FileRef>,
    #[serde(default)]
    pub configs: Vec<FileRef>,
    #[serde(default)]
    pub post_start: Vec<Hook>,
    #[serde(default)]
    pub pre_stop: Vec<Hook>,
    pub develop: Option<Develop>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Build {
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    #[serde(default)]
    pub args: IndexMap<String, Option<String>>,
    pub target: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: IndexMap<String, Option<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Port {
    pub name: Option<String>,
    pub mode: Option<String>,
    pub host_ip: Option<String>,
    pub target: u32,
    /// A port or a range (`8080`, `9000-9010`); absent for a random host port.
    pub published: Option<String>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: Option<String>,
    pub read_only: Option<bool>,
    pub bind: Option<BindOptions>,
    pub volume: Option<VolumeOptions>,
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct BindOptions {
    pub propagation: Option<String>,
    pub create_host_path: Option<bool>,
    pub selinux: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct VolumeOptions {
    pub nocopy: Option<bool>,
    pub subpath: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TmpfsOptions {
    pub size: Option<u64>,
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Dependency {
    pub condition: String,
    #[serde(default)]
    pub restart: bool,
    pub required: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct NetworkAttachment {
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Healthcheck {
    pub disable: Option<bool>,
    pub test: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Deploy {
    pub replicas: Option<u32>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Resources {
    pub limits: Option<ResourceSet>,
    pub reservations: Option<ResourceSet>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ResourceSet {
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
    pub pids: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<String>,
    pub max_attempts: Option<u64>,
    pub window: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Hook {
    pub command: Option<Vec<String>>,
    pub user: Option<String>,
    pub privileged: Option<bool>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub environment: IndexMap<String, Option<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Develop {
    #[serde(default)]
    pub watch: Vec<WatchRule>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct WatchRule {
    pub path: String,
    pub action: String,
    pub target: Option<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub include: Vec<String>,
    pub initial_sync: Option<bool>,
    /// `sync+exec`: the command run in each replica after the sync.
    pub exec: Option<Hook>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Network {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub internal: bool,
    pub ipam: Option<J>,
    #[serde(default)]
    pub labels: IndexMap<String, Option<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Volume {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: IndexMap<String, String>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub labels: IndexMap<String, Option<String>>,
}

/// A top-level secret or config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FileObject {
    pub name: Option<String>,
    pub file: Option<String>,
    pub environment: Option<String>,
    pub content: Option<String>,
    #[serde(default)]
    pub external: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Project {
    /// Reads the typed model from a loaded stack's canonical JSON.
    pub fn from_config(config: &J) -> Result<Project, serde_json::Error> {
        Project::deserialize(config)
    }
}

impl Service {
    /// How many replicas the service asks for (`scale`, else `deploy.replicas`, else 1).
    pub fn replicas(&self) -> u32 {
        self.scale
            .or_else(|| self.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load::{Options, load};

    #[test]
    fn typed_model_reads_canonical_config() {
        let text = "services:\n  web:\n    image: busybox\n    command: httpd -f\n    ports: [\"8080:80\"]\n    volumes: [\"./www:/www:ro\", \"data:/data\"]\n    depends_on: [db]\n    healthcheck:\n      test: true\n      interval: 1m\n    mem_limit: 1g\n    deploy:\n      replicas: 3\n  db:\n    image: busybox\n    ulimits:\n      nofile: 1024\nvolumes:\n  data: {}\n";
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            files: vec!["-".into()],
            stdin: Some(text.into()),
            working_dir: dir.path().to_path_buf(),
            project_name: Some("demo".into()),
            ..Default::default()
        };
        let loaded = load(&opts).unwrap();
        let p = Project::from_config(&loaded.config).unwrap();
        let web = &p.services["web"];
        assert_eq!(
            web.command.as_deref(),
            Some(&["httpd".to_string(), "-f".to_string()][..])
        );
        assert_eq!(web.ports[0].target, 80);
        assert_eq!(web.ports[0].published.as_deref(), Some("8080"));
        assert_eq!(web.volumes[0].kind, "bind");
        assert_eq!(web.volumes[0].read_only, Some(true));
        assert_eq!(web.volumes[1].source.as_deref(), Some("data"));
        assert_eq!(web.depends_on["db"].condition, "service_started");
        assert_eq!(web.mem_limit, Some(1 << 30));
        assert_eq!(web.replicas(), 3);
        assert_eq!(
            web.healthcheck.as_ref().and_then(|h| h.interval.as_deref()),
            Some("1m0s")
        );
        assert_eq!(p.services["db"].ulimits["nofile"].hard, 1024);
        assert_eq!(p.volumes["data"].name.as_deref(), Some("demo_data"));
        assert_eq!(p.networks["default"].name.as_deref(), Some("demo_default"));
    }
}
