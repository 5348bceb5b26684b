//! What the engine has: the containers, networks and volumes the planner compares the stack with.
//! Plain values the engine fills from its store and live probes; the planner reads a project's
//! objects by their labels ([`super::labels`]).

use std::collections::BTreeMap;

use serde_json::Value as J;

use super::labels;

/// A container's status, in Docker's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerStatus {
    #[default]
    Created,
    Running,
    Paused,
    Exited,
    /// Its supervisor is gone; it cannot be started again, only replaced.
    Dead,
}

impl ContainerStatus {
    /// Running or paused: a process exists.
    pub fn is_up(self) -> bool {
        matches!(self, ContainerStatus::Running | ContainerStatus::Paused)
    }
}

/// One container as the engine sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActualContainer {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: ContainerStatus,
    pub exit_code: Option<i32>,
    /// `com.docker.compose.project`.
    pub project: String,
    /// `com.docker.compose.service`.
    pub service: String,
    /// `com.docker.compose.container-number`; 0 when the label is missing or not a number.
    pub number: u32,
    /// `com.docker.compose.config-hash`.
    pub config_hash: Option<String>,
    /// `com.docker.compose.oneoff` is `True`: a `run` container, not a replica.
    pub oneoff: bool,
    /// `com.docker.compose.image`: the image digest it was created from.
    pub image_digest: Option<String>,
    /// The canonical configuration it was created from (`io.flotilla.config`, or filled by the
    /// engine from its store); lets the plan name the fields that changed.
    pub config: Option<J>,
}

impl ActualContainer {
    /// A container described by its labels: project, service, number, hash, one-off flag, image
    /// digest and previous configuration are read from them.
    pub fn from_labels(
        id: impl Into<String>,
        name: impl Into<String>,
        labels: BTreeMap<String, String>,
        status: ContainerStatus,
        exit_code: Option<i32>,
    ) -> ActualContainer {
        let get = |k: &str| labels.get(k).cloned();
        ActualContainer {
            id: id.into(),
            name: name.into(),
            status,
            exit_code,
            project: get(labels::PROJECT).unwrap_or_default(),
            service: get(labels::SERVICE).unwrap_or_default(),
            number: labels
                .get(labels::CONTAINER_NUMBER)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            config_hash: get(labels::CONFIG_HASH),
            oneoff: labels
                .get(labels::ONEOFF)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            image_digest: get(labels::IMAGE),
            config: labels
                .get(labels::CONFIG)
                .and_then(|text| serde_json::from_str(text).ok()),
            labels,
        }
    }
}

/// One network or volume as the engine sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualResource {
    /// The engine-wide name (`demo_default`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl ActualResource {
    /// The `com.docker.compose.project` label, if any.
    pub fn project(&self) -> Option<&str> {
        self.labels.get(labels::PROJECT).map(String::as_str)
    }
}

/// Everything the engine has that the planner may look at. It may hold other projects' objects:
/// the planner keeps only those labelled with the project (containers) or named by the stack
/// (networks, volumes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actual {
    pub containers: Vec<ActualContainer>,
    pub networks: Vec<ActualResource>,
    pub volumes: Vec<ActualResource>,
}

impl Actual {
    /// The project's containers (one-off ones included).
    pub fn project_containers<'a>(
        &'a self,
        project: &'a str,
    ) -> impl Iterator<Item = &'a ActualContainer> + 'a {
        self.containers.iter().filter(move |c| c.project == project)
    }

    /// The network with this engine-wide name.
    pub fn network(&self, name: &str) -> Option<&ActualResource> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The volume with this engine-wide name.
    pub fn volume(&self, name: &str) -> Option<&ActualResource> {
        self.volumes.iter().find(|v| v.name == name)
    }
}
