//! A compose project's objects made real: [`ProjectEngine`] is what the executor calls for each
//! planned action — networks (`<project>_<key>`), volumes (`<project>_<key>`) and service
//! containers (`<project>-<service>-<n>`) wired to them. A blocking library: the daemon calls
//! it from `spawn_blocking`.
//!
//! A service container is made in steps, each undone when a later one fails, so a failed
//! create leaves no network namespace, veth, address, anonymous volume, created host directory,
//! cgroup, mount or state dir: host directories of bind mounts (created only with
//! `create_host_path`), anonymous volumes, copy-up of the image's content into empty volumes,
//! the container's network namespace (`<root>/netns/<random id>`) joined to each of its
//! networks (addresses, aliases for the DNS), then the runtime's create with the namespace and
//! addresses in its config. Removal undoes the same steps. The pure part — service →
//! [`crate::runtime::config::ContainerConfig`] and the effects above as values — is
//! [`translate`]; the labels are in [`labels`].

mod containers;
pub mod labels;
mod resources;
pub mod standalone;
pub mod translate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::network::{NetworkError, Networks};
use crate::plan::actual::{Actual, ActualContainer, ActualResource, ContainerStatus};
use crate::runtime::lifecycle::{Container, LifecycleError, Runtime};
use crate::runtime::state::Status;
use crate::volume::{VolumeError, Volumes};

/// Why a project operation failed; each message names the service, network or volume.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("services.{service}.{field}: {reason}")]
    Field {
        service: String,
        field: String,
        reason: String,
    },
    #[error("services.{service}: no such service in the project")]
    NoSuchService { service: String },
    #[error("networks.{key}: {reason}")]
    NetworkField { key: String, reason: String },
    #[error("volumes.{key}: {reason}")]
    VolumeField { key: String, reason: String },
    #[error("networks.{key}: external network {name:?} not found (create it first)")]
    ExternalNetworkMissing { key: String, name: String },
    #[error("volumes.{key}: external volume {name:?} not found (create it first)")]
    ExternalVolumeMissing { key: String, name: String },
    #[error("networks.{key}: {source}")]
    Network {
        key: String,
        source: Box<NetworkError>,
    },
    #[error("volumes.{key}: {source}")]
    Volume {
        key: String,
        source: Box<VolumeError>,
    },
    #[error("service {service}: {source}")]
    ServiceNetwork {
        service: String,
        source: Box<NetworkError>,
    },
    #[error("service {service}: {source}")]
    ServiceVolume {
        service: String,
        source: Box<VolumeError>,
    },
    #[error("service {service}: image {image}: {reason}")]
    Image {
        service: String,
        image: String,
        reason: String,
    },
    #[error("service {service}: {source}")]
    Container {
        service: String,
        source: Box<LifecycleError>,
    },
    #[error("{0}")]
    Lifecycle(Box<LifecycleError>),
    #[error("container {container}: {source}")]
    Netns {
        container: String,
        source: Box<NetworkError>,
    },
    #[error("container {container}: anonymous volume {volume}: {source}")]
    AnonymousVolume {
        container: String,
        volume: String,
        source: Box<VolumeError>,
    },
}

impl From<LifecycleError> for ProjectError {
    fn from(e: LifecycleError) -> ProjectError {
        ProjectError::Lifecycle(Box::new(e))
    }
}

type Result<T, E = ProjectError> = std::result::Result<T, E>;

/// The project-level operations of one daemon (one data root).
pub struct ProjectEngine {
    root: PathBuf,
    runtime: Runtime,
    networks: Arc<Networks>,
    volumes: Volumes,
    gateway_dns: bool,
}

impl std::fmt::Debug for ProjectEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectEngine")
            .field("root", &self.root)
            .field("runtime", &self.runtime)
            .field("networks", &self.networks)
            .finish()
    }
}

/// What [`ProjectEngine::create_service_container`] is told besides the project.
#[derive(Debug, Clone, Default)]
pub struct ServiceCreate {
    /// The container number (1-based; 0 is taken as 1).
    pub replica: u32,
    /// The image reference to create from; default: the service's `image`, else
    /// `<project>-<service>` (Compose's name for built images).
    pub image: Option<String>,
    /// The planner's configuration hash, recorded as `com.docker.compose.config-hash`.
    pub config_hash: Option<String>,
    /// More labels, over the translated ones: what [`crate::plan::labels::container_labels`]
    /// makes (config hash, config, depends_on, version …). The engine's `io.flotilla.*`
    /// bookkeeping labels are set after these.
    pub labels: BTreeMap<String, String>,
}

impl ProjectEngine {
    /// The engine of `data_root` over its runtime, networks and volumes (the image store is
    /// the data root's).
    pub fn new(
        data_root: &Path,
        runtime: Runtime,
        networks: Arc<Networks>,
        volumes: Volumes,
    ) -> ProjectEngine {
        ProjectEngine {
            root: data_root.to_path_buf(),
            runtime,
            networks,
            volumes,
            gateway_dns: false,
        }
    }

    /// Points bridge-networked containers without `dns:` at their first network's gateway
    /// (where the embedded DNS server answers) instead of the host's resolvers.
    pub fn with_gateway_dns(mut self, on: bool) -> ProjectEngine {
        self.gateway_dns = on;
        self
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    /// Every container, network and volume of this engine as the planner reads them.
    pub fn actual(&self) -> Result<Actual> {
        let containers = self
            .runtime
            .list()?
            .into_iter()
            .map(|c| {
                let status = match c.state.status {
                    Status::Created => ContainerStatus::Created,
                    Status::Running => ContainerStatus::Running,
                    Status::Paused => ContainerStatus::Paused,
                    Status::Exited => ContainerStatus::Exited,
                    Status::Dead => ContainerStatus::Dead,
                };
                ActualContainer::from_labels(
                    c.meta.id,
                    c.meta.name,
                    c.meta.labels,
                    status,
                    c.state.exit_code,
                )
            })
            .collect();
        let networks = self
            .networks
            .list()
            .map(|all| {
                all.into_iter()
                    .map(|n| ActualResource {
                        name: n.name,
                        labels: n.labels,
                    })
                    .collect()
            })
            .map_err(|source| ProjectError::Network {
                key: "*".into(),
                source: Box::new(source),
            })?;
        let volumes = self
            .volumes
            .list(None)
            .map(|all| {
                all.into_iter()
                    .filter(|v| !v.labels.contains_key(labels::ANONYMOUS_CONTAINER))
                    .map(|v| ActualResource {
                        name: v.name,
                        labels: v.labels,
                    })
                    .collect()
            })
            .map_err(|source| ProjectError::Volume {
                key: "*".into(),
                source: Box::new(source),
            })?;
        Ok(Actual {
            containers,
            networks,
            volumes,
        })
    }

    /// The project's containers (by the `com.docker.compose.project` label), oldest first.
    pub fn list_project(&self, project: &str) -> Result<Vec<Container>> {
        Ok(self
            .runtime
            .list()?
            .into_iter()
            .filter(|c| c.meta.labels.get(labels::PROJECT).map(String::as_str) == Some(project))
            .collect())
    }
}
